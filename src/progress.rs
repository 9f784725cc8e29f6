//! A spinner with live counts on stderr, shown only when stderr is a terminal and not --quiet.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress(Option<ProgressBar>);

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {pos} results in {elapsed} ({per_sec}) {msg}")
                .expect("static template"),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(pb))
    }

    pub fn record(&self, blocked: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
            pb.set_message(format!("{blocked} blocked"));
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

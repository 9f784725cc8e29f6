//! Live progress on stderr, shown only when stderr is a terminal and not --quiet: a bar with
//! done/total and the time left when the total is known (arguments, files, suites), else a
//! spinner; whole results per second.

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
            ProgressStyle::with_template("{spinner} {pos} results in {elapsed} ({rate}) {msg}")
                .expect("static template")
                .with_key("rate", rate),
        );
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        Self(Some(pb))
    }

    /// The run's expected number of results, once known: the spinner becomes a bar with the
    /// time left. (An estimate: duplicates and malformed lines make the end come sooner.)
    pub fn set_total(&self, total: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(total);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{wide_bar}] {pos}/{len}, ~{eta} left, {rate} {msg}",
                )
                .expect("static template")
                .with_key("rate", rate)
                .progress_chars("=> "),
            );
        }
    }

    pub fn record(&self, blocked: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
            pb.set_message(format!("{blocked} blocked"));
        }
    }

    /// Whether anything is drawn.
    pub fn visible(&self) -> bool {
        self.0.is_some()
    }

    /// Runs `f` with the bar cleared (lines printed meanwhile do not tangle with it).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// Whole results per second (`per_sec` shows four decimals).
fn rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0}/s", state.per_sec());
}

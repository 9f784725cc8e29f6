//! blockprobe: a censorship-measurement probe. The binary is a thin shell over [`run`], so
//! tests and benchmarks can drive a whole scan in-process.

pub mod classify;
pub mod cli;
pub mod config;
pub mod mocknet;
pub mod probe;
pub mod progress;
pub mod report;
pub mod resolver_spec;
pub mod scan;
pub mod target;
pub mod tls;
pub mod verdict;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use crate::config::ScanConfig;

/// Exit statuses (see `blockprobe scan --help`).
pub const EXIT_FAIL_ON: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Scan(args) => run_scan(*args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report::warn(format_args!("error: {e:#}"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_scan(args: cli::ScanArgs) -> anyhow::Result<ExitCode> {
    let cfg = ScanConfig::from_args(args)?;
    let meta = scan::run_meta(&cfg, SystemTime::now());
    let quiet = cfg.output.quiet;
    let out: Box<dyn Write + Send> = match &cfg.output.path {
        Some(p) => {
            Box::new(BufWriter::new(File::create(p).with_context(|| {
                format!("cannot create output file {}", p.display())
            })?))
        }
        None => Box::new(BufWriter::new(io::stdout())),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(scan::scan(cfg, meta, out))?;
    // Jobs abandoned by a second interrupt must not keep the process alive.
    runtime.shutdown_background();
    if !quiet {
        let mut err = io::stderr().lock();
        let _ = write!(err, "{}", outcome.summary.render());
    }
    Ok(if outcome.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if outcome.failed_on {
        ExitCode::from(EXIT_FAIL_ON)
    } else {
        ExitCode::SUCCESS
    })
}

//! blockprobe: a censorship-measurement probe. The binary is a thin shell over [`run`], so
//! tests and benchmarks can drive a whole scan in-process.

pub mod blockpage;
pub mod classify;
pub mod cli;
pub mod config;
pub mod mocknet;
pub mod probe;
pub mod progress;
pub mod report;
pub mod resolver_spec;
pub mod scan;
pub mod suite;
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
        Command::Mocknet(args) => run_mocknet(args),
        Command::Suites { suite } => list_suites(suite.as_deref()),
        Command::Generate { what } => generate(what),
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
    let runtime = runtime()?;
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_mocknet(args: cli::MocknetArgs) -> anyhow::Result<ExitCode> {
    let timeout = humantime::format_duration(args.timeout)
        .to_string()
        .replace(' ', "");
    runtime()?.block_on(async move {
        let mut scenario = match &args.scenario {
            Some(path) => mocknet::scenario::Scenario::load(path)?,
            None => mocknet::scenario::Scenario::of_suites(Vec::new()),
        };
        scenario.suites.extend(args.suites.iter().cloned());
        if args.scenario.is_none() {
            scenario.name = scenario.suites.join("+");
        }
        let net = mocknet::MockNet::start(scenario, &timeout).await?;
        let line = serde_json::to_string(&net.ready)?;
        if let Some(p) = &args.ready_file {
            // Write then rename, so a watcher never reads half a line.
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, format!("{line}\n"))
                .and_then(|()| std::fs::rename(&tmp, p))
                .with_context(|| format!("cannot write ready file {}", p.display()))?;
        }
        if args.check {
            let mut stdout = io::stdout().lock();
            let mismatches = net.check(&mut stdout).await?;
            let total = net.plan.scenario.targets.len();
            let _ = writeln!(
                stdout,
                "{}: {} of {total} targets as expected (traffic: {} DNS queries at the ISP \
                 resolver, {} at the control, {} origin connections, {} proxy connects)",
                net.plan.scenario.name,
                total - mismatches.len(),
                net.isp.hits(),
                net.control.hits(),
                net.origin.connections() + net.plain_origin.connections(),
                net.proxy.connects(),
            );
            return Ok(if mismatches.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAIL_ON)
            });
        }
        {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{line}")?;
            stdout.flush()?;
        }
        report::warn(format_args!(
            "mocknet `{}` ready; scan it with: blockprobe {}",
            net.plan.scenario.name,
            net.ready.scan_args.join(" ")
        ));
        wait_for_shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `blockprobe suites [NAME]`: the bundled suites, or one suite's targets.
fn list_suites(one: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut out = io::stdout().lock();
    match one {
        None => {
            writeln!(out, "{:<10} {:>7}  DESCRIPTION", "SUITE", "TARGETS")?;
            for s in suite::Suite::bundled()? {
                writeln!(
                    out,
                    "{:<10} {:>7}  {}",
                    s.name,
                    s.targets.len(),
                    s.description
                )?;
            }
            writeln!(
                out,
                "\nScan one with `blockprobe scan --suite NAME`; list its targets with \
                 `blockprobe suites NAME`."
            )?;
        }
        Some(spec) => {
            let s = suite::Suite::load(spec)?;
            writeln!(out, "# {}: {} ({})", s.name, s.description, s.origin)?;
            for t in &s.targets {
                let method = match t.target.method {
                    target::Method::Get => String::new(),
                    m => format!(" [{}]", m.as_str()),
                };
                writeln!(
                    out,
                    "{:<40} {:<6} {}{method}",
                    t.target.input,
                    t.target.category.as_deref().unwrap_or(""),
                    t.note
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(what: cli::Generate) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    let mut out = io::stdout().lock();
    match what {
        cli::Generate::Man => clap_mangen::Man::new(cmd).render(&mut out)?,
        cli::Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut cmd, "blockprobe", &mut out);
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! blockprobe: a censorship-measurement probe. The binary is a thin shell over [`run`], so
//! tests and benchmarks can drive a whole scan in-process.

pub mod asn;
pub mod blockpage;
pub mod classify;
pub mod cli;
pub mod config;
pub mod diag;
pub mod echo;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod input;
pub mod mocknet;
pub mod net;
pub mod outfile;
pub mod parse;
pub mod probe;
pub mod progress;
pub mod regime;
mod regime_cmd;
pub mod report;
pub mod resolver_spec;
pub mod scan;
pub mod store;
pub mod suite;
pub mod target;
pub mod tls;
pub mod verdict;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;

use crate::cli::{Cli, Command};
use crate::config::ScanConfig;

/// Exit statuses (see `blockprobe scan --help`).
pub const EXIT_FAIL_ON: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
/// The store is locked by another run (EX_TEMPFAIL: cron may try again later).
pub const EXIT_LOCKED: u8 = 75;
pub const EXIT_INTERRUPTED: u8 = 130;

/// The run was interrupted before it could start measuring (exit status 130).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Scan(args) => run_scan(*args),
        Command::Mocknet(args) => run_mocknet(args),
        Command::Echo(args) => run_echo(&args),
        Command::Regime(args) => regime_cmd::run(*args),
        Command::History(args) => history(args),
        Command::Diff(args) => diff(args),
        Command::Export(args) => export(args),
        Command::Report(args) => html_report(&args),
        Command::Prune(args) => prune(args),
        Command::Blockpage(args) => check_blockpage(&args),
        Command::Suites { suite } => list_suites(suite.as_deref()),
        Command::Generate { what } => generate(what),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report::warn(format_args!("error: {e:#}"));
            let broken_pipe = |c: &(dyn std::error::Error + 'static)| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
                    || c.downcast_ref::<csv::Error>().is_some_and(|e| {
                        matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == io::ErrorKind::BrokenPipe)
                    })
            };
            if e.chain().any(broken_pipe) {
                // `blockprobe export | head`: the reader has what it wanted.
                return ExitCode::SUCCESS;
            }
            if e.downcast_ref::<store::Busy>().is_some() {
                ExitCode::from(EXIT_LOCKED)
            } else if e.downcast_ref::<Interrupted>().is_some() {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}

/// What the run read its targets from, for the store.
fn describe_sources(cfg: &ScanConfig) -> Vec<String> {
    cfg.sources
        .iter()
        .map(|s| match s {
            // As records show it: secrets redacted.
            input::Source::Arg(a) => crate::target::Target::parse(a)
                .map_or_else(|_| crate::target::scrub(a, a), |t| t.input),
            input::Source::File(p) => p.display().to_string(),
            input::Source::Stdin => "-".into(),
            input::Source::Suite(s) => format!("suite:{}", s.name),
        })
        .collect()
}

fn run_scan(args: cli::ScanArgs) -> anyhow::Result<ExitCode> {
    // Interrupts are counted from here on: a Ctrl-C during start-up (store lock, resolver
    // health check) ends the run cleanly instead of killing the process mid-write.
    let runtime = runtime()?;
    let signals = {
        let _guard = runtime.enter();
        scan::signals()
    };
    let interrupted = || *signals.borrow() > 0;
    let cfg = ScanConfig::from_args(args)?;
    let mut meta = scan::run_meta(&cfg, SystemTime::now());
    let quiet = cfg.output.quiet;

    // Unreadable inputs are usage errors before anything is recorded anywhere.
    for src in &cfg.sources {
        if let input::Source::File(p) = src {
            std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
        }
    }
    // The store next: a locked store or an unknown --resume run stops before any output.
    let mut skip = std::collections::HashSet::new();
    let mut resumed_network = None;
    let writer = match &cfg.store {
        Some(url) => {
            let mut st = store::Store::open(url)?;
            st.lock(
                &format!("pid {} run {}", std::process::id(), meta.run_id),
                cfg.lock_wait,
                interrupted,
            )?;
            if cfg.resume.is_some() {
                let resumed = st.resume(&meta)?;
                if !quiet {
                    report::warn(format_args!(
                        "resuming run {}: {} results already recorded are not measured again",
                        meta.run_id,
                        resumed.done.len()
                    ));
                }
                skip = resumed.done;
                meta.started_at = resumed.started_at;
                resumed_network = Some(resumed.network);
            } else {
                st.begin_run(&meta, &describe_sources(&cfg))?;
            }
            Some(st.into_writer(meta.run_id.clone()))
        }
        None => None,
    };
    let store_url = cfg.store.as_ref().map(ToString::to_string);
    let run_id = meta.run_id.clone();
    let resumed = cfg.resume.clone();
    let hint_output = (cfg.output.path.clone(), cfg.output.format);

    let (file, out) = outfile::open(
        cfg.output.path.as_deref(),
        cfg.output.format != report::Format::Jsonl,
        cfg.output.append,
        &interrupted,
    )?;
    let hooks = scan::Hooks {
        skip,
        store: writer.as_ref(),
        signals: Some(signals.clone()),
        resumed_network,
    };
    let outcome = runtime.block_on(scan::scan(cfg, meta, out, hooks));
    // Jobs abandoned by a second interrupt must not keep the process alive.
    runtime.shutdown_background();
    // On failure the temporary report is removed and the stored run is closed as `failed`
    // (still resumable); everything measured so far is committed.
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some(w) = writer {
                let _ = w.finish("failed");
            }
            return Err(e);
        }
    };
    // A run that stopped early (interrupt, closed output) is resumable; one whose input broke
    // is `failed` (also resumable), and its report keeps what was measured.
    let stopped_early = outcome.interrupted || outcome.output_closed;
    let resuming = resumed.is_some();
    if let Some(w) = writer {
        w.finish(if stopped_early {
            "interrupted"
        } else if outcome.input_error.is_some() {
            "failed"
        } else if outcome.targets == 0 {
            // Nothing to measure (an empty stdin on resume): the run is not complete. A resumed
            // run stays resumable as it was; a new one failed.
            if resuming { "interrupted" } else { "failed" }
        } else {
            "complete"
        })?;
    }
    // A run that measured nothing and failed (no targets, unreadable input) leaves an existing
    // CSV/JSON report as it was; one that measured something keeps it, failure or not.
    let failed = outcome.input_error.is_some() || (outcome.targets == 0 && !outcome.interrupted);
    if !(failed && outcome.summary.total() == 0) {
        file.commit()?;
    }
    if !quiet {
        print_summary(&outcome, &run_id, store_url.as_deref());
    }
    // Said even with --quiet: an interrupted run must say how to finish it.
    if outcome.interrupted {
        report::warn(resume_hint(
            &run_id,
            store_url.is_some(),
            hint_output.0.as_deref(),
            hint_output.1,
        ));
    }
    if let Some(e) = outcome.input_error {
        anyhow::bail!("{e}");
    }
    if outcome.targets == 0 && !outcome.interrupted {
        anyhow::bail!(
            "no targets: the inputs hold none (only blank lines, comments or skipped lines)"
        );
    }
    Ok(if outcome.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if outcome.failed_on {
        ExitCode::from(EXIT_FAIL_ON)
    } else {
        ExitCode::SUCCESS
    })
}

/// What to do after an interrupt: the exact command that continues the run (with a store),
/// or how to make the next run resumable.
fn resume_hint(
    run_id: &str,
    stored: bool,
    output: Option<&std::path::Path>,
    format: report::Format,
) -> String {
    if !stored {
        return format!(
            "run {run_id} was interrupted; the report holds what was measured. Add --store \
             sqlite:PATH to make runs resumable (docs/cron.md)"
        );
    }
    // The same command line, without any --run-id/--resume, plus --resume RUN_ID; a JSONL
    // report is appended to rather than replaced.
    let mut args: Vec<String> = Vec::new();
    let mut stdin = false;
    let mut it = std::env::args().skip(1).peekable();
    while let Some(a) = it.next() {
        if a == "--run-id" || a == "--resume" {
            it.next();
            continue;
        }
        if a.starts_with("--run-id=") || a.starts_with("--resume=") || a == "--append" {
            continue;
        }
        stdin |= (a == "-i" || a == "--input") && it.peek().is_some_and(|n| n == "-");
        args.push(shell_quote(&a));
    }
    let jsonl_file = output.is_some() && format == report::Format::Jsonl;
    if jsonl_file {
        args.push("--append".into());
    }
    let mut hint = format!(
        "run {run_id} was interrupted; continue it with:\n  blockprobe {} --resume {run_id}",
        args.join(" ")
    );
    if stdin {
        hint.push_str("\n  (give it the same targets on standard input again)");
    }
    if let Some(p) = output.filter(|_| !jsonl_file) {
        hint.push_str(&format!(
            "\n  ({} will hold only what the resume measures; `blockprobe export --run {run_id}` writes the whole run from the store)",
            p.display()
        ));
    }
    hint
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn print_summary(outcome: &scan::Outcome, run_id: &str, store_url: Option<&str>) {
    let mut err = io::stderr().lock();
    let s = &outcome.summary;
    // A whitelist shutdown is the headline: per-site results reflect the allow-list.
    if let Some(r) = &s.regime {
        let _ = writeln!(err, "blockprobe: {r}");
    }
    // What the verdicts rest on when there was no working control path.
    let controls = (s.by_reference > 0 || s.want_control_path > 0 || s.want_reference > 0)
        .then(|| {
            format!(
                "blockprobe: without a working control path: {} verdict(s) decided by in-run references; inconclusive: {} for want of a control path (--control-proxy), {} for want of a reference transfer (--reference)",
                s.by_reference, s.want_control_path, s.want_reference
            )
        });
    if io::IsTerminal::is_terminal(&err) {
        if let Some(p) = &s.probes {
            let _ = writeln!(err, "probes: {p} (not the default dns,tcp,tls,http)");
        }
        let _ = write!(err, "{}", outcome.summary.render());
        let _ = write!(err, "{}", outcome.summary.render_failures());
        if let Some(p) = &s.place {
            let _ = writeln!(err, "measured from {p}");
        }
        if let Some(c) = controls {
            let _ = writeln!(err, "{c}");
        }
        let _ = writeln!(
            err,
            "run {run_id}{}{}",
            if outcome.interrupted {
                " (interrupted)"
            } else {
                ""
            },
            store_url
                .map(|u| format!("; stored in {u}"))
                .unwrap_or_default()
        );
        return;
    }
    if let Some(c) = controls {
        let _ = writeln!(err, "{c}");
    }
    // Cron mails stderr: one line (two without a working control path).
    let _ = writeln!(
        err,
        "blockprobe: run {run_id}{}{}{}: {} result{}, {} blocked, {} throttled, {} down, {} inconclusive{}",
        s.place
            .as_ref()
            .map(|p| format!(" from {p}"))
            .unwrap_or_default(),
        s.probes
            .as_ref()
            .map(|p| format!(" (probes {p})"))
            .unwrap_or_default(),
        if outcome.interrupted {
            " (interrupted)"
        } else if outcome.output_closed {
            " (output closed)"
        } else {
            ""
        },
        s.total(),
        if s.total() == 1 { "" } else { "s" },
        s.count(verdict::Verdict::Blocked),
        s.count(verdict::Verdict::Throttled),
        s.count(verdict::Verdict::Down),
        s.count(verdict::Verdict::Inconclusive),
        store_url
            .map(|u| format!("; stored in {u}"))
            .unwrap_or_default(),
    );
}

fn open_store(arg: &cli::StoreArg) -> anyhow::Result<store::Store> {
    let url = match &arg.store {
        Some(s) => s
            .parse::<store::StoreUrl>()
            .map_err(|e| anyhow::anyhow!("--store: {e}"))?,
        None => store::default_url(),
    };
    store::Store::open_existing(&url)
}

fn html_report(args: &cli::ReportArgs) -> anyhow::Result<ExitCode> {
    use report::html::{Data, render};
    if args.output.is_none() && io::IsTerminal::is_terminal(&io::stdout()) {
        anyhow::bail!(
            "the report is an HTML page: give -o report.html (or redirect standard output)"
        );
    }
    let data = match &args.file {
        Some(p) if args.since.is_some() || args.run.is_some() => {
            anyhow::bail!("--since and --run choose runs of the store: give them without FILE")
        }
        Some(p) => {
            let mut data = Data::new(p.display().to_string());
            let read = if p.as_os_str() == "-" {
                data.read_report(io::stdin().lock())
            } else {
                let f = std::fs::File::open(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                data.read_report(io::BufReader::new(f))
            };
            read.with_context(|| p.display().to_string())?;
            if data.records == 0 {
                anyhow::bail!("{} holds no records", p.display());
            }
            data
        }
        None => {
            let mut st = open_store(&args.store)?;
            let mut data = Data::new(
                args.store
                    .store
                    .clone()
                    .unwrap_or_else(|| "the default store".into()),
            );
            store::query::report_data(
                &mut st,
                args.since.as_deref(),
                args.run.as_deref(),
                args.vantage.as_deref(),
                &mut data,
            )?;
            data
        }
    };
    let page = render(&data, &store::now());
    let (file, mut out) = outfile::open(args.output.as_deref(), true, false, &|| false)?;
    out.write_all(page.as_bytes())?;
    out.flush()?;
    drop(out);
    file.commit()?;
    if let Some(p) = &args.output {
        report::warn(format_args!(
            "wrote {}: {} record(s) of {} run(s)",
            p.display(),
            data.records,
            data.runs()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn history(args: cli::HistoryArgs) -> anyhow::Result<ExitCode> {
    let mut st = open_store(&args.store)?;
    let filter = store::query::HistoryFilter {
        target: args.target,
        resolver: args.resolver,
        since: args.since,
        vantage: args.fleet.vantage,
        asn: args.fleet.asn,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    store::query::history(&mut st, &filter, args.format, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn diff(args: cli::DiffArgs) -> anyhow::Result<ExitCode> {
    let mut st = open_store(&args.store)?;
    let runs = match args.runs.as_slice() {
        [a, b] => Some((a.clone(), b.clone())),
        _ => None,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let changes = store::query::diff(
        &mut st,
        runs,
        (args.vantage.as_deref(), args.asn),
        args.format,
        &mut out,
    )?;
    out.flush()?;
    Ok(
        if changes
            .iter()
            .any(|c| args.fail_on.iter().any(|k| k == c.change))
        {
            ExitCode::from(EXIT_FAIL_ON)
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn prune(args: cli::PruneArgs) -> anyhow::Result<ExitCode> {
    let mut st = open_store(&args.store)?;
    let (runs, records) = st.prune(&args.older_than, args.dry_run)?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{} {runs} runs ({records} records) started before {}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        args.older_than
    )?;
    Ok(ExitCode::SUCCESS)
}

fn export(args: cli::ExportArgs) -> anyhow::Result<ExitCode> {
    let mut st = open_store(&args.store)?;
    // The same treatment as scan reports: atomic over a regular file, in place on a device.
    let (file, mut out) = outfile::open(args.output.as_deref(), true, false, &|| false)?;
    let n = store::query::export(
        &mut st,
        args.format,
        args.since.as_deref(),
        args.run.as_deref(),
        args.fleet.vantage.as_deref(),
        args.fleet.asn,
        &mut out,
    )?;
    if n == 0
        && let Some(why) =
            store::query::unknown_filter(&mut st, args.fleet.vantage.as_deref(), args.fleet.asn)?
    {
        report::warn(why);
    }
    out.flush()?;
    drop(out);
    file.commit()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run_mocknet(args: cli::MocknetArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        let mut out = io::stdout().lock();
        for (name, _) in mocknet::scenario::BUNDLED {
            let s = mocknet::scenario::Scenario::load_spec(name)?;
            writeln!(out, "{name:<12} {}", s.description)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.scenario.is_none() && args.suites.is_empty() {
        anyhow::bail!(
            "mocknet needs a network to emulate: --scenario NAME|FILE (bundled: `blockprobe mocknet --list`) or --suite NAME"
        );
    }
    let timeout = humantime::format_duration(args.timeout)
        .to_string()
        .replace(' ', "");
    runtime()?.block_on(async move {
        let mut scenario = match &args.scenario {
            Some(spec) => mocknet::scenario::Scenario::load_spec(spec)?,
            None => mocknet::scenario::Scenario::of_suites(Vec::new()),
        };
        scenario.suites.extend(args.suites.iter().cloned());
        if args.scenario.is_none() {
            scenario.name = scenario.suites.join("+");
        }
        let quic_origin_ca = match &args.quic_origin_ca {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            ),
            None => None,
        };
        let upstreams = mocknet::Upstreams {
            quic_origin: args.quic_origin,
            quic_origin_ca,
        };
        let net = mocknet::MockNet::start_with(scenario, &timeout, upstreams).await?;
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
            let checked = net.check(&mut stdout).await?;
            let total = checked.targets;
            let _ = writeln!(
                stdout,
                "{}: {} of {total} targets as expected with the control path, {} of {total} \
                 without (traffic: {} DNS queries at the ISP resolver, {} at the control, {} \
                 origin connections, {} proxy connects)",
                net.plan.scenario.name,
                total - checked.with_proxy.len(),
                total - checked.without_proxy.len(),
                net.isp.hits(),
                net.control.hits(),
                net.origin_connections(),
                net.proxy.connects(),
            );
            return Ok(if checked.ok() {
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

fn run_echo(args: &cli::EchoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let limits = echo::Limits {
            packets_per_source: args.packets_per_source,
            bytes_per_source: args.bytes_per_source,
            ..echo::Limits::default()
        };
        let server = echo::EchoServer::start(args.listen, limits)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let line = serde_json::json!({ "udp": server.udp, "tcp": server.tcp }).to_string();
        if let Some(p) = &args.ready_file {
            let tmp = p.with_extension("tmp");
            std::fs::write(&tmp, format!("{line}\n"))?;
            std::fs::rename(&tmp, p)?;
        }
        crate::diag::warn(format_args!(
            "echo server on udp {} and tcp {} (interrupt to stop)",
            server.udp, server.tcp
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

/// `blockprobe blockpage FILE`: the first thing people do with a suspicious page.
fn check_blockpage(args: &cli::BlockpageArgs) -> anyhow::Result<ExitCode> {
    let fp = blockpage::Fingerprints::builtin();
    let mut out = io::stdout().lock();
    if args.list {
        for f in fp.iter() {
            let m = f.to_match();
            writeln!(out, "{}\t{}\t{}\t{}", m.id, m.country, m.place, m.source)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = args
        .file
        .as_deref()
        .expect("clap requires FILE without --list");
    // The head and the first 64 KiB of a body are all a fingerprint sees; read a bounded
    // prefix (`/dev/zero` or a 50 MB file must not be slurped).
    const READ_CAP: u64 = 8 * 1024 * 1024;
    let mut bytes = Vec::new();
    let reader: Box<dyn io::Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
    };
    io::Read::read_to_end(&mut io::Read::take(reader, READ_CAP), &mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let url = args.url.as_deref().unwrap_or("http://unknown.invalid/");
    let obs = blockpage::observation_from_bytes(&bytes, url);
    match fp.match_http(&obs) {
        Some(f) => {
            let m = f.to_match();
            writeln!(
                out,
                "block page: {} (country {}, matched in {}; source: {})",
                m.id,
                if m.country.is_empty() {
                    "-"
                } else {
                    &m.country
                },
                m.place,
                m.source
            )?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            writeln!(
                out,
                "no fingerprint matches ({}, title {:?}, {} body bytes; {} fingerprints tried)",
                obs.status
                    .map_or("no HTTP head: read as a page body".to_owned(), |s| {
                        format!("status {s}")
                    }),
                obs.title.as_deref().unwrap_or(""),
                obs.transfer.bytes,
                fp.len()
            )?;
            Ok(ExitCode::from(EXIT_FAIL_ON))
        }
    }
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
        cli::Generate::Man { dir: None } => clap_mangen::Man::new(cmd).render(&mut out)?,
        cli::Generate::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
            let mut pages: Vec<_> = std::fs::read_dir(&dir)?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("blockprobe") && n.ends_with(".1"))
                .collect();
            pages.sort();
            writeln!(out, "{}", pages.join("\n"))?;
        }
        cli::Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut cmd, "blockprobe", &mut out);
        }
    }
    Ok(ExitCode::SUCCESS)
}

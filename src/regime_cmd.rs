//! `blockprobe regime`: the scan's regime check on its own (for cron jobs that watch a region
//! go into and out of a whitelist shutdown), and allow-list discovery (`--discover`): which
//! (name, address) pairs a whitelist lets through, as a dated list to publish.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use futures::StreamExt as _;
use serde::Serialize;

use crate::cli::{RegimeArgs, RegimeFormat, ScanArgs};
use crate::config::ScanConfig;
use crate::engine::ProbeCtx;
use crate::input::{Item, Source};
use crate::regime::{RefProbe, RegimeCheck, Stage};
use crate::report::{SpecEntry, warn};
use crate::tls::TlsConfigs;

/// The check as `--format json` writes it: when, from where, and the check itself.
#[derive(Serialize)]
struct CheckReport<'a> {
    tool_version: &'static str,
    measured_at: &'a str,
    resolver: &'a SpecEntry,
    #[serde(flatten)]
    check: &'a RegimeCheck,
}

/// A discovery probe as `--format jsonl` writes it.
#[derive(Serialize)]
struct DiscoverLine<'a> {
    measured_at: &'a str,
    resolver: &'a str,
    #[serde(flatten)]
    probe: &'a RefProbe,
}

pub(crate) fn run(args: RegimeArgs) -> anyhow::Result<ExitCode> {
    let runtime = crate::runtime()?;
    let signals = {
        let _guard = runtime.enter();
        crate::scan::signals()
    };
    if args.discover && args.names.is_empty() && args.inputs.is_empty() {
        anyhow::bail!("--discover needs names to test: NAME arguments or -i FILE");
    }
    if !args.discover && args.format == RegimeFormat::Jsonl {
        anyhow::bail!("--format jsonl is for --discover (one line per probe); use json");
    }
    if args.discover && args.format == RegimeFormat::Json {
        anyhow::bail!("--discover writes text or jsonl (one line per probe), not json");
    }
    // Discovery names come from the command line only (not a config file's scan targets).
    let mut sources: Vec<Source> = args.names.iter().cloned().map(Source::Arg).collect();
    sources.extend(args.inputs.iter().map(|s| Source::from_input_flag(s)));
    if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
        anyhow::bail!("standard input (`-i -`) can be read only once");
    }
    let cfg = ScanConfig::without_targets(ScanArgs {
        resolvers: args.resolvers,
        allowlisted: args.allowlisted,
        foreign_references: args.foreign_references,
        ca_file: args.ca_file,
        timeout: args.timeout,
        concurrency: args.concurrency,
        connect_to: args.connect_to,
        config: args.config,
        regime_check: Some("on".into()),
        quiet: args.quiet,
        ..ScanArgs::default()
    })?;
    let opened = crate::input::open(&sources)?;
    let interrupted = || *signals.borrow() > 0;
    let measured_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let resolver = SpecEntry::from(&cfg.vantages[0]);

    let tls = TlsConfigs::new(cfg.ca_file.as_deref())?;
    let ctx = ProbeCtx::new(&cfg, &tls)?;
    let mut stop = signals.clone();
    let check = runtime.block_on(async {
        tokio::select! {
            c = ctx.check_regime(&cfg.regime) => Some(c),
            _ = stop.wait_for(|n| *n > 0) => None,
        }
    });
    let Some(check) = check else {
        return Err(crate::Interrupted.into());
    };
    // Opened once the check is done (an error or an interrupt before leaves a previous list
    // alone): text and JSON are written aside and renamed into place at the end; JSONL streams
    // in place.
    let (file, mut out) = crate::outfile::open(
        args.output.as_deref(),
        args.format != RegimeFormat::Jsonl,
        false,
        &interrupted,
    )?;
    if !args.quiet && (args.discover || args.output.is_some()) {
        warn(check.summary());
    }

    let mut was_interrupted = false;
    if args.discover {
        if !args.quiet && check.regime != crate::regime::Regime::Whitelist {
            warn(format_args!(
                "the network is not in a whitelist regime ({}): discovery lists what is reachable, not what an allow-list lets through",
                check.regime.as_str()
            ));
        }
        let probes = ctx.regime_probes().context("no resolver")?;
        let text = args.format == RegimeFormat::Text;
        if text {
            writeln!(
                out,
                "# Allow-list discovery: blockprobe {} regime --discover, {measured_at}\n\
                 # resolver {} ({}); regime: {}\n\
                 # NAME ADDRESS: the name's TLS handshake (its own SNI; port 443 unless ADDRESS says\n\
                 # otherwise) to that address got an answer. `#` lines did not get through, with\n\
                 # the stage they died at: dns (no address), tcp (no connection), silent\n\
                 # (connected; the ClientHello got no answer).",
                env!("CARGO_PKG_VERSION"),
                resolver.name,
                resolver.spec,
                regime_label(&check),
            )?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Item>(256);
        std::thread::Builder::new()
            .name("targets".into())
            .spawn(move || crate::input::stream(opened, |item| tx.blocking_send(item).is_ok()))?;
        let mut first_signal = signals.clone();
        let (mut names, mut through, mut pairs, mut pairs_through) = (0u64, 0u64, 0u64, 0u64);
        let fatal = runtime.block_on(async {
            let fatal = std::cell::RefCell::new(None);
            let targets = futures::stream::unfold(rx, |mut rx| async move {
                let item = rx.recv().await?;
                Some((item, rx))
            })
            .filter_map(|item| {
                let r = match item {
                    // An HTTPS URL or TLS endpoint with its own port is tested there.
                    Item::Target(t) => {
                        use crate::target::Scheme;
                        // An HTTPS URL's or a TLS/TCP endpoint's own port; 443 for the others
                        // (plain HTTP, and UDP schemes whose port is no TLS port).
                        let port = match t.scheme {
                            Scheme::Https | Scheme::None | Scheme::Tcp => t.port,
                            _ => 443,
                        };
                        Some((t.host.to_string(), port))
                    }
                    Item::Malformed(e) => {
                        warn(format_args!("{e} (skipped)"));
                        None
                    }
                    Item::Failed(e) => {
                        *fatal.borrow_mut() = Some(e.to_string());
                        None
                    }
                };
                std::future::ready(r)
            });
            // Distinct (host, port) only: several URLs of one site are one name here.
            let mut seen = std::collections::HashSet::new();
            let results = targets
                .filter(|h| std::future::ready(seen.insert(h.clone())))
                .take_until(async move {
                    let _ = first_signal.wait_for(|n| *n > 0).await;
                })
                .map(|(name, port)| {
                    let probes = &probes;
                    async move { probes.discover(&name, port).await }
                })
                .buffered(cfg.concurrency);
            let mut results = Box::pin(results);
            while let Some(found) = results.next().await {
                names += 1;
                pairs += found.len() as u64;
                let ok = found.iter().filter(|p| p.stage == Stage::Answered).count() as u64;
                pairs_through += ok;
                through += u64::from(ok > 0);
                for p in &found {
                    if text {
                        writeln!(out, "{}", discover_line(p))?;
                    } else {
                        let line = DiscoverLine {
                            measured_at: &measured_at,
                            resolver: &resolver.name,
                            probe: p,
                        };
                        serde_json::to_writer(&mut out, &line)?;
                        writeln!(out)?;
                    }
                }
            }
            drop(results);
            anyhow::Ok(fatal.into_inner())
        })?;
        was_interrupted = interrupted();
        let tally = format!(
            "{through} of {names} names got through ({pairs_through} of {pairs} (name, address) pairs){}",
            if was_interrupted { "; interrupted" } else { "" }
        );
        if text {
            writeln!(out, "# {tally}")?;
        }
        if !args.quiet {
            warn(&tally);
        }
        if let Some(e) = fatal {
            if text {
                writeln!(out, "# reading the names failed here: {e}")?;
            }
            out.flush()?;
            drop(out);
            file.commit()?;
            anyhow::bail!("reading the names failed: {e}");
        }
    } else {
        match args.format {
            RegimeFormat::Json => {
                let report = CheckReport {
                    tool_version: env!("CARGO_PKG_VERSION"),
                    measured_at: &measured_at,
                    resolver: &resolver,
                    check: &check,
                };
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            }
            _ => write_check(&mut out, &check, &resolver, &measured_at)?,
        }
    }
    out.flush()?;
    drop(out);
    file.commit()?;
    runtime.shutdown_background();
    if was_interrupted {
        return Ok(ExitCode::from(crate::EXIT_INTERRUPTED));
    }
    if args.fail_on.iter().any(|r| r == check.regime.as_str()) {
        return Ok(ExitCode::from(crate::EXIT_FAIL_ON));
    }
    Ok(ExitCode::SUCCESS)
}

fn regime_label(check: &RegimeCheck) -> String {
    match check.variant {
        Some(v) => format!("{} (by {})", check.regime.as_str(), v.label()),
        None => check.regime.as_str().to_owned(),
    }
}

/// One line of a discovery list: `NAME ADDRESS` when it got through, else a comment with the
/// stage it died at.
fn discover_line(p: &RefProbe) -> String {
    let addr = match p.address {
        None => "-".to_owned(),
        Some(a) if p.port == 443 => a.to_string(),
        Some(a) => std::net::SocketAddr::new(a, p.port).to_string(),
    };
    if p.stage == Stage::Answered {
        format!("{} {addr}", p.name)
    } else {
        format!("# {} {addr} {}", p.name, stage_label(p))
    }
}

fn stage_label(p: &RefProbe) -> String {
    let stage = match p.stage {
        Stage::Dns => "dns",
        Stage::Tcp => "tcp",
        Stage::Silent => "silent",
        Stage::Answered => "answered",
    };
    match &p.failure {
        Some(f) if p.stage != Stage::Answered => format!("{stage} ({})", f.kind.as_str()),
        _ => stage.to_owned(),
    }
}

/// The check for people: the regime, the summary, one line per probe.
fn write_check(
    out: &mut dyn Write,
    check: &RegimeCheck,
    resolver: &SpecEntry,
    measured_at: &str,
) -> std::io::Result<()> {
    writeln!(out, "regime: {}", regime_label(check))?;
    writeln!(out, "{}", check.summary())?;
    writeln!(
        out,
        "measured {measured_at} through resolver {} ({})\n",
        resolver.name, resolver.spec
    )?;
    let role = |p: &RefProbe| {
        serde_json::to_value(p.role)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let rows: Vec<[String; 5]> = check
        .probes
        .iter()
        .map(|p| {
            [
                role(p),
                if p.sni == p.name {
                    p.name.clone()
                } else {
                    format!("{} (SNI {})", p.name, p.sni)
                },
                p.address.map_or_else(|| "-".to_owned(), |a| a.to_string()),
                stage_label(p),
                format!("{} ms", p.elapsed.as_millis()),
            ]
        })
        .collect();
    let header = ["PROBE", "NAME", "ADDRESS", "STAGE", "TIME"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

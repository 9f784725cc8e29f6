//! The scan engine: stream targets, fan each out over the vantage resolvers, run the jobs with
//! bounded concurrency, classify, and stream records to the sink as they finish.
//!
//! Memory is bounded by the concurrency, not by the target list: targets arrive through a small
//! channel from a reader thread, at most `concurrency` jobs exist at once, the control cache is
//! an LRU, and records are written and dropped one by one.

use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::StreamExt as _;
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::Instant;

use crate::classify::{ControlDns, ControlObservation, Evidence, classify};
use crate::config::ScanConfig;
use crate::probe::dns::DnsClient;
use crate::report::summary::Summary;
use crate::report::{Record, RunEnd, RunMeta, Sink, SpecEntry, warn};
use crate::resolver_spec::Vantage;
use crate::target::{self, Item, Target};
use crate::tls::TlsConfigs;
use crate::verdict::Verdict;

/// Names kept in the control cache. Jobs of one target run close together, so a small LRU
/// gives "one control lookup per name per run" without holding every name of a long list.
const CONTROL_CACHE: usize = 4_096;

/// How a scan ended.
#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub interrupted: bool,
    /// A record had a verdict named by `--fail-on`.
    pub failed_on: bool,
}

struct VantageCtx {
    vantage: Vantage,
    client: DnsClient,
    healthy: bool,
}

struct Controls {
    clients: Vec<(String, DnsClient)>,
    cache: Mutex<lru::LruCache<String, Arc<OnceCell<Arc<ControlDns>>>>>,
}

impl Controls {
    async fn lookup(&self, name: &str) -> Arc<ControlDns> {
        let cell = {
            let mut cache = self.cache.lock().expect("control cache lock");
            cache
                .get_or_insert(name.to_owned(), || Arc::new(OnceCell::new()))
                .clone()
        };
        cell.get_or_init(|| async {
            let lookups = self.clients.iter().map(|(n, c)| async move {
                ControlObservation {
                    resolver: n.clone(),
                    dns: c.lookup(name).await,
                }
            });
            Arc::new(ControlDns {
                resolvers: futures::future::join_all(lookups).await,
            })
        })
        .await
        .clone()
    }
}

struct Ctx {
    meta: RunMeta,
    vantages: Vec<VantageCtx>,
    controls: Controls,
}

/// A fresh run identifier: UTC time plus randomness, sortable and unique enough for a fleet.
pub fn new_run_id(now: SystemTime) -> String {
    let secs = humantime::format_rfc3339_seconds(now).to_string();
    let compact: String = secs.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("{compact}-{:08x}", rand::random::<u32>())
}

pub fn run_meta(cfg: &ScanConfig, now: SystemTime) -> RunMeta {
    RunMeta {
        run_id: cfg.run_id.clone().unwrap_or_else(|| new_run_id(now)),
        started_at: humantime::format_rfc3339_millis(now).to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        resolvers: cfg.vantages.iter().map(SpecEntry::from).collect(),
        control_resolvers: cfg.controls.iter().map(SpecEntry::from).collect(),
        probes: cfg.probes.iter().map(|p| p.as_str().to_owned()).collect(),
    }
}

/// Counts SIGINT/SIGTERM: the first stops new jobs, the second abandons the ones in flight.
fn signals() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term_fut = std::future::pending::<()>();
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                () = term_fut => {},
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

async fn wait_for(rx: &mut watch::Receiver<u32>, n: u32) {
    let _ = rx.wait_for(|v| *v >= n).await;
}

/// Whether the resolver answers at least one canary with an address.
async fn healthy(client: &DnsClient, canaries: &[String]) -> bool {
    if canaries.is_empty() {
        return true;
    }
    let checks = canaries.iter().map(|c| client.lookup(c));
    futures::future::join_all(checks)
        .await
        .iter()
        .any(|obs| !obs.addresses().is_empty())
}

async fn run_job(ctx: Arc<Ctx>, target: Arc<Target>, vi: usize) -> Record {
    let start = Instant::now();
    let v = &ctx.vantages[vi];
    let evidence = match target.name() {
        Some(name) => {
            let (dns, control) = tokio::join!(v.client.lookup(name), ctx.controls.lookup(name));
            Evidence {
                dns: Some(dns),
                control: Some((*control).clone()),
                resolver_healthy: v.healthy,
            }
        }
        None => Evidence {
            dns: None,
            control: None,
            resolver_healthy: v.healthy,
        },
    };
    Record::new(
        &ctx.meta,
        &target,
        &v.vantage,
        classify(evidence),
        start.elapsed(),
    )
}

/// Runs a whole scan, writing records to `out` as they finish.
pub async fn scan<W: Write>(cfg: ScanConfig, meta: RunMeta, out: W) -> anyhow::Result<Outcome> {
    let tls = TlsConfigs::new(cfg.ca_file.as_deref())?;
    let timeout = cfg.dns.timeout;
    let mut vantages = Vec::with_capacity(cfg.vantages.len());
    for v in &cfg.vantages {
        let client = DnsClient::new(
            v.spec.clone(),
            tls.clone(),
            timeout,
            cfg.dns.injection_window,
        )?;
        vantages.push(VantageCtx {
            vantage: v.clone(),
            client,
            healthy: true,
        });
    }
    let mut control_clients = Vec::with_capacity(cfg.controls.len());
    for c in &cfg.controls {
        control_clients.push((
            c.name.clone(),
            DnsClient::new(c.spec.clone(), tls.clone(), timeout, Duration::ZERO)?,
        ));
    }
    // Open every input before measuring anything: an unreadable file is a usage error.
    let sources = target::open(&cfg.sources)?;

    let health = futures::future::join_all(
        vantages
            .iter()
            .map(|v| healthy(&v.client, &cfg.dns.canaries)),
    )
    .await;
    for (v, ok) in vantages.iter_mut().zip(health) {
        v.healthy = ok;
        if !ok && !cfg.output.quiet {
            warn(format_args!(
                "resolver `{}` answered none of the canary names; its failures will be inconclusive",
                v.vantage.name
            ));
        }
    }

    let mut sink = Sink::begin(cfg.output.format, out, &meta)?;
    let ctx = Arc::new(Ctx {
        meta,
        vantages,
        controls: Controls {
            clients: control_clients,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(CONTROL_CACHE).expect("nonzero"),
            )),
        },
    });

    // Targets are read on their own thread (files and stdin block) into a small channel.
    let (tx, rx) = mpsc::channel::<Item>(256);
    std::thread::Builder::new()
        .name("targets".into())
        .spawn(move || target::stream(sources, |item| tx.blocking_send(item).is_ok()))?;

    let mut signals = signals();
    let strict = cfg.strict;
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let fatal_in = fatal.clone();
    let targets = futures::stream::unfold(rx, move |mut rx| {
        let fatal = fatal_in.clone();
        async move {
            loop {
                match rx.recv().await? {
                    Item::Target(t) => return Some((t, rx)),
                    Item::Malformed(e) if !strict => warn(format_args!("{e} (skipped)")),
                    Item::Malformed(e) | Item::Failed(e) => {
                        *fatal.lock().expect("fatal lock") = Some(e.to_string());
                        return None;
                    }
                }
            }
        }
    });
    let first_signal = {
        let mut rx = signals.clone();
        async move { wait_for(&mut rx, 1).await }
    };
    let vantage_count = ctx.vantages.len();
    let ctx_jobs = ctx.clone();
    let records = targets
        .take_until(first_signal)
        .flat_map(move |t| {
            let t = Arc::new(t);
            futures::stream::iter((0..vantage_count).map(move |vi| (t.clone(), vi)))
        })
        .map(move |(t, vi)| tokio::spawn(run_job(ctx_jobs.clone(), t, vi)))
        .buffer_unordered(cfg.concurrency);
    let mut records = std::pin::pin!(records);

    let progress = crate::progress::Progress::new(cfg.output.quiet);
    let mut summary = Summary::default();
    let mut failed_on = false;
    let mut written = 0u64;
    let mut broken_pipe = false;
    let mut announced = false;
    let mut second = signals.clone();
    loop {
        let next = tokio::select! {
            biased;
            () = wait_for(&mut second, 2) => break,
            () = wait_for(&mut signals, 1), if !announced => {
                announced = true;
                warn("interrupted: finishing the jobs in flight (interrupt again to stop now)");
                continue;
            }
            next = records.next() => next,
        };
        let Some(joined) = next else { break };
        let record = match joined {
            Ok(r) => r,
            Err(e) => anyhow::bail!("a probe task failed: {e}"),
        };
        summary.add(&record.resolver, record.verdict);
        failed_on |= cfg.output.fail_on.contains(&record.verdict);
        if let Err(e) = sink.write(&record) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                broken_pipe = true;
                break;
            }
            return Err(anyhow::Error::new(e).context("cannot write the report"));
        }
        written += 1;
        progress.record(summary.count(Verdict::Blocked));
    }
    progress.finish();
    let interrupted = *signals.borrow() > 0;
    if !broken_pipe {
        sink.finish(&RunEnd {
            finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            interrupted,
            records: written,
        })
        .context("cannot finish the report")?;
    }
    if let Some(msg) = fatal.lock().expect("fatal lock").take() {
        anyhow::bail!("{msg}");
    }
    Ok(Outcome {
        summary,
        interrupted,
        failed_on,
    })
}

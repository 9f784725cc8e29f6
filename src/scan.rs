//! The scan: stream targets, fan each out over the vantage resolvers, run the jobs (`engine`)
//! with bounded concurrency, classify, vote over tries, and stream records to the sinks as they
//! finish.
//!
//! Memory is bounded by the concurrency, not by the target list: targets arrive through a small
//! channel from a reader thread, at most `concurrency` jobs exist at once, the control cache is
//! an LRU, and records are written and dropped one by one.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch};

use crate::classify::{Evidence, Finding, Rules, Try, classify};
use crate::config::{Probe, ScanConfig};
use crate::engine::{self, Job, ProbeCtx};
use crate::report::summary::Summary;
use crate::report::{Record, RunEnd, RunMeta, Sink, SpecEntry, warn};
use crate::tls::TlsConfigs;
use crate::verdict::{Layer, Verdict};

/// `--fail-on` results named on stderr at most (the rest are counted).
const FAILING_SHOWN: u64 = 20;

/// Longest time a finished record waits in the report's buffer while records pour in.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Longest wait for the store to take one record.
const STORE_STALL: Duration = Duration::from_secs(120);

/// How a scan ended.
#[derive(Debug)]
pub struct Outcome {
    pub summary: Summary,
    pub interrupted: bool,
    /// A record had a verdict named by `--fail-on`.
    pub failed_on: bool,
    /// The report's reader went away (`| head`): the run stopped early, like an interrupt.
    pub output_closed: bool,
    /// Targets read from the inputs (after de-duplication, including any `--resume` skips).
    pub targets: u64,
    /// Reading the targets failed part-way (binary input, an I/O error, a malformed line with
    /// `--strict`): the run stopped there; what was measured is still reported.
    pub input_error: Option<String>,
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
        vantage: cfg.vantage.clone(),
        public_ip: cfg.public_ip,
        network: crate::asn::Network::default(),
        canaries: Vec::new(),
        regime: crate::regime::RegimeCheck::unchecked(),
    }
}

/// Targets read ahead of the jobs at most.
const TARGET_QUEUE: usize = 256;

/// The reader thread's side of the target queue: when the queue is full the reader sleeps
/// until it is half empty, instead of being woken for every target taken (a futex wake per
/// target, 1.8 system calls per name of a DNS-only scan, issue 14).
#[derive(Default)]
struct Room {
    waiting: std::sync::atomic::AtomicBool,
    lock: Mutex<()>,
    cv: std::sync::Condvar,
}

impl Room {
    /// Queues `item`, waiting for room; false once the scan stopped taking targets.
    fn send<T>(&self, tx: &mpsc::Sender<T>, mut item: T) -> bool {
        use std::sync::atomic::{Ordering::SeqCst, fence};
        loop {
            match tx.try_send(item) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => item = back,
            }
            let mut guard = self.lock.lock().expect("room lock");
            self.waiting.store(true, SeqCst);
            fence(SeqCst);
            // Re-checked after saying so: a target taken in between saw the flag (the fences
            // pair with `took`'s), or left room that is seen here.
            while self.waiting.load(SeqCst) && tx.capacity() < TARGET_QUEUE / 2 {
                if tx.is_closed() {
                    return false;
                }
                // Bounded, as a second guard: the queue is checked again at worst this late.
                guard = self
                    .cv
                    .wait_timeout(guard, Duration::from_millis(100))
                    .expect("room lock")
                    .0;
            }
            self.waiting.store(false, SeqCst);
        }
    }

    /// Called after taking a target: wakes the reader once the queue is half empty.
    fn took<T>(&self, rx: &mpsc::Receiver<T>) {
        use std::sync::atomic::{Ordering::SeqCst, fence};
        fence(SeqCst);
        if self.waiting.load(SeqCst) && rx.len() <= TARGET_QUEUE / 2 {
            let _guard = self.lock.lock().expect("room lock");
            self.waiting.store(false, SeqCst);
            self.cv.notify_one();
        }
    }
}

/// Records waiting for the report writer at most; a job that finds the queue full waits,
/// holding its place (so memory stays bounded by the places, not the target list).
const RECORD_QUEUE: usize = 256;
/// Records the writer takes from the queue at a time.
const RECORD_BATCH: usize = 64;
/// While records pour in, the writer finding the queue empty waits this long for more before
/// it waits to be woken: one wake-up per millisecond instead of one per record (issue 14).
const GATHER: Duration = Duration::from_millis(1);

/// What the task that starts the jobs needs.
struct Starter {
    ctx: Arc<ProbeCtx>,
    meta: Arc<RunMeta>,
    vantage_names: Arc<Vec<String>>,
    /// `--resume`: (target as written, resolver name) pairs already measured.
    skip: Arc<std::collections::HashSet<(String, String)>>,
    /// Targets read so far.
    read: Arc<std::sync::atomic::AtomicU64>,
    concurrency: usize,
    /// The first interrupt stops new jobs.
    stop: watch::Receiver<u32>,
    records: mpsc::Sender<Result<Box<Record>, String>>,
}

/// Starts a job per (target, vantage resolver) until the targets end or the first interrupt.
/// A job holds a *slot* (`--concurrency`) while its steps run, and a *place* until its record
/// is handed to the writer: after its steps it waits out the rest of the injection window
/// (bounded by the lingering-socket budget, not by `--concurrency`) and is classified on the
/// worker it runs on. The channel closes when this task and every job are done.
async fn start_jobs(targets: impl futures::Stream<Item = crate::target::Target>, s: Starter) {
    let Starter {
        ctx,
        meta,
        vantage_names,
        skip,
        read,
        concurrency,
        mut stop,
        records,
    } = s;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let places = Arc::new(tokio::sync::Semaphore::new(
        concurrency + crate::probe::dns::linger_capacity(),
    ));
    let mut targets = std::pin::pin!(targets);
    loop {
        let target = tokio::select! {
            biased;
            () = wait_for(&mut stop, 1) => return,
            t = targets.next() => match t {
                Some(t) => Arc::new(t),
                None => return,
            },
        };
        read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for vantage in 0..vantage_names.len() {
            if !skip.is_empty()
                && skip.contains(&(target.input.clone(), vantage_names[vantage].clone()))
            {
                continue;
            }
            // Waiting for room, an interrupt still stops here: no job starts after it. And a
            // job starts only while the record queue has room: a writer that stalls (a report
            // pipe nobody reads) stops new jobs, as it did when this thread's loop wrote.
            let room = async {
                drop(records.reserve().await.ok()?);
                let place = places.clone().acquire_owned().await.ok()?;
                let slot = slots.clone().acquire_owned().await.ok()?;
                Some((place, slot))
            };
            let (place, slot) = tokio::select! {
                biased;
                () = wait_for(&mut stop, 1) => return,
                room = room => match room {
                    Some(room) => room,
                    None => return,
                },
            };
            let (ctx, meta, records) = (ctx.clone(), meta.clone(), records.clone());
            let job = Job {
                target: target.clone(),
                vantage,
            };
            // Boxed before spawning: tokio moves a future of up to 16 KiB by value several
            // times on its way into the task, and a job's is kilobytes — those copies were a
            // quarter of a DNS scan's instructions (issue 14). The steps' future and the
            // evidence are boxed too, so a job waiting out the window holds a few bytes of
            // future, not a copy of either.
            tokio::spawn(Box::pin(async move {
                let measured = std::panic::AssertUnwindSafe(async {
                    let mut observed = Box::new(Box::pin(engine::run(&ctx, &job)).await);
                    drop(slot);
                    observed.join_late().await;
                    let (layer, started) = (observed.layer, observed.started);
                    let finding = vote(observed.complete(), ctx.rules(), layer);
                    Box::new(Record::new(
                        &meta,
                        &job.target,
                        &ctx.vantages[job.vantage].vantage,
                        finding,
                        started.elapsed(),
                    ))
                })
                .catch_unwind()
                .await
                .map_err(|panic| {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let via = &ctx.vantages[job.vantage].vantage.name;
                    format!("{} via {via}: {why}", job.target.input)
                });
                // The writer gone (a second interrupt, a closed output): nothing to do.
                let _ = records.send(measured).await;
                drop(place);
            }));
        }
    }
}

/// Counts SIGINT/SIGTERM: the first stops new jobs, the second abandons the ones in flight.
/// The handlers are installed before this returns (call it first thing, inside the runtime),
/// so an interrupt at any moment of start-up is counted rather than killing the process.
pub fn signals() -> watch::Receiver<u32> {
    let (tx, rx) = watch::channel(0u32);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn next(s: &mut Option<Signal>) -> Option<()> {
            match s {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        }
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    r = next(&mut int) => r,
                    r = next(&mut term) => r,
                };
                if got.is_none() {
                    return;
                }
                tx.send_modify(|n| *n += 1);
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

async fn wait_for(rx: &mut watch::Receiver<u32>, n: u32) {
    let _ = rx.wait_for(|v| *v >= n).await;
}

/// Classifies every try; the most frequent outcome wins (the first try breaks ties), and the
/// evidence keeps the first try that had it, plus the list of outcomes.
fn vote(tries: Vec<Evidence>, rules: &Rules, layer: Layer) -> Finding {
    let findings: Vec<Finding> = tries
        .into_iter()
        .map(|ev| classify(ev, rules, layer))
        .collect();
    let outcomes: Vec<Try> = findings
        .iter()
        .map(|f| Try {
            verdict: f.verdict,
            reason: f.reason,
        })
        .collect();
    let count = |t: &Try| outcomes.iter().filter(|o| *o == t).count();
    let best = (0..findings.len())
        .max_by_key(|i| (count(&outcomes[*i]), std::cmp::Reverse(*i)))
        .unwrap_or(0);
    let mut finding = findings.into_iter().nth(best).expect("one try at least");
    if outcomes.len() > 1 {
        let n = count(&outcomes[best]);
        finding.detail = format!("{} ({n} of {} tries)", finding.detail, outcomes.len());
        finding.evidence.tries = outcomes;
    }
    finding
}

/// What a scan does besides its report: skip pairs already measured (`--resume`) and hand
/// every record to the store.
#[derive(Default)]
pub struct Hooks<'a> {
    /// (target as written, resolver name) pairs not to measure again.
    pub skip: std::collections::HashSet<(String, String)>,
    pub store: Option<&'a crate::store::Writer>,
    /// Interrupts counted since start-up ([`signals`]); the scan installs its own when `None`.
    pub signals: Option<watch::Receiver<u32>>,
    /// `--resume`: the network the run was measured from so far (checked once this probe's
    /// public address is learned).
    pub resumed_network: Option<crate::store::RunNetwork>,
}

/// Runs a whole scan, writing records to `out` as they finish.
pub async fn scan<W: Write>(
    cfg: ScanConfig,
    mut meta: RunMeta,
    out: W,
    hooks: Hooks<'_>,
) -> anyhow::Result<Outcome> {
    let tls = TlsConfigs::new(cfg.ca_file.as_deref())?;
    let mut ctx = ProbeCtx::new(&cfg, &tls)?;
    // Open every input before measuring anything: an unreadable file is a usage error.
    let sources = crate::input::open(&cfg.sources)?;
    let mut signals = hooks.signals.unwrap_or_else(signals);
    // The block-page fingerprints are loaded (and their matchers built, when pages will be
    // fetched) while the canaries are asked, not by the first job to classify: that job's
    // elapsed time would carry a tenth of a second of start-up.
    let http = cfg
        .probes
        .iter()
        .any(|p| matches!(p, Probe::Http | Probe::Quic));
    tokio::task::spawn_blocking(move || crate::blockpage::Fingerprints::warm(http));

    // An interrupt during the health check ends the run before its first job (with a
    // complete, empty report and the store run closed as interrupted).
    let health = ctx.check_canaries(&cfg.dns.canaries);
    let mut startup = signals.clone();
    let health = tokio::select! {
        h = health => Some(h),
        () = wait_for(&mut startup, 1) => None,
    };
    if let Some(h) = health {
        let quiet = cfg.output.quiet;
        if !h.controls_answer && !cfg.dns.canaries.is_empty() && !quiet {
            warn(
                "the control resolvers resolve none of the canary names (a closed network, or a whitelist regime?): the canaries cannot judge the vantage resolvers",
            );
        }
        ctx.apply(&h);
        for v in ctx.vantages.iter().filter(|v| !v.healthy && !quiet) {
            warn(format_args!(
                "resolver `{}` answered none of the canary names the controls resolve; its failures will be inconclusive",
                v.vantage.name
            ));
        }
        meta.canaries = h.checks;
    }
    let connects = cfg.probes.contains(&Probe::Tcp);
    // The regime check (a whitelist shutdown or per-site blocking?), interruptible like the
    // health check; under a whitelist the summary leads with it.
    let mut regime_summary = None;
    if connects && cfg.regime.enabled {
        let check = ctx.check_regime(&cfg.regime);
        let mut startup = signals.clone();
        if let Some(r) = tokio::select! {
            r = check => Some(r),
            () = wait_for(&mut startup, 1) => None,
        } {
            use crate::regime::Regime;
            if matches!(r.regime, Regime::Whitelist | Regime::Offline) {
                regime_summary = Some(r.summary());
                if !cfg.output.quiet {
                    warn(r.summary());
                }
            }
            if let Some(store) = hooks.store {
                store.regime(r.regime.as_str()).await;
            }
            meta.regime = r;
        }
    }
    // The public address, when asked: one STUN Binding Request through the first vantage.
    if let Some((host, port)) = &cfg.public_ip_stun {
        let mut startup = signals.clone();
        let ask = ctx.public_ip(host, *port);
        if let Some(r) = tokio::select! {
            r = ask => Some(r),
            () = wait_for(&mut startup, 1) => None,
        } {
            match r {
                Ok(ip) => meta.public_ip = Some(ip),
                Err(e) if !cfg.output.quiet => {
                    warn(format_args!(
                        "--public-ip-stun {host}:{port}: {e}; public_ip stays empty"
                    ));
                }
                Err(_) => {}
            }
        }
    }
    // Its network, from the offline databases.
    if let (Some(dbs), Some(ip)) = (&cfg.asn_dbs, meta.public_ip) {
        let (network, notes) = dbs.lookup_noting(ip);
        meta.network = network;
        if !cfg.output.quiet {
            for note in notes {
                warn(format_args!("--asn-db: {note}"));
            }
        }
    }
    if let Some(before) = &hooks.resumed_network {
        before.check(&meta.run_id, meta.public_ip, meta.network.asn)?;
    }
    if cfg.probes.contains(&Probe::Quic) && !connects && !cfg.output.quiet {
        warn(
            "--probes without tcp: HTTPS targets get DNS and their quic:// twin only (add tcp,tls,http to fetch them over TCP)",
        );
    }
    if cfg.conn.control_proxy.is_none() && connects && !cfg.output.quiet {
        let refs = if cfg.conn.references.is_empty() {
            "the run's own best transfers (add --reference URL of a large domestic object)"
                .to_owned()
        } else {
            format!("--reference {}", cfg.conn.references.join(", "))
        };
        warn(format_args!(
            "no control path (--control-proxy): throttling and freezes are judged against {refs}; blackholes and dead sites stay inconclusive"
        ));
    }

    let mut sink = Sink::begin(cfg.output.format, out, &meta)?;
    if cfg.output.path.is_none() {
        sink = sink.for_stdout();
    }
    let live = sink.is_live();
    let ctx = Arc::new(ctx);
    // Said at the end when asked for: the user sees the address and network were learned.
    let place = meta.public_ip.and_then(|ip| {
        crate::report::html::Place {
            vantage: None,
            public_ip: Some(ip.to_string()),
            asn: meta.network.asn,
            as_org: meta.network.as_org.clone(),
            country: meta.network.country.clone(),
        }
        .describe()
    });
    let meta = Arc::new(meta);

    // Targets are read on their own thread (files and stdin block) into a small channel;
    // with `--probes …,quic` each HTTPS target is followed by its HTTP/3 twin.
    let quic_twins = cfg.probes.contains(&Probe::Quic);
    let (tx, rx) = mpsc::channel::<crate::input::Item>(TARGET_QUEUE);
    let room = Arc::new(Room::default());
    let room_in = room.clone();
    std::thread::Builder::new()
        .name("targets".into())
        .spawn(move || {
            crate::input::stream_with_twins(sources, quic_twins, |item| room_in.send(&tx, item))
        })?;

    let strict = cfg.strict;
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let fatal_in = fatal.clone();
    let targets = futures::stream::unfold(rx, move |mut rx| {
        let fatal = fatal_in.clone();
        let room = room.clone();
        async move {
            loop {
                let item = rx.recv().await?;
                room.took(&rx);
                match item {
                    crate::input::Item::Target(t) => return Some((t, rx)),
                    crate::input::Item::Malformed(e) if !strict => {
                        warn(format_args!("{e} (skipped)"))
                    }
                    crate::input::Item::Malformed(e) | crate::input::Item::Failed(e) => {
                        *fatal.lock().expect("fatal lock") = Some(e.to_string());
                        return None;
                    }
                }
            }
        }
    });
    let vantage_names: Arc<Vec<String>> = Arc::new(
        ctx.vantages
            .iter()
            .map(|v| v.vantage.name.clone())
            .collect(),
    );
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The jobs are started by a task on the runtime and each sends its record, once
    // classified, through a channel this thread drains in batches. (This thread used to spawn
    // every job and await it twice — its steps, then its classification after the injection
    // window —, each a cross-thread wake; issue 14, docs/performance.md, fourth pass.)
    let (record_tx, mut record_rx) = mpsc::channel::<Result<Box<Record>, String>>(RECORD_QUEUE);
    tokio::spawn(Box::pin(start_jobs(
        targets,
        Starter {
            ctx: ctx.clone(),
            meta: meta.clone(),
            vantage_names,
            skip: Arc::new(hooks.skip),
            read: read.clone(),
            concurrency: cfg.concurrency,
            stop: signals.clone(),
            records: record_tx,
        },
    )));
    let mut batch: Vec<Result<Box<Record>, String>> = Vec::with_capacity(RECORD_BATCH);
    let mut pending = std::collections::VecDeque::with_capacity(RECORD_BATCH);

    let progress = crate::progress::Progress::new(cfg.output.quiet);
    // The total for the bar, counted on a thread of its own (files are read once more) while
    // the scan starts; the bar takes it when it is ready.
    let mut estimate = progress.visible().then(|| {
        let sources = cfg.sources.clone();
        let per_target = ctx.vantages.len() as u64;
        tokio::task::spawn_blocking(move || {
            crate::input::estimate(&sources).map(|n| n * per_target)
        })
    });
    let mut summary = Summary::default();
    summary.regime = regime_summary;
    let probes: Vec<&str> = cfg.probes.iter().map(|p| p.as_str()).collect();
    summary.probes = (probes != crate::config::DEFAULT_PROBES).then(|| probes.join(","));
    summary.place = place;
    let mut failed_on = false;
    let mut failing = 0u64;
    let mut written = 0u64;
    let mut broken_pipe = false;
    let mut announced = false;
    let mut second = signals.clone();
    // Records are flushed when the loop is about to wait, and at least every FLUSH_EVERY while
    // they pour in: one write(2) per record was a fifth of a fast scan's time.
    let mut dirty = false;
    let mut last_flush = std::time::Instant::now();
    let mut flowing = false;
    loop {
        let ready = if *second.borrow() >= 2 {
            break;
        } else if !announced && *signals.borrow() >= 1 {
            None
        } else if let Some(r) = pending.pop_front() {
            Some(Some(r))
        } else {
            match record_rx.try_recv() {
                Ok(r) => Some(Some(r)),
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
                Err(mpsc::error::TryRecvError::Empty) => None,
            }
        };
        if dirty && (ready.is_none() || last_flush.elapsed() >= FLUSH_EVERY) {
            if let Err(e) = sink.flush() {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    broken_pipe = true;
                    break;
                }
                return Err(anyhow::Error::new(e).context("cannot write the report"));
            }
            dirty = false;
            last_flush = std::time::Instant::now();
        }
        let next = match ready {
            Some(next) => next,
            None => tokio::select! {
                biased;
                () = wait_for(&mut second, 2) => break,
                () = wait_for(&mut signals, 1), if !announced => {
                    announced = true;
                    warn("interrupted: finishing the jobs in flight (interrupt again to stop now)");
                    continue;
                }
                // Records flowing: gather for a moment rather than be woken for each.
                () = tokio::time::sleep(GATHER), if flowing => {
                    flowing = false;
                    continue;
                }
                n = record_rx.recv_many(&mut batch, RECORD_BATCH) => {
                    pending.extend(batch.drain(..));
                    if n == 0 { None } else { pending.pop_front() }
                }
            },
        };
        let Some(joined) = next else { break };
        flowing = true;
        let record = match joined {
            Ok(r) => r,
            Err(e) => anyhow::bail!("a probe task failed: {e}"),
        };
        summary.add(&record.resolver, record.verdict);
        summary.note(&record);
        if cfg.output.fail_on.contains(&record.verdict) {
            // Said even with --quiet: a CI log must show why the run fails.
            failed_on = true;
            failing += 1;
            if failing <= FAILING_SHOWN {
                warn(format_args!(
                    "--fail-on: {} via {}: {}{} — {}",
                    record.target,
                    record.resolver,
                    record.verdict.as_str(),
                    record
                        .reason
                        .map(|r| format!(" {}", r.as_str()))
                        .unwrap_or_default(),
                    record.detail
                ));
            }
        }
        if let Some(store) = hooks.store {
            // A database that stops answering mid-run (a statement that never returns) fills
            // the writer's bounded queue; give up rather than hang the scan forever.
            tokio::time::timeout(STORE_STALL, store.write(&record))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the store took no record for {} (is the database answering?)",
                        humantime::format_duration(STORE_STALL)
                    )
                })??;
        }
        // A table on the terminal: each line at once, drawn around the progress bar.
        let wrote = if live {
            progress.suspend(|| sink.write(&record).and_then(|()| sink.flush()))
        } else {
            sink.write(&record)
        };
        if let Err(e) = wrote {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                broken_pipe = true;
                break;
            }
            return Err(anyhow::Error::new(e).context("cannot write the report"));
        }
        written += 1;
        dirty = true;
        if estimate
            .as_ref()
            .is_some_and(tokio::task::JoinHandle::is_finished)
            && let Some(Ok(Some(total))) = estimate.take().and_then(|h| h.now_or_never())
        {
            progress.set_total(total);
        }
        progress.record(summary.count(Verdict::Blocked));
    }
    progress.finish();
    if failing > FAILING_SHOWN {
        warn(format_args!(
            "--fail-on: {} more result(s) not shown (see the report)",
            failing - FAILING_SHOWN
        ));
    }
    let interrupted = *signals.borrow() > 0;
    // A fatal input error is the run's outcome, not a reason to lose what was measured.
    let input_error = fatal.lock().expect("fatal lock").take();
    if !broken_pipe {
        sink.finish(&RunEnd {
            finished_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            interrupted,
            records: written,
        })
        .context("cannot finish the report")?;
    }
    Ok(Outcome {
        summary,
        interrupted,
        failed_on,
        output_closed: broken_pipe,
        targets: read.load(std::sync::atomic::Ordering::Relaxed),
        input_error,
    })
}

//! The scan engine: stream targets, fan each out over the vantage resolvers, run the jobs with
//! bounded concurrency, classify, and stream records to the sink as they finish.
//!
//! Memory is bounded by the concurrency, not by the target list: targets arrive through a small
//! channel from a reader thread, at most `concurrency` jobs exist at once, the control cache is
//! an LRU, and records are written and dropped one by one.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::{FutureExt as _, StreamExt as _};
use tokio::sync::{OnceCell, mpsc, watch};
use tokio::time::Instant;

use crate::classify::{
    ControlDns, ControlObservation, Evidence, Finding, RATE_MIN_BYTES, Reference, Rules, classify,
    is_bogon,
};
use crate::config::{Probe, ScanConfig};
use crate::probe::dns::{DnsClient, DnsObservation};
use crate::probe::http::HttpOptions;
use crate::probe::path::{self, ConnOptions, PathObservation, Route};
use crate::probe::stun::{self, StunObservation};
use crate::probe::tcp::AddrSource;
use crate::probe::tls::TlsClient;
use crate::report::summary::Summary;
use crate::report::{Record, RunEnd, RunMeta, Sink, SpecEntry, warn};
use crate::resolver_spec::Vantage;
use crate::target::{Host, Scheme, Target};
use crate::tls::TlsConfigs;
use crate::verdict::{Layer, Verdict};

/// Names kept in the control DNS cache. Jobs of one target run close together, so a small LRU
/// gives "one control lookup per name per run" without holding every name of a long list.
const CONTROL_CACHE: usize = 4_096;
/// Control-path fetches kept (bigger entries; needed only while a target's jobs run).
const CONTROL_PATH_CACHE: usize = 1_024;

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

struct VantageCtx {
    vantage: Vantage,
    client: DnsClient,
    healthy: bool,
    /// `--stun-reference`, asked once per run through this vantage.
    stun_reference: OnceCell<Option<stun::StunAttempt>>,
    /// `--reference` URLs, fetched once per run through this vantage (when a job first needs
    /// a baseline).
    references: OnceCell<Vec<Reference>>,
    /// The run's own best transfer so far from this vantage: rate (bits/s) and wire bytes
    /// carried without a stall.
    run_bps: AtomicU64,
    run_carried: AtomicU64,
}

impl VantageCtx {
    fn new(vantage: Vantage, client: DnsClient) -> Self {
        Self {
            vantage,
            client,
            healthy: true,
            stun_reference: OnceCell::new(),
            references: OnceCell::new(),
            run_bps: AtomicU64::new(0),
            run_carried: AtomicU64::new(0),
        }
    }
}

/// Computes a value once per key and shares it with every job that asks, in bounded memory:
/// an LRU of `capacity` keys. Used for control DNS answers and control-path fetches.
struct OnceLru<V> {
    cache: Mutex<lru::LruCache<String, Arc<OnceCell<Arc<V>>>>>,
}

impl<V> OnceLru<V> {
    fn new(capacity: usize) -> Self {
        Self {
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(capacity).expect("nonzero"),
            )),
        }
    }

    async fn get<F: Future<Output = V>>(&self, key: &str, make: impl FnOnce() -> F) -> Arc<V> {
        let cell = {
            let mut cache = self.cache.lock().expect("cache lock");
            cache
                .get_or_insert(key.to_owned(), || Arc::new(OnceCell::new()))
                .clone()
        };
        cell.get_or_init(|| async { Arc::new(make().await) })
            .await
            .clone()
    }
}

struct Controls {
    clients: Vec<(String, DnsClient)>,
    dns: OnceLru<ControlDns>,
    /// The control path (through `--control-proxy`), fetched once per target.
    paths: OnceLru<PathObservation>,
    /// `--control-concurrency`: fetches through the proxy in flight at once.
    path_permits: tokio::sync::Semaphore,
}

impl Controls {
    async fn lookup(&self, name: &str) -> Arc<ControlDns> {
        self.dns
            .get(name, || async {
                let lookups = self.clients.iter().map(|(n, c)| async move {
                    ControlObservation {
                        resolver: n.clone(),
                        dns: c.lookup(name).await,
                    }
                });
                ControlDns {
                    resolvers: futures::future::join_all(lookups).await,
                }
            })
            .await
    }
}

struct Ctx {
    meta: RunMeta,
    vantages: Vec<VantageCtx>,
    controls: Controls,
    probes: Vec<Probe>,
    conn: ConnOptions,
    proxy: Option<SocketAddr>,
    stun_reference: Option<(String, u16)>,
    /// `--reference` URLs (in-run baselines for throttling and freezes).
    references: Vec<Target>,
    quiet: bool,
    /// The controls resolve canaries to loopback: a test network on this machine, where
    /// loopback answers are ordinary addresses rather than bogons.
    loopback_net: bool,
    repeat: u32,
    rules: Rules,
    tls: TlsClient,
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
        canaries: Vec::new(),
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

/// The canaries asked at every vantage and control resolver.
struct CanaryResults {
    /// Per vantage: whether it may be trusted to speak for names (see [`canaries`]).
    healthy: Vec<bool>,
    /// Whether the controls resolve at least one canary.
    controls_answer: bool,
    loopback_net: bool,
    checks: Vec<crate::report::CanaryCheck>,
}

/// Asks every canary at every resolver. A vantage resolver is unhealthy only when it fails
/// every canary that the control resolvers *do* resolve: when the controls cannot resolve the
/// canaries either (a closed network, a lab, a whitelist regime), the canaries say nothing.
async fn canaries(
    vantages: &[VantageCtx],
    controls: &[(String, DnsClient)],
    names: &[String],
) -> CanaryResults {
    async fn ask(
        role: &'static str,
        resolver: &str,
        client: &DnsClient,
        names: &[String],
    ) -> Vec<crate::report::CanaryCheck> {
        // The first answers are enough: a canary's injected answer would change nothing, and
        // waiting out the injection window here would delay every run by it.
        let answers = futures::future::join_all(
            names
                .iter()
                .map(|n| async { client.lookup_early(n).await.0 }),
        )
        .await;
        names
            .iter()
            .zip(answers)
            .map(|(name, obs)| crate::report::CanaryCheck {
                name: name.clone(),
                resolver: resolver.to_owned(),
                role,
                answers: obs.addresses().into_iter().collect(),
                rcode: obs.rcode().map(str::to_owned),
                error: obs.failure().map(|f| f.kind.as_str()),
            })
            .collect()
    }
    let (v, c) = tokio::join!(
        futures::future::join_all(vantages.iter().map(|v| ask(
            "vantage",
            &v.vantage.name,
            &v.client,
            names
        ))),
        futures::future::join_all(controls.iter().map(|(n, c)| ask("control", n, c, names)))
    );
    let resolved: std::collections::HashSet<&str> = c
        .iter()
        .flatten()
        .filter(|k| !k.answers.is_empty())
        .map(|k| k.name.as_str())
        .collect();
    let loopback_net = c
        .iter()
        .flatten()
        .flat_map(|k| k.answers.iter())
        .any(IpAddr::is_loopback);
    let healthy = v
        .iter()
        .map(|checks| resolved.is_empty() || checks.iter().any(|k| !k.answers.is_empty()))
        .collect();
    let controls_answer = !resolved.is_empty();
    let checks = v.into_iter().chain(c).flatten().collect();
    CanaryResults {
        healthy,
        controls_answer,
        loopback_net,
        checks,
    }
}

/// Addresses the direct path may connect to: the vantage answers (never a reserved address a
/// resolver made up, unless the controls live there too, as on a loopback test network) and,
/// when they differ from the controls', the control addresses as well: this separates "DNS
/// lied" from "the IP is blocked".
fn direct_addrs(
    dns: &DnsObservation,
    control: &ControlDns,
    loopback_net: bool,
) -> Vec<(IpAddr, AddrSource)> {
    let control_addrs = control.addresses();
    let loopback_net = loopback_net || control_addrs.iter().any(IpAddr::is_loopback);
    let vantage = dns.addresses();
    let mut out: Vec<(IpAddr, AddrSource)> = vantage
        .iter()
        .filter(|ip| {
            !is_bogon(**ip) || control_addrs.contains(*ip) || (ip.is_loopback() && loopback_net)
        })
        .take(crate::probe::tcp::MAX_ADDRS)
        .map(|ip| (*ip, AddrSource::Vantage))
        .collect();
    if !out.is_empty() && vantage.is_disjoint(&control_addrs) {
        out.extend(
            control_addrs
                .iter()
                .take(crate::probe::tcp::MAX_ADDRS)
                .map(|ip| (*ip, AddrSource::Control)),
        );
    }
    out
}

/// The UDP step of a STUN target: every address from here, and the control proxy's relay.
async fn stun_step(
    ctx: &Ctx,
    v: &VantageCtx,
    target: &Target,
    addrs: &[(IpAddr, AddrSource)],
) -> StunObservation {
    let timeout = ctx.conn.timeout;
    let direct = futures::future::join_all(addrs.iter().map(|(ip, src)| {
        stun::probe(
            SocketAddr::new(*ip, target.port),
            *src,
            &ctx.conn.remap,
            timeout,
        )
    }));
    let control = async {
        match ctx.proxy {
            Some(proxy) => {
                let host = target.host.to_string();
                Some(stun::probe_via_proxy(proxy, &host, target.port, timeout).await)
            }
            None => None,
        }
    };
    // Without a control path, a reference STUN server reached from here is the baseline.
    let reference = async {
        let (host, port) = ctx
            .stun_reference
            .as_ref()
            .filter(|_| ctx.proxy.is_none())?;
        v.stun_reference
            .get_or_init(|| async {
                let ip = match host.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => *v.client.lookup(host).await.addresses().iter().next()?,
                };
                let addr = SocketAddr::new(ip, *port);
                Some(stun::probe(addr, AddrSource::Control, &ctx.conn.remap, timeout).await)
            })
            .await
            .clone()
    };
    let (direct, control, reference) = tokio::join!(direct, control, reference);
    StunObservation {
        direct,
        control,
        reference,
    }
}

/// What one fetch says as a baseline: its rate (bits/s, when the body was big enough), the
/// wire bytes it carried without stalling, or why it says nothing.
fn transfer_stats(p: &PathObservation) -> (Option<f64>, u64, Option<String>) {
    let Some(hop) = p.hops.last() else {
        return (None, 0, Some("no connection".into()));
    };
    let Some(h) = hop.http.as_ref() else {
        return (None, 0, Some("no HTTP response".into()));
    };
    if let Some(at) = h.transfer.stalled_at {
        return (None, 0, Some(format!("stalled at byte {at}")));
    }
    if let Some(f) = &h.failure {
        return (None, 0, Some(format!("failed ({})", f.kind.as_str())));
    }
    if !h.status.is_some_and(|s| (200..300).contains(&s)) {
        return (None, 0, Some(format!("status {}", h.status.unwrap_or(0))));
    }
    let t = &h.transfer;
    let bps = t
        .throughput_bps
        .filter(|_| t.bytes >= RATE_MIN_BYTES && (t.complete || t.capped || t.timed_out));
    let error = bps.is_none().then(|| {
        format!(
            "only {} body bytes: too small to measure a rate ({} KiB needed)",
            t.bytes,
            RATE_MIN_BYTES / 1024
        )
    });
    (bps, hop.wire_bytes_in, error)
}

/// The `--reference` URLs fetched once per run through this vantage, plus the run's best
/// transfer so far (`run`).
async fn in_run_baseline(ctx: &Ctx, v: &VantageCtx) -> Vec<Reference> {
    let mut out = v
        .references
        .get_or_init(|| async {
            let refs = futures::future::join_all(
                ctx.references.iter().map(|t| measure_reference(ctx, v, t)),
            )
            .await;
            // Said once per reference and resolver: a reference that gives no baseline leaves
            // throttling and freezes undecided.
            for r in refs.iter().filter(|_| !ctx.quiet) {
                if let Some(e) = &r.error
                    && r.bps.is_none()
                {
                    warn(format_args!(
                        "{} through resolver `{}` gives no rate baseline: {e}",
                        r.source, v.vantage.name
                    ));
                }
            }
            refs
        })
        .await
        .clone();
    let (bps, carried) = (
        v.run_bps.load(Ordering::Relaxed),
        v.run_carried.load(Ordering::Relaxed),
    );
    if bps > 0 || carried > 0 {
        out.push(Reference {
            source: "run".into(),
            bps: (bps > 0).then_some(bps as f64),
            carried,
            error: None,
        });
    }
    out
}

async fn measure_reference(ctx: &Ctx, v: &VantageCtx, t: &Target) -> Reference {
    let source = format!("reference:{}", t.input);
    let addrs: Vec<(IpAddr, AddrSource)> = match &t.host {
        Host::Ip(ip) => vec![(*ip, AddrSource::Vantage)],
        Host::Name(n) => v
            .client
            .lookup(n)
            .await
            .addresses()
            .into_iter()
            .filter(|ip| !is_bogon(*ip) || (ctx.loopback_net && ip.is_loopback()))
            .take(crate::probe::tcp::MAX_ADDRS)
            .map(|ip| (ip, AddrSource::Vantage))
            .collect(),
    };
    if addrs.is_empty() {
        return Reference {
            source,
            bps: None,
            carried: 0,
            error: Some("does not resolve through this resolver".into()),
        };
    }
    let route = Route::Direct {
        dns: &v.client,
        addrs,
    };
    let p = path::fetch(t, route, &ctx.tls, &ctx.conn).await;
    let (bps, carried, error) = transfer_stats(&p);
    Reference {
        source,
        bps,
        carried,
        error,
    }
}

/// A job whose steps are done, waiting only for the DNS answers still arriving within the
/// injection window; `finish` classifies it once they are joined in. Jobs wait here after
/// releasing their `--concurrency` slot.
struct Pending {
    dns: Option<DnsObservation>,
    late: Option<crate::probe::dns::Late>,
    finish: Box<dyn FnOnce(Option<DnsObservation>) -> Record + Send>,
}

impl Pending {
    async fn complete(self) -> Record {
        let mut dns = self.dns;
        if let (Some(d), Some(late)) = (dns.as_mut(), self.late) {
            d.absorb(late.collect().await);
        }
        (self.finish)(dns)
    }
}

async fn run_job(ctx: Arc<Ctx>, target: Arc<Target>, vi: usize) -> Pending {
    let start = Instant::now();
    let v = &ctx.vantages[vi];
    let connect = ctx.probes.contains(&Probe::Tcp);
    let (dns, control, late) = match target.name() {
        Some(name) => {
            let ((dns, late), control) =
                tokio::join!(v.client.lookup_early(name), ctx.controls.lookup(name));
            (Some(dns), Some((*control).clone()), late)
        }
        None => (None, None, None),
    };
    let first_dns = dns.clone();
    let record = {
        let (ctx, target) = (ctx.clone(), target.clone());
        move |finding: Finding| {
            Record::new(
                &ctx.meta,
                &target,
                &ctx.vantages[vi].vantage,
                finding,
                start.elapsed(),
            )
        }
    };
    let addrs = match (&target.host, &dns, &control) {
        _ if !connect => Vec::new(),
        (Host::Ip(ip), _, _) => vec![(*ip, AddrSource::Vantage)],
        (_, Some(d), Some(c)) if d.injected_addresses().is_none() => {
            direct_addrs(d, c, ctx.loopback_net)
        }
        _ => Vec::new(),
    };
    let layer = if target.scheme == Scheme::Http {
        Layer::Http
    } else {
        Layer::Tls
    };
    let base = Evidence {
        dns,
        control,
        resolver_healthy: v.healthy,
        direct: None,
        control_path: None,
        consistency: None,
        stun: None,
        tries: Vec::new(),
        baseline: Vec::new(),
    };
    let rules = ctx.rules;
    if addrs.is_empty() {
        return Pending {
            dns: first_dns,
            late,
            finish: Box::new(move |dns| record(classify(Evidence { dns, ..base }, &rules, layer))),
        };
    }
    if target.scheme == Scheme::Stun {
        let ev = Evidence {
            stun: Some(stun_step(&ctx, v, &target, &addrs).await),
            ..base
        };
        return Pending {
            dns: first_dns,
            late,
            finish: Box::new(move |dns| {
                record(classify(Evidence { dns, ..ev }, &rules, Layer::Udp))
            }),
        };
    }

    let control_path = async {
        match ctx.proxy {
            Some(proxy) => Some(
                ctx.controls
                    .paths
                    .get(&target.input, || async {
                        // The proxy's own limit: its timeouts would decide nothing.
                        let _permit = ctx.controls.path_permits.acquire().await;
                        let mut p =
                            path::fetch(&target, Route::Proxy(proxy), &ctx.tls, &ctx.conn).await;
                        // The control path is compared by status, title, length and rate; its
                        // body bytes would only weigh on the cache.
                        for hop in &mut p.hops {
                            if let Some(h) = hop.http.as_mut() {
                                h.head = Vec::new();
                                h.raw_headers = Vec::new();
                            }
                        }
                        p
                    })
                    .await,
            ),
            None => None,
        }
    };
    let direct = async {
        let mut tries = Vec::with_capacity(ctx.repeat as usize);
        for _ in 0..ctx.repeat {
            let route = Route::Direct {
                dns: &v.client,
                addrs: addrs.clone(),
            };
            tries.push(path::fetch(&target, route, &ctx.tls, &ctx.conn).await);
        }
        tries
    };
    // DNS consistency for targets not fetched over TLS (plain-HTTP URLs, other ports): a
    // certificate for the name on port 443 of the vantage address settles CDN variance.
    let consistency = async {
        let first = addrs.iter().find(|(_, src)| *src == AddrSource::Vantage)?;
        let name = target.name()?;
        let disjoint = match (&base.dns, &base.control) {
            (Some(d), Some(c)) => d.addresses().is_disjoint(&c.addresses()),
            _ => false,
        };
        let fetched_over_tls =
            target.scheme == Scheme::Https || (target.scheme == Scheme::None && target.port == 443);
        if !disjoint || fetched_over_tls || !ctx.probes.contains(&Probe::Tls) {
            return None;
        }
        let addr = SocketAddr::new(first.0, 443);
        let (stream, elapsed) =
            crate::probe::tcp::connect(ctx.conn.remap.apply(addr), ctx.conn.timeout).await;
        Some(match stream {
            Ok(s) => {
                ctx.tls
                    .handshake(s, name, &[b"http/1.1"], ctx.conn.timeout)
                    .await
                    .0
            }
            Err(f) => crate::probe::tls::TlsObservation {
                failure: Some(f),
                elapsed,
                ..crate::probe::tls::TlsObservation::new(name)
            },
        })
    };
    let (tries, control_path, consistency) = tokio::join!(direct, control_path, consistency);
    let control_path = control_path.map(|p| (*p).clone());

    // A transfer is judged against the control path, or, without a working one, against this
    // run's references from the same vantage (taken before this job's own transfer counts).
    let transferred = tries.iter().any(|p| {
        p.hops
            .last()
            .and_then(|h| h.http.as_ref())
            .is_some_and(|h| h.transfer.bytes > 0 || h.transfer.stalled_at.is_some())
    });
    let baseline = if transferred {
        in_run_baseline(&ctx, v).await
    } else {
        Vec::new()
    };
    for p in &tries {
        let (bps, carried, _) = transfer_stats(p);
        if let Some(bps) = bps {
            v.run_bps.fetch_max(bps as u64, Ordering::Relaxed);
        }
        v.run_carried.fetch_max(carried, Ordering::Relaxed);
    }

    // Classify every try (once the late DNS evidence is in); the most frequent outcome wins
    // (the first try breaks ties), and the evidence keeps the first try that had it, plus the
    // list of outcomes.
    let finish = move |dns: Option<DnsObservation>| {
        let base = Evidence { dns, ..base };
        let findings: Vec<Finding> = tries
            .into_iter()
            .map(|direct| {
                let ev = Evidence {
                    direct: Some(direct),
                    control_path: control_path.clone(),
                    consistency: consistency.clone(),
                    baseline: baseline.clone(),
                    ..base.clone()
                };
                classify(ev, &rules, layer)
            })
            .collect();
        let label = |f: &Finding| match f.reason {
            Some(r) => format!("{}:{}", f.verdict.as_str(), r.as_str()),
            None => f.verdict.as_str().to_owned(),
        };
        let labels: Vec<String> = findings.iter().map(label).collect();
        let best = (0..findings.len())
            .max_by_key(|i| {
                let n = labels.iter().filter(|l| **l == labels[*i]).count();
                (n, std::cmp::Reverse(*i))
            })
            .unwrap_or(0);
        let mut finding = findings.into_iter().nth(best).expect("repeat >= 1");
        if labels.len() > 1 {
            let n = labels.iter().filter(|l| **l == labels[best]).count();
            finding.detail = format!("{} ({n} of {} tries)", finding.detail, labels.len());
            finding.evidence.tries = labels;
        }
        record(finding)
    };
    Pending {
        dns: first_dns,
        late,
        finish: Box::new(finish),
    }
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
}

/// Runs a whole scan, writing records to `out` as they finish.
pub async fn scan<W: Write>(
    cfg: ScanConfig,
    mut meta: RunMeta,
    out: W,
    hooks: Hooks<'_>,
) -> anyhow::Result<Outcome> {
    let tls = TlsConfigs::new(cfg.ca_file.as_deref())?;
    let timeout = cfg.dns.timeout;
    let mut vantages = Vec::with_capacity(cfg.vantages.len());
    for v in &cfg.vantages {
        let client = DnsClient::new(
            v.spec.clone(),
            tls.clone(),
            timeout,
            cfg.dns.injection_window,
        )?
        .with_rate(cfg.dns.rate);
        vantages.push(VantageCtx::new(v.clone(), client));
    }
    let mut control_clients = Vec::with_capacity(cfg.controls.len());
    for c in &cfg.controls {
        control_clients.push((
            c.name.clone(),
            DnsClient::new(c.spec.clone(), tls.clone(), timeout, Duration::ZERO)?
                .with_rate(cfg.dns.rate),
        ));
    }
    // Open every input before measuring anything: an unreadable file is a usage error.
    let sources = crate::input::open(&cfg.sources)?;
    let mut signals = hooks.signals.unwrap_or_else(signals);

    // An interrupt during the health check ends the run before its first job (with a
    // complete, empty report and the store run closed as interrupted).
    let health = canaries(&vantages, &control_clients, &cfg.dns.canaries);
    let mut startup = signals.clone();
    let health = tokio::select! {
        h = health => Some(h),
        () = wait_for(&mut startup, 1) => None,
    };
    let mut loopback_net = false;
    if let Some(h) = health {
        let quiet = cfg.output.quiet;
        if !h.controls_answer && !cfg.dns.canaries.is_empty() && !quiet {
            warn(
                "the control resolvers resolve none of the canary names (a closed network, or a whitelist regime?): the canaries cannot judge the vantage resolvers",
            );
        }
        for (v, ok) in vantages.iter_mut().zip(h.healthy) {
            v.healthy = ok;
            if !ok && !quiet {
                warn(format_args!(
                    "resolver `{}` answered none of the canary names the controls resolve; its failures will be inconclusive",
                    v.vantage.name
                ));
            }
        }
        loopback_net = h.loopback_net;
        meta.canaries = h.checks;
    }
    let connects = cfg.probes.contains(&Probe::Tcp);
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
    let references = cfg
        .conn
        .references
        .iter()
        .map(|u| Target::parse(u).map_err(|e| anyhow::anyhow!("--reference {u}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut sink = Sink::begin(cfg.output.format, out, &meta)?;
    let ctx = Arc::new(Ctx {
        meta,
        vantages,
        controls: Controls {
            clients: control_clients,
            dns: OnceLru::new(CONTROL_CACHE),
            paths: OnceLru::new(CONTROL_PATH_CACHE),
            path_permits: tokio::sync::Semaphore::new(cfg.conn.control_concurrency),
        },
        probes: cfg.probes.clone(),
        conn: ConnOptions {
            timeout,
            http: HttpOptions {
                timeout,
                stall_timeout: cfg.conn.stall_timeout,
                max_body: cfg.conn.max_body,
            },
            max_redirects: cfg.conn.max_redirects,
            decoy_sni: cfg.conn.decoy_sni.clone(),
            tls: cfg.probes.contains(&Probe::Tls),
            http_step: cfg.probes.contains(&Probe::Http),
            remap: crate::probe::tcp::Remap::new(cfg.conn.connect_to.iter().copied()),
        },
        proxy: cfg.conn.control_proxy,
        stun_reference: cfg.conn.stun_reference.clone(),
        references,
        quiet: cfg.output.quiet,
        loopback_net,
        repeat: cfg.conn.repeat,
        rules: cfg.conn.rules,
        tls: tls.probe.clone(),
    });

    // Targets are read on their own thread (files and stdin block) into a small channel.
    let (tx, rx) = mpsc::channel::<crate::input::Item>(256);
    std::thread::Builder::new()
        .name("targets".into())
        .spawn(move || crate::input::stream(sources, |item| tx.blocking_send(item).is_ok()))?;

    let strict = cfg.strict;
    let fatal: Arc<Mutex<Option<String>>> = Arc::default();
    let fatal_in = fatal.clone();
    let targets = futures::stream::unfold(rx, move |mut rx| {
        let fatal = fatal_in.clone();
        async move {
            loop {
                match rx.recv().await? {
                    crate::input::Item::Target(t) => return Some((t, rx)),
                    crate::input::Item::Malformed(e) if !strict => warn(format_args!("{e} (skipped)")),
                    crate::input::Item::Malformed(e) | crate::input::Item::Failed(e) => {
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
    let vantage_names: Arc<Vec<String>> = Arc::new(
        ctx.vantages
            .iter()
            .map(|v| v.vantage.name.clone())
            .collect(),
    );
    let skip = Arc::new(hooks.skip);
    let ctx_jobs = ctx.clone();
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let read_in = read.clone();
    let records = targets
        .take_until(first_signal)
        .flat_map(move |t| {
            read_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let t = Arc::new(t);
            let skip = skip.clone();
            let names = vantage_names.clone();
            let todo: Vec<usize> = (0..names.len())
                .filter(|vi| {
                    skip.is_empty() || !skip.contains(&(t.input.clone(), names[*vi].clone()))
                })
                .collect();
            futures::stream::iter(todo.into_iter().map(move |vi| (t.clone(), vi)))
        })
        .map(move |(t, vi)| tokio::spawn(run_job(ctx_jobs.clone(), t, vi)))
        .buffer_unordered(cfg.concurrency)
        // A job's concurrency slot is free once its steps are done; it waits for the rest of
        // the injection window here, bounded by the lingering-socket budget.
        // (classified on a worker thread, not on this one, which writes the report).
        .map(|joined| async move {
            match joined {
                Ok(p) => tokio::spawn(p.complete()).await,
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(cfg.concurrency + crate::probe::dns::linger_capacity());
    let mut records = std::pin::pin!(records);

    let progress = crate::progress::Progress::new(cfg.output.quiet);
    let mut summary = Summary::default();
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
    loop {
        let ready = if *second.borrow() >= 2 {
            break;
        } else if !announced && *signals.borrow() >= 1 {
            None
        } else {
            records.next().now_or_never()
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
                next = records.next() => next,
            },
        };
        let Some(joined) = next else { break };
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
        if let Err(e) = sink.write(&record) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                broken_pipe = true;
                break;
            }
            return Err(anyhow::Error::new(e).context("cannot write the report"));
        }
        written += 1;
        dirty = true;
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

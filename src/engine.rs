//! The engine: one job's plan as code. A [`Job`] (a target through one vantage resolver) runs
//! in a [`ProbeCtx`] (vantage, controls, budgets): DNS through the vantage and the controls,
//! then the connection step its [`Plan`] names, and returns what it [`Observed`]. The scan
//! (`scan.rs`) keeps the queue, signals, classification, the vote over tries and the sinks.
//!
//! A new kind of probe adds a [`Plan`] variant, its step here, and a [`Conn`] variant with its
//! classifier module.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::classify::{
    Conn, ControlDns, ControlObservation, Evidence, PathEvidence, RATE_MIN_BYTES, Reference, Rules,
};
use crate::config::{Probe, ScanConfig};
use crate::diag::warn;
use crate::net::reserved_answer;
use crate::probe::dns::{DnsClient, DnsObservation};
use crate::probe::http::HttpOptions;
use crate::probe::path::{self, ConnOptions, PathObservation, Route};
use crate::probe::stun::{self, StunObservation};
use crate::probe::tcp::AddrSource;
use crate::probe::tls::TlsClient;
use crate::resolver_spec::Vantage;
use crate::target::{Host, Scheme, Target};
use crate::tls::TlsConfigs;
use crate::verdict::Layer;

/// Names kept in the control DNS cache. Jobs of one target run close together, so a small LRU
/// gives "one control lookup per name per run" without holding every name of a long list.
const CONTROL_CACHE: usize = 4_096;
/// Control-path fetches kept (bigger entries; needed only while a target's jobs run).
const CONTROL_PATH_CACHE: usize = 1_024;

pub struct VantageCtx {
    pub vantage: Vantage,
    client: DnsClient,
    /// Whether it answered the canaries the controls resolve (see [`canaries`]).
    pub healthy: bool,
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

/// What every job shares: the vantage resolvers, the controls, the options of the steps and the
/// budgets (control-path permits, caches). Built once per run.
pub struct ProbeCtx {
    pub vantages: Vec<VantageCtx>,
    controls: Controls,
    probes: Vec<Probe>,
    conn: ConnOptions,
    proxy: Option<SocketAddr>,
    stun_reference: Option<(String, u16)>,
    /// `--reference` URLs (in-run baselines for throttling and freezes).
    references: Vec<Target>,
    /// No warnings on stderr (`--quiet`).
    quiet: bool,
    /// The controls resolve canaries to loopback: a test network on this machine, where
    /// loopback answers are ordinary addresses rather than bogons.
    loopback_net: bool,
    repeat: u32,
    rules: Rules,
    tls: TlsClient,
    quic: crate::probe::quic::QuicOptions,
    /// Media streams in flight at once (see [`MEDIA_STREAMS`]).
    media_permits: tokio::sync::Semaphore,
}

/// `media://` jobs measured at once, whatever `--concurrency` is: each sends two streams of
/// ~50 datagrams/s to one echo server, whose default cap is 500 datagrams/s per source (with
/// room for the echo probes), so more at once would make the server, not the network, drop
/// them (both streams alike).
pub const MEDIA_STREAMS: usize = 2;

impl ProbeCtx {
    /// The network-regime check through the first vantage resolver.
    pub async fn check_regime(
        &self,
        opts: &crate::regime::RegimeOptions,
    ) -> crate::regime::RegimeCheck {
        match self.regime_probes() {
            Some(probes) => crate::regime::check(&probes, opts).await,
            None => crate::regime::RegimeCheck::unchecked(),
        }
    }

    /// This probe's public address as a STUN server at `host:port` sees it (the name resolved
    /// through the first vantage resolver).
    pub async fn public_ip(&self, host: &str, port: u16) -> Result<IpAddr, String> {
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                let v = self.vantages.first().ok_or("no resolver")?;
                let obs = v.client.lookup(host).await;
                let addrs = obs.addresses();
                *addrs
                    .iter()
                    .next()
                    .ok_or_else(|| format!("`{host}` does not resolve"))?
            }
        };
        let a = stun::probe(
            SocketAddr::new(ip, port),
            AddrSource::Vantage,
            &self.conn.remap,
            self.conn.timeout,
        )
        .await;
        a.mapped_address.map(|m| m.ip()).ok_or_else(|| {
            a.failure.map_or_else(
                || "no mapped address in the answer".to_owned(),
                |f| f.message,
            )
        })
    }

    /// What the regime check and allow-list discovery probe with: the first vantage resolver.
    pub fn regime_probes(&self) -> Option<crate::regime::Probes<'_>> {
        let v = self.vantages.first()?;
        Some(crate::regime::Probes {
            dns: &v.client,
            tls: &self.tls,
            timeout: self.conn.timeout,
            remap: &self.conn.remap,
        })
    }

    /// Builds the clients and options of a run from its configuration.
    pub fn new(cfg: &ScanConfig, tls: &TlsConfigs) -> anyhow::Result<Self> {
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
        let references = cfg
            .conn
            .references
            .iter()
            .map(|u| Target::parse(u).map_err(|e| anyhow::anyhow!("--reference {u}: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            vantages,
            media_permits: tokio::sync::Semaphore::new(MEDIA_STREAMS),
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
                tunnel_check: cfg.conn.tunnel_check.clone(),
                tls: cfg.probes.contains(&Probe::Tls),
                http_step: cfg.probes.contains(&Probe::Http),
                remap: crate::probe::tcp::Remap::new(cfg.conn.connect_to.iter().copied()),
            },
            proxy: cfg.conn.control_proxy,
            stun_reference: cfg.conn.stun_reference.clone(),
            references,
            quiet: cfg.output.quiet,
            loopback_net: false,
            repeat: cfg.conn.repeat,
            rules: cfg.conn.rules,
            tls: tls.probe.clone(),
            quic: crate::probe::quic::QuicOptions::new(
                &tls.dot,
                &tls.any_cert,
                timeout,
                cfg.conn.max_body,
                &cfg.conn.decoy_sni,
            ),
        })
    }

    /// Asks the canaries at every vantage and control resolver ([`canaries`]).
    pub async fn check_canaries(&self, names: &[String]) -> CanaryResults {
        canaries(&self.vantages, &self.controls.clients, names).await
    }

    /// Takes the canaries' verdict on the vantage resolvers and the network.
    pub fn apply(&mut self, h: &CanaryResults) {
        for (v, ok) in self.vantages.iter_mut().zip(&h.healthy) {
            v.healthy = *ok;
        }
        self.loopback_net = h.loopback_net;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    pub fn repeat(&self) -> u32 {
        self.repeat
    }
}

/// The canaries asked at every vantage and control resolver.
pub struct CanaryResults {
    /// Per vantage: whether it may be trusted to speak for names (see [`canaries`]).
    pub healthy: Vec<bool>,
    /// Whether the controls resolve at least one canary.
    pub controls_answer: bool,
    pub loopback_net: bool,
    pub checks: Vec<crate::report::CanaryCheck>,
}

/// Asks every canary at every resolver. A vantage resolver is unhealthy only when it fails
/// every canary that the control resolvers *do* resolve: when the controls cannot resolve the
/// canaries either (a closed network, a lab, a whitelist regime), the canaries say nothing.
pub async fn canaries(
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
                rcode: obs.rcode().map(|r| r.to_string()),
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
    let vantage = dns.addresses();
    let mut out: Vec<(IpAddr, AddrSource)> = vantage
        .iter()
        .filter(|ip| !reserved_answer(**ip, &control_addrs, loopback_net))
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
    ctx: &ProbeCtx,
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
async fn in_run_baseline(ctx: &ProbeCtx, v: &VantageCtx) -> Vec<Reference> {
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

async fn measure_reference(ctx: &ProbeCtx, v: &VantageCtx, t: &Target) -> Reference {
    let source = format!("reference:{}", t.input);
    let addrs: Vec<(IpAddr, AddrSource)> = match &t.host {
        Host::Ip(ip) => vec![(*ip, AddrSource::Vantage)],
        Host::Name(n) => v
            .client
            .lookup(n)
            .await
            .addresses()
            .into_iter()
            .filter(|ip| !reserved_answer(*ip, &BTreeSet::new(), ctx.loopback_net))
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
/// injection window. Jobs wait here after releasing their `--concurrency` slot.
pub struct Observed {
    /// The vantage resolver's first answers (the late ones join in [`Observed::complete`]).
    dns: Option<DnsObservation>,
    late: Option<crate::probe::dns::Late>,
    /// The evidence shared by every try: control DNS, resolver health, in-run baselines.
    base: Evidence,
    /// The connection step of each try (`--repeat`); empty when none ran.
    tries: Vec<Conn>,
    /// The layer a transfer runs on (`tls` for HTTPS, `http` for plain HTTP, `udp`).
    pub layer: Layer,
    /// When the job started.
    pub started: Instant,
}

impl Observed {
    /// Waits for the rest of the injection window and joins the late DNS answers in. Takes
    /// `&mut self` so that a boxed job waits in a few bytes of future, not a copy of its
    /// evidence: thousands wait at once in a fast scan (issue 14).
    pub async fn join_late(&mut self) {
        if let Some(late) = self.late.take() {
            let got = late.collect().await;
            if let Some(d) = self.dns.as_mut() {
                d.absorb(got);
            }
        }
    }

    /// The evidence of each try (at least one). Call [`join_late`](Self::join_late) first.
    pub fn complete(self) -> Vec<Evidence> {
        let base = Evidence {
            dns: self.dns,
            ..self.base
        };
        if self.tries.is_empty() {
            return vec![base];
        }
        let mut out = Vec::with_capacity(self.tries.len());
        let mut base = Some(base);
        let mut tries = self.tries.into_iter().peekable();
        while let Some(conn) = tries.next() {
            // The last try takes the shared evidence; the others copy it.
            let shared = if tries.peek().is_some() {
                base.clone()
            } else {
                base.take()
            };
            out.push(Evidence {
                conn: Some(conn),
                ..shared.expect("taken by the last try only")
            });
        }
        out
    }
}

/// One measurement: a target through one vantage resolver.
pub struct Job {
    pub target: Arc<Target>,
    /// Index into [`ProbeCtx::vantages`].
    pub vantage: usize,
}

/// What a job runs after DNS, decided from the target and `--probes`: the one place a new
/// kind of probe is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Resolution only (`--probes dns`, or nowhere to connect).
    Dns,
    /// TCP → TLS → HTTP(S) with redirects.
    Path,
    /// A STUN Binding exchange over UDP.
    Stun,
    /// An HTTP/3 GET over QUIC, with its attribution packets.
    Quic,
    /// Protocol-shaped datagrams and random controls to an echo server.
    Echo,
    /// OpenVPN's hard reset.
    Openvpn,
    /// A WireGuard handshake initiation.
    Wireguard,
    /// A Tor relay's link handshake.
    Tor,
    /// A Shadowsocks tunnel to the tunnel-check URL.
    Shadowsocks,
    /// obfs4's handshake.
    Obfs4,
    /// A call-shaped stream and its random control to an echo server.
    Media,
}

impl Plan {
    pub fn of(target: &Target, probes: &[Probe]) -> Self {
        let connects = probes.contains(&Probe::Tcp);
        if target.scheme == Scheme::Quic && (connects || probes.contains(&Probe::Quic)) {
            Self::Quic
        } else if !connects {
            Self::Dns
        } else if target.scheme == Scheme::Echo {
            Self::Echo
        } else if target.scheme == Scheme::Media {
            Self::Media
        } else if target.scheme == Scheme::Openvpn {
            Self::Openvpn
        } else if target.scheme == Scheme::Wireguard {
            Self::Wireguard
        } else if target.scheme == Scheme::Tor {
            Self::Tor
        } else if target.scheme == Scheme::Shadowsocks {
            Self::Shadowsocks
        } else if target.scheme == Scheme::Obfs4 {
            Self::Obfs4
        } else if target.scheme == Scheme::Stun {
            Self::Stun
        } else {
            Self::Path
        }
    }
}

/// Runs a job's plan: DNS through the vantage and the controls, then the connection step of
/// its kind, and returns what it saw (classified by the caller).
pub async fn run(ctx: &ProbeCtx, job: &Job) -> Observed {
    let started = Instant::now();
    let target = &*job.target;
    let v = &ctx.vantages[job.vantage];
    let plan = Plan::of(target, &ctx.probes);
    let (dns, control, late) = match target.name() {
        Some(name) => {
            let ((dns, late), control) =
                tokio::join!(v.client.lookup_early(name), ctx.controls.lookup(name));
            (Some(dns), Some(control), late)
        }
        None => (None, None, None),
    };
    let addrs = match (&target.host, &dns, &control) {
        _ if plan == Plan::Dns => Vec::new(),
        (Host::Ip(ip), _, _) => vec![(*ip, AddrSource::Vantage)],
        (_, Some(d), Some(c)) if d.injected_addresses().is_none() => {
            direct_addrs(d, c, ctx.loopback_net)
        }
        _ => Vec::new(),
    };
    let mut observed = Observed {
        dns: None,
        late,
        base: Evidence {
            dns: None,
            control,
            resolver_healthy: v.healthy,
            conn: None,
            tries: Vec::new(),
            baseline: Vec::new(),
        },
        tries: Vec::new(),
        layer: target.transfer_layer(),
        started,
    };
    if !addrs.is_empty() {
        // Boxed: the connection steps of every plan make a future of many kilobytes, which a
        // DNS-only job would otherwise carry (and copy on every move) for nothing.
        Box::pin(steps(
            ctx,
            v,
            target,
            plan,
            addrs,
            dns.as_ref(),
            &mut observed,
        ))
        .await;
    }
    observed.dns = dns;
    observed
}

/// The connection step of a job's plan, to the addresses DNS gave.
async fn steps(
    ctx: &ProbeCtx,
    v: &VantageCtx,
    target: &Target,
    plan: Plan,
    addrs: Vec<(IpAddr, AddrSource)>,
    dns_ref: Option<&DnsObservation>,
    observed: &mut Observed,
) {
    match plan {
        Plan::Dns => {}
        Plan::Stun => {
            observed.layer = Layer::Udp;
            let s = stun_step(ctx, v, target, &addrs).await;
            observed.tries.push(Conn::Stun(s));
        }
        Plan::Echo => {
            use crate::probe::echo;
            observed.layer = Layer::Udp;
            let t = ctx.conn.timeout;
            observed.tries = handshakes(
                ctx,
                target,
                &addrs,
                false,
                |to| echo::probe(to, t),
                |p, host, port| async move { echo::probe_via_proxy(p, &host, port, t).await },
                |direct, control| Conn::Echo(echo::EchoObservation { direct, control }),
            )
            .await;
        }
        Plan::Media => {
            use crate::probe::media;
            observed.layer = Layer::Media;
            let t = ctx.conn.timeout;
            let opts = media::Options::of_path(&target.path).unwrap_or_default();
            let opts = &opts;
            // Echoes are awaited up to a second after the last packet (a call's receiver
            // gives up on later ones).
            let drain = t.min(Duration::from_secs(1));
            let _permit = ctx.media_permits.acquire().await;
            observed.tries =
                    handshakes(
                        ctx,
                        target,
                        &addrs,
                        false,
                        |to| media::probe(to, opts, drain),
                        |p, host, port| async move {
                            media::probe_via_proxy(p, &host, port, opts, t).await
                        },
                        |direct, control_path| {
                            Conn::Media(media::MediaObservation {
                                options: *opts,
                                direct,
                                control_path,
                            })
                        },
                    )
                    .await;
        }
        Plan::Wireguard => {
            use crate::probe::wireguard;
            observed.layer = Layer::Vpn;
            let t = ctx.conn.timeout;
            if let Ok(keys) = wireguard::Keys::of_path(&target.path) {
                let keys = &keys;
                observed.tries = handshakes(
                    ctx,
                    target,
                    &addrs,
                    true,
                    |to| wireguard::probe(to, keys, t),
                    |p, host, port| async move {
                        wireguard::probe_via_proxy(p, &host, port, keys, t).await
                    },
                    |direct, control| {
                        Conn::Wireguard(wireguard::WireguardObservation { direct, control })
                    },
                )
                .await;
            }
        }
        Plan::Openvpn => {
            use crate::probe::openvpn;
            observed.layer = Layer::Vpn;
            if let Ok(opts) = openvpn::Options::of_path(&target.path) {
                let (t, o) = (ctx.conn.timeout, &opts);
                observed.tries =
                    handshakes(
                        ctx,
                        target,
                        &addrs,
                        false,
                        |to| openvpn::probe(to, o, t),
                        |p, host, port| async move {
                            openvpn::probe_via_proxy(p, &host, port, o, t).await
                        },
                        |direct, control| {
                            Conn::Openvpn(openvpn::OpenvpnObservation {
                                proto: opts.proto,
                                wrap: opts.wrap.as_ref().map(openvpn::Wrap::as_str),
                                direct,
                                control,
                            })
                        },
                    )
                    .await;
            }
        }
        Plan::Tor => {
            use crate::probe::tor;
            observed.layer = Layer::Vpn;
            let (t, tls, decoy) = (ctx.conn.timeout, &ctx.tls, &*ctx.conn.decoy_sni);
            observed.tries = handshakes(
                ctx,
                target,
                &addrs,
                false,
                |to| tor::probe(to, tls, decoy, t),
                |p, host, port| async move { tor::probe_via_proxy(p, &host, port, tls, t).await },
                |direct, control| Conn::Tor(tor::TorObservation { direct, control }),
            )
            .await;
        }
        Plan::Shadowsocks => {
            use crate::probe::shadowsocks as ss;
            observed.layer = Layer::Vpn;
            if let Some(creds) = ss::Credentials::of_path(&target.path) {
                let (t, creds, check) = (ctx.conn.timeout, &creds, &ctx.conn.tunnel_check);
                observed.tries = handshakes(
                    ctx,
                    target,
                    &addrs,
                    false,
                    |to| ss::probe(to, creds, check, t),
                    |p, host, port| async move {
                        ss::probe_via_proxy(p, &host, port, creds, check, t).await
                    },
                    |direct, control| {
                        Conn::Shadowsocks(ss::ShadowsocksObservation {
                            method: creds.method,
                            check: check.url.clone(),
                            direct,
                            control,
                        })
                    },
                )
                .await;
            }
        }
        Plan::Obfs4 => {
            use crate::probe::obfs4;
            observed.layer = Layer::Vpn;
            if let Ok(bridge) = obfs4::Bridge::of_path(&target.path) {
                let (t, bridge) = (ctx.conn.timeout, &bridge);
                observed.tries = handshakes(
                    ctx,
                    target,
                    &addrs,
                    false,
                    |to| obfs4::probe(to, bridge, t),
                    |p, host, port| async move {
                        obfs4::probe_via_proxy(p, &host, port, bridge, t).await
                    },
                    |direct, control| {
                        Conn::Obfs4(obfs4::Obfs4Observation {
                            iat_mode: bridge.iat_mode,
                            direct,
                            control,
                        })
                    },
                )
                .await;
            }
        }
        Plan::Quic => {
            observed.layer = Layer::Quic;
            for _ in 0..ctx.repeat {
                let q = quic_step(ctx, target, &addrs).await;
                observed.tries.push(Conn::Quic(q));
            }
        }
        Plan::Path => {
            let (tries, baseline) = path_step(
                ctx,
                v,
                target,
                addrs,
                dns_ref,
                observed.base.control.as_deref(),
            )
            .await;
            observed.tries = tries;
            observed.base.baseline = baseline;
        }
    }
}

/// `--repeat` tries of a handshake-style probe: to every vantage address from here and once
/// through the control proxy (to the target by name) — at the same time, or after it when
/// `one_peer` (a WireGuard server takes one initiation per peer per 20 ms, and the same client
/// key from two flows at once would lose one). The shape the echo, media and VPN probes share;
/// `conn` makes each try's evidence of `(from here, through the proxy)`.
async fn handshakes<T, D, DF, C, CF>(
    ctx: &ProbeCtx,
    target: &Target,
    addrs: &[(IpAddr, AddrSource)],
    one_peer: bool,
    direct: D,
    control: C,
    conn: impl Fn(Vec<T>, Option<T>) -> Conn,
) -> Vec<Conn>
where
    D: Fn(SocketAddr) -> DF,
    DF: std::future::Future<Output = T>,
    C: Fn(SocketAddr, String, u16) -> CF,
    CF: std::future::Future<Output = T>,
{
    let host = target.host.to_string();
    let mut runs = Vec::with_capacity(ctx.repeat as usize);
    for _ in 0..ctx.repeat {
        let ours = futures::future::join_all(
            addrs
                .iter()
                .filter(|(_, s)| *s == AddrSource::Vantage)
                .map(|(ip, _)| direct(ctx.conn.remap.apply(SocketAddr::new(*ip, target.port)))),
        );
        let outside = async {
            match ctx.proxy {
                Some(p) => Some(control(p, host.clone(), target.port).await),
                None => None,
            }
        };
        let (ours, outside) = if one_peer {
            let ours = ours.await;
            (ours, outside.await)
        } else {
            tokio::join!(ours, outside)
        };
        runs.push(conn(ours, outside));
    }
    runs
}

/// The QUIC step: an HTTP/3 GET to every vantage address and through the control proxy, the
/// version-negotiation ping to the first address, and, when the target's SNI gets no answer,
/// a handshake with the decoy SNI on that address.
async fn quic_step(
    ctx: &ProbeCtx,
    target: &Target,
    addrs: &[(IpAddr, AddrSource)],
) -> crate::probe::quic::QuicObservation {
    use crate::probe::quic;
    let opts = &ctx.quic;
    let host = target.host.to_string();
    let authority = match &target.host {
        Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]:{}", target.port),
        _ => format!("{host}:{}", target.port),
    };
    let url = format!("https://{authority}{}", target.path);
    let ours: Vec<SocketAddr> = addrs
        .iter()
        .filter(|(_, s)| *s == AddrSource::Vantage)
        .map(|(ip, _)| ctx.conn.remap.apply(SocketAddr::new(*ip, target.port)))
        .collect();
    let direct = futures::future::join_all(ours.iter().map(|a| quic::get(*a, &host, &url, opts)));
    let ping = async {
        match ours.first() {
            Some(a) => Some(quic::version_ping(*a, opts.timeout).await),
            None => None,
        }
    };
    let control = async {
        match ctx.proxy {
            Some(p) => Some(quic::get_via_proxy(p, &host, target.port, &url, opts).await),
            None => None,
        }
    };
    let (direct, version_ping, control) = tokio::join!(direct, ping, control);
    let silent = direct
        .iter()
        .all(|a| matches!(a.kind(), Some(crate::probe::failure::FailureKind::Timeout)));
    let mut direct = direct;
    let decoy = match ours.first() {
        Some(a) if silent => {
            let d = quic::decoy(*a, opts).await;
            // The address answers a decoy: ask again with the target's SNI before calling it a
            // filter on the name (one lost flight is not censorship).
            if d.handshake {
                direct.push(quic::get(*a, &host, &url, opts).await);
            }
            Some(d)
        }
        _ => None,
    };
    quic::QuicObservation {
        url,
        direct,
        decoy,
        version_ping,
        control,
    }
}

/// The connection step of a fetch: `--repeat` tries from here, the control path (once per
/// target, shared), the consistency handshake, and the in-run baseline a transfer is judged by.
async fn path_step(
    ctx: &ProbeCtx,
    v: &VantageCtx,
    target: &Target,
    addrs: Vec<(IpAddr, AddrSource)>,
    dns: Option<&DnsObservation>,
    control: Option<&ControlDns>,
) -> (Vec<Conn>, Vec<Reference>) {
    let control_path = async {
        match ctx.proxy {
            Some(proxy) => Some(
                ctx.controls
                    .paths
                    .get(&target.input, || async {
                        // The proxy's own limit: its timeouts would decide nothing.
                        let _permit = ctx.controls.path_permits.acquire().await;
                        let mut p =
                            path::fetch(target, Route::Proxy(proxy), &ctx.tls, &ctx.conn).await;
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
            tries.push(path::fetch(target, route, &ctx.tls, &ctx.conn).await);
        }
        tries
    };
    // DNS consistency for targets not fetched over TLS (plain-HTTP URLs, other ports): a
    // certificate for the name on port 443 of the vantage address settles CDN variance.
    let consistency = async {
        let first = addrs.iter().find(|(_, src)| *src == AddrSource::Vantage)?;
        let name = target.name()?;
        let disjoint = match (dns, control) {
            (Some(d), Some(c)) => d.addresses().is_disjoint(&c.addresses()),
            _ => false,
        };
        if !disjoint || target.is_tls() || !ctx.probes.contains(&Probe::Tls) {
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
        in_run_baseline(ctx, v).await
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

    let tries = tries
        .into_iter()
        .map(|direct| {
            Conn::Path(PathEvidence {
                direct,
                control_path: control_path.clone(),
                consistency: consistency.clone(),
            })
        })
        .collect();
    (tries, baseline)
}

//! The classifier: a pure function from a job's evidence to a finding. No sockets, no clocks;
//! table-tested below, row by row, against the rules of `docs/reasons.md`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::blockpage::Fingerprints;
use crate::probe::dns::DnsObservation;
use crate::probe::failure::FailureKind;
use crate::probe::http::HttpObservation;
use crate::probe::path::{Hop, PathObservation};
use crate::probe::stun::StunObservation;
use crate::probe::tcp::AddrSource;
use crate::verdict::{Layer, Reason, Verdict};

/// What the control resolvers said about a name (looked up once per run and shared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlDns {
    pub resolvers: Vec<ControlObservation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ControlObservation {
    pub resolver: String,
    #[serde(flatten)]
    pub dns: DnsObservation,
}

/// The controls' combined view of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlView {
    /// At least one control resolver returned addresses (the union is kept).
    Exists(BTreeSet<IpAddr>),
    /// Controls answered, and none had an address: the name is gone everywhere.
    Missing(String),
    /// No control resolver answered at all.
    Unavailable,
}

impl ControlDns {
    pub fn view(&self) -> ControlView {
        let addrs: BTreeSet<IpAddr> = self
            .resolvers
            .iter()
            .flat_map(|c| c.dns.addresses())
            .collect();
        if !addrs.is_empty() {
            return ControlView::Exists(addrs);
        }
        // Only a definite "no such name / no address" counts as missing; SERVFAIL does not.
        self.resolvers
            .iter()
            .find_map(|c| {
                c.dns
                    .rcode()
                    .filter(|r| *r == "NXDOMAIN" || *r == "NOERROR")
                    .map(str::to_owned)
            })
            .map_or(ControlView::Unavailable, ControlView::Missing)
    }

    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        match self.view() {
            ControlView::Exists(a) => a,
            _ => BTreeSet::new(),
        }
    }
}

/// Everything one job observed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    /// The vantage resolver's answer; `None` when the target is an IP address.
    pub dns: Option<DnsObservation>,
    /// The control resolvers' answers for the same name.
    pub control: Option<ControlDns>,
    /// Whether the vantage resolver answered at least one canary name this run.
    pub resolver_healthy: bool,
    /// The connection steps from here (TCP, TLS, HTTP, transfer); `None` when not run.
    pub direct: Option<PathObservation>,
    /// The same fetch through the control proxy; `None` without `--control-proxy`.
    pub control_path: Option<PathObservation>,
    /// When the vantage answers differ from the controls' and the target is not fetched over
    /// TLS: a handshake with the name on port 443 of the first vantage address, whose verified
    /// certificate would prove CDN variance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<crate::probe::tls::TlsObservation>,
    /// STUN targets: the UDP step, from here and through the control proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stun: Option<StunObservation>,
    /// With `--repeat N`: the outcome of each try (`verdict` or `verdict:reason`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tries: Vec<String>,
    /// In-run references this vantage measured (`--reference` URLs, and the run's own best
    /// transfers): the baseline for throttling and freezes when no control path works.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<Reference>,
}

/// One unthrottled transfer measured in this run, from this vantage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reference {
    /// `reference:URL` (a `--reference`) or `run` (the run's best transfers so far).
    pub source: String,
    /// Its body rate (bits/s), when it carried enough to measure one.
    pub bps: Option<f64>,
    /// The most bytes (on the wire) it carried without stalling.
    pub carried: u64,
    /// Why it gives no baseline, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The baseline a verdict was judged against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BaselineUsed {
    /// `control_path`, `reference:URL` or `run`.
    pub source: String,
    pub bps: Option<f64>,
}

/// What would decide an `inconclusive` verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Needs {
    /// A (working) control path outside the network: `--control-proxy`.
    ControlPath,
    /// An unthrottled reference transfer in the same run: `--reference URL`.
    Reference,
    /// A control resolver that answers.
    ControlResolver,
}

impl Needs {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ControlPath => "control_path",
            Self::Reference => "reference",
            Self::ControlResolver => "control_resolver",
        }
    }
}

/// Wire bytes within which a stall is the TSPU-style freeze (about 16 KiB from the server,
/// handshake included; observed between ~14 and ~34 KiB): without a control path, a stall
/// here is `blocked / transfer.stall` when a reference in the same run carried past the end.
pub const FREEZE_WINDOW: std::ops::RangeInclusive<u64> = 4 * 1024..=64 * 1024;

/// Thresholds of the classifier (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Throttled when the vantage rate is below this fraction of the control's...
    pub throttle_ratio: f64,
    /// ...and below this absolute rate (bits/s).
    pub throttle_floor_bps: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            throttle_ratio: 0.25,
            throttle_floor_bps: 2_000_000.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
    /// One sentence a reader can check against the evidence.
    pub detail: String,
    /// The block-page fingerprint a `*.blockpage` (or intercepted) verdict rests on.
    pub blockpage: Option<crate::blockpage::Match>,
    /// The baseline a transfer was compared with (control path or in-run reference).
    pub baseline: Option<BaselineUsed>,
    /// For `inconclusive`: the evidence that would decide it.
    pub needs: Option<Needs>,
    pub evidence: Evidence,
}

/// What a decision leaned on besides the direct path, collected while deciding.
#[derive(Default)]
struct Notes {
    baseline: Option<BaselineUsed>,
    needs: Option<Needs>,
}

/// Private, reserved, loopback and other addresses no public name should resolve to.
pub fn is_bogon(ip: IpAddr) -> bool {
    crate::net::is_reserved(ip)
}

fn join(addrs: &BTreeSet<IpAddr>) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Classifies one (target, vantage) job. `transfer_layer` is the layer the transfer runs on
/// (`tls` for HTTPS, `http` for plain HTTP).
pub fn classify(evidence: Evidence, rules: &Rules, transfer_layer: Layer) -> Finding {
    let mut notes = Notes::default();
    let (verdict, reason, detail) = decide(&evidence, rules, transfer_layer, &mut notes);
    if verdict != Verdict::Inconclusive {
        notes.needs = None;
    }
    let blockpage = matches!(
        reason,
        Some(Reason::DnsBlockpage | Reason::HttpBlockpage | Reason::TlsCertInvalid)
    )
    .then(|| blockpage_in(&evidence))
    .flatten()
    .map(|f| f.to_match());
    Finding {
        verdict,
        reason,
        detail,
        blockpage,
        baseline: notes.baseline,
        needs: notes.needs,
        evidence,
    }
}

type Decision = (Verdict, Option<Reason>, String);

fn decide(ev: &Evidence, rules: &Rules, transfer_layer: Layer, notes: &mut Notes) -> Decision {
    use Verdict::*;
    let Some(dns) = &ev.dns else {
        return match &ev.direct {
            Some(direct) => connection(ev, direct, rules, transfer_layer, notes),
            None if ev.stun.is_some() => udp(ev.stun.as_ref().expect("checked"), notes),
            None => (
                Inconclusive,
                None,
                "target is an IP address: nothing to resolve, and no connection probe ran".into(),
            ),
        };
    };
    let control = ev
        .control
        .as_ref()
        .map_or(ControlView::Unavailable, ControlDns::view);

    if let Some(forged) = dns.injected_addresses() {
        return (
            Blocked,
            Some(Reason::DnsInjected),
            format!(
                "more than one response arrived for one query and they disagree (first: [{}], later: [{}])",
                join(&dns.addresses()),
                join(&forged)
            ),
        );
    }
    // Block-page evidence outranks everything, also "the name does not exist" from the
    // controls: an answer that is a known block-page address, or whose first page (fetched
    // from the vantage address) is a block page.
    let control_addrs = match &control {
        ControlView::Exists(a) => a.clone(),
        _ => BTreeSet::new(),
    };
    let fp = crate::blockpage::Fingerprints::builtin();
    if let Some((ip, f)) = dns
        .addresses()
        .into_iter()
        .filter(|ip| !control_addrs.contains(ip))
        .find_map(|ip| fp.match_address(ip).map(|f| (ip, f)))
    {
        return (
            Blocked,
            Some(Reason::DnsBlockpage),
            format!(
                "vantage answered {ip}, a known block-page address ({}; {})",
                f.id, f.source
            ),
        );
    }
    if !matches!(control, ControlView::Exists(_))
        && !dns.addresses().is_empty()
        && let Some(f) = ev
            .direct
            .as_ref()
            .and_then(|d| d.hops.first())
            .and_then(blockpage_of)
    {
        return (
            Blocked,
            Some(Reason::DnsBlockpage),
            format!(
                "vantage answers [{}] serve a block page ({}); the controls do not resolve the name",
                join(&dns.addresses()),
                f.id
            ),
        );
    }
    if let ControlView::Missing(rcode) = &control {
        return (
            Down,
            None,
            format!("the control resolvers have no address for the name either ({rcode})"),
        );
    }
    let vantage = dns.addresses();
    if !vantage.is_empty() {
        let ControlView::Exists(control_addrs) = &control else {
            notes.needs = Some(Needs::ControlResolver);
            return (
                Inconclusive,
                None,
                format!(
                    "vantage answered [{}] but no control resolver answered to compare",
                    join(&vantage)
                ),
            );
        };
        // On a loopback test network the controls answer loopback too; then loopback is the
        // network's ordinary address space, not a bogon.
        let control_loopback = control_addrs.iter().any(IpAddr::is_loopback);
        let bogons: BTreeSet<IpAddr> = vantage
            .iter()
            .copied()
            .filter(|ip| is_bogon(*ip) && !control_addrs.contains(ip))
            .filter(|ip| !(ip.is_loopback() && control_loopback))
            .collect();
        if !bogons.is_empty() {
            return (
                Blocked,
                Some(Reason::DnsBogon),
                format!(
                    "vantage answered reserved address(es) [{}] that the controls do not return",
                    join(&bogons)
                ),
            );
        }
        if vantage.is_disjoint(control_addrs) {
            // Like OONI and Satellite: an address that proves the name with a valid certificate
            // is CDN or geo variance; one that serves a block page is a DNS block page.
            let direct = ev.direct.as_ref();
            let first = direct.and_then(|d| d.hops.first());
            if let Some(fp) = first
                .and_then(blockpage_of)
                .filter(|_| !same_page_as_control(first, ev.control_path.as_ref()))
            {
                let name = &fp.id;
                return (
                    Blocked,
                    Some(Reason::DnsBlockpage),
                    format!(
                        "vantage answers [{}] (controls: [{}]) serve a block page ({name})",
                        join(&vantage),
                        join(control_addrs)
                    ),
                );
            }
            let verifies = |t: &crate::probe::tls::TlsObservation| t.ok && t.verified == Some(true);
            // A STUN server answering on a vantage address is that service, not a DNS lie.
            let stun_answered = ev.stun.as_ref().is_some_and(|s| {
                s.direct
                    .iter()
                    .any(|a| a.ok && a.source == AddrSource::Vantage)
            });
            let proven = first.and_then(|h| h.tls.as_ref()).is_some_and(verifies)
                || ev.consistency.as_ref().is_some_and(verifies)
                || stun_answered;
            if !proven {
                let why = if direct.is_some() {
                    " and do not present a valid certificate for the name"
                } else {
                    ""
                };
                return (
                    Blocked,
                    Some(Reason::DnsInconsistent),
                    format!(
                        "vantage answers [{}] share no address with the controls' [{}]{why}",
                        join(&vantage),
                        join(control_addrs)
                    ),
                );
            }
        }
        return match &ev.direct {
            Some(direct) => connection(ev, direct, rules, transfer_layer, notes),
            None if ev.stun.is_some() => udp(ev.stun.as_ref().expect("checked"), notes),
            None => (
                Reachable,
                None,
                format!(
                    "no DNS interference: vantage answers [{}] agree with the controls (no connection step ran; `probes` lists what did)",
                    join(&vantage)
                ),
            ),
        };
    }

    // No address from the vantage resolver: what did it say instead?
    // An error rcode speaks for the name; NODATA speaks only for its own type, so a failed
    // query of the other type decides (a lost A answer next to an empty AAAA is no NODATA).
    let (reason, what) = match (dns.rcode(), dns.failure()) {
        (Some("NXDOMAIN"), _) => (Some(Reason::DnsNxdomain), "NXDOMAIN".to_owned()),
        (Some("SERVFAIL"), _) => (Some(Reason::DnsServfail), "SERVFAIL".to_owned()),
        (Some("REFUSED"), _) => (Some(Reason::DnsRefused), "REFUSED".to_owned()),
        (Some("NOERROR"), None) => (Some(Reason::DnsNodata), "no address (NODATA)".to_owned()),
        (Some(other), None) => (None, format!("rcode {other}")),
        (_, Some(f)) => match f.kind {
            FailureKind::Timeout => (
                Some(Reason::DnsTimeout),
                "no response before the timeout".to_owned(),
            ),
            FailureKind::Reset | FailureKind::Eof => (
                Some(Reason::DnsReset),
                format!(
                    "the connection to the resolver was torn down mid-query ({})",
                    f.kind.as_str()
                ),
            ),
            other => (
                None,
                format!("query failed ({}: {})", other.as_str(), f.message),
            ),
        },
        (None, None) => (None, "no response".to_owned()),
    };
    if !ev.resolver_healthy {
        return (
            Inconclusive,
            None,
            format!("vantage resolver gave {what}, but it also failed every canary name"),
        );
    }
    match (&control, reason) {
        (ControlView::Exists(addrs), Some(reason)) => (
            Blocked,
            Some(reason),
            format!(
                "vantage resolver gave {what}; the controls resolve the name to [{}]",
                join(addrs)
            ),
        ),
        (ControlView::Exists(_), None) => (
            Inconclusive,
            None,
            format!("vantage resolver gave {what}, which is not a known censorship signature"),
        ),
        _ => {
            notes.needs = Some(Needs::ControlResolver);
            (
                Inconclusive,
                None,
                format!("vantage resolver gave {what}, and no control resolver answered"),
            )
        }
    }
}

/// The fingerprint one hop's response matches: its page, headers, URL or redirect target, or
/// the address it came from (a known block-page server).
pub fn blockpage_of(hop: &Hop) -> Option<&'static crate::blockpage::Fingerprint> {
    let http = hop.http.as_ref()?;
    let fp = Fingerprints::builtin();
    fp.match_http(http).or_else(|| {
        hop.tcp
            .iter()
            .find(|t| t.ok)
            .and_then(|t| fp.match_address(t.addr.ip()))
    })
}

/// The fingerprint a block-page verdict rests on: a vantage answer that is a block-page
/// address, else the first block-page hop of the direct fetch.
fn blockpage_in(ev: &Evidence) -> Option<&'static crate::blockpage::Fingerprint> {
    let fp = Fingerprints::builtin();
    ev.dns
        .iter()
        .flat_map(|d| d.addresses())
        .find_map(|ip| fp.match_address(ip))
        .or_else(|| ev.direct.as_ref().and_then(blockpage_hop).map(|(_, f)| f))
}

/// The first hop of a fetch that is a block page, with its fingerprint.
pub fn blockpage_hop(
    p: &PathObservation,
) -> Option<(&Hop, &'static crate::blockpage::Fingerprint)> {
    p.hops.iter().find_map(|h| blockpage_of(h).map(|f| (h, f)))
}

/// A page the control path also gets is the site's own page, never a block page (the
/// regulator's home page is titled "Роскомнадзор" on both paths): same status and title, and
/// the same body (hash) or a similar length.
fn same_page_as_control(hop: Option<&Hop>, control: Option<&PathObservation>) -> bool {
    let Some(h) = hop.and_then(|h| h.http.as_ref()) else {
        return false;
    };
    control
        .into_iter()
        .flat_map(|c| c.hops.iter())
        .filter_map(|c| c.http.as_ref())
        .any(|c| {
            let same_body = h.body_sha256.is_some() && h.body_sha256 == c.body_sha256;
            let (a, b) = (h.transfer.bytes as f64, c.transfer.bytes as f64);
            let similar = a.max(b) > 0.0 && a.min(b) / a.max(b) >= 0.9;
            h.status == c.status && h.title == c.title && (same_body || similar)
        })
}

/// Where a fetch ended.
enum Outcome<'a> {
    /// A redirect's host did not resolve through the vantage resolver.
    NoAddress(&'a Hop),
    Tcp(FailureKind),
    Tls {
        kind: FailureKind,
        decoy_ok: Option<bool>,
    },
    /// The request or the response head failed (reset, EOF, timeout).
    Http(FailureKind),
    /// The body froze after this many bytes.
    Stall(u64),
    Response(&'a HttpObservation),
    /// Connected (and handshaken, on TLS ports) with nothing more to do: an endpoint.
    Connected,
    RedirectLoop,
}

fn outcome(p: &PathObservation) -> Outcome<'_> {
    let Some(hop) = p.hops.last() else {
        return Outcome::Tcp(FailureKind::Other);
    };
    if p.redirects_exhausted {
        return Outcome::RedirectLoop;
    }
    if hop.tcp.is_empty() {
        return Outcome::NoAddress(hop);
    }
    // Only addresses the route was meant to use count (control addresses are extra evidence).
    let ours = |t: &&crate::probe::tcp::TcpAttempt| {
        t.source == AddrSource::Vantage || hop.tcp.iter().all(|x| x.source == AddrSource::Control)
    };
    if !hop.tcp.iter().filter(ours).any(|t| t.ok) {
        // A censor's signature (timeout, refusal, reset) outranks a local "no route": a v4
        // address blackholed next to a v6 one this host cannot reach is still a block.
        let rank = |k: FailureKind| match k {
            FailureKind::Timeout | FailureKind::Refused | FailureKind::Reset => 0,
            FailureKind::Eof => 1,
            _ => 2,
        };
        let kind = hop
            .tcp
            .iter()
            .filter(ours)
            .filter_map(|t| t.failure.as_ref().map(|f| f.kind))
            .min_by_key(|k| rank(*k))
            .unwrap_or(FailureKind::Other);
        return Outcome::Tcp(kind);
    }
    if let Some(tls) = &hop.tls
        && !tls.ok
    {
        // Reset before a single byte came back, for the target's SNI and the decoy alike: the
        // connection itself is being killed, whatever it carries — a TCP-level block.
        let kind = tls.failure.as_ref().map(|f| f.kind);
        let decoy_kind = hop
            .decoy_tls
            .as_ref()
            .and_then(|d| d.failure.as_ref().map(|f| f.kind));
        let resets = |k: Option<FailureKind>| matches!(k, Some(FailureKind::Reset));
        if hop.wire_bytes_in == 0 && resets(kind) && resets(decoy_kind) {
            return Outcome::Tcp(FailureKind::Reset);
        }
        return Outcome::Tls {
            kind: tls.failure.as_ref().map_or(FailureKind::Other, |f| f.kind),
            decoy_ok: hop.decoy_tls.as_ref().map(|d| d.ok),
        };
    }
    match &hop.http {
        None => Outcome::Connected,
        Some(h) => match (&h.failure, h.transfer.stalled_at) {
            (_, Some(at)) => Outcome::Stall(at),
            // A flow that goes silent is a stall, also before the response head arrives
            // (a freeze inside the first TLS record hides every plaintext byte).
            (Some(f), _) if f.kind == FailureKind::Timeout => Outcome::Stall(h.transfer.bytes),
            (Some(f), _) if h.status.is_none() => Outcome::Http(f.kind),
            (Some(f), _) => Outcome::Http(f.kind),
            (None, None) => Outcome::Response(h),
        },
    }
}

/// A certificate somewhere on the path that did not verify for its name.
fn bad_cert(p: &PathObservation) -> Option<&Hop> {
    p.hops
        .iter()
        .find(|h| h.tls.as_ref().is_some_and(|t| t.verified == Some(false)))
}

fn uses_plain_http(p: &PathObservation) -> bool {
    p.hops
        .last()
        .is_some_and(|h| h.tls.is_none() && h.http.is_some())
}

/// The control path's state, as the authority for `down` versus `blocked`.
enum Control<'a> {
    Ok(Outcome<'a>),
    /// The control path fails in a way that shows the site's own fault: the origin refuses,
    /// the proxy reports the host unreachable, the origin's TLS is broken, redirects never end,
    /// a redirect's name does not exist.
    Failed(String),
    /// The control path failed in a way that says nothing about the site (our timeout waiting
    /// on the proxy, a reset, a stall): it cannot decide, so the verdict stays open.
    Unavailable(String),
    Absent,
}

/// A connect through the proxy the proxy itself answered with a failure (SOCKS5 reply
/// "connection refused", "host unreachable", "TTL expired"): the outside view of the origin.
fn proxy_reported(hop: &Hop) -> bool {
    hop.tcp.iter().any(|t| {
        t.failure
            .as_ref()
            .is_some_and(|f| f.message.starts_with("SOCKS5 proxy:"))
    })
}

fn control_state(c: Option<&PathObservation>) -> Control<'_> {
    let Some(c) = c else { return Control::Absent };
    let last = c.hops.last();
    match outcome(c) {
        o @ (Outcome::Response(_) | Outcome::Connected) => Control::Ok(o),
        Outcome::RedirectLoop => Control::Failed("keeps redirecting".into()),
        Outcome::Tcp(k @ (FailureKind::Refused | FailureKind::Unreachable)) => {
            Control::Failed(format!("cannot connect ({})", k.as_str()))
        }
        Outcome::Tcp(k) if last.is_some_and(proxy_reported) => {
            Control::Failed(format!("cannot connect (the proxy reports {})", k.as_str()))
        }
        Outcome::Tcp(k) => Control::Unavailable(format!("cannot connect ({})", k.as_str())),
        Outcome::Tls {
            kind: kind @ FailureKind::Tls,
            ..
        } => Control::Failed(format!("TLS fails ({})", kind.as_str())),
        // A tunnel the proxy accepted and then closed before a single byte: how `ssh -D` (which
        // answers the SOCKS request before it connects) reports an origin it cannot reach.
        Outcome::Tls {
            kind: FailureKind::Eof,
            ..
        }
        | Outcome::Http(FailureKind::Eof)
            if last.is_some_and(|h| h.wire_bytes_in == 0) =>
        {
            Control::Failed(
                "is closed by the proxy before any byte (it cannot reach the origin)".into(),
            )
        }
        Outcome::Tls { kind, .. } => Control::Unavailable(format!("TLS fails ({})", kind.as_str())),
        Outcome::Http(k @ (FailureKind::Http | FailureKind::Malformed)) => {
            Control::Failed(format!("HTTP fails ({})", k.as_str()))
        }
        Outcome::Http(k) => Control::Unavailable(format!("HTTP fails ({})", k.as_str())),
        Outcome::Stall(at) => Control::Unavailable(format!("stalls at byte {at}")),
        Outcome::NoAddress(_) => Control::Failed("a redirect's host does not resolve".into()),
    }
}

/// A failure on the direct path: blocked if the control path works, down if it fails in a way
/// that is the site's own, inconclusive when there is no working control path.
fn judge(reason: Option<Reason>, what: String, c: &Control<'_>, notes: &mut Notes) -> Decision {
    match (c, reason) {
        (Control::Ok(..), Some(r)) => (
            r.verdict(),
            Some(r),
            format!("{what}; the control path reaches the target"),
        ),
        (Control::Ok(..), None) => (
            Verdict::Inconclusive,
            None,
            format!("{what}, which is not a known censorship signature; the control path works"),
        ),
        (Control::Failed(why), _) => (
            Verdict::Down,
            None,
            format!("{what}; the control path {why} too"),
        ),
        (Control::Unavailable(why), _) => {
            notes.needs = Some(Needs::ControlPath);
            (
                Verdict::Inconclusive,
                None,
                format!(
                    "{what}; the control path {why} as well, which says nothing about the site (a working control path would decide)"
                ),
            )
        }
        (Control::Absent, _) => {
            notes.needs = Some(Needs::ControlPath);
            (
                Verdict::Inconclusive,
                None,
                format!(
                    "{what}; no control path (--control-proxy) to tell censorship from an outage"
                ),
            )
        }
    }
}

/// The UDP step of a STUN target: reachable when any address answers with a Binding
/// Response; otherwise blocked only when the control path's relay gets one.
fn udp(s: &StunObservation, notes: &mut Notes) -> Decision {
    if let Some(a) = s.direct.iter().find(|a| a.ok) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "STUN Binding Response from {} in {} ms{}",
                a.server,
                a.rtt.map_or(0, |d| d.as_millis()),
                a.mapped_address
                    .map(|m| format!(" (mapped address {m})"))
                    .unwrap_or_default()
            ),
        );
    }
    let c = match (&s.control, &s.reference) {
        (Some(c), _) if c.ok => Control::Ok(Outcome::Connected),
        // The server refusing from outside too (ICMP port unreachable) is its own fault; a
        // relay that hears nothing within our timeout proves nothing about it.
        (Some(c), _) => {
            let kind = c.failure.as_ref().map(|f| f.kind);
            let why = format!(
                "gets no STUN response ({})",
                kind.map_or("no answer", FailureKind::as_str)
            );
            if matches!(kind, Some(FailureKind::Refused | FailureKind::Malformed)) {
                Control::Failed(why)
            } else {
                Control::Unavailable(why)
            }
        }
        // Another STUN server answers from here: UDP to STUN works, this one does not.
        (None, Some(r)) if r.ok => Control::Ok(Outcome::Connected),
        _ => Control::Absent,
    };
    let servers: Vec<&str> = s.direct.iter().map(|a| a.server.as_str()).collect();
    let servers = servers.join(", ");
    let invalid = s
        .direct
        .iter()
        .filter_map(|a| a.failure.as_ref())
        .find(|f| f.kind == FailureKind::Malformed);
    if let Some(f) = invalid {
        return judge(
            Some(Reason::UdpInvalid),
            format!(
                "{servers}: the answer to a STUN Binding Request is not STUN ({})",
                f.message
            ),
            &c,
            notes,
        );
    }
    let kinds: BTreeSet<&str> = s
        .direct
        .iter()
        .filter_map(|a| a.failure.as_ref().map(|f| f.kind.as_str()))
        .collect();
    // An address family this host cannot route (no IPv6) says nothing about the server; the
    // others decide.
    let kind = |a: &crate::probe::stun::StunAttempt| a.failure.as_ref().map(|f| f.kind);
    let timeouts = s
        .direct
        .iter()
        .any(|a| kind(a) == Some(FailureKind::Timeout));
    let reason = (timeouts
        && s.direct.iter().all(|a| {
            matches!(
                kind(a),
                Some(FailureKind::Timeout | FailureKind::Unreachable)
            )
        }))
    .then_some(Reason::UdpTimeout);
    let sent: u32 = s.direct.iter().map(|a| a.sent).sum();
    // Port unreachable from here (the host says nothing listens) and silence from outside:
    // the server is down, not blocked.
    let refused_here = !s.direct.is_empty()
        && s.direct
            .iter()
            .all(|a| kind(a) == Some(FailureKind::Refused));
    let c = match c {
        Control::Unavailable(why) if refused_here => Control::Failed(why),
        c => c,
    };
    judge(
        reason,
        format!(
            "{servers}: no STUN response to {sent} request(s) ({})",
            kinds.into_iter().collect::<Vec<_>>().join(", ")
        ),
        &c,
        notes,
    )
}

fn tcp_reason(k: FailureKind) -> Option<Reason> {
    match k {
        FailureKind::Timeout => Some(Reason::TcpTimeout),
        FailureKind::Refused => Some(Reason::TcpRefused),
        FailureKind::Reset | FailureKind::Eof => Some(Reason::TcpReset),
        _ => None,
    }
}

fn tls_reason(k: FailureKind) -> Option<Reason> {
    match k {
        FailureKind::Reset => Some(Reason::TlsReset),
        FailureKind::Eof => Some(Reason::TlsEof),
        FailureKind::Timeout => Some(Reason::TlsTimeout),
        _ => None,
    }
}

/// A rate says something only about a body big enough, or one cut by the timeout.
fn measurable(h: &HttpObservation) -> bool {
    h.transfer.bytes >= RATE_MIN_BYTES || h.transfer.timed_out
}

fn rate(h: &HttpObservation) -> Option<f64> {
    h.transfer.throughput_bps
}

/// The registrable domain of a URL's host (Public Suffix List), or the host itself.
fn site_of(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_ascii_lowercase();
    Some(psl::domain_str(&host).map(str::to_owned).unwrap_or(host))
}

/// A plain-HTTP fetch redirected to another site (registrable domain): without a control to
/// compare, an ISP's HTTPS stub looks like any verified page, so it is `inconclusive`; with a
/// control path that does not go there, `http.diff`.
fn offsite_redirect(
    direct: &PathObservation,
    control: Option<&PathObservation>,
) -> Option<Decision> {
    let first = direct.hops.first()?;
    if first.tls.is_some() || direct.hops.len() < 2 {
        return None;
    }
    let home = site_of(&first.url)?;
    let away = direct
        .hops
        .iter()
        .skip(1)
        .find(|h| site_of(&h.url).is_some_and(|s| s != home))?;
    let there = site_of(&away.url)?;
    let control_goes_there = control.is_some_and(|c| {
        c.hops
            .iter()
            .any(|h| site_of(&h.url).as_deref() == Some(there.as_str()))
    });
    let control_answered = control.is_some_and(|c| {
        c.hops
            .last()
            .and_then(|h| h.http.as_ref())
            .is_some_and(|h| h.status.is_some())
    });
    if control_goes_there {
        return None;
    }
    Some(if control_answered {
        (
            Verdict::Blocked,
            Some(Reason::HttpDiff),
            format!(
                "{}: plain HTTP redirected off-site to {}, which the control path does not",
                first.url, away.url
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            None,
            format!(
                "{}: plain HTTP redirected off-site to {} and no control path to compare (a known block page would have been named)",
                first.url, away.url
            ),
        )
    })
}

/// A verified (or plain-HTTP) response's rate, with no working control path, against the
/// run's own references: `None` when the body is too small to say or the rate is above the
/// floor (nothing to decide); otherwise throttled, comparable (reachable), or inconclusive for
/// want of a reference.
fn rate_vs_baseline(
    ev: &Evidence,
    h: &HttpObservation,
    rules: &Rules,
    layer: Layer,
    what: &str,
    notes: &mut Notes,
) -> Option<Decision> {
    let v = rate(h).filter(|v| measurable(h) && *v < rules.throttle_floor_bps)?;
    let url = &h.url;
    let best = ev
        .baseline
        .iter()
        .filter_map(|r| r.bps.map(|b| (r, b)))
        .max_by(|x, y| x.1.total_cmp(&y.1));
    let Some((r, b)) = best else {
        notes.needs = Some(Needs::Reference);
        return Some((
            Verdict::Inconclusive,
            None,
            format!(
                "{what}, but only {:.0} kbit/s, and neither a control path nor an in-run reference to compare (--reference URL of a large domestic object would decide)",
                v / 1000.0
            ),
        ));
    };
    notes.baseline = Some(BaselineUsed {
        source: r.source.clone(),
        bps: Some(b),
    });
    Some(if v < rules.throttle_ratio * b {
        (
            Verdict::Throttled,
            Some(Reason::TransferSlow(layer)),
            format!(
                "{url}: {:.0} kbit/s here against {:.0} kbit/s for {} from here in this run",
                v / 1000.0,
                b / 1000.0,
                r.source
            ),
        )
    } else {
        (
            Verdict::Reachable,
            None,
            format!(
                "{what}; {:.0} kbit/s, comparable to {:.0} kbit/s for {} from here",
                v / 1000.0,
                b / 1000.0,
                r.source
            ),
        )
    })
}

/// Bodies this small say nothing about throughput.
pub const RATE_MIN_BYTES: u64 = 64 * 1024;

fn connection(
    ev: &Evidence,
    direct: &PathObservation,
    rules: &Rules,
    layer: Layer,
    notes: &mut Notes,
) -> Decision {
    use Verdict::*;
    let control = ev.control_path.as_ref();
    let c = control_state(control);
    // A block page anywhere on the path (a redirect to a stub host counts even when the stub
    // itself cannot be fetched), unless the control path gets the same page.
    if let Some((hop, fp)) = blockpage_hop(direct)
        && !same_page_as_control(Some(hop), control)
        && bad_cert(direct).is_none()
    {
        return (
            Blocked,
            Some(Reason::HttpBlockpage),
            format!(
                "{}: {} is a block page ({})",
                direct.hops.first().map_or("", |h| h.url.as_str()),
                if std::ptr::eq(hop, &direct.hops[0]) {
                    "the response".to_owned()
                } else {
                    format!("the hop {}", hop.url)
                },
                fp.id
            ),
        );
    }
    if let Some(hop) = bad_cert(direct) {
        let err = hop
            .tls
            .as_ref()
            .and_then(|t| t.cert_error.clone())
            .unwrap_or_default();
        if let Some(name) = blockpage_of(hop).map(|f| &f.id) {
            return (
                Blocked,
                Some(Reason::TlsCertInvalid),
                format!(
                    "{}: certificate does not verify ({err}) and the page is a block page ({name})",
                    hop.url
                ),
            );
        }
        let control_cert = control.and_then(bad_cert);
        return match (&c, control_cert) {
            (Control::Ok(..), None) => (
                Blocked,
                Some(Reason::TlsCertInvalid),
                format!(
                    "{}: certificate does not verify ({err}); through the control path it does",
                    hop.url
                ),
            ),
            // The origin's own certificate, seen from outside too.
            (_, Some(_)) => (
                Down,
                None,
                format!(
                    "{}: the origin's certificate does not verify on either path ({err})",
                    hop.url
                ),
            ),
            _ => {
                notes.needs = Some(Needs::ControlPath);
                (
                    Inconclusive,
                    None,
                    format!(
                        "{}: certificate does not verify ({err}); no working control path to compare",
                        hop.url
                    ),
                )
            }
        };
    }
    let url = direct.hops.last().map_or("", |h| h.url.as_str());
    match outcome(direct) {
        Outcome::NoAddress(hop) => {
            let rcode = hop
                .dns
                .as_ref()
                .and_then(|d| d.rcode())
                .unwrap_or("no answer");
            let reason = match rcode {
                "NXDOMAIN" => Some(Reason::DnsNxdomain),
                "NOERROR" => Some(Reason::DnsNodata),
                "SERVFAIL" => Some(Reason::DnsServfail),
                "REFUSED" => Some(Reason::DnsRefused),
                _ => Some(Reason::DnsTimeout),
            };
            judge(
                reason,
                format!("redirect to {url}: the vantage resolver gave {rcode}"),
                &c,
                notes,
            )
        }
        Outcome::Tcp(k) => judge(
            tcp_reason(k),
            format!("{url}: TCP fails on every vantage address ({})", k.as_str()),
            &c,
            notes,
        ),
        Outcome::Tls { kind, decoy_ok } => {
            let what = format!(
                "{url}: TLS handshake with the target's SNI fails ({})",
                kind.as_str()
            );
            if decoy_ok == Some(true) {
                let reason = tls_reason(kind).unwrap_or(Reason::TlsReset);
                return (
                    Blocked,
                    Some(reason),
                    format!(
                        "{what}, while a decoy SNI on the same address succeeds: the filter is keyed on the name"
                    ),
                );
            }
            let what = if decoy_ok == Some(false) {
                format!("{what}, and so does a decoy SNI (an IP-level problem)")
            } else {
                what
            };
            judge(tls_reason(kind), what, &c, notes)
        }
        Outcome::Http(k) => {
            let what = format!("{url}: the HTTP exchange fails ({})", k.as_str());
            // Reset before any byte: a GET with the decoy Host on the same address tells a
            // filter keyed on the name from one that resets every connection to the address.
            let decoy = direct.hops.last().and_then(|h| h.decoy_http.as_ref());
            match decoy {
                Some(d) if d.status.is_some() => (
                    Blocked,
                    Some(Reason::HttpReset),
                    format!(
                        "{what}, while the same request with a decoy Host on the same address gets an answer: the filter is keyed on the name"
                    ),
                ),
                Some(d)
                    if d.failure.as_ref().is_some_and(|f| {
                        matches!(f.kind, FailureKind::Reset | FailureKind::Eof)
                    }) =>
                {
                    judge(
                        Some(Reason::TcpReset),
                        format!(
                            "{what} before any byte, for the decoy Host too (an address-level reset)"
                        ),
                        &c,
                        notes,
                    )
                }
                _ => judge(Some(Reason::HttpReset), what, &c, notes),
            }
        }
        Outcome::Stall(at) => {
            let wire = direct.hops.last().map_or(0, |h| h.wire_bytes_in);
            let what = format!(
                "{url}: the transfer froze after {at} body bytes ({wire} bytes on the wire)"
            );
            if matches!(c, Control::Ok(..) | Control::Failed(_)) {
                return judge(Some(Reason::TransferStall(layer)), what, &c, notes);
            }
            // No working control path: a freeze inside the TSPU window, while a reference in
            // this run carried well past it from here, is the freeze.
            let past = ev
                .baseline
                .iter()
                .filter(|r| r.carried > *FREEZE_WINDOW.end())
                .max_by_key(|r| r.carried);
            match past {
                Some(r) if FREEZE_WINDOW.contains(&wire) => {
                    notes.baseline = Some(BaselineUsed {
                        source: r.source.clone(),
                        bps: r.bps,
                    });
                    (
                        Blocked,
                        Some(Reason::TransferStall(layer)),
                        format!(
                            "{what}, inside the freeze window ({}-{} KiB), while {} carried {} bytes from here in this run",
                            FREEZE_WINDOW.start() / 1024,
                            FREEZE_WINDOW.end() / 1024,
                            r.source,
                            r.carried
                        ),
                    )
                }
                _ if FREEZE_WINDOW.contains(&wire) => {
                    let d = judge(Some(Reason::TransferStall(layer)), what, &c, notes);
                    notes.needs = Some(Needs::Reference);
                    (
                        d.0,
                        d.1,
                        format!(
                            "{}; no transfer in this run carried past {} KiB from here (--reference URL of a large domestic object would decide)",
                            d.2,
                            FREEZE_WINDOW.end() / 1024
                        ),
                    )
                }
                _ => judge(Some(Reason::TransferStall(layer)), what, &c, notes),
            }
        }
        Outcome::RedirectLoop => match c {
            Control::Failed(_) => (
                Down,
                None,
                format!("{url}: redirects never end, on both paths"),
            ),
            Control::Ok(..) => (
                Blocked,
                Some(Reason::HttpDiff),
                format!("{url}: redirects never end here, but do through the control path"),
            ),
            Control::Unavailable(_) | Control::Absent => {
                notes.needs = Some(Needs::ControlPath);
                (
                    Inconclusive,
                    None,
                    format!("{url}: redirects never end; no working control path to compare"),
                )
            }
        },
        Outcome::Connected => (Reachable, None, format!("{url}: connected")),
        Outcome::Response(h) => {
            if let Some(d) = offsite_redirect(direct, control) {
                if d.0 == Inconclusive {
                    notes.needs = Some(Needs::ControlPath);
                }
                return d;
            }
            let status = h.status.unwrap_or(0);
            match &c {
                Control::Ok(Outcome::Response(ch)) => {
                    // Lengths compare only when both bodies ended the same way (both complete or
                    // both capped); a slow transfer cut by the timeout is judged on its rate.
                    let (a, b) = (h.transfer.bytes as f64, ch.transfer.bytes as f64);
                    let comparable = (h.transfer.complete && ch.transfer.complete)
                        || (h.transfer.capped && ch.transfer.capped);
                    let ratio = if !comparable || a.max(b) == 0.0 {
                        1.0
                    } else {
                        a.min(b) / a.max(b)
                    };
                    let same_title = match (&h.title, &ch.title) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    };
                    if h.status != ch.status || !same_title || ratio < 0.7 {
                        return (
                            Blocked,
                            Some(Reason::HttpDiff),
                            format!(
                                "{url}: the answer differs from the control's (status {status} vs {}, title {:?} vs {:?}, body {} vs {} bytes)",
                                ch.status.unwrap_or(0),
                                h.title,
                                ch.title,
                                h.transfer.bytes,
                                ch.transfer.bytes
                            ),
                        );
                    }
                    if let (Some(v), Some(cr)) = (rate(h), rate(ch))
                        && measurable(h)
                    {
                        notes.baseline = Some(BaselineUsed {
                            source: "control_path".into(),
                            bps: Some(cr),
                        });
                        if v < rules.throttle_ratio * cr && v < rules.throttle_floor_bps {
                            return (
                                Throttled,
                                Some(Reason::TransferSlow(layer)),
                                format!(
                                    "{url}: {:.0} kbit/s here against {:.0} kbit/s through the control path",
                                    v / 1000.0,
                                    cr / 1000.0
                                ),
                            );
                        }
                    }
                    (
                        Reachable,
                        None,
                        format!(
                            "{url}: status {status}, the same answer as through the control path"
                        ),
                    )
                }
                _ if !uses_plain_http(direct) => {
                    let verified = format!("{url}: status {status} over a verified TLS connection");
                    rate_vs_baseline(ev, h, rules, layer, &verified, notes)
                        .unwrap_or((Reachable, None, verified))
                }
                // Plain HTTP is unauthenticated, but a slow transfer is slow whatever it
                // carries: the rate against an in-run reference still decides throttling.
                _ => {
                    let mut rated = Notes::default();
                    if let Some(d @ (Throttled, ..)) =
                        rate_vs_baseline(ev, h, rules, layer, url, &mut rated)
                    {
                        *notes = rated;
                        return d;
                    }
                    notes.needs = Some(Needs::ControlPath);
                    let why = match &c {
                        Control::Failed(w) | Control::Unavailable(w) => {
                            format!("; the control path {w}")
                        }
                        _ => ", with no control path to compare".to_owned(),
                    };
                    (
                        Inconclusive,
                        None,
                        format!("{url}: plain-HTTP status {status}, unauthenticated{why}"),
                    )
                }
            }
        }
    }
}

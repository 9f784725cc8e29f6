//! The classifier: a pure function from a job's evidence to a finding. No sockets, no clocks;
//! table-tested row by row (tests/e2e/classify*.rs) against the rules of `docs/reasons.md`.
//!
//! One dispatch ([`classify`]): the DNS layer first ([`dns`]), then the connection step by
//! its kind (one module per [`Conn`] variant). A new probe adds a variant and a module.

mod dns;
mod echo;
mod media;
mod obfs4;
mod openvpn;
mod path;
mod quic;
mod shadowsocks;
mod stun;
mod tor;
mod wireguard;

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::probe::dns::{DnsObservation, Rcode};
use crate::probe::path::PathObservation;
use crate::probe::stun::StunObservation;
use crate::probe::tcp::AddrSource;
use crate::verdict::{Layer, Reason, Verdict};

pub use path::{RATE_MIN_BYTES, blockpage_hop, blockpage_of};

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
    Missing(Rcode),
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
                    .filter(|r| matches!(r, Rcode::NxDomain | Rcode::NoError))
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
#[derive(Clone, Debug, PartialEq)]
pub struct Evidence {
    /// The vantage resolver's answer; `None` when the target is an IP address.
    pub dns: Option<DnsObservation>,
    /// The control resolvers' answers for the same name, shared with the run's control cache
    /// (every job of a name and every try holds the same answers, not a copy).
    pub control: Option<std::sync::Arc<ControlDns>>,
    /// Whether the vantage resolver answered at least one canary name this run.
    pub resolver_healthy: bool,
    /// The connection step, by kind; `None` when none ran (DNS only, or nowhere to connect).
    pub conn: Option<Conn>,
    /// With `--repeat N`: the outcome of each try.
    pub tries: Vec<Try>,
    /// In-run references this vantage measured (`--reference` URLs, and the run's own best
    /// transfers): the baseline for throttling and freezes when no control path works.
    pub baseline: Vec<Reference>,
}

/// The connection step of a job: one variant per kind of probe, each with its own evidence
/// and its own classifier module.
#[derive(Clone, Debug, PartialEq)]
pub enum Conn {
    /// TCP → TLS → HTTP(S) with redirects ([`path`]).
    Path(PathEvidence),
    /// A STUN Binding exchange over UDP ([`stun`]).
    Stun(StunObservation),
    /// An HTTP/3 GET over QUIC ([`quic`]).
    Quic(crate::probe::quic::QuicObservation),
    /// Protocol-shaped datagrams and random controls to an echo server ([`echo`]).
    Echo(crate::probe::echo::EchoObservation),
    /// OpenVPN's hard reset ([`openvpn`]).
    Openvpn(crate::probe::openvpn::OpenvpnObservation),
    /// A WireGuard handshake ([`wireguard`]).
    Wireguard(crate::probe::wireguard::WireguardObservation),
    /// A Tor relay's link handshake ([`tor`]).
    Tor(crate::probe::tor::TorObservation),
    /// A Shadowsocks tunnel ([`shadowsocks`]).
    Shadowsocks(crate::probe::shadowsocks::ShadowsocksObservation),
    /// obfs4's handshake ([`obfs4`]).
    Obfs4(crate::probe::obfs4::Obfs4Observation),
    /// A call-shaped stream and its random control ([`media`]).
    Media(crate::probe::media::MediaObservation),
}

/// The evidence of a fetch (TCP, TLS, HTTP, transfer).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PathEvidence {
    /// The fetch from here.
    pub direct: PathObservation,
    /// The same fetch through the control proxy; `None` without `--control-proxy`.
    pub control_path: Option<PathObservation>,
    /// When the vantage answers differ from the controls' and the target is not fetched over
    /// TLS: a handshake with the name on port 443 of the first vantage address, whose verified
    /// certificate would prove CDN variance.
    pub consistency: Option<crate::probe::tls::TlsObservation>,
}

impl Conn {
    /// The fetch from here, for a path.
    pub fn direct(&self) -> Option<&PathObservation> {
        match self {
            Self::Path(p) => Some(&p.direct),
            Self::Stun(_)
            | Self::Quic(_)
            | Self::Echo(_)
            | Self::Openvpn(_)
            | Self::Wireguard(_)
            | Self::Tor(_)
            | Self::Shadowsocks(_)
            | Self::Obfs4(_)
            | Self::Media(_) => None,
        }
    }

    /// Whether the connection proves a vantage address serves the name (a certificate that
    /// verifies for it, a STUN server answering on it): CDN variance, not a DNS lie.
    fn proves_name(&self) -> bool {
        let verifies = |t: &crate::probe::tls::TlsObservation| t.ok && t.verified == Some(true);
        match self {
            Self::Path(p) => {
                p.direct
                    .hops
                    .first()
                    .and_then(|h| h.tls.as_ref())
                    .is_some_and(verifies)
                    || p.consistency.as_ref().is_some_and(verifies)
            }
            Self::Stun(s) => s
                .direct
                .iter()
                .any(|a| a.ok && a.source == AddrSource::Vantage),
            Self::Quic(q) => q
                .direct
                .iter()
                .any(|a| a.verified == Some(true) && a.source == AddrSource::Vantage),
            // Our own echo server answering proves the address is it.
            Self::Echo(e) => e.direct.iter().any(crate::probe::echo::EchoRun::answered),
            Self::Openvpn(o) => o
                .direct
                .iter()
                .any(crate::probe::openvpn::OpenvpnAttempt::answered),
            Self::Wireguard(w) => w.direct.iter().any(|a| a.answered),
            Self::Tor(t) => t.direct.iter().any(crate::probe::tor::TorAttempt::answered),
            Self::Shadowsocks(s) => s.direct.iter().any(|a| a.answered()),
            Self::Obfs4(o) => o.direct.iter().any(|a| a.answered()),
            Self::Media(m) => m.direct.iter().any(crate::probe::media::MediaRun::answered),
        }
    }

    /// The probe steps that ran (for the report's `probes` column).
    pub fn steps(&self, out: &mut Vec<&'static str>) {
        match self {
            Self::Path(p) => {
                let hops = &p.direct.hops;
                if hops.iter().any(|h| !h.tcp.is_empty()) {
                    out.push("tcp");
                }
                if hops.iter().any(|h| h.tls.is_some()) || p.consistency.is_some() {
                    out.push("tls");
                }
                if hops.iter().any(|h| h.http.is_some()) {
                    out.push("http");
                }
            }
            Self::Stun(_) => out.push("udp"),
            Self::Quic(_) => out.push("quic"),
            Self::Echo(_) => out.push("udp"),
            Self::Media(_) => out.push("media"),
            Self::Tor(t) => {
                if t.direct.iter().any(|a| a.tls.is_some()) {
                    out.push("tls");
                }
                out.push("vpn");
            }
            Self::Openvpn(_) | Self::Wireguard(_) | Self::Shadowsocks(_) | Self::Obfs4(_) => {
                out.push("vpn");
            }
        }
    }
}

impl Evidence {
    /// The fetch from here, when the connection step was a path.
    pub fn direct(&self) -> Option<&PathObservation> {
        self.conn.as_ref().and_then(Conn::direct)
    }

    /// The fetch through the control proxy, when there was one.
    pub fn control_path(&self) -> Option<&PathObservation> {
        match &self.conn {
            Some(Conn::Path(p)) => p.control_path.as_ref(),
            _ => None,
        }
    }
}

/// The report keeps the schema-5 shape: `direct`, `control_path` (null when absent), then
/// `consistency` and `stun` when present.
impl Serialize for Evidence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("dns", &self.dns)?;
        m.serialize_entry("control", &self.control.as_deref())?;
        m.serialize_entry("resolver_healthy", &self.resolver_healthy)?;
        m.serialize_entry("direct", &self.direct())?;
        m.serialize_entry("control_path", &self.control_path())?;
        match &self.conn {
            Some(Conn::Path(p)) => {
                if let Some(c) = &p.consistency {
                    m.serialize_entry("consistency", c)?;
                }
            }
            Some(Conn::Stun(st)) => m.serialize_entry("stun", st)?,
            Some(Conn::Quic(q)) => m.serialize_entry("quic", q)?,
            Some(Conn::Echo(e)) => m.serialize_entry("echo", e)?,
            Some(Conn::Openvpn(o)) => m.serialize_entry("openvpn", o)?,
            Some(Conn::Wireguard(w)) => m.serialize_entry("wireguard", w)?,
            Some(Conn::Tor(t)) => m.serialize_entry("tor", t)?,
            Some(Conn::Shadowsocks(s)) => m.serialize_entry("shadowsocks", s)?,
            Some(Conn::Obfs4(o)) => m.serialize_entry("obfs4", o)?,
            Some(Conn::Media(x)) => m.serialize_entry("media", x)?,
            None => {}
        }
        if !self.tries.is_empty() {
            m.serialize_entry("tries", &self.tries)?;
        }
        if !self.baseline.is_empty() {
            m.serialize_entry("baseline", &self.baseline)?;
        }
        m.end()
    }
}

/// The outcome of one try of a job (`--repeat`): written `verdict` or `verdict:reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Try {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
}

impl std::fmt::Display for Try {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason {
            Some(r) => write!(f, "{}:{}", self.verdict.as_str(), r.as_str()),
            None => f.write_str(self.verdict.as_str()),
        }
    }
}

impl Serialize for Try {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
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
    let (verdict, reason, detail) = dns::decide(&evidence, rules, transfer_layer, &mut notes);
    if verdict != Verdict::Inconclusive {
        notes.needs = None;
    }
    let blockpage = matches!(
        reason,
        Some(Reason::DnsBlockpage | Reason::HttpBlockpage | Reason::TlsCertInvalid)
    )
    .then(|| path::blockpage_in(&evidence))
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

/// The connection step's decision, by kind: the one place a probe's classifier is chosen.
fn connection(ev: &Evidence, rules: &Rules, layer: Layer, notes: &mut Notes) -> Option<Decision> {
    Some(match ev.conn.as_ref()? {
        Conn::Path(p) => path::decide(ev, p, rules, layer, notes),
        Conn::Stun(s) => stun::decide(s, notes),
        Conn::Quic(q) => quic::decide(q, notes),
        Conn::Echo(e) => echo::decide(e, notes),
        Conn::Openvpn(o) => openvpn::decide(o, notes),
        Conn::Wireguard(w) => wireguard::decide(w, notes),
        Conn::Tor(t) => tor::decide(t, notes),
        Conn::Shadowsocks(s) => shadowsocks::decide(s, notes),
        Conn::Obfs4(o) => obfs4::decide(o, notes),
        Conn::Media(m) => media::decide(m, &m.options, notes),
    })
}

/// What the handshake classifiers (OpenVPN, Tor, Shadowsocks, obfs4) read of an attempt.
pub(crate) trait Handshake {
    fn server(&self) -> &str;
    fn phase(&self) -> crate::probe::Phase;
    fn failure(&self) -> Option<&crate::probe::failure::Failure>;
}

macro_rules! handshake_attempt {
    ($($t:ty),*) => {$(
        impl Handshake for $t {
            fn server(&self) -> &str {
                &self.server
            }
            fn phase(&self) -> crate::probe::Phase {
                self.phase
            }
            fn failure(&self) -> Option<&crate::probe::failure::Failure> {
                self.failure.as_ref()
            }
        }
    )*};
}

handshake_attempt!(
    crate::probe::openvpn::OpenvpnAttempt,
    crate::probe::tor::TorAttempt,
    crate::probe::shadowsocks::ShadowsocksAttempt,
    crate::probe::obfs4::Obfs4Attempt
);

/// The control path of a handshake probe as far as the shared rules go: absent, answered, not
/// set up (the proxy's own failure), or the proxy reporting the server refused or unreachable
/// (the server's fault). `Err` hands the attempt and its failure's message to the protocol's
/// own rules.
fn handshake_control<A: Handshake>(c: Option<&A>) -> Result<Control<'static>, (&A, &str)> {
    use crate::probe::Phase;
    let Some(c) = c else {
        return Ok(Control::Absent);
    };
    if c.phase() == Phase::Answered {
        return Ok(Control::Ok(None));
    }
    let message = c.failure().map_or("", |f| f.message.as_str());
    if let Some(why) = message.strip_prefix(crate::probe::socks::PROXY_SETUP) {
        return Ok(Control::Unavailable(format!("cannot be set up ({why})")));
    }
    if c.phase() == Phase::Connect && message.contains("SOCKS5 proxy:") {
        let k = c.failure().map_or("a failure", |f| f.kind.as_str());
        return Ok(Control::Failed(format!(
            "cannot connect (the proxy reports {k})"
        )));
    }
    Err((c, message))
}

/// Nothing answered here: the servers tried (joined) and the first attempt — or the decision
/// when there was nothing to try or every TCP connection to `what` failed.
fn handshake_failed<'a, A: Handshake>(
    direct: &'a [A],
    what: &str,
    c: &Control<'_>,
    notes: &mut Notes,
) -> Result<(String, &'a A), Decision> {
    let servers = direct
        .iter()
        .map(Handshake::server)
        .collect::<Vec<_>>()
        .join(", ");
    let Some(first) = direct.first() else {
        return Err(judge(None, "no address to try".into(), c, notes));
    };
    if direct
        .iter()
        .all(|a| a.phase() == crate::probe::Phase::Connect)
    {
        let k = first
            .failure()
            .map_or(crate::probe::failure::FailureKind::Other, |f| f.kind);
        return Err(connect_failed(&servers, k, what, c, notes));
    }
    Ok((servers, first))
}

/// Every attempt's TCP connection failed: a TCP-level verdict (handshake probes).
fn connect_failed(
    servers: &str,
    kind: crate::probe::failure::FailureKind,
    what: &str,
    c: &Control<'_>,
    notes: &mut Notes,
) -> Decision {
    judge(
        path::tcp_reason(kind),
        format!("{servers}: TCP to {what} fails ({})", kind.as_str()),
        c,
        notes,
    )
}

/// The control path's state, as the authority for `down` versus `blocked`.
enum Control<'a> {
    /// The control path works; its final response, when it got one.
    Ok(Option<&'a crate::probe::http::HttpObservation>),
    /// The control path fails in a way that shows the site's own fault: the origin refuses,
    /// the proxy reports the host unreachable, the origin's TLS is broken, redirects never end,
    /// a redirect's name does not exist.
    Failed(String),
    /// The control path failed in a way that says nothing about the site (our timeout waiting
    /// on the proxy, a reset, a stall): it cannot decide, so the verdict stays open.
    Unavailable(String),
    Absent,
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

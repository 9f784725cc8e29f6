//! Scenario files: which names the mock network serves, how its ISP resolver lies about each,
//! and the verdict a scan is expected to reach. Format: `docs/mocknet.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::mocknet::dns::{Behaviour, Zone};
use crate::suite::Suite;
use crate::target::{Host, Scheme, Target, TargetKind};
use crate::verdict::{Layer, Reason, Verdict};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Every name not listed resolves (truthfully, at both resolvers) to 127.0.0.1 when true;
    /// otherwise it is NXDOMAIN everywhere. Benchmarks use the wildcard.
    #[serde(default)]
    pub wildcard: bool,
    /// Bundled suites (or suite files) whose every target the network serves, reachable
    /// unless a `[[target]]` with the same text says otherwise. The scan uses `--suite` and
    /// `--connect-to` to reach them at their real names, addresses and ports.
    #[serde(default)]
    pub suites: Vec<String>,
    /// A domestic name the network serves uncensored with a large object (`/big`), given to
    /// the scan as `--reference`: the in-run baseline for throttling and freezes when the scan
    /// has no control path.
    #[serde(default)]
    pub reference: Option<String>,
    /// What the resolvers do with the canary name: `answer` (default, both resolve it),
    /// `missing` (neither does: a closed network), `vantage-fails` (only the control does).
    #[serde(default)]
    pub canary: CanaryMode,
    #[serde(default, rename = "target")]
    pub targets: Vec<ScenarioTarget>,
    /// The network's regime and the regime check's references (issue 17).
    #[serde(default)]
    pub regime: Option<RegimeSpec>,
}

/// `[regime]`: the names the scan's regime check uses, and whether the network is in a
/// whitelist regime (only `allowlisted` destinations work: every other target's TCP handshake
/// completes, then what the client sends is dropped; its UDP is dropped).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeSpec {
    /// Allow-list candidates (scenario targets' names).
    pub allowlisted: Vec<String>,
    /// Foreign references (scenario targets' names).
    pub foreign: Vec<String>,
    /// The network is in a whitelist regime.
    #[serde(default)]
    pub whitelist: bool,
    /// The whitelist checks the SNI too: a listed address takes only listed names.
    #[serde(default)]
    pub sni: bool,
    /// The regime `--check` expects (`open`, `whitelist`, `offline`, `unknown`).
    pub expect: Option<String>,
}

impl RegimeSpec {
    /// Whether `host` is allow-listed while the whitelist is on (always, when it is off).
    pub fn allows(&self, host: &str) -> bool {
        !self.whitelist
            || self
                .allowlisted
                .iter()
                .any(|a| a.eq_ignore_ascii_case(host))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryMode {
    #[default]
    Answer,
    Missing,
    VantageFails,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// The control proxy takes the CONNECT for this target and never answers.
    Timeout,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTarget {
    /// The target. A bare domain is scanned as a URL with the mock network's port; any other
    /// form (URL, `host:port`, `stun://`) is scanned as written, through `--connect-to`.
    pub target: String,
    /// What the ISP resolver does for it.
    #[serde(default)]
    pub dns: DnsMode,
    /// `https` (default) or `http`.
    #[serde(default)]
    pub scheme: SchemeMode,
    /// Path of the URL the scan fetches (`/big` serves 256 KiB).
    #[serde(default = "root")]
    pub path: String,
    /// What the censor does to TCP connections.
    #[serde(default)]
    pub tcp: Option<TcpMode>,
    /// What the censor does to TLS handshakes for this name.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// What the censor does to plain HTTP.
    #[serde(default)]
    pub http: Option<HttpMode>,
    /// Freeze the flow towards the client after this many bytes (the "16 KB freeze").
    #[serde(default)]
    pub freeze: Option<u64>,
    /// Throttle the flow towards the client to this many bytes per second.
    #[serde(default)]
    pub throttle: Option<u64>,
    /// Freeze the flow towards the server after this many bytes (an upload freeze).
    #[serde(default)]
    pub freeze_upload: Option<u64>,
    /// `down`: the origin itself refuses connections (on every path).
    #[serde(default)]
    pub origin: Option<OriginMode>,
    /// STUN targets: what the censor does to the Binding Requests.
    #[serde(default)]
    pub udp: Option<UdpMode>,
    /// Echo targets (`echo://`): the protocol shapes the censor drops (`wireguard`, `openvpn`,
    /// `quic`, `stun`).
    #[serde(default)]
    pub shapes: Vec<String>,
    /// Media targets (`media://`): what the censor does to call-shaped flows (STUN, then RTP):
    /// `throttle` (10 packets/s get through), `cut` (dead 1 s after the call starts), `block`
    /// (nothing gets through), or `lossy` (every third datagram of *every* flow dropped: a bad
    /// path, not a censor).
    #[serde(default)]
    pub media: Option<MediaMode>,
    /// OpenVPN targets (`openvpn://`): `drop` swallows the hard reset (UDP: by signature; TCP:
    /// the client's data), `reset` resets TCP after the first packet, `tls-auth` makes the
    /// server itself silent to an unwrapped reset (no censor). Tor targets (`tor://`): `drop`
    /// swallows the ClientHello, `reset` resets after it, `reset-tor-tls` resets only a ClientHello
    /// whose SNI has Tor's shape (a decoy handshake passes).
    #[serde(default)]
    pub vpn: Option<VpnMode>,
    /// QUIC targets (`quic://`): what the censor does to their UDP.
    #[serde(default)]
    pub quic: Option<QuicMode>,
    /// What the control proxy does for this target (`timeout`: never answers).
    #[serde(default)]
    pub proxy: Option<ProxyMode>,
    #[serde(default)]
    pub note: String,
    pub expect: Expect,
    /// The verdict a scan without a control path must reach (default: `expect`).
    #[serde(default)]
    pub expect_no_proxy: Option<Expect>,
}

fn root() -> String {
    "/".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemeMode {
    #[default]
    Https,
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpMode {
    /// Connects hang (SYNs dropped).
    Drop,
    /// Connects are refused.
    Refuse,
    /// Connects succeed, then the connection is reset before any byte.
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// RST after the ClientHello carrying this name.
    Reset,
    /// Swallow the ClientHello, answer nothing.
    Silence,
    /// Answer the handshake with an untrusted certificate and serve a block page.
    Intercept,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// Answer plain-HTTP requests with a block page.
    Blockpage,
    /// Reset plain-HTTP requests whose Host is the target's (others pass).
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginMode {
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpMode {
    /// Swallow the requests (the UDP-drop of call blocking).
    Drop,
    /// Answer with bytes that are not STUN.
    Garbage,
}

/// What the mock censor does to a `media://` target's call-shaped flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    Throttle,
    Cut,
    Block,
    Lossy,
}

/// What happens to an `openvpn://` or `tor://` target's handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VpnMode {
    Drop,
    Reset,
    TlsAuth,
    /// Tor only: reset ClientHellos whose SNI has Tor's shape; a decoy SNI passes.
    ResetTorTls,
    /// WireGuard only: flows cut after their handshake (two data packets through).
    Cut,
}

/// What the censor does to a `quic://` target's datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuicMode {
    /// Every datagram to the address (a blocked address).
    Drop,
    /// QUIC v1 long-header packets only (the version-negotiation ping passes).
    DropV1,
    /// Flows whose Initial carries the target's SNI (decrypted from the Initial).
    DropSni,
}

/// The ISP resolver's behaviour for one name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    /// The truth, as the control resolver says it.
    #[default]
    Answer,
    Nxdomain,
    Nodata,
    Servfail,
    Refused,
    /// Hold the query, never answer.
    Timeout,
    /// Tear down TCP/DoT/DoH connections (silence over UDP).
    Reset,
    /// Answer a private address.
    Bogon,
    /// A forged UDP answer racing the real one.
    Inject,
    /// A public-looking address that is not the name's.
    Lie,
    /// The name does not exist anywhere (control included): the target is down.
    Missing,
    /// Answer the address of the ISP's block-page server.
    Blockpage,
    /// Answer the block-page server's address for a name that exists nowhere (the controls
    /// say NXDOMAIN): ghost censorship of a dead domain.
    Ghost,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub verdict: String,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Expect {
    /// The expectation as values (checked when the scenario was loaded).
    pub fn typed(&self, transfer_layer: Layer) -> anyhow::Result<(Verdict, Option<Reason>)> {
        let verdict = self
            .verdict
            .parse::<Verdict>()
            .map_err(anyhow::Error::msg)?;
        let reason = match &self.reason {
            Some(r) => Some(
                Reason::parse(r, transfer_layer)
                    .ok_or_else(|| anyhow::anyhow!("unknown reason `{r}`"))?,
            ),
            None => None,
        };
        Ok((verdict, reason))
    }
}

/// A scenario checked and turned into zones.
pub struct Plan {
    pub scenario: Scenario,
    /// For each scenario target, in order: where it is placed.
    pub placed: Vec<Placed>,
    pub vantage: Zone,
    pub control: Zone,
}

/// A scenario target, parsed and given its address.
pub struct Placed {
    pub target: Target,
    /// Scanned as written (through `--connect-to`) rather than rewritten to a mock URL.
    pub literal: bool,
    /// Comes with one of the scenario's suites (the scan names the suite, not the target).
    pub from_suite: bool,
    /// Index of its host: the host lives at 127.0.1.N (and 127.0.2.N, 127.0.3.N).
    pub n: u8,
}

impl ScenarioTarget {
    /// A suite target with no censorship: expected reachable.
    fn reachable(target: &str) -> Self {
        Self {
            target: target.to_owned(),
            dns: DnsMode::Answer,
            scheme: SchemeMode::Https,
            path: root(),
            tcp: None,
            tls: None,
            http: None,
            freeze: None,
            throttle: None,
            freeze_upload: None,
            origin: None,
            udp: None,
            shapes: Vec::new(),
            media: None,
            vpn: None,
            quic: None,
            proxy: None,
            note: String::new(),
            expect: Expect {
                verdict: "reachable".into(),
                reason: None,
            },
            expect_no_proxy: None,
        }
    }
}

pub const CANARY: &str = "canary.mocknet.test";

/// The scenarios shipped in the binary, so `mocknet --scenario russia` works from an installed
/// binary anywhere (`mocknet --list`).
pub const BUNDLED: &[(&str, &str)] = &[
    ("russia", include_str!("../../probes/scenarios/russia.toml")),
    (
        "russia-apps",
        include_str!("../../probes/scenarios/russia-apps.toml"),
    ),
    ("all", include_str!("../../probes/scenarios/all.toml")),
    (
        "controls",
        include_str!("../../probes/scenarios/controls.toml"),
    ),
    ("quic", include_str!("../../probes/scenarios/quic.toml")),
    ("echo", include_str!("../../probes/scenarios/echo.toml")),
    ("calls", include_str!("../../probes/scenarios/calls.toml")),
    ("vpn", include_str!("../../probes/scenarios/vpn.toml")),
    (
        "whitelist",
        include_str!("../../probes/scenarios/whitelist.toml"),
    ),
    (
        "whitelist-sni",
        include_str!("../../probes/scenarios/whitelist-sni.toml"),
    ),
    (
        "whitelist-off",
        include_str!("../../probes/scenarios/whitelist-off.toml"),
    ),
];

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// `--scenario SPEC`: a bundled scenario's name, or a path to a TOML file (anything with a
    /// `/` or ending in `.toml`).
    pub fn load_spec(spec: &str) -> anyhow::Result<Self> {
        if spec.ends_with(".toml") || spec.contains('/') || spec.contains('\\') {
            return Self::load(Path::new(spec));
        }
        let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == spec) else {
            let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown scenario `{spec}` (bundled: {}; or give a path to a .toml file)",
                names.join(", ")
            );
        };
        toml::from_str(text).map_err(|e| anyhow::anyhow!("bundled scenario {spec}: {e}"))
    }

    /// A scenario that is just suites, every target reachable (`mocknet --suite`).
    pub fn of_suites(suites: Vec<String>) -> Self {
        Self {
            name: suites.join("+"),
            description: "every target of the suites, uncensored".into(),
            wildcard: false,
            suites,
            reference: None,
            canary: CanaryMode::Answer,
            targets: Vec::new(),
            regime: None,
        }
    }

    /// Validates expectations and builds the resolvers' zones. Each host gets its own address
    /// in 127.0.1.0/24, so answers are distinguishable in reports.
    pub fn plan(mut self) -> anyhow::Result<Plan> {
        if let Some(r) = &self.regime {
            for name in r.allowlisted.iter().chain(&r.foreign) {
                let known = self.targets.iter().any(|t| {
                    Target::parse(&t.target).is_ok_and(|x| x.name() == Some(name.as_str()))
                });
                if !known {
                    bail!(
                        "[regime] names `{name}`, which is not a target of the scenario (the regime check reaches its references on the mock network)"
                    );
                }
            }
            if let Some(e) = &r.expect
                && !["open", "whitelist", "offline", "unknown"].contains(&e.as_str())
            {
                bail!("[regime] expect = \"{e}\": expected open, whitelist, offline or unknown");
            }
        }
        let default = if self.wildcard {
            Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        } else {
            Behaviour::NxDomain
        };
        let canary = Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
        let (at_vantage, at_control) = match self.canary {
            CanaryMode::Answer => (canary.clone(), canary),
            CanaryMode::Missing => (Behaviour::NxDomain, Behaviour::NxDomain),
            CanaryMode::VantageFails => (Behaviour::ServFail, canary),
        };
        let mut vantage = Zone::new(default.clone()).with(CANARY, at_vantage);
        let mut control = Zone::new(default).with(CANARY, at_control);
        // The reference: a reachable host serving the large object.
        if let Some(r) = &self.reference {
            if self.targets.iter().any(|t| t.target == *r) {
                bail!(
                    "scenario {}: the reference `{r}` is also a target",
                    self.name
                );
            }
            let mut t = ScenarioTarget::reachable(r);
            t.path = "/big".into();
            t.note = "the scan's --reference".into();
            self.targets.push(t);
        }

        // Suite targets: parsed by the suite (method, category), reachable unless overridden.
        let mut from_suites: Vec<Target> = Vec::new();
        for spec in &self.suites {
            for t in Suite::load(spec)?.targets {
                if !from_suites.iter().any(|o| o.input == t.target.input) {
                    from_suites.push(t.target);
                }
            }
        }
        for t in &from_suites {
            if !self.targets.iter().any(|s| s.target == t.input) {
                let mut s = ScenarioTarget::reachable(&t.input);
                // Plain HTTP is unauthenticated: without a control path to compare, a page
                // that is no known block page proves nothing.
                if t.scheme == Scheme::Http {
                    s.expect_no_proxy = Some(Expect {
                        verdict: "inconclusive".into(),
                        reason: None,
                    });
                }
                self.targets.push(s);
            }
        }

        let mut hosts: Vec<(String, DnsMode)> = Vec::new();
        let mut placed = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let err = |m: String| anyhow::anyhow!("scenario target `{}`: {m}", t.target);
            let suite_target = from_suites.iter().find(|s| s.input == t.target);
            let target = match suite_target {
                Some(s) => s.clone(),
                None => Target::parse(&t.target).map_err(err)?,
            };
            let literal = suite_target.is_some() || target.kind != TargetKind::Domain;
            for (what, e) in [
                ("expect", Some(&t.expect)),
                ("expect_no_proxy", t.expect_no_proxy.as_ref()),
            ] {
                let Some(e) = e else { continue };
                e.verdict
                    .parse::<Verdict>()
                    .map_err(|m| err(format!("{what}.verdict: {m}")))?;
                if let Some(r) = &e.reason
                    && !known_reason(r)
                {
                    bail!(
                        "scenario target `{}`: unknown {what}.reason `{r}`",
                        t.target
                    );
                }
            }
            check_behaviours(t, &target, literal).map_err(err)?;
            let host = target.host.to_string();
            if matches!(target.host, Host::Ip(_)) && !matches!(t.dns, DnsMode::Answer) {
                return Err(err("an IP target has no DNS behaviour".into()));
            }
            let n = match hosts.iter().position(|(h, _)| *h == host) {
                Some(i) if hosts[i].1 != t.dns => {
                    return Err(err(format!("another target of `{host}` has another `dns`")));
                }
                Some(i) => i + 1,
                None => {
                    hosts.push((host, t.dns));
                    hosts.len()
                }
            };
            let n = u8::try_from(n)
                .ok()
                .filter(|n| *n <= 250)
                .ok_or_else(|| anyhow::anyhow!("scenario {}: at most 250 hosts", self.name))?;
            placed.push(Placed {
                target,
                literal,
                from_suite: suite_target.is_some(),
                n,
            });
        }
        for (i, (host, dns)) in hosts.iter().enumerate() {
            if host.parse::<IpAddr>().is_ok() {
                continue;
            }
            let n = u8::try_from(i + 1).expect("checked above");
            let (lie, truth) = zone_entries(*dns, n);
            vantage = vantage.with(host, lie);
            control = control.with(host, truth);
        }
        Ok(Plan {
            scenario: self,
            placed,
            vantage,
            control,
        })
    }
}

/// What the ISP and the control resolvers answer for host number `n` under `dns`.
fn zone_entries(dns: DnsMode, n: u8) -> (Behaviour, Behaviour) {
    let real = vec![IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))];
    let truth = Behaviour::Answer(real.clone());
    let lie = match dns {
        DnsMode::Answer => truth.clone(),
        DnsMode::Nxdomain | DnsMode::Missing => Behaviour::NxDomain,
        DnsMode::Nodata => Behaviour::NoData,
        DnsMode::Servfail => Behaviour::ServFail,
        DnsMode::Refused => Behaviour::Refused,
        DnsMode::Timeout => Behaviour::Silent,
        DnsMode::Reset => Behaviour::Reset,
        DnsMode::Bogon => Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(10, 10, 34, n))]),
        DnsMode::Inject => Behaviour::Inject {
            forged: vec![IpAddr::V4(Ipv4Addr::new(10, 10, 34, n))],
            real,
        },
        // Another loopback address: on a loopback network that is ordinary address space
        // (not a bogon), and a connection probe never leaves the machine.
        DnsMode::Lie => Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 3, n))]),
        DnsMode::Blockpage | DnsMode::Ghost => {
            Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 2, n))])
        }
    };
    let control = if matches!(dns, DnsMode::Missing | DnsMode::Ghost) {
        Behaviour::NxDomain
    } else {
        truth
    };
    (lie, control)
}

/// Rejects behaviours the mock cannot produce for this kind of target.
fn check_behaviours(t: &ScenarioTarget, target: &Target, literal: bool) -> Result<(), String> {
    let censors = [
        t.tcp.is_some(),
        t.tls.is_some(),
        t.http.is_some(),
        t.freeze.is_some(),
        t.throttle.is_some(),
        t.freeze_upload.is_some(),
        t.udp.is_some(),
        t.quic.is_some(),
    ];
    if censors.iter().filter(|c| **c).count() > 1 {
        return Err("one censor behaviour per target (tcp, tls, http, freeze, freeze_upload, throttle, udp or quic)".into());
    }
    // Issue 11, item 7: a zero rate divides by zero in the pacing (and means "never").
    if t.throttle == Some(0) {
        return Err("`throttle` is bytes per second and must be at least 1".into());
    }
    if literal && (t.scheme != SchemeMode::Https || t.path != "/") {
        return Err("`scheme` and `path` apply to bare domains; write a URL instead".into());
    }
    let (http, tls) = if literal {
        (target.scheme == Scheme::Http, target.is_tls())
    } else {
        (t.scheme == SchemeMode::Http, t.scheme == SchemeMode::Https)
    };
    let stun = target.scheme == Scheme::Stun;
    if t.http.is_some() && !http {
        return Err("`http = ...` needs a plain-HTTP target (`scheme = \"http\"`)".into());
    }
    if t.tls.is_some() && !tls {
        return Err("`tls = ...` needs an https target".into());
    }
    let echo = matches!(target.scheme, Scheme::Echo | Scheme::Media);
    if t.udp.is_some() && !stun && !(echo && t.udp == Some(UdpMode::Drop)) {
        return Err(
            "`udp = ...` needs a stun:// target (or `udp = \"drop\"` an echo:// or media:// one)"
                .into(),
        );
    }
    if t.media.is_some() && target.scheme != Scheme::Media {
        return Err("`media = ...` needs a media:// target".into());
    }
    if !t.shapes.is_empty() && !echo {
        return Err("`shapes = [...]` needs an echo:// target".into());
    }
    if let Some(bad) = t
        .shapes
        .iter()
        .find(|s| crate::probe::echo::Shape::parse(s).is_none())
    {
        return Err(format!(
            "unknown shape `{bad}` (expected wireguard, openvpn, quic or stun)"
        ));
    }
    if echo && (censors[..6].iter().any(|c| *c) || t.quic.is_some() || t.proxy.is_some()) {
        return Err(
            "an echo:// target takes `shapes = [...]`, not a TCP, STUN or QUIC behaviour".into(),
        );
    }
    let openvpn = target.scheme == Scheme::Openvpn;
    let tor = target.scheme == Scheme::Tor;
    let ss = matches!(target.scheme, Scheme::Shadowsocks | Scheme::Obfs4);
    if t.vpn.is_some() && !openvpn && !tor && !ss && target.scheme != Scheme::Wireguard {
        return Err(
            "`vpn = ...` needs an openvpn://, wireguard://, tor://, ss:// or obfs4:// target"
                .into(),
        );
    }
    if ss && matches!(t.vpn, Some(VpnMode::TlsAuth | VpnMode::ResetTorTls)) {
        return Err("an ss:// or obfs4:// target takes `vpn = \"drop\"` or `\"reset\"`".into());
    }
    if (openvpn || tor || ss)
        && (censors.iter().any(|c| *c) || t.proxy.is_some() || !t.shapes.is_empty())
    {
        return Err(format!(
            "an {}:// target takes `vpn = ...`, not another behaviour",
            if tor {
                "tor"
            } else if target.scheme == Scheme::Obfs4 {
                "obfs4"
            } else if ss {
                "ss"
            } else {
                "openvpn"
            }
        ));
    }
    if tor && t.vpn == Some(VpnMode::TlsAuth) {
        return Err("`vpn = \"tls-auth\"` needs an openvpn:// target".into());
    }
    if !tor && t.vpn == Some(VpnMode::ResetTorTls) {
        return Err("`vpn = \"reset-tor-tls\"` needs a tor:// target".into());
    }
    let wireguard = target.scheme == Scheme::Wireguard;
    if (t.vpn == Some(VpnMode::Cut)) != (wireguard && t.vpn == Some(VpnMode::Cut)) {
        return Err("`vpn = \"cut\"` needs a wireguard:// target".into());
    }
    if wireguard && !matches!(t.vpn, None | Some(VpnMode::Drop | VpnMode::Cut)) {
        return Err("a wireguard:// target takes `vpn = \"drop\"` or `\"cut\"`".into());
    }
    if wireguard && (censors.iter().any(|c| *c) || t.proxy.is_some() || !t.shapes.is_empty()) {
        return Err("a wireguard:// target takes `vpn = ...`, not another behaviour".into());
    }
    if openvpn
        && t.vpn == Some(VpnMode::Reset)
        && crate::probe::openvpn::Proto::of_path(&target.path)
            == Ok(crate::probe::openvpn::Proto::Udp)
    {
        return Err("`vpn = \"reset\"` needs TCP (`?proto=tcp`)".into());
    }
    let quic = target.scheme == Scheme::Quic;
    if t.quic.is_some() && !quic {
        return Err("`quic = ...` needs a quic:// target".into());
    }
    if quic && censors[..7].iter().any(|c| *c) {
        return Err("a quic:// target takes `quic = ...`, not a TCP or STUN behaviour".into());
    }
    if quic && (matches!(t.dns, DnsMode::Blockpage | DnsMode::Ghost) || t.proxy.is_some()) {
        return Err(
            "a quic:// target takes no `dns = \"blockpage\"`, `\"ghost\"` or `proxy`".into(),
        );
    }
    let tcp_censor = censors[..6].iter().any(|c| *c);
    if stun && tcp_censor {
        return Err("a stun:// target takes `udp = ...`, not a TCP behaviour".into());
    }
    if stun && matches!(t.dns, DnsMode::Blockpage | DnsMode::Ghost) {
        return Err("`dns = \"blockpage\"` and `\"ghost\"` need a TCP target".into());
    }
    if stun && t.proxy.is_some() {
        return Err("`proxy = ...` applies to TCP targets".into());
    }
    Ok(())
}

fn known_reason(r: &str) -> bool {
    Reason::parse(r, Layer::Tls).is_some()
}

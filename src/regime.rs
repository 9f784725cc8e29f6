//! The network's regime, checked at the start of a scan: `open`, `whitelist` (only
//! allow-listed destinations work: Russian mobile networks since 2025), `offline`, or
//! `unknown` when the check cannot tell. Allow-list candidates (domestic state services) and
//! ordinary foreign references are each resolved through the first vantage resolver and
//! probed with TCP and TLS on port 443. A whitelist's signature: the TCP handshake to an
//! unlisted address completes, then the ClientHello is dropped (TLS times out), while listed
//! destinations work. Under a whitelist, the cross-swap tells the variants apart: a random SNI
//! sent to a listed address (passes when only the address is checked) and a listed SNI sent to
//! an unlisted address (passes when only the SNI is).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::probe::dns::DnsClient;
use crate::probe::failure::{Failure, FailureKind};
use crate::probe::tcp::Remap;
use crate::probe::tls::TlsClient;

/// Domestic services a Russian whitelist regime keeps open (the state's own, as the published
/// allow-lists show them).
pub const DEFAULT_ALLOWLISTED: [&str; 4] = ["www.gosuslugi.ru", "vk.com", "ya.ru", "max.ru"];
/// Ordinary foreign sites (large, always up, on different networks).
pub const DEFAULT_FOREIGN: [&str; 3] =
    ["www.wikipedia.org", "www.google.com", "www.cloudflare.com"];

/// Addresses of a name probed by `blockprobe regime --discover` at most.
pub const DISCOVER_ADDRESSES: usize = 4;

/// The regime check's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegimeOptions {
    /// Whether the check runs (`--regime-check on|off`).
    pub enabled: bool,
    pub allowlisted: Vec<String>,
    pub foreign: Vec<String>,
}

impl Default for RegimeOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            allowlisted: DEFAULT_ALLOWLISTED.map(String::from).to_vec(),
            foreign: DEFAULT_FOREIGN.map(String::from).to_vec(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Regime {
    /// Foreign references work: per-site results mean per-site blocking.
    Open,
    /// Only allow-listed destinations work.
    Whitelist,
    /// Nothing works, allow-listed destinations included.
    Offline,
    /// The check could not tell (references unresolvable, refused, mixed), or did not run.
    Unknown,
}

impl Regime {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Whitelist => "whitelist",
            Self::Offline => "offline",
            Self::Unknown => "unknown",
        }
    }
}

/// What a whitelist checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The address only: any SNI to a listed address passes.
    Address,
    /// The pair: a random SNI to a listed address is dropped too.
    AddressAndSni,
    /// The SNI only: a listed SNI opens an unlisted address.
    Sni,
}

impl Variant {
    /// What the whitelist checks, in words: `address`, `address and SNI`, `SNI`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::AddressAndSni => "address and SNI",
            Self::Sni => "SNI",
        }
    }
}

/// Which probe of the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Allowlisted,
    Foreign,
    /// A random SNI to an allow-listed address.
    RandomSniToListed,
    /// An allow-listed SNI to a foreign address.
    ListedSniToForeign,
    /// A name of `blockprobe regime --discover`, to one of its addresses.
    Candidate,
}

/// Where a probe of the check got to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The name did not resolve.
    Dns,
    /// The TCP connection failed.
    Tcp,
    /// TCP connected; the ClientHello got no answer (the whitelist's signature).
    Silent,
    /// The server answered the ClientHello (a completed handshake, or its alert).
    Answered,
}

/// One probe of the check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RefProbe {
    pub role: Role,
    pub name: String,
    pub sni: String,
    pub address: Option<IpAddr>,
    /// The TCP port (443 but for `--discover` names with their own).
    pub port: u16,
    pub stage: Stage,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "crate::probe::ser_ms")]
    pub elapsed: Duration,
}

/// The check's result: carried in the run's metadata, every record's `regime`, the store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegimeCheck {
    pub regime: Regime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
    pub probes: Vec<RefProbe>,
}

impl RegimeCheck {
    /// The check did not run.
    pub fn unchecked() -> Self {
        Self {
            regime: Regime::Unknown,
            variant: None,
            probes: Vec::new(),
        }
    }

    /// One line for people: the regime and what shows it.
    pub fn summary(&self) -> String {
        let names = |role: Role, stage: Stage| {
            self.probes
                .iter()
                .filter(|p| p.role == role && p.stage == stage)
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.regime {
            Regime::Whitelist => format!(
                "whitelist regime detected{} — per-site results reflect the allow-list, not targeted blocking (allow-listed {} work; {} connect, then their ClientHello gets no answer)",
                self.variant
                    .map_or(String::new(), |v| format!(" (by {})", v.label())),
                names(Role::Allowlisted, Stage::Answered),
                names(Role::Foreign, Stage::Silent),
            ),
            Regime::Offline => {
                "offline: neither the allow-list candidates nor the foreign references answer"
                    .into()
            }
            Regime::Open => format!(
                "open network: foreign references answer ({})",
                names(Role::Foreign, Stage::Answered)
            ),
            Regime::Unknown => {
                "regime unknown (the check's references could not be reached or did not run)".into()
            }
        }
    }
}

/// What the check needs of the scan: the first vantage resolver, the TLS client, the
/// connection timeout and `--connect-to`.
pub struct Probes<'a> {
    pub dns: &'a DnsClient,
    pub tls: &'a TlsClient,
    pub timeout: Duration,
    pub remap: &'a Remap,
}

impl Probes<'_> {
    /// A name's addresses, IPv4 first (the check is about the network's policy, not about IPv6
    /// support), at most `max`.
    async fn resolve(&self, name: &str, max: usize) -> Vec<IpAddr> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return vec![ip];
        }
        let obs = self.dns.lookup(name).await;
        let mut addrs: Vec<IpAddr> = obs.addresses().into_iter().collect();
        addrs.sort_by_key(|a| !a.is_ipv4());
        addrs.truncate(max);
        addrs
    }

    /// Allow-list discovery: the name's TLS handshake (its own SNI, on `port`) to each of its addresses
    /// (IPv4 first, at most [`DISCOVER_ADDRESSES`]); one probe at stage `dns` when it does not
    /// resolve.
    pub async fn discover(&self, name: &str, port: u16) -> Vec<RefProbe> {
        let addrs = self.resolve(name, DISCOVER_ADDRESSES).await;
        if addrs.is_empty() {
            return vec![self.probe(Role::Candidate, name, name, None, port).await];
        }
        futures::future::join_all(
            addrs
                .into_iter()
                .map(|a| self.probe(Role::Candidate, name, name, Some(a), port)),
        )
        .await
    }

    async fn probe(
        &self,
        role: Role,
        name: &str,
        sni: &str,
        addr: Option<IpAddr>,
        port: u16,
    ) -> RefProbe {
        let start = Instant::now();
        let mut p = RefProbe {
            role,
            name: name.to_owned(),
            sni: sni.to_owned(),
            address: addr,
            port,
            stage: Stage::Dns,
            failure: None,
            elapsed: Duration::ZERO,
        };
        let Some(ip) = addr else {
            return p;
        };
        let to = self.remap.apply(SocketAddr::new(ip, port));
        match crate::probe::tcp::connect(to, self.timeout).await.0 {
            Err(f) => {
                p.stage = Stage::Tcp;
                p.failure = Some(f);
            }
            Ok(s) => {
                let (obs, _) = self
                    .tls
                    .handshake(s, sni, &[b"http/1.1"], self.timeout)
                    .await;
                // A completed handshake or any answer to the ClientHello (an alert, a
                // certificate for another name): the network let it through.
                let silent = !obs.ok
                    && obs.certs.is_empty()
                    && matches!(
                        obs.failure.as_ref().map(|f| f.kind),
                        Some(FailureKind::Timeout | FailureKind::Reset | FailureKind::Eof)
                    );
                p.stage = if silent {
                    Stage::Silent
                } else {
                    Stage::Answered
                };
                p.failure = obs.failure;
            }
        }
        p.elapsed = start.elapsed();
        p
    }
}

/// Runs the check: every candidate and reference at once, then the cross-swap when the first
/// round looks like a whitelist.
pub async fn check(probes: &Probes<'_>, opts: &RegimeOptions) -> RegimeCheck {
    if !opts.enabled {
        return RegimeCheck::unchecked();
    }
    let (listed, foreign) = tokio::join!(
        round(probes, Role::Allowlisted, &opts.allowlisted),
        round(probes, Role::Foreign, &opts.foreign)
    );
    let answered = |ps: &[RefProbe]| ps.iter().filter(|p| p.stage == Stage::Answered).count();
    let silent = |ps: &[RefProbe]| ps.iter().filter(|p| p.stage == Stage::Silent).count();
    let (listed_ok, foreign_ok) = (answered(&listed), answered(&foreign));
    let mut check = RegimeCheck {
        regime: Regime::Unknown,
        variant: None,
        probes: Vec::new(),
    };
    if foreign_ok > 0 {
        check.regime = Regime::Open;
    } else if listed_ok > 0 && silent(&foreign) > 0 {
        check.regime = Regime::Whitelist;
        // The cross-swap, on the first working listed destination and the first silent
        // foreign one.
        let ok = listed.iter().find(|p| p.stage == Stage::Answered);
        let dead = foreign.iter().find(|p| p.stage == Stage::Silent);
        if let (Some(ok), Some(dead)) = (ok, dead) {
            let random = format!("{:016x}.example.com", rand::random::<u64>());
            let (to_listed, to_foreign) = tokio::join!(
                probes.probe(Role::RandomSniToListed, &ok.name, &random, ok.address, 443),
                probes.probe(
                    Role::ListedSniToForeign,
                    &dead.name,
                    &ok.sni,
                    dead.address,
                    443
                ),
            );
            check.variant = Some(if to_foreign.stage == Stage::Answered {
                Variant::Sni
            } else if to_listed.stage == Stage::Answered {
                Variant::Address
            } else {
                Variant::AddressAndSni
            });
            check.probes.extend([to_listed, to_foreign]);
        }
    } else if listed_ok == 0
        && !listed.is_empty()
        && listed
            .iter()
            .chain(&foreign)
            .all(|p| p.stage == Stage::Silent || timed_out(p))
    {
        check.regime = Regime::Offline;
    }
    let mut all = listed;
    all.extend(foreign);
    all.extend(check.probes);
    check.probes = all;
    check
}

/// Every name of a list resolved and probed at once.
async fn round(probes: &Probes<'_>, role: Role, names: &[String]) -> Vec<RefProbe> {
    futures::future::join_all(names.iter().map(|n| async move {
        let addr = probes.resolve(n, 1).await.first().copied();
        probes.probe(role, n, n, addr, 443).await
    }))
    .await
}

fn timed_out(p: &RefProbe) -> bool {
    p.stage == Stage::Tcp
        && p.failure
            .as_ref()
            .is_some_and(|f| f.kind == FailureKind::Timeout)
}

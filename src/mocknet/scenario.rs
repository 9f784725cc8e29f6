//! Scenario files: which names the mock network serves, how its ISP resolver lies about each,
//! and the verdict a scan is expected to reach. Format: `docs/mocknet.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::mocknet::dns::{Behaviour, Zone};
use crate::target::normalize_domain;
use crate::verdict::{Reason, Verdict};

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
    #[serde(default, rename = "target")]
    pub targets: Vec<ScenarioTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTarget {
    /// The name of the target; the scan gets a URL with the mock network's port.
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
    #[serde(default)]
    pub note: String,
    pub expect: Expect,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginMode {
    Down,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub verdict: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A scenario checked and turned into zones.
pub struct Plan {
    pub scenario: Scenario,
    pub vantage: Zone,
    pub control: Zone,
}

pub const CANARY: &str = "canary.mocknet.test";

impl Scenario {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Validates expectations and builds the resolvers' zones. Each target gets its own origin
    /// address in 127.0.1.0/24, so answers are distinguishable in reports.
    pub fn plan(self) -> anyhow::Result<Plan> {
        let default = if self.wildcard {
            Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])
        } else {
            Behaviour::NxDomain
        };
        let canary = Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
        let mut vantage = Zone::new(default.clone()).with(CANARY, canary.clone());
        let mut control = Zone::new(default).with(CANARY, canary);
        if self.targets.len() > 250 {
            bail!("scenario {}: at most 250 targets", self.name);
        }
        for (i, t) in self.targets.iter().enumerate() {
            let name = normalize_domain(&t.target).map_err(|e| {
                anyhow::anyhow!(
                    "scenario target `{}`: {e} (this version serves domains)",
                    t.target
                )
            })?;
            t.expect.verdict.parse::<Verdict>().map_err(|e| {
                anyhow::anyhow!("scenario target `{}`: expect.verdict: {e}", t.target)
            })?;
            if let Some(r) = &t.expect.reason
                && !known_reason(r)
            {
                bail!(
                    "scenario target `{}`: unknown expect.reason `{r}`",
                    t.target
                );
            }
            let n = u8::try_from(i + 1).expect("checked above");
            let real = vec![IpAddr::V4(Ipv4Addr::new(127, 0, 1, n))];
            let truth = Behaviour::Answer(real.clone());
            let lie = match t.dns {
                DnsMode::Answer => truth.clone(),
                DnsMode::Nxdomain => Behaviour::NxDomain,
                DnsMode::Nodata => Behaviour::NoData,
                DnsMode::Servfail => Behaviour::ServFail,
                DnsMode::Refused => Behaviour::Refused,
                DnsMode::Timeout => Behaviour::Silent,
                DnsMode::Reset => Behaviour::Reset,
                DnsMode::Bogon => Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(10, 10, 34, n))]),
                DnsMode::Inject => Behaviour::Inject {
                    forged: vec![IpAddr::V4(Ipv4Addr::new(10, 10, 34, n))],
                    real: real.clone(),
                },
                // Another loopback address: on a loopback network that is ordinary address space
                // (not a bogon), and a connection probe never leaves the machine.
                DnsMode::Lie => Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 3, n))]),
                DnsMode::Missing => Behaviour::NxDomain,
                DnsMode::Blockpage => {
                    Behaviour::Answer(vec![IpAddr::V4(Ipv4Addr::new(127, 0, 2, n))])
                }
            };
            let censors = [
                t.tcp.is_some(),
                t.tls.is_some(),
                t.http.is_some(),
                t.freeze.is_some(),
                t.throttle.is_some(),
                t.freeze_upload.is_some(),
            ];
            if censors.iter().filter(|c| **c).count() > 1 {
                bail!(
                    "scenario target `{}`: one censor behaviour per target (tcp, tls, http, freeze, freeze_upload or throttle)",
                    t.target
                );
            }
            if t.http.is_some() && t.scheme != SchemeMode::Http {
                bail!(
                    "scenario target `{}`: `http = ...` needs `scheme = \"http\"`",
                    t.target
                );
            }
            if t.tls.is_some() && t.scheme != SchemeMode::Https {
                bail!(
                    "scenario target `{}`: `tls = ...` needs an https target",
                    t.target
                );
            }
            vantage = vantage.with(&name, lie);
            control = control.with(
                &name,
                if t.dns == DnsMode::Missing {
                    Behaviour::NxDomain
                } else {
                    truth
                },
            );
        }
        Ok(Plan {
            scenario: self,
            vantage,
            control,
        })
    }
}

fn known_reason(r: &str) -> bool {
    Reason::ALL.iter().any(|x| x.as_str() == r)
}

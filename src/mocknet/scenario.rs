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
    /// The target as a scan gets it (a domain in this version).
    pub target: String,
    /// What the ISP resolver does for it.
    #[serde(default)]
    pub dns: DnsMode,
    #[serde(default)]
    pub note: String,
    pub expect: Expect,
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
            };
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

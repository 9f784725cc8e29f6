//! The classifier: a pure function from a job's evidence to a finding. No sockets, no clocks;
//! table-tested below, row by row, against the rules of `docs/reasons.md`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;

use crate::probe::dns::DnsObservation;
use crate::probe::failure::FailureKind;
use crate::verdict::{Reason, Verdict};

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

/// Everything one job observed. Slots for later steps (TCP, TLS, HTTP) join this struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    /// The vantage resolver's answer; `None` when the target is an IP address.
    pub dns: Option<DnsObservation>,
    /// The control resolvers' answers for the same name.
    pub control: Option<ControlDns>,
    /// Whether the vantage resolver answered at least one canary name this run.
    pub resolver_healthy: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub verdict: Verdict,
    pub reason: Option<Reason>,
    /// One sentence a reader can check against the evidence.
    pub detail: String,
    pub evidence: Evidence,
}

/// Private, reserved, loopback and other addresses no public name should resolve to.
pub fn is_bogon(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_bogon(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard prefix
        }
    }
}

fn join(addrs: &BTreeSet<IpAddr>) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Classifies one (target, vantage) job.
pub fn classify(evidence: Evidence) -> Finding {
    let (verdict, reason, detail) = decide(&evidence);
    Finding {
        verdict,
        reason,
        detail,
        evidence,
    }
}

fn decide(ev: &Evidence) -> (Verdict, Option<Reason>, String) {
    use Verdict::*;
    let Some(dns) = &ev.dns else {
        return (
            Inconclusive,
            None,
            "target is an IP address: nothing to resolve, and no connection probe ran".into(),
        );
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
            return (
                Inconclusive,
                None,
                format!(
                    "vantage answered [{}] but no control resolver answered to compare",
                    join(&vantage)
                ),
            );
        };
        let bogons: BTreeSet<IpAddr> = vantage
            .iter()
            .copied()
            .filter(|ip| is_bogon(*ip) && !control_addrs.contains(ip))
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
            return (
                Blocked,
                Some(Reason::DnsInconsistent),
                format!(
                    "vantage answers [{}] share no address with the controls' [{}]",
                    join(&vantage),
                    join(control_addrs)
                ),
            );
        }
        return (
            Reachable,
            None,
            format!(
                "vantage answers [{}] agree with the controls",
                join(&vantage)
            ),
        );
    }

    // No address from the vantage resolver: what did it say instead?
    let (reason, what) = match (dns.rcode(), dns.failure()) {
        (Some("NXDOMAIN"), _) => (Some(Reason::DnsNxdomain), "NXDOMAIN".to_owned()),
        (Some("NOERROR"), _) => (Some(Reason::DnsNodata), "no address (NODATA)".to_owned()),
        (Some("SERVFAIL"), _) => (Some(Reason::DnsServfail), "SERVFAIL".to_owned()),
        (Some("REFUSED"), _) => (Some(Reason::DnsRefused), "REFUSED".to_owned()),
        (Some(other), _) => (None, format!("rcode {other}")),
        (None, Some(f)) => match f.kind {
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
        _ => (
            Inconclusive,
            None,
            format!("vantage resolver gave {what}, and no control resolver answered"),
        ),
    }
}

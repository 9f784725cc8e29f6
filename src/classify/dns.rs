//! The DNS layer: injected, block-page, bogon, inconsistent and missing answers, then the
//! connection step for names that resolve honestly.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::path::{blockpage_of, same_page_as_control};
use super::{
    Conn, ControlDns, ControlView, Decision, Evidence, Needs, Notes, Rules, connection, join,
};
use crate::probe::dns::{DnsObservation, Rcode};
use crate::probe::failure::FailureKind;
use crate::verdict::{Layer, Reason, Verdict};

pub(super) fn decide(
    ev: &Evidence,
    rules: &Rules,
    transfer_layer: Layer,
    notes: &mut Notes,
) -> Decision {
    use Verdict::*;
    let Some(dns) = &ev.dns else {
        return connection(ev, rules, transfer_layer, notes).unwrap_or_else(|| {
            (
                Inconclusive,
                None,
                "target is an IP address: nothing to resolve, and no connection probe ran".into(),
            )
        });
    };
    let control = ev
        .control
        .as_deref()
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
            .direct()
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
        let bogons: BTreeSet<IpAddr> = vantage
            .iter()
            .copied()
            .filter(|ip| crate::net::reserved_answer(*ip, control_addrs, false))
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
            let direct = ev.direct();
            let first = direct.and_then(|d| d.hops.first());
            if let Some(fp) = first
                .and_then(blockpage_of)
                .filter(|_| !same_page_as_control(first, ev.control_path()))
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
            if !ev.conn.as_ref().is_some_and(Conn::proves_name) {
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
        return connection(ev, rules, transfer_layer, notes).unwrap_or_else(|| {
            (
                Reachable,
                None,
                format!(
                    "no DNS interference: vantage answers [{}] agree with the controls (no connection step ran; `probes` lists what did)",
                    join(&vantage)
                ),
            )
        });
    }

    // No address from the vantage resolver: what did it say instead?
    let (reason, what) = no_address(dns);
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

/// Why a name got no address from a resolver, as a reason (when it is a known censorship
/// signature) and in words: the one mapping of rcodes and query failures to reasons. An error
/// rcode speaks for the name; NODATA speaks only for its own type, so a failed query of the
/// other type decides (a lost A answer next to an empty AAAA is no NODATA).
pub(super) fn no_address(dns: &DnsObservation) -> (Option<Reason>, String) {
    match (dns.rcode(), dns.failure()) {
        (Some(Rcode::NxDomain), _) => (Some(Reason::DnsNxdomain), "NXDOMAIN".to_owned()),
        (Some(Rcode::ServFail), _) => (Some(Reason::DnsServfail), "SERVFAIL".to_owned()),
        (Some(Rcode::Refused), _) => (Some(Reason::DnsRefused), "REFUSED".to_owned()),
        (Some(Rcode::NoError), None) => (Some(Reason::DnsNodata), "no address (NODATA)".to_owned()),
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
    }
}

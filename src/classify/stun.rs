//! The UDP step of a STUN target.

use std::collections::BTreeSet;

use super::{Control, Decision, Notes, judge};
use crate::probe::failure::FailureKind;
use crate::probe::stun::StunObservation;
use crate::verdict::{Reason, Verdict};

/// The UDP step of a STUN target: reachable when any address answers with a Binding
/// Response; otherwise blocked only when the control path's relay gets one.
pub(super) fn decide(s: &StunObservation, notes: &mut Notes) -> Decision {
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
        (Some(c), _) if c.ok => Control::Ok(None),
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
        (None, Some(r)) if r.ok => Control::Ok(None),
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

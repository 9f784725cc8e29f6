//! The WireGuard step of a `wireguard://` target: a Noise IK handshake initiation from here and
//! through the control path. Without a client key registered at the server, silence is what
//! every WireGuard server gives a stranger: never a block.

use super::{Control, Decision, Notes, judge};
use crate::probe::failure::FailureKind;
use crate::probe::quic::PROXY_SETUP;
use crate::probe::wireguard::{WireguardAttempt, WireguardObservation};
use crate::verdict::{Reason, Verdict};

pub(super) fn decide(w: &WireguardObservation, notes: &mut Notes) -> Decision {
    if let Some(a) = w.direct.iter().find(|a| a.flow_ok()) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: the WireGuard handshake completed (a verified 92-byte response){}, in {} ms",
                a.server,
                a.data.as_ref().map_or(String::new(), |d| format!(
                    " and the flow carried {} data packets and a second handshake",
                    d.sent
                )),
                a.elapsed.as_millis()
            ),
        );
    }
    if let Some(a) = w.direct.iter().find(|a| a.answered) {
        return after_handshake(w, a, notes);
    }
    // A cookie reply is keyed by the initiation's mac1: the server got it and is up (under
    // load); the path works whether or not the handshake then completed.
    if let Some(a) = w.direct.iter().find(|a| a.cookie) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: the server answered with a cookie reply (it is up, under load), so the path carries WireGuard; the handshake itself did not complete",
                a.server
            ),
        );
    }
    let servers = w
        .direct
        .iter()
        .map(|a| a.server.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let keyed = w.direct.iter().any(|a| a.keyed);
    if !keyed {
        notes.needs = None;
        return (
            Verdict::Inconclusive,
            None,
            format!(
                "{servers}: no answer to a handshake initiation from an unregistered key, which is all a WireGuard server ever gives a stranger (give private_key= of a client registered at the server)"
            ),
        );
    }
    let c = match &w.control {
        Some(c) if c.answered => Control::Ok(None),
        Some(c)
            if c.failure
                .as_ref()
                .is_some_and(|f| f.message.starts_with(PROXY_SETUP)) =>
        {
            Control::Unavailable("cannot be set up (the proxy fails)".into())
        }
        Some(c) => Control::Unavailable(format!(
            "gets no handshake response ({})",
            c.kind().map_or("no answer", FailureKind::as_str)
        )),
        None => Control::Absent,
    };
    let refused_here = !w.direct.is_empty()
        && w.direct
            .iter()
            .all(|a| a.kind() == Some(FailureKind::Refused));
    let c = match c {
        Control::Unavailable(why) if refused_here => Control::Failed(format!(
            "{why}, and UDP to the port is refused here (nothing listens)"
        )),
        c => c,
    };
    judge(
        Some(Reason::VpnTimeout),
        format!(
            "{servers}: no response to the WireGuard handshake initiation ({} sent)",
            w.direct.iter().map(|a| a.sent).sum::<u32>()
        ),
        &c,
        notes,
    )
}

/// The handshake completed here, then the flow died: a flow cut after the handshake, when a
/// fresh flow's handshake is answered (the server is up) and the control path's flow did not
/// die the same way.
fn after_handshake(w: &WireguardObservation, a: &WireguardAttempt, notes: &mut Notes) -> Decision {
    let sent = a.data.as_ref().map_or(0, |d| d.sent);
    let what = format!(
        "{}: the WireGuard handshake completed, then after {sent} data packets a second handshake on the same flow got no response",
        a.server
    );
    let control_flow = w.control.as_ref().filter(|c| c.answered);
    if control_flow.is_some_and(|c| !c.flow_ok()) {
        return (
            Verdict::Inconclusive,
            None,
            format!("{what}; the control path's flow died the same way, so the server does it"),
        );
    }
    if a.cut() {
        return (
            Verdict::Blocked,
            Some(Reason::VpnCut),
            format!(
                "{what}, while a handshake on a fresh flow is answered: the server is up, the flow was cut after its handshake"
            ),
        );
    }
    let c = match control_flow {
        Some(_) => Control::Ok(None),
        None if w.control.is_some() => Control::Unavailable("gets no handshake response".into()),
        None => Control::Absent,
    };
    judge(
        Some(Reason::VpnCut),
        format!("{what}, nor one on a fresh flow (the address went silent)"),
        &c,
        notes,
    )
}

//! The WireGuard step of a `wireguard://` target: a Noise IK handshake initiation from here and
//! through the control path. Without a client key registered at the server, silence is what
//! every WireGuard server gives a stranger: never a block.

use super::{Control, Decision, Notes, judge};
use crate::probe::failure::FailureKind;
use crate::probe::quic::PROXY_SETUP;
use crate::probe::wireguard::WireguardObservation;
use crate::verdict::{Reason, Verdict};

pub(super) fn decide(w: &WireguardObservation, notes: &mut Notes) -> Decision {
    if let Some(a) = w.direct.iter().find(|a| a.answered) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: the WireGuard handshake completed (a verified 92-byte response) in {} ms",
                a.server,
                a.elapsed.as_millis()
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

//! The OpenVPN step of an `openvpn://` target: the hard reset from here and through the
//! control path. A server that wraps its control channel (tls-auth, tls-crypt) is silent to an
//! unwrapped reset by design: silence here *and* outside is never a block.

use super::{Control, Decision, Notes, handshake_control, handshake_failed, judge};
use crate::probe::failure::FailureKind;
use crate::probe::openvpn::{OpenvpnAttempt, OpenvpnObservation};
use crate::verdict::{Reason, Verdict};

/// What a silent server's key situation suggests.
fn key_hint(o: &OpenvpnObservation) -> String {
    match o.wrap {
        Some(w) => {
            format!("to a reset wrapped with another key: check the {w} key and key_direction")
        }
        None => "without its key (give tls_auth= or tls_crypt=, or -i the .ovpn file)".into(),
    }
}

fn control(o: &OpenvpnObservation) -> Control<'_> {
    let c = match handshake_control(o.control.as_ref()) {
        Ok(c) => return c,
        Err((c, _)) => c,
    };
    match (c.phase, c.kind()) {
        (_, Some(k @ FailureKind::Malformed)) => {
            Control::Failed(format!("gets no OpenVPN answer ({})", k.as_str()))
        }
        // A server with tls-auth or tls-crypt over TCP closes on an unwrapped reset: the same
        // from outside says nothing about censorship, nor that the server is dead.
        (_, Some(k @ (FailureKind::Reset | FailureKind::Eof))) => Control::Unavailable(format!(
            "is closed after the reset too ({}), as a server with tls-auth or tls-crypt does {}",
            k.as_str(),
            key_hint(o)
        )),
        (_, k) => Control::Unavailable(format!(
            "gets no OpenVPN answer ({}; a server with tls-auth or tls-crypt is silent {})",
            k.map_or("no answer", FailureKind::as_str),
            key_hint(o)
        )),
    }
}

pub(super) fn decide(o: &OpenvpnObservation, notes: &mut Notes) -> Decision {
    let ours: Vec<&OpenvpnAttempt> = o.direct.iter().collect();
    if let Some(a) = ours.iter().find(|a| a.answered()) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{} ({}): the OpenVPN server answered the hard reset in {} ms",
                a.server,
                a.proto.as_str(),
                a.elapsed.as_millis()
            ),
        );
    }
    let c = control(o);
    let servers = match handshake_failed(&o.direct, "the OpenVPN server", &c, notes) {
        Ok((servers, _)) => servers,
        Err(d) => return d,
    };
    let kinds = |k: FailureKind| ours.iter().all(|a| a.kind() == Some(k));
    if kinds(FailureKind::Reset) || kinds(FailureKind::Eof) {
        return judge(
            Some(Reason::VpnReset),
            format!("{servers}: the connection is torn down after the OpenVPN hard reset"),
            &c,
            notes,
        );
    }
    let refused_here = kinds(FailureKind::Refused);
    let c = match c {
        Control::Unavailable(why) if refused_here => Control::Failed(format!(
            "{why}, and UDP to the port is refused here (nothing listens)"
        )),
        c => c,
    };
    let sent = ours.iter().map(|a| a.sent).sum::<u32>();
    let what = if refused_here {
        format!(
            "{servers}: the hard reset ({sent} sent) is refused (ICMP port unreachable: nothing listens on the port here)"
        )
    } else {
        format!("{servers}: no answer to the OpenVPN hard reset ({sent} sent)")
    };
    judge(Some(Reason::VpnTimeout), what, &c, notes)
}

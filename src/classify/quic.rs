//! The QUIC step of a `quic://` target: an HTTP/3 GET from here, attributed with the
//! version-negotiation ping, the decoy SNI and the control path (UDP ASSOCIATE).

use super::{Control, Decision, Notes, judge};
use crate::probe::failure::FailureKind;
use crate::probe::quic::{PROXY_SETUP, QuicAttempt, QuicObservation};
use crate::probe::tcp::AddrSource;
use crate::verdict::{Reason, Verdict};

/// The control path's QUIC attempt as the authority for `down` versus `blocked`.
fn control(q: &QuicObservation) -> Control<'_> {
    let Some(c) = &q.control else {
        return Control::Absent;
    };
    if c.ok() {
        return Control::Ok(None);
    }
    let message = c.failure.as_ref().map_or("", |f| f.message.as_str());
    if let Some(why) = message.strip_prefix(PROXY_SETUP) {
        // The proxy itself failed: nothing is known about the target from outside.
        return Control::Unavailable(format!("cannot be set up ({why})"));
    }
    if c.handshake {
        return Control::Failed("completes the QUIC handshake but gets no HTTP/3 response".into());
    }
    match c.kind() {
        // The origin answered from outside, and not with HTTP/3: it has none for anyone.
        Some(k @ (FailureKind::Refused | FailureKind::Tls | FailureKind::Http)) => {
            Control::Failed(format!("gets no HTTP/3 answer ({})", k.as_str()))
        }
        Some(FailureKind::Certificate) => {
            Control::Failed("sees a certificate that does not verify".into())
        }
        k => Control::Unavailable(format!(
            "gets no QUIC answer ({})",
            k.map_or("no response", FailureKind::as_str)
        )),
    }
}

/// The decoy handshake got an answer: the address speaks QUIC.
fn answered(a: &QuicAttempt) -> bool {
    a.handshake
        || matches!(
            a.kind(),
            Some(FailureKind::Certificate | FailureKind::Tls | FailureKind::Refused)
        )
}

pub(super) fn decide(q: &QuicObservation, notes: &mut Notes) -> Decision {
    let ours: Vec<&QuicAttempt> = q
        .direct
        .iter()
        .filter(|a| a.source == AddrSource::Vantage)
        .collect();
    if let Some(a) = ours.iter().find(|a| a.ok()) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: HTTP/3 status {} from {} in {} ms",
                q.url,
                a.status.unwrap_or(0),
                a.server,
                a.elapsed.as_millis()
            ),
        );
    }
    let c = control(q);
    let servers = ours
        .iter()
        .map(|a| a.server.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(a) = ours.iter().find(|a| a.verified == Some(false)) {
        let err = a.cert_error.clone().unwrap_or_default();
        return judge(
            Some(Reason::QuicCertInvalid),
            format!("{}: the QUIC certificate does not verify ({err})", q.url),
            &c,
            notes,
        );
    }
    if ours.iter().any(|a| a.handshake) {
        return judge(
            None,
            format!("{}: QUIC handshake done, but no HTTP/3 response", q.url),
            &c,
            notes,
        );
    }
    let kinds = |k: FailureKind| ours.iter().all(|a| a.kind() == Some(k));
    if !ours.is_empty() && kinds(FailureKind::Reset) {
        return judge(
            Some(Reason::QuicReset),
            format!("{}: QUIC reset from {servers}", q.url),
            &c,
            notes,
        );
    }
    let silent = !ours.is_empty()
        && ours.iter().all(|a| {
            matches!(
                a.kind(),
                Some(FailureKind::Timeout | FailureKind::Unreachable)
            )
        });
    if !silent {
        let why = ours
            .iter()
            .filter_map(|a| a.failure.as_ref().map(|f| f.kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        return judge(
            None,
            format!("{}: QUIC fails from {servers} ({why})", q.url),
            &c,
            notes,
        );
    }
    let what = format!(
        "{}: QUIC Initials with the target's SNI to {servers} get no answer",
        q.url
    );
    if q.decoy.as_ref().is_some_and(answered) {
        return (
            Verdict::Blocked,
            Some(Reason::QuicTimeout),
            format!(
                "{what}, while a decoy SNI on the same address gets one: QUIC is filtered by name"
            ),
        );
    }
    let ping = q.version_ping.as_ref();
    // The version ping answered here while QUIC v1 gets nothing, and QUIC v1 works from
    // outside: a filter on QUIC v1. (Without an outside view, a server that answers version
    // negotiation but never completes v1 would look the same.)
    if ping.is_some_and(|p| p.answered) && matches!(c, Control::Ok(_)) {
        return (
            Verdict::Blocked,
            Some(Reason::QuicBlockedAddress),
            format!(
                "{what}, nor does a decoy SNI, while the version-negotiation ping is answered: UDP gets through and QUIC v1 to the address is dropped"
            ),
        );
    }
    // Port unreachable from here (nothing listens on UDP) and no working control path: the
    // server has no QUIC, it is not blocked.
    let refused_here = ping.is_some_and(|p| {
        p.failure
            .as_ref()
            .is_some_and(|f| f.kind == FailureKind::Refused)
    });
    let c = match c {
        Control::Unavailable(why) if refused_here => Control::Failed(format!(
            "{why}, and UDP to the port is refused here (nothing listens)"
        )),
        c => c,
    };
    let ping_said = if ping.is_some_and(|p| p.answered) {
        "nor does a decoy SNI, though the version-negotiation ping is answered"
    } else {
        "nor do a decoy SNI and the version-negotiation ping"
    };
    judge(
        Some(Reason::QuicBlockedAddress),
        format!("{what}, {ping_said}"),
        &c,
        notes,
    )
}

//! The Tor step of a `tor://` target: the relay's link handshake from here and through the
//! control path. Every relay answers it to anyone, so a reset or silence where the control path
//! gets an answer is a block — at the TLS handshake (Tor's TLS fingerprint, the relay's
//! address) or after the `VERSIONS` cell (a DPI box that recognises the link protocol).
//! Without a control path, a decoy-SNI handshake completing on the same address settles a
//! TLS-stage block the same way.

use super::{Control, Decision, Notes, handshake_control, handshake_failed, judge};
use crate::probe::Phase;
use crate::probe::failure::FailureKind;
use crate::probe::quic::PROXY_SETUP;
use crate::probe::tor::{TorAttempt, TorObservation};
use crate::verdict::{Reason, Verdict};

fn control(o: &TorObservation) -> Control<'_> {
    let (c, message) = match handshake_control(o.control.as_ref()) {
        Ok(c) => return c,
        Err(m) => m,
    };
    let kind = c.kind().map_or("no answer", FailureKind::as_str);
    match c.kind() {
        // Something answers outside, but not a Tor relay.
        Some(FailureKind::Malformed | FailureKind::Tls | FailureKind::Certificate) => {
            Control::Failed(format!("gets no Tor link handshake ({kind}: {message})"))
        }
        _ => Control::Unavailable(format!("gets no Tor link handshake ({kind})")),
    }
}

/// Where an attempt died, in words, and the reason a censor's work there carries.
fn stage(a: &TorAttempt) -> (&'static str, Option<Reason>) {
    let after_tls = a.tls_ok();
    match (a.kind(), after_tls) {
        (Some(FailureKind::Reset | FailureKind::Eof), false) => (
            "the connection is torn down during the TLS handshake",
            Some(Reason::VpnReset),
        ),
        (Some(FailureKind::Reset | FailureKind::Eof), true) => (
            "the connection is torn down after the VERSIONS cell",
            Some(Reason::VpnReset),
        ),
        (Some(FailureKind::Timeout), false) => {
            ("the TLS handshake gets no answer", Some(Reason::VpnTimeout))
        }
        (Some(FailureKind::Timeout), true) => {
            ("the VERSIONS cell gets no answer", Some(Reason::VpnTimeout))
        }
        (_, false) => ("the TLS handshake fails", None),
        (_, true) => ("the server does not speak Tor's link protocol", None),
    }
}

pub(super) fn decide(o: &TorObservation, notes: &mut Notes) -> Decision {
    if let Some(a) = o.direct.iter().find(|a| a.answered()) {
        let certs = if a.cert_types.is_empty() {
            String::new()
        } else {
            format!(
                ", CERTS of types {}",
                a.cert_types
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: the Tor relay answered the link handshake (VERSIONS {}{certs}) in {} ms",
                a.server,
                a.link_versions
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                a.elapsed.as_millis()
            ),
        );
    }
    let c = control(o);
    let (servers, first) = match handshake_failed(&o.direct, "the Tor relay", &c, notes) {
        Ok(f) => f,
        Err(d) => return d,
    };
    let (what, reason) = stage(first);
    let detail = first
        .failure
        .as_ref()
        .map_or(String::new(), |f| format!(" ({})", f.message));
    let what = format!("{servers}: {what}{detail}");
    // Without a working control path, the same address completing a handshake with the decoy
    // SNI shows the relay is up and the Tor-looking ClientHello is what is stopped.
    // Only when the relay answers the decoy's link handshake (it is a relay, whatever the SNI),
    // and the control path did not meet the same failure (then the server does it).
    let decoy = o
        .direct
        .iter()
        .filter(|a| !a.tls_ok() && a.decoy_answered)
        .find_map(|a| a.decoy.as_ref());
    let same_outside = o.control.as_ref().is_some_and(|c| {
        !c.answered()
            && c.phase == Phase::Handshake
            && !c.tls_ok()
            && c.kind() == first.kind()
            && !c
                .failure
                .as_ref()
                .is_some_and(|f| f.message.starts_with(PROXY_SETUP))
    });
    if let (Control::Absent | Control::Unavailable(_), Some(d), Some(r), false) =
        (&c, decoy, reason, same_outside)
    {
        return (
            r.verdict(),
            Some(r),
            format!(
                "{what}; with the decoy SNI {} the same address completes TLS and answers VERSIONS, and Tor's handshake failed again: the relay is up, its handshake is stopped",
                d.sni
            ),
        );
    }
    judge(reason, what, &c, notes)
}

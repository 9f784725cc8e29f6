//! The obfs4 step of an `obfs4://` target: the client handshake from here and through the
//! control path, the reply verified (MAC and ntor AUTH). A bridge is silent to a handshake made
//! with a wrong `cert=` (or from a clock more than an hour off) exactly as a censor dropping the
//! flow would make it: silence outside too is never a block. A bridge never resets or closes
//! before its own 30-second timeout, so a reset here is somebody else's.

use super::{Control, Decision, Notes, handshake_control, handshake_failed, judge};
use crate::probe::failure::FailureKind;
use crate::probe::obfs4::Obfs4Observation;
use crate::verdict::{Reason, Verdict};

fn control(o: &Obfs4Observation) -> Control<'_> {
    let (c, message) = match handshake_control(o.control.as_ref()) {
        Ok(c) => return c,
        Err(m) => m,
    };
    match (c.phase, c.kind()) {
        // Something answers outside, but not the bridge of this cert.
        (_, Some(FailureKind::Malformed)) => {
            Control::Failed(format!("gets no verified obfs4 reply ({message})"))
        }
        (_, k) => Control::Unavailable(format!(
            "gets no obfs4 reply ({}; a bridge is silent to a wrong cert= or a clock more than an hour off)",
            k.map_or("no answer", FailureKind::as_str)
        )),
    }
}

pub(super) fn decide(o: &Obfs4Observation, notes: &mut Notes) -> Decision {
    if let Some(a) = o.direct.iter().find(|a| a.answered()) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: the obfs4 bridge answered the handshake (MAC and ntor AUTH verified, {} bytes) in {} ms",
                a.server,
                a.received,
                a.elapsed.as_millis()
            ),
        );
    }
    let c = control(o);
    let (servers, first) = match handshake_failed(&o.direct, "the obfs4 bridge", &c, notes) {
        Ok(f) => f,
        Err(d) => return d,
    };
    let k = first.kind().unwrap_or(FailureKind::Other);
    let (reason, what) = match k {
        FailureKind::Reset | FailureKind::Eof => (
            Some(Reason::VpnReset),
            format!(
                "the connection is torn down after the client handshake ({} bytes; a bridge never does that before its own 30-second timeout)",
                first.sent
            ),
        ),
        FailureKind::Timeout => (
            Some(Reason::VpnTimeout),
            "no reply to the client handshake (a wrong cert= gets the same silence)".to_owned(),
        ),
        _ => (
            None,
            first
                .failure
                .as_ref()
                .map_or_else(String::new, |f| f.message.clone()),
        ),
    };
    judge(reason, format!("{servers}: {what}"), &c, notes)
}

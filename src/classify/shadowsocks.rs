//! The Shadowsocks step of an `ss://` target: a tunnel to the check URL from here and through
//! the control path. A server is silent to a request that does not decrypt (a wrong password
//! or method) exactly as a censor dropping the flow would be: silence outside too is never a
//! block.

use super::{Control, Decision, Notes, handshake_control, handshake_failed, judge};
use crate::probe::failure::FailureKind;
use crate::probe::shadowsocks::ShadowsocksObservation;
use crate::verdict::{Reason, Verdict};

fn control(o: &ShadowsocksObservation) -> Control<'_> {
    let c = match handshake_control(o.control.as_ref()) {
        Ok(c) => return c,
        Err((c, _)) => c,
    };
    match (c.phase, c.kind()) {
        (_, Some(FailureKind::Malformed)) if c.salt => Control::Unavailable(
            "gets an answer that does not decrypt (check the password and method)".into(),
        ),
        (_, Some(FailureKind::Eof)) if !c.salt => Control::Unavailable(format!(
            "is closed by the server before it answers (it could not reach the tunnel check {}, or refuses it)",
            o.check
        )),
        (_, k) => Control::Unavailable(format!(
            "gets no answer through the tunnel ({}; a Shadowsocks server is silent to a wrong password or method)",
            k.map_or("no answer", FailureKind::as_str)
        )),
    }
}

pub(super) fn decide(o: &ShadowsocksObservation, notes: &mut Notes) -> Decision {
    let method = o.method.as_str();
    if let Some(a) = o.direct.iter().find(|a| a.answered()) {
        return (
            Verdict::Reachable,
            None,
            format!(
                "{} ({method}): the tunnel fetched {} ({}) in {} ms",
                a.server,
                o.check,
                a.status_line.as_deref().unwrap_or("HTTP"),
                a.elapsed.as_millis()
            ),
        );
    }
    let c = control(o);
    let (servers, first) = match handshake_failed(&o.direct, "the Shadowsocks server", &c, notes) {
        Ok(f) => f,
        Err(d) => return d,
    };
    let k = first.kind().unwrap_or(FailureKind::Other);
    let (reason, what) = match k {
        FailureKind::Reset => (
            Some(Reason::VpnReset),
            "the connection is reset after the first packet".to_owned(),
        ),
        FailureKind::Eof if !first.salt => (
            Some(Reason::VpnReset),
            "the connection is closed before the server answers".to_owned(),
        ),
        FailureKind::Timeout => (
            Some(Reason::VpnTimeout),
            "no answer through the tunnel (a wrong password or method gets the same silence)"
                .to_owned(),
        ),
        FailureKind::Malformed if first.salt => (
            None,
            "an answer that does not decrypt under this password and method".to_owned(),
        ),
        k => (None, format!("the tunnel fails ({})", k.as_str())),
    };
    judge(reason, format!("{servers} ({method}): {what}"), &c, notes)
}

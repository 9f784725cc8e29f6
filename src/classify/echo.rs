//! The echo step of an `echo://` target: protocol-shaped datagrams and their size-matched
//! random controls, echoed by a `blockprobe echo` server outside.

use super::{Control, Decision, Notes, judge};
use crate::probe::echo::EchoObservation;
use crate::probe::failure::{Failure, FailureKind};
use crate::probe::quic::PROXY_SETUP;
use crate::verdict::{Reason, Verdict};

pub(super) fn is_refused(f: Option<&Failure>) -> bool {
    f.is_some_and(|f| f.kind == FailureKind::Refused)
}

/// The control path of a datagram probe to our own echo server (echo, media): whether its
/// exchange through the proxy got anything back, and its failure. Port unreachable from here
/// (nothing listens) with no working control path: the server is down, not blocked.
pub(super) fn udp_control(
    control: Option<(bool, Option<&Failure>)>,
    refused_here: bool,
) -> Control<'static> {
    let c = match control {
        Some((true, _)) => Control::Ok(None),
        Some((false, Some(f))) if f.message.starts_with(PROXY_SETUP) => {
            Control::Unavailable("cannot be set up (the proxy fails)".into())
        }
        Some((false, f)) if is_refused(f) => {
            Control::Failed("finds nothing listening (refused)".into())
        }
        Some((false, f)) => Control::Unavailable(format!(
            "gets no echo ({})",
            f.map_or("no answer", |f| f.kind.as_str())
        )),
        None => Control::Absent,
    };
    match c {
        Control::Unavailable(why) if refused_here => Control::Failed(format!(
            "{why}, and UDP to the port is refused here (nothing listens)"
        )),
        c => c,
    }
}

pub(super) fn decide(e: &EchoObservation, notes: &mut Notes) -> Decision {
    if let Some(run) = e.direct.iter().find(|r| r.answered()) {
        let dead: Vec<String> = run
            .exchanges
            .iter()
            // A clear margin: the shape never back, its control back at least twice (one
            // control back of three is what a lossy path gives).
            .filter(|x| x.echoed == 0 && x.control_echoed >= 2)
            .map(|x| {
                format!(
                    "{} ({} bytes: 0 of {} back, random control {} of {})",
                    x.shape.as_str(),
                    x.size,
                    x.sent,
                    x.control_echoed,
                    x.sent
                )
            })
            .collect();
        if !dead.is_empty() {
            return (
                Verdict::Blocked,
                Some(Reason::UdpSignature),
                format!(
                    "{}: {} dropped while size-matched random datagrams to the same port come back: protocol-signature filtering",
                    run.server,
                    dead.join(", ")
                ),
            );
        }
        let counts = run
            .exchanges
            .iter()
            .map(|x| {
                format!(
                    "{} {}/{} (control {}/{})",
                    x.shape.as_str(),
                    x.echoed,
                    x.sent,
                    x.control_echoed,
                    x.sent
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        return (
            Verdict::Reachable,
            None,
            format!(
                "{}: no protocol shape singled out; echoed: {counts}",
                run.server
            ),
        );
    }
    nothing_back(
        e.direct
            .iter()
            .map(|r| (r.server.as_str(), r.failure.as_ref())),
        e.control
            .as_ref()
            .map(|r| (r.answered(), r.failure.as_ref())),
        "no datagram of any shape, nor any random control, came back",
        notes,
    )
}

/// Nothing came back from our own echo server on any address (`direct`: each one's server
/// and failure): `udp.timeout` when the control path got echoes, `down` when refused here and
/// silent outside, else inconclusive.
pub(super) fn nothing_back<'a>(
    direct: impl Iterator<Item = (&'a str, Option<&'a Failure>)>,
    control: Option<(bool, Option<&Failure>)>,
    what: &str,
    notes: &mut Notes,
) -> Decision {
    let (servers, failures): (Vec<&str>, Vec<Option<&Failure>>) = direct.unzip();
    let refused_here = !failures.is_empty() && failures.iter().all(|f| is_refused(*f));
    let c = udp_control(control, refused_here);
    judge(
        Some(Reason::UdpTimeout),
        format!("{}: {what}", servers.join(", ")),
        &c,
        notes,
    )
}

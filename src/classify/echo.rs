//! The echo step of an `echo://` target: protocol-shaped datagrams and their size-matched
//! random controls, echoed by a `blockprobe echo` server outside.

use super::{Control, Decision, Notes, judge};
use crate::probe::echo::{EchoObservation, EchoRun};
use crate::probe::failure::FailureKind;
use crate::probe::quic::PROXY_SETUP;
use crate::verdict::{Reason, Verdict};

fn refused(r: &EchoRun) -> bool {
    r.failure
        .as_ref()
        .is_some_and(|f| f.kind == FailureKind::Refused)
}

pub(super) fn decide(e: &EchoObservation, notes: &mut Notes) -> Decision {
    let servers = e
        .direct
        .iter()
        .map(|r| r.server.as_str())
        .collect::<Vec<_>>()
        .join(", ");
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
    let c = match &e.control {
        Some(r) if r.answered() => Control::Ok(None),
        Some(r)
            if r.failure
                .as_ref()
                .is_some_and(|f| f.message.starts_with(PROXY_SETUP)) =>
        {
            Control::Unavailable("cannot be set up (the proxy fails)".into())
        }
        Some(r) if refused(r) => Control::Failed("finds nothing listening (refused)".into()),
        Some(r) => Control::Unavailable(format!(
            "gets no echo ({})",
            r.failure.as_ref().map_or("no answer", |f| f.kind.as_str())
        )),
        None => Control::Absent,
    };
    // Port unreachable from here (nothing listens) and no working control path: the echo
    // server is down, not blocked.
    let refused_here = !e.direct.is_empty() && e.direct.iter().all(refused);
    let c = match c {
        Control::Unavailable(why) if refused_here => Control::Failed(format!(
            "{why}, and UDP to the port is refused here (nothing listens)"
        )),
        c => c,
    };
    judge(
        Some(Reason::UdpTimeout),
        format!("{servers}: no datagram of any shape, nor any random control, came back"),
        &c,
        notes,
    )
}

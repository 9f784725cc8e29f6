//! The media step of a `media://` target: a call-shaped stream (STUN, then RTP) and a random
//! stream of the same sizes at the same instants, both echoed by a `blockprobe echo` server
//! outside. The random stream is the control: only what the call loses beyond it is blamed on
//! the network's treatment of calls.

use super::echo::nothing_back;
use super::{Decision, Notes};
use crate::probe::media::{MediaObservation, MediaRun, Options, StreamStats};
use crate::verdict::{Reason, Verdict};

/// The control stream must come back at least this well for a comparison to mean anything.
pub(super) const CONTROL_FLOOR: f64 = 0.5;

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn kbps(s: &StreamStats) -> String {
    format!("{:.0} kbit/s", s.delivered_bps / 1000.0)
}

/// One stream in words: loss, jitter, delivered rate.
fn describe(s: &StreamStats) -> String {
    format!(
        "{} of {} back (loss {}), jitter {:.1} ms, {}",
        s.echoed,
        s.sent,
        pct(s.loss),
        s.jitter_ms,
        kbps(s)
    )
}

/// The call against its control, on one route.
fn compare(run: &MediaRun, o: &Options) -> Decision {
    let (call, ctl) = (&run.call, &run.control);
    let both = format!(
        "call-shaped stream (STUN, then RTP at {} packets/s, {} bytes): {}; random control stream: {}",
        run.pps,
        run.packet_bytes,
        describe(call),
        describe(ctl)
    );
    let ctl_back = 1.0 - ctl.loss;
    if ctl_back < CONTROL_FLOOR {
        return (
            Verdict::Inconclusive,
            None,
            format!(
                "{}: the path loses {} of random datagrams too, too lossy to judge calls{} — {both}",
                run.server,
                pct(ctl.loss),
                if 2 * run.pps > 200 {
                    format!(
                        " (at {} datagrams/s in all, the echo server's per-source cap — `blockprobe echo --packets-per-source` — may be what drops them)",
                        2 * run.pps
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    if ctl.cut_at.is_some() {
        return (
            Verdict::Inconclusive,
            None,
            format!(
                "{}: both streams were cut (the random one too, after {:.1} s): the path or the echo server stopped, not calls alone — {both}",
                run.server,
                ctl.cut_at.map_or(0.0, |t| t.as_secs_f64())
            ),
        );
    }
    // Only the STUN request (the first packet) came back: the media itself never did.
    let stun_only = call.echoed == 1 && call.cut_at.is_some_and(|t| t.as_millis() < 100);
    if call.echoed == 0 || stun_only {
        return (
            Verdict::Blocked,
            Some(Reason::MediaBlocked),
            format!(
                "{}: nothing of the call-shaped stream came back{}, while the random stream of the same sizes and rate did — {both}",
                run.server,
                if stun_only {
                    " after its STUN request"
                } else {
                    ", not even its STUN request"
                }
            ),
        );
    }
    if let (Some(at), Some(after)) = (call.cut_at, run.control_back_after_cut)
        && after >= CONTROL_FLOOR
    {
        return (
            Verdict::Blocked,
            Some(Reason::MediaCut),
            format!(
                "{}: the call-shaped stream was cut after {:.1} s (nothing back from then on), while {} of the random stream came back after that moment — {both}",
                run.server,
                at.as_secs_f64(),
                pct(after)
            ),
        );
    }
    // (A hair of slack: 0.20 − 0.05 is 0.1499… in floating point.)
    if call.loss - ctl.loss >= o.loss_margin - 1e-9 && call.loss >= 2.0 * ctl.loss {
        return (
            Verdict::Throttled,
            Some(Reason::MediaLoss),
            format!(
                "{}: the call-shaped stream lost {} against the random stream's {} — {both}; per second: {:?}",
                run.server,
                pct(call.loss),
                pct(ctl.loss),
                call.loss_series
            ),
        );
    }
    if call.delivered_bps < o.rate_ratio * ctl.delivered_bps {
        return (
            Verdict::Throttled,
            Some(Reason::MediaRate),
            format!(
                "{}: the call-shaped stream was delivered at {} against the random stream's {} — {both}",
                run.server,
                kbps(call),
                kbps(ctl)
            ),
        );
    }
    (
        Verdict::Reachable,
        None,
        format!("{}: calls' media flows like other UDP — {both}", run.server),
    )
}

pub(super) fn decide(m: &MediaObservation, o: &Options, notes: &mut Notes) -> Decision {
    if let Some(run) = m.direct.iter().find(|r| r.answered()) {
        return compare(run, o);
    }
    nothing_back(
        m.direct
            .iter()
            .map(|r| (r.server.as_str(), r.failure.as_ref())),
        m.control_path
            .as_ref()
            .map(|r| (r.answered(), r.failure.as_ref())),
        "nothing of the call-shaped stream nor of its random control came back",
        notes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stream(sent: u32, echoed: u32, bps: f64) -> StreamStats {
        StreamStats {
            sent,
            echoed,
            loss: 1.0 - f64::from(echoed) / f64::from(sent),
            loss_series: Vec::new(),
            jitter_ms: 0.5,
            rtt_ms: Some(10.0),
            delivered_bps: bps,
            cut_at: None,
        }
    }

    fn run(call: StreamStats, control: StreamStats) -> MediaRun {
        MediaRun {
            server: "192.0.2.7:7007".into(),
            call,
            control,
            control_back_after_cut: None,
            packet_bytes: 182,
            pps: 50,
            failure: None,
            elapsed: Duration::from_secs(11),
        }
    }

    fn verdict(r: &MediaRun) -> (Verdict, Option<Reason>) {
        let (v, reason, _) = compare(r, &Options::default());
        (v, reason)
    }

    #[test]
    fn the_call_is_judged_against_its_control_only() {
        // A shaper: nothing lost, but the call trickles in at a third of the control's rate.
        let shaped = run(stream(500, 500, 24_000.0), stream(500, 500, 72_000.0));
        assert_eq!(
            verdict(&shaped),
            (Verdict::Throttled, Some(Reason::MediaRate))
        );
        // Both lose 30%: a bad path, not the call singled out.
        let lossy = run(stream(500, 350, 50_000.0), stream(500, 350, 50_000.0));
        assert_eq!(verdict(&lossy), (Verdict::Reachable, None));
        // 20% against 5%: throttled by loss (margin 0.15, and more than twice).
        let lossier = run(stream(500, 400, 58_000.0), stream(500, 475, 69_000.0));
        assert_eq!(
            verdict(&lossier),
            (Verdict::Throttled, Some(Reason::MediaLoss))
        );
        // The control loses more than half: too lossy to judge, whatever the call did.
        let awful = run(stream(500, 0, 0.0), stream(500, 200, 29_000.0));
        assert_eq!(verdict(&awful), (Verdict::Inconclusive, None));
        // A cut only counts while the control keeps flowing after it.
        let mut cut = run(stream(500, 100, 14_000.0), stream(500, 500, 72_000.0));
        cut.call.cut_at = Some(Duration::from_secs(2));
        cut.control_back_after_cut = Some(0.98);
        assert_eq!(verdict(&cut), (Verdict::Blocked, Some(Reason::MediaCut)));
        cut.control_back_after_cut = Some(0.3);
        assert_ne!(verdict(&cut).1, Some(Reason::MediaCut));
    }
}

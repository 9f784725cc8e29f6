//! The media step of a `media://HOST:PORT` target: a call's media stream, measured against a
//! `blockprobe echo` server outside the censored network. Two streams run at once, each on its
//! own UDP flow, packet for packet the same size and at the same instants:
//!
//! * the **call**: a STUN Binding Request (the ICE connectivity check a WebRTC, WhatsApp or
//!   Telegram call starts with), then SRTP-sized RTP packets — version 2, a dynamic payload
//!   type (111, Opus), one SSRC, sequence numbers, 48 kHz timestamps, an encrypted-looking
//!   payload and a 10-byte authentication tag — at a call's pace (50 packets/s by default);
//! * the **control**: random bytes of the same sizes, never shaped like RTP or STUN.
//!
//! From the echoes, per stream: loss over time (per second of sending), round-trip jitter
//! (RFC 3550's estimator), delivered bit rate, and the moment the stream was cut, if it was.
//! A censor that throttles or cuts calls while leaving other UDP alone shows as a call stream
//! that loses, slows or dies while its control keeps flowing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::probe::echo::Shape;
use crate::probe::failure::{Failure, FailureKind};
use crate::probe::{ser_ms, socks};

/// RTP payload type of the call stream: dynamic, as WebRTC signals Opus.
pub const PAYLOAD_TYPE: u8 = 111;
/// SRTP's authentication tag (HMAC-SHA1-80).
pub const AUTH_TAG: usize = 10;
/// RTP's fixed header.
pub const RTP_HEADER: usize = 12;
/// A stream is cut when nothing came back for its last fifth, and at least this long.
pub const CUT_FLOOR: Duration = Duration::from_millis(500);

/// The stream's shape and the thresholds of its verdicts, from the target's query
/// (`media://HOST:PORT?duration=10s&pps=50&size=160&loss_margin=0.15&rate_ratio=0.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// How long both streams send.
    pub duration: Duration,
    /// Packets per second of each stream (a 20 ms audio frame: 50).
    pub pps: u32,
    /// Bytes of media payload per packet (Opus at ~64 kbit/s: 160), before the RTP header
    /// and the SRTP tag.
    pub size: usize,
    /// Throttled when the call loses at least this much more than the control (and at least
    /// twice its share).
    pub loss_margin: f64,
    /// Throttled when the call's delivered rate is below this fraction of the control's.
    pub rate_ratio: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            pps: 50,
            size: 160,
            loss_margin: 0.15,
            rate_ratio: 0.5,
        }
    }
}

impl Options {
    /// Reads the target's query; unknown keys and values out of range are errors.
    pub fn of_path(path: &str) -> Result<Self, String> {
        let mut o = Self::default();
        let Some((_, query)) = path.split_once('?') else {
            return Ok(o);
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |why: &str| format!("media option `{k}={v}`: {why}");
            match k {
                "duration" => {
                    // (humantime directly: `parse` reads targets, and targets read these options.)
                    o.duration = humantime::parse_duration(v)
                        .map_err(|e| bad(&format!("{e}; use e.g. 10s")))?;
                    if !(Duration::from_secs(1)..=Duration::from_secs(120)).contains(&o.duration) {
                        return Err(bad("expected 1s to 120s"));
                    }
                }
                "pps" => {
                    o.pps = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=500).contains(n))
                        .ok_or_else(|| bad("expected 1 to 500 packets per second"))?;
                }
                "size" => {
                    o.size = v
                        .parse()
                        .ok()
                        .filter(|n| (8..=1200).contains(n))
                        .ok_or_else(|| bad("expected 8 to 1200 bytes"))?;
                }
                "loss_margin" => {
                    o.loss_margin = v
                        .parse()
                        .ok()
                        .filter(|x: &f64| *x > 0.0 && *x <= 1.0)
                        .ok_or_else(|| bad("expected a fraction in (0, 1]"))?;
                }
                "rate_ratio" => {
                    o.rate_ratio = v
                        .parse()
                        .ok()
                        .filter(|x: &f64| *x > 0.0 && *x <= 1.0)
                        .ok_or_else(|| bad("expected a fraction in (0, 1]"))?;
                }
                _ => {
                    return Err(format!(
                        "unknown media option `{k}` (expected duration, pps, size, loss_margin, rate_ratio)"
                    ));
                }
            }
        }
        Ok(o)
    }

    /// Packets each stream sends (the STUN request included).
    pub fn packets(&self) -> usize {
        ((self.duration.as_secs_f64() * f64::from(self.pps)).round() as usize).max(2)
    }

    fn gap(&self) -> Duration {
        Duration::from_secs_f64(1.0 / f64::from(self.pps))
    }
}

/// Whether a datagram looks like RTP as a call-spotting DPI box would read it: version 2, no
/// padding or extension, no CSRCs, a dynamic payload type (96–127, marker bit aside).
pub fn is_rtp(d: &[u8]) -> bool {
    d.len() >= RTP_HEADER && d[0] == 0x80 && (96..=127).contains(&(d[1] & 0x7f))
}

/// The call stream's packets: a STUN Binding Request, then RTP with an SRTP tag.
fn call_packets(o: &Options) -> Vec<Vec<u8>> {
    let ssrc: [u8; 4] = rand::random();
    let seq0: u16 = rand::random();
    let ts0: u32 = rand::random();
    let per_packet = 48_000 / o.pps.max(1);
    let mut out = Vec::with_capacity(o.packets());
    out.push(Shape::Stun.payload());
    for i in 1..o.packets() {
        let n = u32::try_from(i - 1).unwrap_or(u32::MAX);
        let mut p = Vec::with_capacity(RTP_HEADER + o.size + AUTH_TAG);
        p.push(0x80);
        p.push(if i == 1 {
            0x80 | PAYLOAD_TYPE
        } else {
            PAYLOAD_TYPE
        });
        p.extend(seq0.wrapping_add(n as u16).to_be_bytes());
        p.extend(ts0.wrapping_add(n.wrapping_mul(per_packet)).to_be_bytes());
        p.extend(ssrc);
        p.extend((0..o.size + AUTH_TAG).map(|_| rand::random::<u8>()));
        out.push(p);
    }
    out
}

/// Random bytes of each of `sizes`, none shaped like RTP or a protocol's first packet: the
/// first byte's top bits are `01`, which no RTP or RTCP packet (version 2: `10`), STUN message
/// (`00`), DTLS record (20–63) or QUIC long header (`1x`) starts with — whatever a DPI box's
/// definition of RTP is.
fn control_packets(sizes: impl Iterator<Item = usize>) -> Vec<Vec<u8>> {
    sizes
        .map(|n| {
            loop {
                let mut p: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
                if let Some(b) = p.first_mut() {
                    *b = (*b & 0x3f) | 0x40;
                }
                if !is_rtp(&p) && Shape::of(&p).is_none() {
                    break p;
                }
            }
        })
        .collect()
}

/// One stream's measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamStats {
    pub sent: u32,
    pub echoed: u32,
    /// Share of the stream's packets that never came back.
    pub loss: f64,
    /// The loss of each second of sending, in order.
    pub loss_series: Vec<f64>,
    /// RFC 3550's interarrival jitter, over the round trips of the echoes in arrival order.
    pub jitter_ms: f64,
    /// The median round trip.
    pub rtt_ms: Option<f64>,
    /// Bits echoed per second, from the first packet sent to the last echo (or the last
    /// packet sent, when that is later).
    pub delivered_bps: f64,
    /// The stream was cut: from this moment (since its start) to the end of sending nothing
    /// came back, after echoes before it, for at least a fifth of the stream and
    /// [`CUT_FLOOR`].
    #[serde(rename = "cut_at_ms", serialize_with = "ser_opt_ms")]
    pub cut_at: Option<Duration>,
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

/// Per packet: when it was sent and when its echo came back (since the stream's start).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub sent: Vec<Duration>,
    pub echoed: Vec<Option<Duration>>,
    pub sizes: Vec<usize>,
}

impl Timeline {
    /// The share of packets sent at or after `from` that came back (`None` when none were sent).
    pub fn back_after(&self, from: Duration) -> Option<f64> {
        let (mut n, mut back) = (0u32, 0u32);
        for (s, e) in self.sent.iter().zip(&self.echoed) {
            if *s >= from {
                n += 1;
                back += u32::from(e.is_some());
            }
        }
        (n > 0).then(|| f64::from(back) / f64::from(n))
    }

    pub fn stats(&self, duration: Duration) -> StreamStats {
        let sent = self.sent.len();
        let echoed = self.echoed.iter().flatten().count();
        let loss = if sent == 0 {
            1.0
        } else {
            1.0 - echoed as f64 / sent as f64
        };
        let seconds = self.sent.last().map_or(0, |s| s.as_secs() as usize + 1);
        let mut per = vec![(0u32, 0u32); seconds];
        for (s, e) in self.sent.iter().zip(&self.echoed) {
            let b = &mut per[s.as_secs() as usize];
            b.0 += 1;
            b.1 += u32::from(e.is_some());
        }
        let loss_series = per
            .iter()
            .map(|(n, back)| round3(1.0 - f64::from(*back) / f64::from((*n).max(1))))
            .collect();
        // Round trips of the echoes, in arrival order (RFC 3550 A.8, with the round trip as
        // the transit time).
        let mut arrivals: Vec<(Duration, Duration)> = self
            .sent
            .iter()
            .zip(&self.echoed)
            .filter_map(|(s, e)| e.map(|e| (e, e.saturating_sub(*s))))
            .collect();
        arrivals.sort_by_key(|(at, _)| *at);
        let mut jitter = 0.0f64;
        for w in arrivals.windows(2) {
            let d = (w[1].1.as_secs_f64() - w[0].1.as_secs_f64()).abs();
            jitter += (d - jitter) / 16.0;
        }
        let mut rtts: Vec<Duration> = arrivals.iter().map(|(_, r)| *r).collect();
        rtts.sort();
        let rtt_ms = rtts
            .get(rtts.len() / 2)
            .map(|r| round3(r.as_secs_f64() * 1000.0));
        let bytes: usize = self
            .sizes
            .iter()
            .zip(&self.echoed)
            .filter(|(_, e)| e.is_some())
            .map(|(n, _)| n)
            .sum();
        // Over the whole stream, or longer when echoes trail in late (a shaper's queue).
        let span = arrivals
            .last()
            .map_or(duration, |(at, _)| *at)
            .max(self.sent.last().copied().unwrap_or_default())
            .max(Duration::from_millis(1));
        // The cut: the run of unanswered packets at the end of the stream, after an echo.
        let last_back = self.echoed.iter().rposition(Option::is_some);
        let cut_at = last_back.and_then(|i| {
            let from = *self.sent.get(i + 1)?;
            let end = *self.sent.last()?;
            let quiet = end.saturating_sub(from);
            (quiet >= CUT_FLOOR.max(duration / 5)).then_some(from)
        });
        StreamStats {
            sent: u32::try_from(sent).unwrap_or(u32::MAX),
            echoed: u32::try_from(echoed).unwrap_or(u32::MAX),
            loss: round3(loss),
            loss_series,
            jitter_ms: round3(jitter * 1000.0),
            rtt_ms,
            delivered_bps: (bytes as f64 * 8.0 / span.as_secs_f64()).round(),
            cut_at,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Both streams from one route (from here, or through the control proxy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MediaRun {
    pub server: String,
    /// The stream shaped like a call (STUN, then RTP/SRTP).
    pub call: StreamStats,
    /// Random datagrams of the same sizes at the same instants: the control.
    pub control: StreamStats,
    /// The control stream's share back after the call was cut (when it was).
    pub control_back_after_cut: Option<f64>,
    pub packet_bytes: usize,
    pub pps: u32,
    /// Why nothing could be sent or received (the socket, the proxy), or ICMP refusals.
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl MediaRun {
    /// Any datagram of either stream came back.
    pub fn answered(&self) -> bool {
        self.call.echoed > 0 || self.control.echoed > 0
    }
}

/// The media step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MediaObservation {
    /// The stream's shape and the verdicts' thresholds.
    #[serde(skip)]
    pub options: Options,
    /// Every vantage address (normally one).
    pub direct: Vec<MediaRun>,
    /// Through the control proxy's UDP ASSOCIATE; `None` without one.
    pub control_path: Option<MediaRun>,
}

/// Where one stream's datagrams go: straight to the server, or wrapped for a SOCKS5 relay.
struct Leg {
    sock: UdpSocket,
    header: Option<Vec<u8>>,
}

impl Leg {
    async fn send(&self, p: &[u8]) -> std::io::Result<usize> {
        match &self.header {
            None => self.sock.send(p).await,
            Some(h) => {
                let mut d = h.clone();
                d.extend_from_slice(p);
                self.sock.send(&d).await
            }
        }
    }

    /// The payload of a received datagram (the relay's header stripped).
    fn payload<'a>(&self, d: &'a [u8]) -> Option<&'a [u8]> {
        match &self.header {
            None => Some(d),
            Some(_) => socks::udp_header_len(d).map(|h| &d[h..]),
        }
    }
}

/// The last 8 bytes of a packet: random in both streams, so they name it.
fn key(p: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    let tail = &p[p.len().saturating_sub(8)..];
    k[..tail.len()].copy_from_slice(tail);
    u64::from_le_bytes(k)
}

/// Sends both streams through their legs and collects the echoes until `drain` after the
/// last packet.
async fn streams(
    call: Leg,
    control: Leg,
    o: &Options,
    drain: Duration,
    server: String,
) -> MediaRun {
    let call_packets = call_packets(o);
    let control_packets = control_packets(call_packets.iter().map(Vec::len));
    let index = |ps: &[Vec<u8>]| -> HashMap<u64, usize> {
        ps.iter().enumerate().map(|(i, p)| (key(p), i)).collect()
    };
    let (call_index, control_index) = (index(&call_packets), index(&control_packets));
    let n = call_packets.len();
    let mut lines = [Timeline::default(), Timeline::default()];
    for l in &mut lines {
        l.echoed = vec![None; n];
        l.sizes = call_packets.iter().map(Vec::len).collect();
    }
    let mut failure = None;
    let start = Instant::now();
    let gap = o.gap();
    let mut next = 0usize;
    let mut end = start + o.duration + drain;
    let (mut buf_a, mut buf_b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut echoes = 0usize;
    // ICMP port unreachable, per stream: a censor may forge it for the call's flow only.
    let mut refused = [false; 2];
    let note = |failure: &mut Option<Failure>, refused: &mut bool, e: &std::io::Error| {
        let f = Failure::new(FailureKind::from_io(e), e.to_string());
        *refused |= f.kind == FailureKind::Refused;
        failure.get_or_insert(f);
    };
    loop {
        let send_at = start + gap * u32::try_from(next).unwrap_or(u32::MAX);
        tokio::select! {
            () = tokio::time::sleep_until(send_at), if next < n => {
                let now = start.elapsed();
                // Which stream goes first alternates: a rate cap on the way (or the echo
                // server's) short by one datagram must not always spare the same stream.
                let pair = [(&call, 0, &call_packets[next]), (&control, 1, &control_packets[next])];
                for k in 0..2 {
                    let (leg, line, p) = pair[(k + next) % 2];
                    if let Err(e) = leg.send(p).await {
                        note(&mut failure, &mut refused[line], &e);
                    }
                    lines[line].sent.push(now);
                }
                next += 1;
                if next == n {
                    end = Instant::now() + drain;
                }
            }
            r = call.sock.recv(&mut buf_a) => {
                match r {
                    Ok(len) => {
                        if let Some(i) = call.payload(&buf_a[..len]).and_then(|d| {
                            call_index.get(&key(d)).copied().filter(|i| call_packets[*i] == d)
                        }) && lines[0].echoed[i].is_none() {
                            lines[0].echoed[i] = Some(start.elapsed());
                            echoes += 1;
                        }
                    }
                    Err(e) => note(&mut failure, &mut refused[0], &e),
                }
            }
            r = control.sock.recv(&mut buf_b) => {
                match r {
                    Ok(len) => {
                        if let Some(i) = control.payload(&buf_b[..len]).and_then(|d| {
                            control_index.get(&key(d)).copied().filter(|i| control_packets[*i] == d)
                        }) && lines[1].echoed[i].is_none() {
                            lines[1].echoed[i] = Some(start.elapsed());
                            echoes += 1;
                        }
                    }
                    Err(e) => note(&mut failure, &mut refused[1], &e),
                }
            }
            () = tokio::time::sleep_until(end) => break,
        }
        if next == n && echoes == 2 * n {
            break;
        }
        // Nothing listens there (ICMP port unreachable on both flows) and nothing came back
        // for a while: no echo will.
        if echoes == 0 && refused == [true, true] && start.elapsed() >= drain.min(o.duration) {
            break;
        }
    }
    // Packets not sent (an early stop) are not counted.
    for l in &mut lines {
        let sent = l.sent.len();
        l.echoed.truncate(sent);
        l.sizes.truncate(sent);
    }
    let [call_line, control_line] = lines;
    let call_stats = call_line.stats(o.duration);
    let control_back_after_cut = call_stats
        .cut_at
        .and_then(|t| control_line.back_after(t))
        .map(round3);
    MediaRun {
        server,
        control: control_line.stats(o.duration),
        call: call_stats,
        control_back_after_cut,
        packet_bytes: RTP_HEADER + o.size + AUTH_TAG,
        pps: o.pps,
        failure,
        elapsed: start.elapsed(),
    }
}

async fn direct_leg(addr: SocketAddr) -> std::io::Result<Leg> {
    let sock = UdpSocket::bind(crate::net::unspecified_for(addr)).await?;
    sock.connect(addr).await?;
    Ok(Leg { sock, header: None })
}

fn failed(server: String, o: &Options, f: Failure) -> MediaRun {
    let empty = Timeline::default().stats(o.duration);
    MediaRun {
        server,
        call: empty.clone(),
        control: empty,
        control_back_after_cut: None,
        packet_bytes: RTP_HEADER + o.size + AUTH_TAG,
        pps: o.pps,
        failure: Some(f),
        elapsed: Duration::ZERO,
    }
}

/// Both streams to the echo server at `addr` from here; echoes are awaited `drain` after the
/// last packet.
pub async fn probe(addr: SocketAddr, o: &Options, drain: Duration) -> MediaRun {
    let server = addr.to_string();
    match tokio::try_join!(direct_leg(addr), direct_leg(addr)) {
        Ok((call, control)) => streams(call, control, o, drain, server).await,
        Err(e) => failed(
            server,
            o,
            Failure::new(FailureKind::from_io(&e), e.to_string()),
        ),
    }
}

/// Both streams through the control proxy's UDP relay (one association each), to the server
/// by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    o: &Options,
    timeout: Duration,
) -> MediaRun {
    let server = crate::net::host_port(host, port);
    let relays = tokio::time::timeout(
        timeout,
        futures::future::try_join(
            socks::udp_relay(proxy, host, port),
            socks::udp_relay(proxy, host, port),
        ),
    )
    .await;
    match relays {
        Err(_) => failed(server, o, socks::setup_timeout()),
        Ok(Err(e)) => failed(server, o, socks::setup_failure(&e)),
        Ok(Ok((a, b))) => {
            // The associations live as long as their TCP connections.
            let _held = (a.control, b.control);
            let call = Leg {
                sock: a.sock,
                header: Some(a.header),
            };
            let control = Leg {
                sock: b.sock,
                header: Some(b.header),
            };
            streams(call, control, o, timeout, server).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_call_stream_is_stun_then_rtp_and_its_control_is_neither() {
        let o = Options {
            duration: Duration::from_secs(2),
            ..Options::default()
        };
        let call = call_packets(&o);
        assert_eq!(call.len(), 100);
        assert_eq!(Shape::of(&call[0]), Some(Shape::Stun));
        for (i, p) in call.iter().enumerate().skip(1) {
            assert!(is_rtp(p), "{i}");
            assert_eq!(p.len(), RTP_HEADER + 160 + AUTH_TAG);
        }
        // Sequence numbers and timestamps advance by one frame.
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert_eq!(seq(&call[2]), seq(&call[1]).wrapping_add(1));
        assert_eq!(ts(&call[2]), ts(&call[1]).wrapping_add(960));
        assert_eq!(call[1][1], 0x80 | PAYLOAD_TYPE, "the marker on the first");
        let control = control_packets(call.iter().map(Vec::len));
        for (c, p) in control.iter().zip(&call) {
            assert_eq!(c.len(), p.len());
            assert!(!is_rtp(c) && Shape::of(c).is_none());
            // Not RTP/RTCP by any definition: version 1.
            assert_eq!(c[0] >> 6, 1);
        }
    }

    #[test]
    fn options_read_the_query_and_refuse_nonsense() {
        let o = Options::of_path("/?duration=3s&pps=25&size=100&loss_margin=0.2").unwrap();
        assert_eq!(o.duration, Duration::from_secs(3));
        assert_eq!((o.pps, o.size, o.loss_margin), (25, 100, 0.2));
        assert_eq!(o.packets(), 75);
        assert_eq!(Options::of_path("/").unwrap(), Options::default());
        for bad in [
            "/?pps=0",
            "/?duration=500ms",
            "/?size=9999",
            "/?codec=opus",
            "/?rate_ratio=2",
        ] {
            assert!(Options::of_path(bad).is_err(), "{bad}");
        }
    }

    /// RFC 3550's estimator: a constant round trip has no jitter; alternating round trips of
    /// 10 and 30 ms converge towards 20 ms.
    #[test]
    fn jitter_follows_rfc_3550() {
        let line = |rtts: &[u64]| {
            let sent: Vec<Duration> = (0..rtts.len() as u64).map(|i| ms(i * 20)).collect();
            let echoed = sent
                .iter()
                .zip(rtts)
                .map(|(s, r)| Some(*s + ms(*r)))
                .collect();
            Timeline {
                sizes: vec![100; rtts.len()],
                sent,
                echoed,
            }
        };
        let flat = line(&[15; 50]).stats(Duration::from_secs(1));
        assert_eq!(flat.jitter_ms, 0.0);
        assert_eq!(flat.loss, 0.0);
        assert_eq!(flat.rtt_ms, Some(15.0));
        let alternating: Vec<u64> = (0..200).map(|i| if i % 2 == 0 { 10 } else { 30 }).collect();
        let j = line(&alternating).stats(Duration::from_secs(4)).jitter_ms;
        assert!((j - 20.0).abs() < 0.5, "{j}");
    }

    #[test]
    fn loss_series_rate_and_the_cut() {
        // 3 s at 10 packets/s: echoes for the first second, then nothing.
        let sent: Vec<Duration> = (0..30).map(|i| ms(i * 100)).collect();
        let echoed: Vec<Option<Duration>> = sent
            .iter()
            .map(|s| (*s < ms(1000)).then(|| *s + ms(5)))
            .collect();
        let line = Timeline {
            sizes: vec![100; 30],
            sent,
            echoed,
        };
        let s = line.stats(Duration::from_secs(3));
        assert_eq!(s.loss_series, vec![0.0, 1.0, 1.0]);
        assert_eq!(s.cut_at, Some(ms(1000)));
        assert_eq!(line.back_after(ms(1000)), Some(0.0));
        // 10 echoes of 800 bits over the 2.9 s of sending.
        assert!(
            (s.delivered_bps - 2759.0).abs() < 1.0,
            "{}",
            s.delivered_bps
        );
        // Scattered loss is not a cut.
        let sent: Vec<Duration> = (0..30).map(|i| ms(i * 100)).collect();
        let echoed = sent
            .iter()
            .enumerate()
            .map(|(i, s)| (i % 3 != 0).then(|| *s + ms(5)))
            .collect();
        let s = Timeline {
            sizes: vec![100; 30],
            sent,
            echoed,
        }
        .stats(Duration::from_secs(3));
        assert_eq!(s.cut_at, None);
        assert!((s.loss - 0.333).abs() < 0.001);
    }
}

//! The echo step of an `echo://HOST:PORT` target: datagrams shaped like each protocol's first
//! packet (a WireGuard handshake initiation, an OpenVPN hard reset, a QUIC v1 Initial, a STUN
//! Binding Request) and, for each, a size-matched random control, sent to a `blockprobe echo`
//! server outside the censored network. A shape that dies while its control comes back is
//! protocol-signature DPI — found without any VPN credentials. The same exchange through the
//! control proxy's UDP ASSOCIATE tells a blocked address from a dead server.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::probe::socks;

/// Datagrams of each payload sent (one lost datagram is not a block).
pub const TRIES: u32 = 3;

/// A payload shape: what a DPI box would recognise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// WireGuard handshake initiation: type 1, three zero bytes, 148 bytes in all.
    Wireguard,
    /// OpenVPN over UDP: `P_CONTROL_HARD_RESET_CLIENT_V2` (opcode 7, key id 0), a session id,
    /// no acks, packet id 0 (14 bytes).
    Openvpn,
    /// A QUIC v1 long-header Initial, padded to 1200 bytes.
    Quic,
    /// A STUN Binding Request (RFC 5389 magic cookie), 20 bytes.
    Stun,
}

impl Shape {
    pub const ALL: [Self; 4] = [Self::Wireguard, Self::Openvpn, Self::Quic, Self::Stun];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wireguard => "wireguard",
            Self::Openvpn => "openvpn",
            Self::Quic => "quic",
            Self::Stun => "stun",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A fresh payload of this shape (random where the protocol is random).
    pub fn payload(self) -> Vec<u8> {
        match self {
            Self::Wireguard => {
                let mut p = vec![1, 0, 0, 0];
                p.extend((0..144).map(|_| rand::random::<u8>()));
                p
            }
            Self::Openvpn => {
                let mut p = vec![7 << 3];
                p.extend(rand::random::<[u8; 8]>());
                p.push(0); // no acks
                p.extend([0, 0, 0, 0]); // packet id 0
                p
            }
            Self::Quic => {
                let mut p = vec![0xc3, 0, 0, 0, 1, 8];
                p.extend(rand::random::<[u8; 8]>());
                p.push(8);
                p.extend(rand::random::<[u8; 8]>());
                p.push(0); // no token
                p.extend([0x44, 0x9e]); // length 1182 (2-byte varint)
                p.extend((p.len()..1200).map(|_| rand::random::<u8>()));
                p
            }
            Self::Stun => {
                let mut p = vec![0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
                p.extend(rand::random::<[u8; 12]>());
                p
            }
        }
    }

    /// The shape a datagram has, as a signature-matching DPI box would see it.
    pub fn of(d: &[u8]) -> Option<Self> {
        if d.len() == 148 && d[..4] == [1, 0, 0, 0] {
            Some(Self::Wireguard)
        } else if d.len() >= 14 && d.len() <= 120 && d[0] == 7 << 3 {
            Some(Self::Openvpn)
        } else if d.len() >= 1200 && d[0] & 0xc0 == 0xc0 && d[1..5] == [0, 0, 0, 1] {
            Some(Self::Quic)
        } else if d.len() >= 20 && d[..2] == [0, 1] && d[4..8] == [0x21, 0x12, 0xa4, 0x42] {
            Some(Self::Stun)
        } else {
            None
        }
    }
}

/// Random bytes the size of `shape`'s payload that have no shape.
pub fn control_payload(size: usize) -> Vec<u8> {
    loop {
        let p: Vec<u8> = (0..size).map(|_| rand::random::<u8>()).collect();
        if Shape::of(&p).is_none() {
            return p;
        }
    }
}

/// One payload kind's exchange: the shape and its size-matched random control.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShapeExchange {
    pub shape: Shape,
    pub size: usize,
    pub sent: u32,
    /// Datagrams of the shape that came back intact.
    pub echoed: u32,
    /// The same for the random control of the same size.
    pub control_echoed: u32,
    /// Round trip of the first echo of the shape.
    #[serde(rename = "rtt_ms", serialize_with = "ser_opt_ms")]
    pub rtt: Option<Duration>,
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

/// The echo step from one route (from here, or through the control proxy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EchoRun {
    pub server: String,
    pub exchanges: Vec<ShapeExchange>,
    /// Why nothing could be sent or received (the socket, the proxy), or ICMP refusals.
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl EchoRun {
    /// Any datagram (shape or control) came back.
    pub fn answered(&self) -> bool {
        self.exchanges
            .iter()
            .any(|e| e.echoed > 0 || e.control_echoed > 0)
    }
}

/// The echo step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EchoObservation {
    /// Every vantage address (normally one).
    pub direct: Vec<EchoRun>,
    /// Through the control proxy's UDP ASSOCIATE; `None` without one.
    pub control: Option<EchoRun>,
}

/// Where datagrams go: straight to the server, or wrapped for a SOCKS5 relay.
enum Route {
    Direct,
    Relay { header: Vec<u8> },
}

async fn run(sock: UdpSocket, route: Route, server: String, timeout: Duration) -> EchoRun {
    let start = Instant::now();
    let mut exchanges: Vec<ShapeExchange> = Shape::ALL
        .iter()
        .map(|s| ShapeExchange {
            shape: *s,
            size: s.payload().len(),
            sent: 0,
            echoed: 0,
            control_echoed: 0,
            rtt: None,
        })
        .collect();
    // Every payload, tagged with its exchange and whether it is the control.
    let mut outstanding: Vec<(usize, bool, Vec<u8>, Instant)> = Vec::new();
    let mut failure = None;
    let wrap = |p: &[u8]| match &route {
        Route::Direct => p.to_vec(),
        Route::Relay { header } => {
            let mut d = header.clone();
            d.extend_from_slice(p);
            d
        }
    };
    let gap = (timeout / (2 * TRIES)).min(Duration::from_millis(100));
    let deadline = start + timeout;
    let mut buf = vec![0u8; 4096];
    let mut round = 0u32;
    let mut next_send = start;
    loop {
        if round < TRIES && Instant::now() >= next_send {
            for (i, ex) in exchanges.iter_mut().enumerate() {
                let shaped = ex.shape.payload();
                let control = control_payload(shaped.len());
                for (is_control, p) in [(false, shaped), (true, control)] {
                    if let Err(e) = sock.send(&wrap(&p)).await {
                        failure
                            .get_or_insert(Failure::new(FailureKind::from_io(&e), e.to_string()));
                        continue;
                    }
                    outstanding.push((i, is_control, p, Instant::now()));
                }
                ex.sent += 1;
            }
            round += 1;
            next_send = Instant::now() + gap;
        }
        let wait_until = if round < TRIES {
            next_send.min(deadline)
        } else {
            deadline
        };
        let all_back = exchanges
            .iter()
            .all(|e| e.echoed == TRIES && e.control_echoed == TRIES);
        if Instant::now() >= deadline || (round == TRIES && all_back) {
            break;
        }
        match tokio::time::timeout_at(wait_until, sock.recv(&mut buf)).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                failure.get_or_insert(Failure::new(FailureKind::from_io(&e), e.to_string()));
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    // Nothing listens there: no echo will ever come.
                    break;
                }
            }
            Ok(Ok(n)) => {
                let d = match &route {
                    Route::Direct => &buf[..n],
                    Route::Relay { .. } => match socks::udp_header_len(&buf[..n]) {
                        Some(h) => &buf[h..n],
                        None => continue,
                    },
                };
                if let Some(pos) = outstanding.iter().position(|(_, _, p, _)| p == d) {
                    let (i, is_control, _, sent_at) = outstanding.swap_remove(pos);
                    let ex = &mut exchanges[i];
                    if is_control {
                        ex.control_echoed += 1;
                    } else {
                        ex.echoed += 1;
                        ex.rtt.get_or_insert(sent_at.elapsed());
                    }
                }
            }
        }
    }
    EchoRun {
        server,
        exchanges,
        failure,
        elapsed: start.elapsed(),
    }
}

/// The exchange with the echo server at `addr` from here.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> EchoRun {
    let server = addr.to_string();
    let sock = async {
        let s = UdpSocket::bind(crate::net::unspecified_for(addr)).await?;
        s.connect(addr).await?;
        Ok::<_, std::io::Error>(s)
    };
    match sock.await {
        Ok(s) => run(s, Route::Direct, server, timeout).await,
        Err(e) => failed(
            server,
            Failure::new(FailureKind::from_io(&e), e.to_string()),
        ),
    }
}

fn failed(server: String, f: Failure) -> EchoRun {
    EchoRun {
        server,
        exchanges: Vec::new(),
        failure: Some(f),
        elapsed: Duration::ZERO,
    }
}

/// The exchange through the control proxy's UDP relay, to the server by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> EchoRun {
    let server = crate::net::host_port(host, port);
    let start = Instant::now();
    match tokio::time::timeout(timeout, socks::udp_relay(proxy, host, port)).await {
        Err(_) => failed(server, socks::setup_timeout()),
        Ok(Err(e)) => failed(server, socks::setup_failure(&e)),
        Ok(Ok(relay)) => {
            let left = timeout.saturating_sub(start.elapsed());
            let header = relay.header;
            let _control = relay.control;
            run(relay.sock, Route::Relay { header }, server, left).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_recognised_and_its_controls_are_not() {
        for s in Shape::ALL {
            let p = s.payload();
            assert_eq!(Shape::of(&p), Some(s), "{s:?}");
            for _ in 0..50 {
                let c = control_payload(p.len());
                assert_eq!(c.len(), p.len());
                assert_eq!(Shape::of(&c), None);
            }
        }
    }
}

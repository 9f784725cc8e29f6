//! The OpenVPN step of an `openvpn://HOST:PORT?proto=udp|tcp` target: the client's first
//! packet, `P_CONTROL_HARD_RESET_CLIENT_V2`, answered by `P_CONTROL_HARD_RESET_SERVER_V2` when
//! the path is open. No credentials are needed — unless the server wraps its control channel
//! (`tls-auth`, `tls-crypt`): such a server is silent to an unwrapped reset by design, which
//! the verdict must not call a block. TCP frames each packet with a 2-byte length.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::probe::socks;
use crate::probe::tcp::AddrSource;

/// `P_CONTROL_HARD_RESET_CLIENT_V2`, `P_CONTROL_HARD_RESET_SERVER_V2` (opcodes, key id 0).
pub const HARD_RESET_CLIENT_V2: u8 = 7;
pub const HARD_RESET_SERVER_V2: u8 = 8;

/// Resets sent over UDP (one lost datagram is not a block).
const UDP_TRIES: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }

    /// From a target's path: `/?proto=tcp`; UDP by default.
    pub fn of_path(path: &str) -> Result<Self, String> {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let mut proto = Self::Udp;
        let pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        if pairs.len() > 1 {
            return Err("give `proto=` once".into());
        }
        for pair in pairs {
            match pair {
                "proto=udp" => proto = Self::Udp,
                "proto=tcp" => proto = Self::Tcp,
                other => {
                    return Err(format!(
                        "unknown openvpn:// option `{other}` (expected proto=udp or proto=tcp)"
                    ));
                }
            }
        }
        Ok(proto)
    }
}

pub use crate::probe::Phase;

/// One handshake attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpenvpnAttempt {
    pub server: String,
    pub source: AddrSource,
    pub proto: Proto,
    pub phase: Phase,
    /// Resets sent.
    pub sent: u32,
    /// The server's session id, when it answered (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_session: Option<String>,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl OpenvpnAttempt {
    pub fn answered(&self) -> bool {
        self.phase == Phase::Answered
    }

    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// The OpenVPN step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpenvpnObservation {
    pub proto: Proto,
    pub direct: Vec<OpenvpnAttempt>,
    /// Through the control proxy (CONNECT for TCP, UDP ASSOCIATE for UDP); `None` without one.
    pub control: Option<OpenvpnAttempt>,
}

/// The client's hard reset: opcode/key id, session id, no acks, packet id 0.
pub fn client_reset(session: [u8; 8]) -> Vec<u8> {
    let mut p = vec![HARD_RESET_CLIENT_V2 << 3];
    p.extend(session);
    p.push(0);
    p.extend([0, 0, 0, 0]);
    p
}

/// The server session id of a `HARD_RESET_SERVER_V2` that answers ours (it acknowledges our
/// session id when it carries acks).
pub fn server_reset(d: &[u8], ours: [u8; 8]) -> Option<[u8; 8]> {
    if d.first()? >> 3 != HARD_RESET_SERVER_V2 {
        return None;
    }
    let session: [u8; 8] = d.get(1..9)?.try_into().ok()?;
    // It must acknowledge our reset: packet id 0, our session id.
    let acks = usize::from(*d.get(9)?);
    if acks == 0 || d.get(10..14)? != [0, 0, 0, 0] {
        return None;
    }
    let remote = d.get(10 + 4 * acks..18 + 4 * acks)?;
    (remote == ours).then_some(session)
}

/// The answer to a reset, for the mock network's responder: the server's reset acknowledging
/// the client's packet 0.
pub fn answer_reset(client: &[u8], server_session: [u8; 8]) -> Option<Vec<u8>> {
    if client.first()? >> 3 != HARD_RESET_CLIENT_V2 {
        return None;
    }
    let theirs = client.get(1..9)?;
    let mut p = vec![HARD_RESET_SERVER_V2 << 3];
    p.extend(server_session);
    p.push(1);
    p.extend([0, 0, 0, 0]);
    p.extend(theirs);
    p.extend([0, 0, 0, 0]);
    Some(p)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attempt(server: String, source: AddrSource, proto: Proto) -> OpenvpnAttempt {
    OpenvpnAttempt {
        server,
        source,
        proto,
        phase: Phase::Handshake,
        sent: 0,
        server_session: None,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// UDP: the reset up to three times; `wrap` adds a relay's header, `unwrap` strips it.
async fn udp_exchange(sock: &UdpSocket, a: &mut OpenvpnAttempt, timeout: Duration, header: &[u8]) {
    let session: [u8; 8] = rand::random();
    let mut datagram = header.to_vec();
    datagram.extend(client_reset(session));
    let deadline = Instant::now() + timeout;
    let gap = timeout / UDP_TRIES;
    let mut buf = [0u8; 2048];
    for _ in 0..UDP_TRIES {
        if let Err(e) = sock.send(&datagram).await {
            a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string()));
            return;
        }
        a.sent += 1;
        let until = (Instant::now() + gap).min(deadline);
        loop {
            match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string()));
                    return;
                }
                Ok(Ok(n)) => {
                    let d = if header.is_empty() {
                        &buf[..n]
                    } else {
                        match socks::udp_header_len(&buf[..n]) {
                            Some(h) => &buf[h..n],
                            None => continue,
                        }
                    };
                    if let Some(s) = server_reset(d, session) {
                        a.phase = Phase::Answered;
                        a.server_session = Some(hex(&s));
                        return;
                    }
                }
            }
        }
    }
    a.failure = Some(Failure::timeout());
}

/// TCP: the framed reset on an open connection, and the framed answer.
async fn tcp_exchange(mut s: TcpStream, a: &mut OpenvpnAttempt, timeout: Duration) {
    let session: [u8; 8] = rand::random();
    let reset = client_reset(session);
    let mut framed = u16::try_from(reset.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    framed.extend(&reset);
    let work = async {
        s.write_all(&framed).await?;
        a.sent = 1;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut packet).await?;
        Ok::<_, std::io::Error>(packet)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => a.failure = Some(Failure::timeout()),
        Ok(Err(e)) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
        Ok(Ok(p)) => match server_reset(&p, session) {
            Some(srv) => {
                a.phase = Phase::Answered;
                a.server_session = Some(hex(&srv));
            }
            None => {
                a.failure = Some(Failure::new(
                    FailureKind::Malformed,
                    "the answer is not an OpenVPN server reset",
                ));
            }
        },
    }
}

/// The handshake with `addr` from here.
pub async fn probe(addr: SocketAddr, proto: Proto, timeout: Duration) -> OpenvpnAttempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage, proto);
    match proto {
        Proto::Udp => {
            let sock = async {
                let s = UdpSocket::bind(crate::net::unspecified_for(addr)).await?;
                s.connect(addr).await?;
                Ok::<_, std::io::Error>(s)
            };
            match sock.await {
                Ok(s) => udp_exchange(&s, &mut a, timeout, &[]).await,
                Err(e) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
            }
        }
        Proto::Tcp => {
            let (stream, _) = crate::probe::tcp::connect(addr, timeout).await;
            match stream {
                Ok(s) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    tcp_exchange(s, &mut a, left).await;
                }
                Err(f) => {
                    a.phase = Phase::Connect;
                    a.failure = Some(f);
                }
            }
        }
    }
    a.elapsed = start.elapsed();
    a
}

/// The handshake through the control proxy: CONNECT for TCP, UDP ASSOCIATE for UDP, to the
/// server by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    proto: Proto,
    timeout: Duration,
) -> OpenvpnAttempt {
    let start = Instant::now();
    let server = crate::net::host_port(host, port);
    let mut a = attempt(server, AddrSource::Control, proto);
    match proto {
        Proto::Tcp => {
            match tokio::time::timeout(timeout, socks::connect(proxy, host, port)).await {
                Err(_) => a.failure = Some(socks::setup_timeout()),
                Ok(Err(e)) => {
                    a.phase = Phase::Connect;
                    a.failure = Some(socks::setup_failure(&e));
                }
                Ok(Ok(s)) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    tcp_exchange(s, &mut a, left).await;
                }
            }
        }
        Proto::Udp => {
            match tokio::time::timeout(timeout, socks::udp_relay(proxy, host, port)).await {
                Err(_) => a.failure = Some(socks::setup_timeout()),
                Ok(Err(e)) => a.failure = Some(socks::setup_failure(&e)),
                Ok(Ok(relay)) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    udp_exchange(&relay.sock, &mut a, left, &relay.header).await;
                }
            }
        }
    }
    a.elapsed = start.elapsed();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_and_its_answer() {
        let ours = [7u8; 8];
        let reset = client_reset(ours);
        assert_eq!(reset.len(), 14);
        assert_eq!(
            crate::probe::echo::Shape::of(&reset),
            Some(crate::probe::echo::Shape::Openvpn)
        );
        let answer = answer_reset(&reset, [9u8; 8]).unwrap();
        assert_eq!(server_reset(&answer, ours), Some([9u8; 8]));
        assert_eq!(
            server_reset(&answer, [1u8; 8]),
            None,
            "an ack for another session"
        );
        assert_eq!(
            server_reset(&reset, ours),
            None,
            "a client reset is no answer"
        );
        assert_eq!(Proto::of_path("/?proto=tcp"), Ok(Proto::Tcp));
        assert_eq!(Proto::of_path("/"), Ok(Proto::Udp));
        assert!(Proto::of_path("/?proto=sctp").is_err());
    }
}

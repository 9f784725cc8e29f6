//! The UDP step for voice and video calls: a STUN Binding Request (RFC 5389) to every address,
//! directly or through the control proxy's UDP relay (SOCKS5 UDP ASSOCIATE). A valid Binding
//! Response (matching transaction, magic cookie) proves a STUN server answered; its
//! XOR-MAPPED-ADDRESS is the address the server saw.
//!
//! The message codec is shared with the mock network's STUN server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::probe::socks;
use crate::probe::tcp::{AddrSource, Remap};

pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER: usize = 20;

/// A Binding Request with no attributes.
pub fn binding_request(tid: [u8; 12]) -> [u8; HEADER] {
    let mut m = [0u8; HEADER];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[8..20].copy_from_slice(&tid);
    m
}

/// A parsed response to our request.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Binding Success (true) or Binding Error (false); both prove a STUN server.
    pub success: bool,
    pub mapped: Option<SocketAddr>,
}

/// Parses `buf` as the response to the request with `tid`; `Err` says why it is not one.
pub fn parse_response(buf: &[u8], tid: &[u8; 12]) -> Result<Response, String> {
    if buf.len() < HEADER {
        return Err(format!("{} bytes, shorter than a STUN header", buf.len()));
    }
    let kind = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if buf[0] & 0xc0 != 0 || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
        return Err("not a STUN message (no magic cookie)".into());
    }
    if &buf[8..20] != tid {
        return Err("STUN message for another transaction".into());
    }
    if HEADER + len > buf.len() {
        return Err("STUN message shorter than its length field".into());
    }
    let success = match kind {
        BINDING_SUCCESS => true,
        BINDING_ERROR => false,
        other => {
            return Err(format!(
                "STUN message type {other:#06x} is not a Binding response"
            ));
        }
    };
    let mut mapped = None;
    let mut at = HEADER;
    while at + 4 <= HEADER + len {
        let t = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let l = usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]]));
        let v = buf
            .get(at + 4..at + 4 + l)
            .ok_or("truncated STUN attribute")?;
        match t {
            ATTR_XOR_MAPPED_ADDRESS => mapped = decode_address(v, Some(tid)).or(mapped),
            ATTR_MAPPED_ADDRESS if mapped.is_none() => mapped = decode_address(v, None),
            _ => {}
        }
        at += 4 + l.div_ceil(4) * 4;
    }
    Ok(Response { success, mapped })
}

/// (XOR-)MAPPED-ADDRESS value: reserved, family, port, address.
fn decode_address(v: &[u8], xor: Option<&[u8; 12]>) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&cookie);
    if let Some(tid) = xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        key[4..].copy_from_slice(tid);
    }
    let ip = match v.get(1)? {
        1 => {
            let mut o: [u8; 4] = v.get(4..8)?.try_into().ok()?;
            if xor.is_some() {
                o.iter_mut().zip(&key).for_each(|(b, k)| *b ^= k);
            }
            IpAddr::from(o)
        }
        2 => {
            let mut o: [u8; 16] = v.get(4..20)?.try_into().ok()?;
            if xor.is_some() {
                o.iter_mut().zip(&key).for_each(|(b, k)| *b ^= k);
            }
            IpAddr::from(o)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The server side: a Binding Success carrying the requester's address, or `None` when
/// `req` is not a Binding Request.
pub fn binding_response(req: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if req.len() < HEADER
        || u16::from_be_bytes([req[0], req[1]]) != BINDING_REQUEST
        || req[4..8] != MAGIC_COOKIE.to_be_bytes()
    {
        return None;
    }
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(&req[8..20]);
    let mut value = vec![0u8, 0];
    value.extend_from_slice(&(from.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match from.ip() {
        IpAddr::V4(v4) => {
            value[1] = 1;
            value.extend(v4.octets().iter().zip(&key).map(|(b, k)| b ^ k));
        }
        IpAddr::V6(v6) => {
            value[1] = 2;
            value.extend(v6.octets().iter().zip(&key).map(|(b, k)| b ^ k));
        }
    }
    let mut m = Vec::with_capacity(HEADER + 4 + value.len());
    m.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    m.extend_from_slice(&u16::try_from(4 + value.len()).ok()?.to_be_bytes());
    m.extend_from_slice(&req[4..20]);
    m.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    m.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
    m.extend_from_slice(&value);
    Some(m)
}

/// One STUN exchange with one address (or through the proxy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StunAttempt {
    /// The STUN server's address (`HOST:PORT` through the proxy, which resolves names).
    pub server: String,
    pub source: AddrSource,
    /// A valid Binding Response arrived.
    pub ok: bool,
    /// Binding Success (not an error response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// The address the server saw us as (XOR-MAPPED-ADDRESS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapped_address: Option<SocketAddr>,
    /// Round-trip time from the first request sent to the response.
    #[serde(
        rename = "rtt_ms",
        serialize_with = "ser_opt_ms",
        skip_serializing_if = "Option::is_none"
    )]
    pub rtt: Option<Duration>,
    /// Requests sent (retransmitted at 1/3 and 2/3 of the timeout).
    pub sent: u32,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

/// The UDP step's evidence: every direct attempt, and the control path's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StunObservation {
    pub direct: Vec<StunAttempt>,
    /// Through the control proxy's UDP relay; `None` without `--control-proxy`.
    pub control: Option<StunAttempt>,
    /// Without a control proxy: `--stun-reference`, a STUN server expected to answer from
    /// here (asked once per run and vantage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<StunAttempt>,
}

/// How datagrams reach the server: a connected socket, or wrapped for the SOCKS5 relay.
enum Channel {
    Direct(UdpSocket),
    Relay {
        sock: UdpSocket,
        header: Vec<u8>,
        /// Keeps the association alive: it ends when this TCP connection closes.
        _control: tokio::net::TcpStream,
    },
}

impl Channel {
    async fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Direct(s) => s.send(msg).await.map(drop),
            Self::Relay { sock, header, .. } => {
                let mut d = header.clone();
                d.extend_from_slice(msg);
                sock.send(&d).await.map(drop)
            }
        }
    }

    /// The next datagram's payload (the relay's header removed).
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<std::ops::Range<usize>> {
        match self {
            Self::Direct(s) => s.recv(buf).await.map(|n| 0..n),
            Self::Relay { sock, .. } => {
                let n = sock.recv(buf).await?;
                let skip = socks::udp_header_len(&buf[..n]).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad SOCKS5 UDP header")
                })?;
                Ok(skip..n)
            }
        }
    }
}

async fn exchange(ch: &Channel, timeout: Duration) -> (u32, Result<(Response, Duration), Failure>) {
    let tid: [u8; 12] = rand::random();
    let req = binding_request(tid);
    let start = Instant::now();
    let deadline = start + timeout;
    let mut sent = 0u32;
    let mut buf = vec![0u8; 2048];
    // Retransmit like the DNS step: at 0, 1/3 and 2/3 of the timeout.
    for round in 1..=3u32 {
        if let Err(e) = ch.send(&req).await {
            return (sent, Err(Failure::from_error(&e)));
        }
        sent += 1;
        let round_end = if round == 3 {
            deadline
        } else {
            start + timeout * round / 3
        };
        loop {
            match tokio::time::timeout_at(round_end, ch.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return (sent, Err(Failure::from_error(&e))),
                Ok(Ok(range)) => {
                    return match parse_response(&buf[range], &tid) {
                        Ok(r) => (sent, Ok((r, start.elapsed()))),
                        Err(why) if why.contains("another transaction") => continue,
                        Err(why) => (sent, Err(Failure::new(FailureKind::Malformed, why))),
                    };
                }
            }
        }
    }
    (sent, Err(Failure::timeout()))
}

fn attempt(
    server: String,
    source: AddrSource,
    start: Instant,
    (sent, res): (u32, Result<(Response, Duration), Failure>),
) -> StunAttempt {
    let (ok, success, mapped_address, rtt, failure) = match res {
        Ok((r, rtt)) => (true, Some(r.success), r.mapped, Some(rtt), None),
        Err(f) => (false, None, None, None, Some(f)),
    };
    StunAttempt {
        server,
        source,
        ok,
        success,
        mapped_address,
        rtt,
        sent,
        failure,
        elapsed: start.elapsed(),
    }
}

/// A Binding Request to `addr` (after `--connect-to`), from here.
pub async fn probe(
    addr: SocketAddr,
    source: AddrSource,
    remap: &Remap,
    timeout: Duration,
) -> StunAttempt {
    let start = Instant::now();
    let real = remap.apply(addr);
    let bind: SocketAddr = if real.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = async {
        let s = UdpSocket::bind(bind).await?;
        s.connect(real).await?;
        Ok::<_, std::io::Error>(s)
    };
    let result = match sock.await {
        Ok(s) => exchange(&Channel::Direct(s), timeout).await,
        Err(e) => (0, Err(Failure::from_error(&e))),
    };
    attempt(addr.to_string(), source, start, result)
}

/// The same request through the control proxy's UDP relay; the proxy resolves `host`.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    timeout: Duration,
) -> StunAttempt {
    let start = Instant::now();
    let server = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let setup = async {
        let (control, relay) = socks::udp_associate(proxy).await?;
        let bind: SocketAddr = if relay.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(relay).await?;
        Ok::<_, socks::SocksError>(Channel::Relay {
            sock,
            header: socks::udp_header(host, port)?,
            _control: control,
        })
    };
    let result = match tokio::time::timeout(timeout, setup).await {
        Err(_) => (0, Err(Failure::timeout())),
        Ok(Err(e)) => (0, Err(Failure::from_error(&e))),
        Ok(Ok(ch)) => {
            let left = timeout.saturating_sub(start.elapsed());
            exchange(&ch, left).await
        }
    };
    attempt(server, AddrSource::Control, start, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_response_round_trip() {
        let tid = [7u8; 12];
        let req = binding_request(tid);
        for from in ["192.0.2.7:5000", "[2001:db8::1]:61000"] {
            let from: SocketAddr = from.parse().unwrap();
            let resp = binding_response(&req, from).unwrap();
            let r = parse_response(&resp, &tid).unwrap();
            assert_eq!(
                r,
                Response {
                    success: true,
                    mapped: Some(from)
                }
            );
        }
    }

    #[test]
    fn rejects_what_is_not_our_response() {
        let tid = [1u8; 12];
        let resp = binding_response(&binding_request(tid), "192.0.2.1:1".parse().unwrap()).unwrap();
        assert!(
            parse_response(&resp, &[2u8; 12])
                .unwrap_err()
                .contains("another")
        );
        assert!(parse_response(b"HTTP/1.1 400 Bad Request\r\n\r\n", &tid).is_err());
        assert!(parse_response(&resp[..10], &tid).is_err());
        // A request is not a response.
        assert!(parse_response(&binding_request(tid), &tid).is_err());
        assert!(
            binding_response(b"hello, world, not stun", "192.0.2.1:1".parse().unwrap()).is_none()
        );
    }
}

//! The QUIC step: an HTTP/3 GET (QUIC v1, ALPN h3) with quinn and rustls, and the packets that
//! tell *what* a censor drops: a version-negotiation ping (a long header with a reserved
//! version, padded to 1200 bytes: the UDP path and a QUIC endpoint, without QUIC v1), a
//! handshake with a decoy SNI on the same address (SNI filtering versus a blocked address), and
//! the same GET through the control proxy's SOCKS5 UDP ASSOCIATE.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf as _;
use quinn::udp::{RecvMeta, Transmit};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::probe::socks;
use crate::probe::tcp::AddrSource;

pub use crate::probe::socks::PROXY_SETUP;

/// The reserved version (`0x?a?a?a?a`, RFC 9000 §15) of the version-negotiation ping.
pub const RESERVED_VERSION: u32 = 0x1a2a_3a4a;

/// One QUIC connection attempt (a GET, or a bare handshake for the decoy).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuicAttempt {
    /// `IP:PORT`, or `HOST:PORT` through the control proxy.
    pub server: String,
    pub source: AddrSource,
    pub sni: String,
    /// The QUIC handshake completed.
    pub handshake: bool,
    /// The certificate verified for the SNI (`None` when none was seen or not checked).
    pub verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_error: Option<String>,
    /// The HTTP/3 status of the GET.
    pub status: Option<u16>,
    pub bytes: u64,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl QuicAttempt {
    fn new(server: String, source: AddrSource, sni: &str) -> Self {
        Self {
            server,
            source,
            sni: sni.to_owned(),
            handshake: false,
            verified: None,
            cert_error: None,
            status: None,
            bytes: 0,
            failure: None,
            elapsed: Duration::ZERO,
        }
    }

    /// A response came back over a verified connection.
    pub fn ok(&self) -> bool {
        self.status.is_some() && self.verified != Some(false)
    }

    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// The version-negotiation ping to one address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionPing {
    pub server: String,
    /// A Version Negotiation packet came back: a QUIC endpoint, reachable over UDP.
    pub answered: bool,
    /// The versions it offers (hex).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

/// The QUIC step's evidence for one target from one vantage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuicObservation {
    /// The URL fetched over HTTP/3.
    pub url: String,
    /// The GET to every vantage address.
    pub direct: Vec<QuicAttempt>,
    /// A handshake with the decoy SNI on the first silent address (run when the target's SNI
    /// got no answer).
    pub decoy: Option<QuicAttempt>,
    /// The version-negotiation ping to the first address.
    pub version_ping: Option<VersionPing>,
    /// The same GET through the control proxy (UDP ASSOCIATE); `None` without one.
    pub control: Option<QuicAttempt>,
}

/// What the QUIC step needs to know, and the run's client endpoints.
pub struct QuicOptions {
    pub timeout: Duration,
    /// Body bytes read at most (`--max-body`).
    pub max_body: u64,

    /// Verifies against the run's roots, ALPN h3.
    pub verify: Arc<rustls::ClientConfig>,
    /// Checks no certificate (the decoy's handshake: any answer is an answer).
    pub any_cert: Arc<rustls::ClientConfig>,
    pub decoy_sni: String,
}

impl QuicOptions {
    /// QUIC needs TLS 1.3 and ALPN h3; the rest comes from the run's TLS configurations.
    pub fn new(
        verify: &rustls::ClientConfig,
        any_cert: &rustls::ClientConfig,
        timeout: Duration,
        max_body: u64,
        decoy_sni: &str,
    ) -> Self {
        let h3 = |c: &rustls::ClientConfig| {
            let mut c = c.clone();
            c.alpn_protocols = vec![b"h3".to_vec()];
            Arc::new(c)
        };
        Self {
            timeout,
            max_body,
            verify: h3(verify),
            any_cert: h3(any_cert),
            decoy_sni: decoy_sni.to_owned(),
        }
    }

    fn client(&self, tls: &Arc<rustls::ClientConfig>) -> Result<quinn::ClientConfig, Failure> {
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls.clone())
            .map_err(|e| Failure::new(FailureKind::Tls, e.to_string()))?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
        let mut transport = quinn::TransportConfig::default();
        // Our own timeout bounds the step; an abandoned connection dies by itself soon after
        // (quinn waits at least 3 PTOs, about 3 initial RTTs: keep that within the timeout).
        if let Ok(idle) = quinn::IdleTimeout::try_from(self.timeout) {
            transport.max_idle_timeout(Some(idle));
        }
        transport.initial_rtt((self.timeout / 8).min(Duration::from_millis(333)));
        cfg.transport_config(Arc::new(transport));
        Ok(cfg)
    }
}

/// The endpoint configuration of every attempt: datagrams of at most 1472 bytes (QUIC's
/// packets are 1200-1452), which keeps each endpoint's receive buffers small.
fn endpoint_config() -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::default();
    let _ = cfg.max_udp_payload_size(1472);
    cfg
}

/// A fresh client endpoint (its own UDP socket) for one attempt: a censor that blackholes one
/// flow (by its 5-tuple) must not silence the next target's attempt, or the decoy's. A plain
/// socket (no segmentation offload) keeps an endpoint's buffers to a few KiB.
fn endpoint_for(addr: SocketAddr) -> io::Result<(quinn::Endpoint, Mute)> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    let io = UdpSocket::from_std(socket)?;
    let mute = Mute::default();
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(),
        None,
        Arc::new(PlainUdp(io, mute.clone())),
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, mute))
}

/// Silences an endpoint's socket once its attempt is over: a closing connection answers every
/// packet with a CONNECTION_CLOSE, and a peer that answers those (a Version Negotiation for
/// each) would keep the two ping-ponging for as long as the process lives.
#[derive(Clone, Debug, Default)]
struct Mute(Arc<std::sync::atomic::AtomicBool>);

impl Mute {
    fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A UDP socket for quinn without GRO/GSO: one datagram per receive.
#[derive(Debug)]
struct PlainUdp(UdpSocket, Mute);

impl quinn::AsyncUdpSocket for PlainUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(PlainWritable(self))
    }

    fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
        if self.1.is_set() {
            return Ok(());
        }
        let seg = t.segment_size.unwrap_or(t.contents.len()).max(1);
        for d in t.contents.chunks(seg) {
            self.0.try_send_to(d, t.destination)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_recv_ready(cx))?;
            match self.0.try_recv_from(&mut bufs[0]) {
                Ok(_) if self.1.is_set() => {}
                Ok((n, from)) => {
                    meta[0] = RecvMeta {
                        addr: from,
                        len: n,
                        stride: n,
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP errors surface on unconnected sockets too: not a reason to stop.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn may_fragment(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct PlainWritable(Arc<PlainUdp>);

impl quinn::UdpPoller for PlainWritable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.0.poll_send_ready(cx)
    }
}

/// A quinn error as a failure, with the certificate problem when our verifier refused it.
fn failure_of(e: &quinn::ConnectionError, a: &mut QuicAttempt) -> Failure {
    use quinn::ConnectionError as E;
    match e {
        E::TimedOut => Failure::timeout(),
        E::Reset => Failure::new(FailureKind::Reset, "stateless reset"),
        E::TransportError(t) if t.reason.contains("certificate") => {
            a.verified = Some(false);
            a.cert_error = Some(t.reason.clone());
            Failure::new(FailureKind::Certificate, t.reason.clone())
        }
        E::ConnectionClosed(c) if u64::from(c.error_code) == 0x2 => {
            Failure::new(FailureKind::Refused, "CONNECTION_REFUSED")
        }
        E::ConnectionClosed(c) => Failure::new(
            FailureKind::Tls,
            format!("closed by the peer: {}", c.error_code),
        ),
        E::ApplicationClosed(c) => Failure::new(
            FailureKind::Http,
            format!("closed by the application: {}", c.error_code),
        ),
        other => Failure::new(FailureKind::Other, other.to_string()),
    }
}

/// Connects (and, with `get`, sends one GET) within the timeout.
#[allow(clippy::too_many_arguments)] // private: the three public entry points name them
async fn attempt(
    endpoint: io::Result<(quinn::Endpoint, Mute)>,
    to: SocketAddr,
    server: String,
    source: AddrSource,
    sni: &str,
    tls: &Arc<rustls::ClientConfig>,
    opts: &QuicOptions,
    get: Option<&str>,
) -> QuicAttempt {
    let start = Instant::now();
    let mut a = QuicAttempt::new(server, source, sni);
    let cfg = match opts.client(tls) {
        Ok(c) => c,
        Err(f) => {
            a.failure = Some(f);
            return a;
        }
    };
    let (endpoint, mute) = match endpoint {
        Ok(e) => e,
        Err(e) => {
            a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string()));
            return a;
        }
    };
    let verifying = Arc::ptr_eq(tls, &opts.verify);
    let work = async {
        let conn = endpoint
            .connect_with(cfg, to, sni)
            .map_err(|e| Failure::new(FailureKind::Other, e.to_string()))?
            .await
            .map_err(|e| failure_of(&e, &mut a))?;
        a.handshake = true;
        if verifying {
            a.verified = Some(true);
        }
        let Some(uri) = get else {
            conn.close(0u32.into(), b"done");
            return Ok(());
        };
        let result = h3_get(&conn, uri, opts.max_body, &mut a).await;
        if let (Err(_), Some(e)) = (&result, conn.close_reason()) {
            return Err(failure_of(&e, &mut a));
        }
        conn.close(0u32.into(), b"done");
        result
    };
    match tokio::time::timeout(opts.timeout, work).await {
        Err(_) => a.failure = Some(Failure::timeout()),
        Ok(Err(f)) => a.failure = Some(f),
        Ok(Ok(())) => {}
    }
    // The endpoint ends with its attempt: no connection lingers to answer (or be answered by)
    // a peer after the step, and its socket (and any relay) is released.
    endpoint.close(0u32.into(), b"");
    // Let the CONNECTION_CLOSE leave, then nothing more.
    tokio::task::yield_now().await;
    mute.set();
    a.elapsed = start.elapsed();
    a
}

async fn h3_get(
    conn: &quinn::Connection,
    uri: &str,
    max_body: u64,
    a: &mut QuicAttempt,
) -> Result<(), Failure> {
    let http = |e: &dyn std::fmt::Display| Failure::new(FailureKind::Http, e.to_string());
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn.clone()))
        .await
        .map_err(|e| http(&e))?;
    let drive = tokio::spawn(async move { driver.wait_idle().await });
    let req = http::Request::get(uri).body(()).map_err(|e| http(&e))?;
    let result = async {
        let mut stream = send.send_request(req).await.map_err(|e| http(&e))?;
        stream.finish().await.map_err(|e| http(&e))?;
        let resp = stream.recv_response().await.map_err(|e| http(&e))?;
        a.status = Some(resp.status().as_u16());
        while a.bytes < max_body {
            match stream.recv_data().await.map_err(|e| http(&e))? {
                Some(mut chunk) => {
                    let n = chunk.remaining();
                    a.bytes += n as u64;
                    chunk.advance(n);
                }
                None => break,
            }
        }
        Ok(())
    }
    .await;
    drive.abort();
    result
}

/// The HTTP/3 GET of `url` to `addr` from here.
pub async fn get(addr: SocketAddr, sni: &str, url: &str, opts: &QuicOptions) -> QuicAttempt {
    attempt(
        endpoint_for(addr),
        addr,
        addr.to_string(),
        AddrSource::Vantage,
        sni,
        &opts.verify,
        opts,
        Some(url),
    )
    .await
}

/// A handshake with the decoy SNI to `addr`, certificate unchecked: does this address answer
/// QUIC at all?
pub async fn decoy(addr: SocketAddr, opts: &QuicOptions) -> QuicAttempt {
    attempt(
        endpoint_for(addr),
        addr,
        addr.to_string(),
        AddrSource::Vantage,
        &opts.decoy_sni,
        &opts.any_cert,
        opts,
        None,
    )
    .await
}

/// The version-negotiation ping: 1200 bytes with a reserved version. A QUIC server answers
/// with the versions it speaks; a closed UDP port answers with ICMP (refused).
pub async fn version_ping(addr: SocketAddr, timeout: Duration) -> VersionPing {
    let start = Instant::now();
    let mut out = VersionPing {
        server: addr.to_string(),
        answered: false,
        versions: Vec::new(),
        failure: None,
        elapsed: Duration::ZERO,
    };
    let dcid: [u8; 8] = rand::random();
    let scid: [u8; 8] = rand::random();
    let work = async {
        let bind: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(addr).await?;
        let ping = version_ping_packet(&dcid, &scid);
        let mut buf = [0u8; 1500];
        // Two sends: one lost datagram is not a blocked path.
        for round in 0..2u32 {
            sock.send(&ping).await?;
            let wait = timeout / 2;
            match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    if let Some((d, s, versions)) = parse_version_negotiation(&buf[..n])
                        && d == scid
                        && s == dcid
                    {
                        return Ok(versions);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) if round == 1 => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"));
                }
                Err(_) => {}
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer"))
    };
    match work.await {
        Ok(v) => {
            out.answered = true;
            out.versions = v.iter().map(|v| format!("{v:#010x}")).collect();
        }
        Err(e) => out.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
    }
    out.elapsed = start.elapsed();
    out
}

pub fn version_ping_packet(dcid: &[u8; 8], scid: &[u8; 8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1200);
    p.push(0xc0);
    p.extend_from_slice(&RESERVED_VERSION.to_be_bytes());
    p.push(8);
    p.extend_from_slice(dcid);
    p.push(8);
    p.extend_from_slice(scid);
    p.resize(1200, 0);
    p
}

/// (destination CID, source CID, versions) of a Version Negotiation packet.
pub fn parse_version_negotiation(d: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u32>)> {
    if d.first()? & 0x80 == 0 || d.get(1..5)? != [0, 0, 0, 0] {
        return None;
    }
    let mut at = 5;
    let dl = usize::from(*d.get(at)?);
    let dcid = d.get(at + 1..at + 1 + dl)?.to_vec();
    at += 1 + dl;
    let sl = usize::from(*d.get(at)?);
    let scid = d.get(at + 1..at + 1 + sl)?.to_vec();
    at += 1 + sl;
    let versions = d
        .get(at..)?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some((dcid, scid, versions))
}

/// The GET through the control proxy: QUIC datagrams carried by SOCKS5 UDP ASSOCIATE, to the
/// target by name (the proxy resolves it outside).
pub async fn get_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    url: &str,
    opts: &QuicOptions,
) -> QuicAttempt {
    let server = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    // Failures here are the proxy's, not the target's.
    let proxy_failure = |f: Failure| Failure::new(f.kind, format!("{PROXY_SETUP}{}", f.message));
    let setup = async {
        let (control, relay) = socks::udp_associate(proxy)
            .await
            .map_err(|e| proxy_failure(Failure::from_error(&e)))?;
        let header = socks::udp_header(host, port).map_err(|e| Failure::from_error(&e))?;
        let bind: SocketAddr = if relay.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let io = UdpSocket::bind(bind)
            .await
            .map_err(|e| Failure::new(FailureKind::from_io(&e), e.to_string()))?;
        Ok::<_, Failure>(Arc::new(Socks5Udp {
            io,
            relay,
            header,
            _control: control,
            mute: Mute::default(),
        }))
    };
    let sock = match tokio::time::timeout(opts.timeout, setup).await {
        Ok(Ok(s)) => s,
        Ok(Err(f)) => {
            let mut a = QuicAttempt::new(server, AddrSource::Control, host);
            a.failure = Some(f);
            return a;
        }
        Err(_) => {
            let mut a = QuicAttempt::new(server, AddrSource::Control, host);
            a.failure = Some(proxy_failure(Failure::timeout()));
            return a;
        }
    };
    let mute = sock.mute.clone();
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(),
        None,
        sock,
        Arc::new(quinn::TokioRuntime),
    )
    .map(|e| (e, mute));
    attempt(
        endpoint,
        PLACEHOLDER,
        server,
        AddrSource::Control,
        host,
        &opts.verify,
        opts,
        Some(url),
    )
    .await
}

/// Where quinn believes the target is when the proxy carries it by name: every datagram to it
/// goes to the relay with the name's header, every datagram from the relay comes from it.
const PLACEHOLDER: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201),
    443,
    0,
    0,
));

/// A UDP socket that speaks through a SOCKS5 relay (one destination: the target).
#[derive(Debug)]
struct Socks5Udp {
    io: UdpSocket,
    relay: SocketAddr,
    /// The SOCKS5 UDP request header naming the target.
    header: Vec<u8>,
    /// The association lives as long as this TCP connection.
    _control: tokio::net::TcpStream,
    mute: Mute,
}

impl quinn::AsyncUdpSocket for Socks5Udp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(Writable(self))
    }

    fn try_send(&self, t: &Transmit<'_>) -> io::Result<()> {
        if self.mute.is_set() {
            return Ok(());
        }
        let seg = t.segment_size.unwrap_or(t.contents.len()).max(1);
        for d in t.contents.chunks(seg) {
            let mut buf = Vec::with_capacity(self.header.len() + d.len());
            buf.extend_from_slice(&self.header);
            buf.extend_from_slice(d);
            self.io.try_send_to(&buf, self.relay)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            let (n, from) = match self.io.try_recv_from(&mut bufs[0]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            };
            if from != self.relay || self.mute.is_set() {
                continue;
            }
            let Some(hl) = socks::udp_header_len(&bufs[0][..n]) else {
                continue;
            };
            bufs[0].copy_within(hl..n, 0);
            meta[0] = RecvMeta {
                addr: PLACEHOLDER,
                len: n - hl,
                stride: n - hl,
                ecn: None,
                dst_ip: None,
            };
            return Poll::Ready(Ok(1));
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        let port = self.io.local_addr()?.port();
        Ok(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            port,
            0,
            0,
        )))
    }

    fn may_fragment(&self) -> bool {
        // Stay at 1200-byte packets: no path-MTU discovery through a relay.
        true
    }
}

#[derive(Debug)]
struct Writable(Arc<Socks5Udp>);

impl quinn::UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.io.poll_send_ready(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_negotiation_round_trip() {
        let (d, s) = ([1u8; 8], [2u8; 8]);
        let ping = version_ping_packet(&d, &s);
        assert_eq!(ping.len(), 1200);
        assert_eq!(&ping[1..5], &RESERVED_VERSION.to_be_bytes());
        // A server's answer swaps the connection IDs and lists its versions.
        let mut vn = vec![0xc3, 0, 0, 0, 0, 8];
        vn.extend_from_slice(&s);
        vn.push(8);
        vn.extend_from_slice(&d);
        vn.extend_from_slice(&1u32.to_be_bytes());
        let (dc, sc, v) = parse_version_negotiation(&vn).unwrap();
        assert_eq!((dc, sc, v), (s.to_vec(), d.to_vec(), vec![1]));
        assert!(
            parse_version_negotiation(&ping).is_none(),
            "a ping is no answer"
        );
    }
}

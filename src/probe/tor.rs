//! The Tor step of a `tor://HOST:PORT` target: a relay's OR-port link handshake. TLS (with the
//! random `www.….com` SNI Tor's own clients send), then the link protocol's `VERSIONS` cell,
//! answered by the relay's `VERSIONS` and `CERTS` cells (tor-spec §4). No credentials are
//! needed: every relay and bridge answers this to anyone, so silence or a reset is never "by
//! design". Relays present self-signed link certificates; the chain is recorded, not verified.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::tcp::AddrSource;
use crate::probe::tls::{TlsClient, TlsObservation};
use crate::probe::{Phase, ser_ms, socks};

/// Cell commands (tor-spec §3).
pub const VERSIONS: u8 = 7;
pub const CERTS: u8 = 129;

/// The link protocol versions we offer (those every current relay speaks).
pub const OFFERED: [u16; 3] = [3, 4, 5];

/// Cells from a relay are never longer than this (a CERTS cell is about 1.5 KB).
const MAX_CELL: usize = 16 * 1024;

/// One link handshake.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TorAttempt {
    pub server: String,
    pub source: AddrSource,
    pub phase: Phase,
    /// The TLS handshake, when the TCP connection opened.
    pub tls: Option<TlsObservation>,
    /// The link protocol versions the relay offered in its `VERSIONS` cell.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub link_versions: Vec<u16>,
    /// The certificate types in the relay's `CERTS` cell (1 link, 2 RSA identity, 4 Ed25519
    /// signing, 5 TLS link, 7 RSA→Ed25519 cross-certificate).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cert_types: Vec<u8>,
    /// When the TLS handshake failed here: one with the decoy SNI (`--decoy-sni`) on the same
    /// address. Its completing shows the relay is up and the Tor-looking ClientHello is what
    /// is stopped (the handshake with Tor's SNI was then tried once more before this record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoy: Option<TlsObservation>,
    /// The relay answered `VERSIONS` over the decoy's TLS (it is a relay, whatever the SNI).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub decoy_answered: bool,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl TorAttempt {
    pub fn answered(&self) -> bool {
        self.phase == Phase::Answered
    }

    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }

    /// Whether the TLS handshake completed.
    pub fn tls_ok(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.ok)
    }
}

/// The Tor step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TorObservation {
    pub direct: Vec<TorAttempt>,
    /// Through the control proxy's CONNECT; `None` without one.
    pub control: Option<TorAttempt>,
}

/// A variable-length cell with a 2-byte circuit id (the only width before versions are
/// agreed): `VERSIONS` carrying `versions`.
pub fn versions_cell(versions: &[u16]) -> Vec<u8> {
    let mut c = vec![0, 0, VERSIONS];
    let len = u16::try_from(versions.len() * 2).expect("few versions");
    c.extend(len.to_be_bytes());
    for v in versions {
        c.extend(v.to_be_bytes());
    }
    c
}

/// A `CERTS` cell (4-byte circuit id, link protocol ≥ 4) holding certificates of these types;
/// the bodies are opaque here.
pub fn certs_cell(certs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut payload = vec![u8::try_from(certs.len()).expect("few certificates")];
    for (kind, body) in certs {
        payload.push(*kind);
        payload.extend(
            u16::try_from(body.len())
                .expect("short certificate")
                .to_be_bytes(),
        );
        payload.extend(*body);
    }
    let mut c = vec![0, 0, 0, 0, CERTS];
    c.extend(
        u16::try_from(payload.len())
            .expect("short cell")
            .to_be_bytes(),
    );
    c.extend(payload);
    c
}

/// Reads one variable-length cell: its command and payload.
pub async fn read_var_cell<S: AsyncRead + Unpin>(
    s: &mut S,
    circ_id_len: usize,
) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 7];
    let head = &mut head[..circ_id_len + 3];
    s.read_exact(head).await?;
    let cmd = head[circ_id_len];
    let len = usize::from(u16::from_be_bytes([
        head[circ_id_len + 1],
        head[circ_id_len + 2],
    ]));
    if len > MAX_CELL {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a {len}-byte cell"),
        ));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok((cmd, payload))
}

/// The versions in a `VERSIONS` payload.
pub fn parse_versions(payload: &[u8]) -> Vec<u16> {
    payload
        .chunks_exact(2)
        .map(|v| u16::from_be_bytes([v[0], v[1]]))
        .collect()
}

/// The certificate types in a `CERTS` payload, or `None` when it does not parse.
pub fn parse_certs(payload: &[u8]) -> Option<Vec<u8>> {
    let (&n, mut rest) = payload.split_first()?;
    let mut types = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let (&kind, r) = rest.split_first()?;
        let len = usize::from(u16::from_be_bytes([*r.first()?, *r.get(1)?]));
        rest = r.get(2 + len..)?;
        types.push(kind);
    }
    Some(types)
}

/// The SNI Tor's clients send: `www.` + 4 to 25 random base32 characters + `.com`.
pub fn random_sni() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let n = 4 + usize::from(rand::random::<u8>()) % 22;
    let name: String = (0..n)
        .map(|_| char::from(ALPHABET[usize::from(rand::random::<u8>() % 32)]))
        .collect();
    format!("www.{name}.com")
}

/// Whether an SNI has the shape of Tor's (what a DPI box keying on it, as the mock censor's
/// `reset-tor-tls` does, matches).
pub fn looks_like_tor_sni(sni: &str) -> bool {
    sni.strip_prefix("www.")
        .and_then(|r| r.strip_suffix(".com"))
        .is_some_and(|mid| {
            (4..=25).contains(&mid.len())
                && mid
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        })
}

fn attempt(server: String, source: AddrSource) -> TorAttempt {
    TorAttempt {
        server,
        source,
        phase: Phase::Handshake,
        tls: None,
        link_versions: Vec::new(),
        cert_types: Vec::new(),
        decoy: None,
        decoy_answered: false,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// TLS, `VERSIONS` out, the relay's `VERSIONS` and `CERTS` in, over an open connection.
/// `began`: when the attempt started (its `elapsed` is taken when `VERSIONS` arrives).
async fn link<S>(
    s: S,
    a: &mut TorAttempt,
    tls: &TlsClient,
    sni: &str,
    began: Instant,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let (obs, stream) = tls.handshake(s, sni, &[], timeout).await;
    a.failure.clone_from(&obs.failure);
    a.tls = Some(obs);
    let Some(mut s) = stream else {
        return;
    };
    let left = timeout.saturating_sub(start.elapsed());
    let work = async {
        s.write_all(&versions_cell(&OFFERED)).await?;
        s.flush().await?;
        let (cmd, payload) = read_var_cell(&mut s, 2).await?;
        if cmd != VERSIONS {
            return Ok(Err(format!(
                "the relay's first cell is command {cmd}, not VERSIONS"
            )));
        }
        if payload.len() % 2 == 1 {
            return Ok(Err(format!(
                "a VERSIONS cell of {} bytes (versions are 2 bytes each)",
                payload.len()
            )));
        }
        a.link_versions = parse_versions(&payload);
        let Some(&agreed) = a.link_versions.iter().filter(|v| OFFERED.contains(v)).max() else {
            return Ok(Err(format!(
                "no link protocol in common (the relay offers {:?})",
                a.link_versions
            )));
        };
        // The relay's VERSIONS proves a Tor link; its CERTS, when they follow, are recorded.
        a.phase = Phase::Answered;
        a.elapsed = began.elapsed();
        let width = if agreed >= 4 { 4 } else { 2 };
        if let Ok((CERTS, payload)) = read_var_cell(&mut s, width).await {
            a.cert_types = parse_certs(&payload).unwrap_or_default();
        }
        Ok::<_, std::io::Error>(Ok(()))
    };
    match tokio::time::timeout(left, work).await {
        Err(_) if a.answered() => {}
        Err(_) => a.failure = Some(Failure::timeout()),
        Ok(Err(e)) if a.answered() => drop(e),
        Ok(Err(e)) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
        Ok(Ok(Err(why))) => a.failure = Some(Failure::new(FailureKind::Malformed, why)),
        Ok(Ok(Ok(()))) => {}
    }
}

/// The link handshake with `addr` from here; when its TLS handshake fails, the link handshake
/// with `decoy_sni` on the same address, and if the relay answers that, the one with Tor's SNI
/// once more.
pub async fn probe(
    addr: SocketAddr,
    tls: &TlsClient,
    decoy_sni: &str,
    timeout: Duration,
) -> TorAttempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage);
    let (stream, _) = crate::probe::tcp::connect(addr, timeout).await;
    match stream {
        Ok(s) => link(s, &mut a, tls, &random_sni(), start, timeout).await,
        Err(f) => {
            a.phase = Phase::Connect;
            a.failure = Some(f);
        }
    }
    if a.phase == Phase::Handshake && !a.tls_ok() {
        let mut decoy = attempt(a.server.clone(), AddrSource::Vantage);
        match crate::probe::tcp::connect(addr, timeout).await {
            (Ok(s), _) => link(s, &mut decoy, tls, decoy_sni, Instant::now(), timeout).await,
            (Err(f), elapsed) => {
                decoy.tls = Some(TlsObservation {
                    failure: Some(f),
                    elapsed,
                    ..TlsObservation::new(decoy_sni)
                });
            }
        }
        // The relay answers a decoy: one lost flight is not a block, so ask again.
        if decoy.answered() {
            let mut again = attempt(a.server.clone(), AddrSource::Vantage);
            let began = Instant::now();
            if let (Ok(s), _) = crate::probe::tcp::connect(addr, timeout).await {
                link(s, &mut again, tls, &random_sni(), began, timeout).await;
                if again.answered() || again.tls_ok() {
                    a = again;
                }
            }
        }
        a.decoy_answered = decoy.answered();
        a.decoy = decoy.tls;
    }
    if !a.answered() {
        a.elapsed = start.elapsed();
    }
    a
}

/// The link handshake through the control proxy's CONNECT, to the relay by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    tls: &TlsClient,
    timeout: Duration,
) -> TorAttempt {
    let start = Instant::now();
    let mut a = attempt(crate::net::host_port(host, port), AddrSource::Control);
    match tokio::time::timeout(timeout, socks::connect(proxy, host, port)).await {
        Err(_) => a.failure = Some(socks::setup_timeout()),
        Ok(Err(e)) => {
            a.phase = Phase::Connect;
            a.failure = Some(socks::setup_failure(&e));
        }
        Ok(Ok(s)) => {
            let left = timeout.saturating_sub(start.elapsed());
            link(s, &mut a, tls, &random_sni(), start, left).await;
        }
    }
    if !a.answered() {
        a.elapsed = start.elapsed();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip() {
        let v = versions_cell(&OFFERED);
        assert_eq!(v, [0, 0, 7, 0, 6, 0, 3, 0, 4, 0, 5]);
        assert_eq!(parse_versions(&v[5..]), vec![3, 4, 5]);
        let c = certs_cell(&[(1, b"abc"), (2, b""), (7, b"xy")]);
        assert_eq!(c[4], CERTS);
        assert_eq!(parse_certs(&c[7..]), Some(vec![1, 2, 7]));
        assert_eq!(parse_certs(&[2, 1, 0, 9]), None, "a truncated CERTS cell");
    }

    #[test]
    fn sni_looks_like_tors() {
        for _ in 0..50 {
            let s = random_sni();
            assert!(looks_like_tor_sni(&s), "{s}");
            assert!(rustls_pki_types::ServerName::try_from(s.clone()).is_ok());
        }
        for other in [
            "example.com",
            "www.example.org",
            "www.abc.com",
            "www.Example1.com",
        ] {
            assert!(!looks_like_tor_sni(other), "{other}");
        }
    }
}

//! The WireGuard step of a `wireguard://HOST:PORT?public_key=B64[&private_key=B64]
//! [&preshared_key=B64]` target: a real Noise IK handshake initiation (148 bytes, mac1 keyed by
//! the server's public key), built and its 92-byte response verified by Cloudflare's boringtun.
//! A WireGuard server answers only its peers: without a client key registered at the server the
//! probe still sends a well-formed initiation (a fresh key), but silence then proves nothing.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::probe::socks;
use crate::probe::tcp::AddrSource;

/// Initiations sent (WireGuard retransmits too).
const TRIES: u32 = 3;

/// The keys of a `wireguard://` target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    pub server_public: [u8; 32],
    pub client_private: Option<[u8; 32]>,
    pub preshared: Option<[u8; 32]>,
}

fn key(name: &str, value: &str) -> Result<[u8; 32], String> {
    // Query strings may carry base64's `+`, `/`, `=` percent-encoded.
    let decoded = value
        .replace("%2B", "+")
        .replace("%2b", "+")
        .replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%3D", "=")
        .replace("%3d", "=");
    base64::engine::general_purpose::STANDARD
        .decode(decoded.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| format!("`{name}` is not a base64 WireGuard key (32 bytes)"))
}

impl Keys {
    /// From a target's path (`/?public_key=…&private_key=…`).
    pub fn of_path(path: &str) -> Result<Self, String> {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let (mut server, mut client, mut psk) = (None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "public_key" => server = Some(key(k, v)?),
                "private_key" => client = Some(key(k, v)?),
                "preshared_key" => psk = Some(key(k, v)?),
                other => {
                    return Err(format!(
                        "unknown wireguard:// option `{other}` (public_key, private_key, preshared_key)"
                    ));
                }
            }
        }
        Ok(Self {
            server_public: server
                .ok_or("a wireguard:// target needs `public_key=` (the server's)")?,
            client_private: client,
            preshared: psk,
        })
    }
}

/// One handshake attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WireguardAttempt {
    pub server: String,
    pub source: AddrSource,
    /// A client key registered at the server was given (`private_key=`): without one, no
    /// server answers.
    pub keyed: bool,
    pub sent: u32,
    /// A handshake response that verifies came back.
    pub answered: bool,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl WireguardAttempt {
    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// The WireGuard step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WireguardObservation {
    pub direct: Vec<WireguardAttempt>,
    /// Through the control proxy's UDP ASSOCIATE; `None` without one.
    pub control: Option<WireguardAttempt>,
}

async fn exchange(
    sock: &UdpSocket,
    header: &[u8],
    keys: &Keys,
    timeout: Duration,
    a: &mut WireguardAttempt,
) {
    // Without a registered key, a fresh one: the initiation is well formed either way.
    let client = StaticSecret::from(keys.client_private.unwrap_or_else(rand::random));
    let mut tunn = Tunn::new(
        client,
        PublicKey::from(keys.server_public),
        keys.preshared,
        None,
        rand::random::<u32>() >> 8,
        None,
    );
    let deadline = Instant::now() + timeout;
    let gap = timeout / TRIES;
    let mut out = vec![0u8; 2048];
    let mut buf = vec![0u8; 2048];
    for round in 0..TRIES {
        let packet = match tunn.format_handshake_initiation(&mut out, round > 0) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => {
                a.failure = Some(Failure::new(FailureKind::Other, "no handshake initiation"));
                return;
            }
        };
        let mut datagram = header.to_vec();
        datagram.extend(&packet);
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
                    // A response that verifies completes the handshake: boringtun then wants
                    // to send its first (keepalive) packet.
                    if matches!(
                        tunn.decapsulate(None, d, &mut out),
                        TunnResult::WriteToNetwork(_) | TunnResult::Done
                    ) && d.len() == 92
                    {
                        a.answered = true;
                        return;
                    }
                }
            }
        }
    }
    a.failure = Some(Failure::timeout());
}

fn attempt(server: String, source: AddrSource, keys: &Keys) -> WireguardAttempt {
    WireguardAttempt {
        server,
        source,
        keyed: keys.client_private.is_some(),
        sent: 0,
        answered: false,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// The handshake with `addr` from here.
pub async fn probe(addr: SocketAddr, keys: &Keys, timeout: Duration) -> WireguardAttempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage, keys);
    let sock = async {
        let s = UdpSocket::bind(crate::net::unspecified_for(addr)).await?;
        s.connect(addr).await?;
        Ok::<_, std::io::Error>(s)
    };
    match sock.await {
        Ok(s) => exchange(&s, &[], keys, timeout, &mut a).await,
        Err(e) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
    }
    a.elapsed = start.elapsed();
    a
}

/// The handshake through the control proxy's UDP relay, to the server by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    keys: &Keys,
    timeout: Duration,
) -> WireguardAttempt {
    let start = Instant::now();
    let server = crate::net::host_port(host, port);
    let mut a = attempt(server, AddrSource::Control, keys);
    match tokio::time::timeout(timeout, socks::udp_relay(proxy, host, port)).await {
        Err(_) => a.failure = Some(socks::setup_timeout()),
        Ok(Err(e)) => a.failure = Some(socks::setup_failure(&e)),
        Ok(Ok(relay)) => {
            let left = timeout.saturating_sub(start.elapsed());
            exchange(&relay.sock, &relay.header, keys, left, &mut a).await;
        }
    }
    a.elapsed = start.elapsed();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_a_target() {
        let k = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let enc = k
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D");
        let keys = Keys::of_path(&format!("/?public_key={k}&private_key={enc}")).unwrap();
        assert_eq!(keys.server_public, [7u8; 32]);
        assert_eq!(keys.client_private, Some([7u8; 32]));
        assert!(Keys::of_path("/").is_err(), "the server's key is required");
        assert!(Keys::of_path("/?public_key=abc").is_err());
        assert!(Keys::of_path(&format!("/?public_key={k}&junk=1")).is_err());
    }
}

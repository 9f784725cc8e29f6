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
    /// The server sent a cookie reply (it is up, under load; the probe retried with it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cookie: bool,
    /// After an answered handshake: the data phase and a second handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataPhase>,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl WireguardAttempt {
    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// What happened after a completed handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataPhase {
    /// Transport-data packets sent (inert inner packets no server forwards).
    pub sent: u32,
    /// A second handshake on the same flow, after the data, was answered.
    pub same_flow: bool,
    /// When it was not: whether a handshake on a fresh flow (a new socket) was — the server is
    /// up, the first flow was cut. Only from here (not through the proxy).
    pub fresh_flow: Option<bool>,
}

impl WireguardAttempt {
    /// The handshake completed, and then the flow died while a fresh one works.
    pub fn cut(&self) -> bool {
        self.data
            .as_ref()
            .is_some_and(|d| !d.same_flow && d.fresh_flow == Some(true))
    }

    /// The flow kept working after the handshake (no data phase ran: nothing to say).
    pub fn flow_ok(&self) -> bool {
        self.answered && self.data.as_ref().is_none_or(|d| d.same_flow)
    }
}

/// The WireGuard step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WireguardObservation {
    pub direct: Vec<WireguardAttempt>,
    /// Through the control proxy's UDP ASSOCIATE; `None` without one.
    pub control: Option<WireguardAttempt>,
}

/// A new `Tunn` for the target's keys (a fresh client key when none is registered: the
/// initiation is well formed either way).
fn tunnel(keys: &Keys) -> Tunn {
    let client = StaticSecret::from(keys.client_private.unwrap_or_else(rand::random));
    Tunn::new(
        client,
        PublicKey::from(keys.server_public),
        keys.preshared,
        None,
        rand::random::<u32>() >> 8,
        None,
    )
}

/// One handshake: initiations (up to [`TRIES`], spread over `timeout`) until a response that
/// verifies comes back. `Ok(true)` answered, `Ok(false)` silence.
async fn handshake(
    sock: &UdpSocket,
    header: &[u8],
    tunn: &mut Tunn,
    timeout: Duration,
    sent: &mut u32,
    cookie: &mut bool,
) -> Result<bool, Failure> {
    let deadline = Instant::now() + timeout;
    let gap = timeout / TRIES;
    let mut out = vec![0u8; 2048];
    let mut buf = vec![0u8; 2048];
    for round in 0..TRIES {
        let packet = match tunn.format_handshake_initiation(&mut out, round > 0) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            _ => return Err(Failure::new(FailureKind::Other, "no handshake initiation")),
        };
        let mut datagram = header.to_vec();
        datagram.extend(&packet);
        sock.send(&datagram)
            .await
            .map_err(|e| Failure::new(FailureKind::from_io(&e), e.to_string()))?;
        *sent += 1;
        // Jittered, so that flows with one client key do not keep meeting in the server's
        // one-initiation-per-20-ms window; the last waits to the deadline.
        let until = if round + 1 == TRIES {
            deadline
        } else {
            (Instant::now() + gap.mul_f64(rand::random_range(0.5..1.0))).min(deadline)
        };
        loop {
            match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(Failure::new(FailureKind::from_io(&e), e.to_string())),
                Ok(Ok(n)) => {
                    let d = if header.is_empty() {
                        &buf[..n]
                    } else {
                        match socks::udp_header_len(&buf[..n]) {
                            Some(h) => &buf[h..n],
                            None => continue,
                        }
                    };
                    // A cookie reply (type 3, 64 bytes): the server is up but under load; the
                    // next initiation carries the cookie (mac2).
                    if d.len() == 64 && d[0] == 3 {
                        let _ = tunn.decapsulate(None, d, &mut out);
                        *cookie = true;
                        break;
                    }
                    // A response that verifies completes the handshake: boringtun then wants
                    // to send its first (keepalive) packet.
                    if d.len() == 92
                        && matches!(
                            tunn.decapsulate(None, d, &mut out),
                            TunnResult::WriteToNetwork(_) | TunnResult::Done
                        )
                    {
                        return Ok(true);
                    }
                }
            }
        }
    }
    Ok(false)
}

/// Transport-data packets sent after a completed handshake, before the second handshake.
const DATA_PACKETS: u32 = 8;

/// An inner packet no server forwards: IPv4 from 0.0.0.0 (outside every peer's AllowedIPs)
/// to 0.0.0.0, an experimental protocol, TTL 0; sized like a small real packet.
fn inert_packet() -> Vec<u8> {
    let mut p = vec![0u8; 160];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&160u16.to_be_bytes());
    p[9] = 253;
    p
}

/// After a completed handshake: data packets on the flow, then a second handshake on the same
/// flow. A censor that cuts WireGuard flows after their handshake lets the first through and
/// not the second.
async fn data_phase(
    sock: &UdpSocket,
    header: &[u8],
    tunn: &mut Tunn,
    timeout: Duration,
    a: &mut WireguardAttempt,
) {
    let mut out = vec![0u8; 2048];
    let mut data = DataPhase {
        sent: 0,
        same_flow: false,
        fresh_flow: None,
    };
    let inner = inert_packet();
    for _ in 0..DATA_PACKETS {
        if let TunnResult::WriteToNetwork(p) = tunn.encapsulate(&inner, &mut out) {
            let mut datagram = header.to_vec();
            datagram.extend(&*p);
            if sock.send(&datagram).await.is_err() {
                break;
            }
            data.sent += 1;
        }
        // Paced like traffic, and past the servers' initiation flood limit (20 ms).
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    data.same_flow = matches!(
        handshake(sock, header, tunn, timeout, &mut a.sent, &mut a.cookie).await,
        Ok(true)
    );
    a.data = Some(data);
}

async fn exchange(
    sock: &UdpSocket,
    header: &[u8],
    keys: &Keys,
    timeout: Duration,
    a: &mut WireguardAttempt,
) {
    let mut tunn = tunnel(keys);
    match handshake(sock, header, &mut tunn, timeout, &mut a.sent, &mut a.cookie).await {
        Err(f) => a.failure = Some(f),
        Ok(false) => a.failure = Some(Failure::timeout()),
        Ok(true) => {
            a.answered = true;
            data_phase(sock, header, &mut tunn, timeout, a).await;
        }
    }
}

async fn connected(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind(crate::net::unspecified_for(addr)).await?;
    s.connect(addr).await?;
    Ok(s)
}

fn attempt(server: String, source: AddrSource, keys: &Keys) -> WireguardAttempt {
    WireguardAttempt {
        server,
        source,
        keyed: keys.client_private.is_some(),
        sent: 0,
        answered: false,
        cookie: false,
        data: None,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// The handshake with `addr` from here; after it, the data phase, and when the flow then goes
/// silent, a handshake on a fresh flow.
pub async fn probe(addr: SocketAddr, keys: &Keys, timeout: Duration) -> WireguardAttempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage, keys);
    match connected(addr).await {
        Ok(s) => exchange(&s, &[], keys, timeout, &mut a).await,
        Err(e) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
    }
    if a.data.as_ref().is_some_and(|d| !d.same_flow) {
        let fresh = match connected(addr).await {
            Ok(s) => {
                let (mut sent, mut cookie) = (0, false);
                let t = &mut tunnel(keys);
                matches!(
                    handshake(&s, &[], t, timeout, &mut sent, &mut cookie).await,
                    Ok(true)
                )
            }
            Err(_) => false,
        };
        if let Some(d) = a.data.as_mut() {
            d.fresh_flow = Some(fresh);
        }
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

/// The `wireguard://` targets of a wg-quick configuration (`[Interface]` with `PrivateKey`,
/// `[Peer]`s with `PublicKey`, `PresharedKey`, `Endpoint`): one per peer with an endpoint, each
/// with its line; a problem is an error at its line. AmneziaWG's parameters (`Jc`, `Jmin`,
/// `Jmax`, `S1`, `S2`, `H1`–`H4`) are refused: such a server ignores a plain handshake.
pub fn wg_quick_targets(text: &str, first_line: u64) -> Vec<crate::probe::ConfigTarget> {
    fn enc(k: &str) -> String {
        k.trim()
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    }
    struct Peer {
        line: u64,
        public: Option<String>,
        psk: Option<String>,
        endpoint: Option<String>,
    }
    let mut out = Vec::new();
    let mut private = None;
    let mut amnezia = None;
    let mut peers: Vec<Peer> = Vec::new();
    let mut section = "";
    for (i, raw) in text.lines().enumerate() {
        let line = first_line + i as u64;
        let l = raw.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if l.starts_with('[') {
            section = if l.eq_ignore_ascii_case("[interface]") {
                "interface"
            } else if l.eq_ignore_ascii_case("[peer]") {
                peers.push(Peer {
                    line,
                    public: None,
                    psk: None,
                    endpoint: None,
                });
                "peer"
            } else {
                out.push((line, Err(format!("unknown wg-quick section `{l}`"))));
                ""
            };
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            out.push((line, Err(format!("`{l}` is not KEY = VALUE"))));
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
        match (section, k.as_str(), peers.last_mut()) {
            ("interface", "privatekey", _) => private = Some(v),
            ("interface", "jc" | "jmin" | "jmax" | "s1" | "s2" | "h1" | "h2" | "h3" | "h4", _) => {
                amnezia.get_or_insert(line);
            }
            ("peer", "publickey", Some(p)) => p.public = Some(v),
            ("peer", "presharedkey", Some(p)) => p.psk = Some(v),
            ("peer", "endpoint", Some(p)) => p.endpoint = Some(v),
            _ => {}
        }
    }
    if let Some(line) = amnezia {
        out.push((
            line,
            Err("AmneziaWG parameters (Jc, Jmin, Jmax, S1, S2, H1–H4) are not supported yet: such a server ignores a plain WireGuard handshake".into()),
        ));
        return out;
    }
    for p in peers {
        let target = match (&p.public, &p.endpoint) {
            (None, _) => Err("a [Peer] without PublicKey".to_owned()),
            (_, None) => Err("a [Peer] without Endpoint: nothing to probe".to_owned()),
            (Some(public), Some(endpoint)) => {
                let mut t = format!("wireguard://{endpoint}?public_key={}", enc(public));
                if let Some(k) = &private {
                    t.push_str(&format!("&private_key={}", enc(k)));
                }
                if let Some(k) = &p.psk {
                    t.push_str(&format!("&preshared_key={}", enc(k)));
                }
                Ok(t)
            }
        };
        out.push((p.line, target));
    }
    out
}

/// The mock network's WireGuard server and its one registered client: fixed keys, so scenario
/// files can carry them ([`MOCK_SERVER_PUBLIC`], [`MOCK_CLIENT_PRIVATE`]).
pub fn mock_keys() -> (StaticSecret, StaticSecret) {
    use sha2::Digest as _;
    let server: [u8; 32] = sha2::Sha256::digest(b"blockprobe mocknet wireguard server").into();
    let client: [u8; 32] = sha2::Sha256::digest(b"blockprobe mocknet wireguard client").into();
    (StaticSecret::from(server), StaticSecret::from(client))
}

/// [`mock_keys`]: the server's public key and the client's private key, as a target gives them.
pub const MOCK_SERVER_PUBLIC: &str = "5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=";
pub const MOCK_CLIENT_PRIVATE: &str = "7oYLtPkdgaAFgZq5Hoy0XtOHe4FvpfcNgM7FAGF122o=";

/// The mock network's server side: a `Tunn` of the mock server for the mock client.
pub fn mock_server() -> Tunn {
    let (server, client) = mock_keys();
    Tunn::new(server, PublicKey::from(&client), None, None, 1, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wg_quick_configs() {
        let conf = "[Interface]\nPrivateKey = 7oYLtPkdgaAFgZq5Hoy0XtOHe4FvpfcNgM7FAGF122o=\nAddress = 10.0.0.2/32\nDNS = 1.1.1.1\n\n[Peer] # nl\nPublicKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\nPresharedKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\nAllowedIPs = 0.0.0.0/0\nEndpoint = vpn.example:51820\n\n[Peer]\nPublicKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\n";
        let got = wg_quick_targets(conf, 1);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 6);
        let t = got[0].1.as_ref().unwrap();
        assert!(
            t.starts_with("wireguard://vpn.example:51820?public_key=5AhMecT%2BJf4"),
            "{t}"
        );
        let keys = Keys::of_path(t.split_once(":51820").unwrap().1).unwrap();
        assert_eq!(keys.client_private, Some(mock_keys().1.to_bytes()));
        assert!(keys.preshared.is_some());
        assert!(got[1].1.as_ref().unwrap_err().contains("Endpoint"));
        let amnezia = wg_quick_targets("[Interface]\nPrivateKey = x\nJc = 4\n[Peer]\n", 1);
        assert!(amnezia[0].1.as_ref().unwrap_err().contains("AmneziaWG"));
    }

    #[test]
    fn the_mock_keys_are_the_constants() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let (server, client) = mock_keys();
        assert_eq!(
            (
                b64.encode(PublicKey::from(&server).as_bytes()).as_str(),
                b64.encode(client.to_bytes()).as_str()
            ),
            (MOCK_SERVER_PUBLIC, MOCK_CLIENT_PRIVATE)
        );
    }

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

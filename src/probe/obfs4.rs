//! The obfs4 step of an `obfs4://HOST:PORT?cert=…&iat-mode=N` target: the client handshake of
//! obfs4 (obfs4proxy's `handshake_ntor.go`, where it and the spec differ the code decides) and
//! the server's reply verified — its MAC and the ntor `AUTH`, which only the holder of the
//! bridge's private key can compute. A live bridge proves itself; a bridge that gets a wrong
//! `cert=` (or a clock off by more than an hour) is silent until it closes 30–90 s later, which
//! is what a censor dropping the flow looks like too: silence is decided by the control path.
//!
//! Elligator2 (the "randomized" variant of obfs4proxy ≥ 0.0.12 and lyrebird) and X25519 come
//! from `curve25519-elligator2`, HMAC-SHA256 from `hmac` + `sha2`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use curve25519_elligator2::{MapToPointVariant as _, MontgomeryPoint, Randomized};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::tcp::AddrSource;
use crate::probe::{Phase, ser_ms, socks};

const MAX_HANDSHAKE: usize = 8192;
const MARK: usize = 16;
const MAC: usize = 16;
const REPR: usize = 32;
const AUTH: usize = 32;
/// The encrypted PRNG-seed frame a server sends right after its handshake.
const SEED_FRAME: usize = 45;
const CLIENT_MIN: usize = REPR + MARK + MAC;
const SERVER_MIN: usize = REPR + AUTH + MARK + MAC;
/// obfs4proxy 0.0.14's values (the spec's 85 predates the 45-byte seed frame).
const CLIENT_MIN_PAD: usize = SERVER_MIN + SEED_FRAME - CLIENT_MIN;
const CLIENT_MAX_PAD: usize = MAX_HANDSHAKE - CLIENT_MIN;
const SERVER_MAX_PAD: usize = MAX_HANDSHAKE - (SERVER_MIN + SEED_FRAME);

const PROTO_ID: &[u8] = b"ntor-curve25519-sha256-1";
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:key_verify";

/// A bridge's identity from its bridge line's `cert=`: the node id and the Curve25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    pub node_id: [u8; 20],
    pub public: [u8; 32],
    pub iat_mode: u8,
}

impl Bridge {
    /// `cert=` is base64 (standard alphabet, usually without its `==`) of 52 bytes.
    pub fn parse_cert(cert: &str, iat_mode: u8) -> Result<Self, String> {
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(cert.trim_end_matches('='))
            .map_err(|e| format!("cert= is not base64 ({e})"))?;
        if raw.len() != 52 {
            return Err(format!(
                "cert= decodes to {} bytes; an obfs4 cert is 52 (node id and public key)",
                raw.len()
            ));
        }
        Ok(Self {
            node_id: raw[..20].try_into().expect("20 bytes"),
            public: raw[20..].try_into().expect("32 bytes"),
            iat_mode,
        })
    }

    /// The cert as a bridge line prints it.
    pub fn cert(&self) -> String {
        let raw = [&self.node_id[..], &self.public[..]].concat();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw)
    }

    /// From a target's query: `cert=…&iat-mode=N` (a `+` in the cert stays a `+`).
    pub fn of_path(path: &str) -> Result<Self, String> {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let mut cert = None;
        let mut iat = 0u8;
        let plus_kept = query.replace('+', "%2B");
        for (k, v) in url::form_urlencoded::parse(plus_kept.as_bytes()) {
            match &*k {
                "cert" => cert = Some(v.into_owned()),
                "iat-mode" => {
                    iat = v
                        .parse()
                        .ok()
                        .filter(|n| *n <= 2)
                        .ok_or_else(|| format!("iat-mode={v}: expected 0, 1 or 2"))?;
                }
                other => {
                    return Err(format!(
                        "unknown obfs4:// option `{other}` (expected cert= and iat-mode=)"
                    ));
                }
            }
        }
        let cert = cert.ok_or("an obfs4:// target needs cert= (from its bridge line)")?;
        Self::parse_cert(&cert, iat)
    }

    fn key(&self) -> Vec<u8> {
        [&self.public[..], &self.node_id[..]].concat()
    }
}

/// `obfs4 IP:PORT [FINGERPRINT] cert=… iat-mode=N` (a Tor bridge line, `Bridge ` optional) as
/// an `obfs4://` target; another transport's bridge line is an error that says so; `None` when
/// the text is no bridge line.
pub fn from_bridge_line(line: &str) -> Option<Result<String, String>> {
    const OTHERS: [&str; 7] = [
        "webtunnel",
        "snowflake",
        "meek_lite",
        "meek",
        "conjure",
        "obfs3",
        "scramblesuit",
    ];
    let mut words = line.split_whitespace();
    let first = words.next()?;
    let keyword = first.eq_ignore_ascii_case("bridge");
    let transport = if keyword { words.next()? } else { first };
    let rest: Vec<&str> = words.collect();
    if !transport.eq_ignore_ascii_case("obfs4") {
        let other = OTHERS.iter().any(|o| transport.eq_ignore_ascii_case(o));
        return match (keyword, other) {
            (_, true) if !rest.is_empty() => Some(Err(format!(
                "a {transport} bridge line: only obfs4 bridges are probed (and plain relays as tor://IP:PORT)"
            ))),
            (true, false) => Some(Err(format!(
                "a plain bridge line: probe its OR port as tor://{transport}"
            ))),
            _ => None,
        };
    }
    let Some(addr) = rest.first() else {
        return Some(Err("an obfs4 bridge line without IP:PORT".into()));
    };
    let mut query = Vec::new();
    for w in &rest[1..] {
        for key in ["cert=", "iat-mode="] {
            if let Some(v) = w.strip_prefix(key) {
                let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
                query.push(format!("{key}{v}"));
            }
        }
    }
    Some(Ok(format!("obfs4://{addr}?{}", query.join("&"))))
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn hmac128(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    hmac256(key, parts)[..16].try_into().expect("16 bytes")
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The epoch hour as both sides write it into their MACs.
fn epoch_hour(skew: i64) -> String {
    let hours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 3600;
    (i64::try_from(hours).unwrap_or(0) + skew).to_string()
}

/// An ephemeral key with its Elligator2 representative; `public` is the point the
/// representative decodes to (the one the ntor transcript uses).
struct Ephemeral {
    secret: [u8; 32],
    public: [u8; 32],
    representative: [u8; 32],
}

impl Ephemeral {
    /// `clear_top`: the representative's two random top bits cleared (servers before 0.0.12
    /// read one of them).
    fn new(clear_top: bool) -> Self {
        loop {
            let secret: [u8; 32] = rand::random();
            let mut tweak: u8 = rand::random();
            if clear_top {
                tweak &= 0x3f;
            }
            // About half of all keys have no representative.
            if let Some(representative) = Randomized::to_representative(&secret, tweak).into() {
                let public = Randomized::mul_base_clamped(secret)
                    .to_montgomery()
                    .to_bytes();
                return Self {
                    secret,
                    public,
                    representative,
                };
            }
        }
    }
}

/// ntor's `AUTH` over the transcript (obfs4's order: B, B, X, Y, protocol id, node id).
fn auth(
    bridge: &Bridge,
    exp_y: &[u8; 32],
    exp_b: &[u8; 32],
    x: &[u8; 32],
    y: &[u8; 32],
) -> [u8; 32] {
    let suffix = [
        &bridge.public[..],
        &bridge.public[..],
        &x[..],
        &y[..],
        PROTO_ID,
        &bridge.node_id[..],
    ]
    .concat();
    let verify = hmac256(T_VERIFY, &[exp_y, exp_b, &suffix]);
    hmac256(T_MAC, &[&verify, &suffix, b"Server"])
}

fn client_handshake(bridge: &Bridge, eph: &Ephemeral, e: &str) -> Vec<u8> {
    let key = bridge.key();
    let pad = rand::random_range(CLIENT_MIN_PAD..=CLIENT_MAX_PAD);
    let mut out = Vec::with_capacity(CLIENT_MIN + pad);
    out.extend_from_slice(&eph.representative);
    out.extend((0..pad).map(|_| rand::random::<u8>()));
    out.extend(hmac128(&key, &[&eph.representative]));
    let mac = hmac128(&key, &[&out, e.as_bytes()]);
    out.extend(mac);
    out
}

/// What the server's reply, as far as it has come, says.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    NeedMore,
    /// Our own handshake came back: a reflector, not a bridge.
    Echo,
    Verified,
    /// The mark and MAC check out (whoever answered knows the bridge line) but `AUTH` does
    /// not (not the key holder — or a server before 0.0.12 and a top bit set).
    BadAuth,
    BadMac,
    NoMark,
}

fn check_reply(bridge: &Bridge, eph: &Ephemeral, e: &str, buf: &[u8]) -> Reply {
    if buf.len() >= REPR && buf[..REPR] == eph.representative {
        return Reply::Echo;
    }
    if buf.len() < SERVER_MIN {
        return Reply::NeedMore;
    }
    let key = bridge.key();
    let y_repr: [u8; 32] = buf[..REPR].try_into().expect("32 bytes");
    let mark = hmac128(&key, &[&y_repr]);
    let end = buf.len().min(MAX_HANDSHAKE);
    let Some(pos) = buf[REPR + AUTH..end]
        .windows(MARK)
        .position(|w| w == mark)
        .map(|p| p + REPR + AUTH)
        .filter(|p| p + MARK + MAC <= end)
    else {
        return if buf.len() >= MAX_HANDSHAKE {
            Reply::NoMark
        } else {
            Reply::NeedMore
        };
    };
    let mac = hmac128(&key, &[&buf[..pos + MARK], e.as_bytes()]);
    if !ct_eq(&mac, &buf[pos + MARK..pos + MARK + MAC]) {
        return Reply::BadMac;
    }
    let Some(y) = MontgomeryPoint::from_representative::<Randomized>(&y_repr) else {
        return Reply::BadAuth;
    };
    let exp_y = y.mul_clamped(eph.secret).to_bytes();
    let exp_b = MontgomeryPoint(bridge.public)
        .mul_clamped(eph.secret)
        .to_bytes();
    if exp_y == [0; 32] || exp_b == [0; 32] {
        return Reply::BadAuth;
    }
    let want = auth(bridge, &exp_y, &exp_b, &eph.public, &y.to_bytes());
    if ct_eq(&want, &buf[REPR..REPR + AUTH]) {
        Reply::Verified
    } else {
        Reply::BadAuth
    }
}

/// The mock network's bridge: its answer to a client handshake, given the bridge's private key
/// `b` (`None` when the handshake does not verify: a real bridge then stays silent).
pub fn server_reply(bridge: &Bridge, b: &[u8; 32], request: &[u8]) -> Option<Vec<u8>> {
    if request.len() < CLIENT_MIN + CLIENT_MIN_PAD {
        return None;
    }
    let key = bridge.key();
    let x_repr: [u8; 32] = request[..REPR].try_into().ok()?;
    let pos = request.len() - MARK - MAC;
    if request[pos..pos + MARK] != hmac128(&key, &[&x_repr]) {
        return None;
    }
    let e = [-1, 0, 1].into_iter().map(epoch_hour).find(|e| {
        ct_eq(
            &hmac128(&key, &[&request[..pos + MARK], e.as_bytes()]),
            &request[pos + MARK..],
        )
    })?;
    let x = MontgomeryPoint::from_representative::<Randomized>(&x_repr)?;
    let eph = Ephemeral::new(false);
    let exp_y = x.mul_clamped(eph.secret).to_bytes();
    let exp_b = x.mul_clamped(*b).to_bytes();
    let auth = auth(bridge, &exp_y, &exp_b, &x.to_bytes(), &eph.public);
    let pad = rand::random_range(0..=SERVER_MAX_PAD.min(512));
    let mut out = eph.representative.to_vec();
    out.extend(auth);
    out.extend((0..pad).map(|_| rand::random::<u8>()));
    out.extend(hmac128(&key, &[&eph.representative]));
    let mac = hmac128(&key, &[&out, e.as_bytes()]);
    out.extend(mac);
    out.extend((0..SEED_FRAME).map(|_| rand::random::<u8>()));
    Some(out)
}

/// A bridge identity with this private key: its line's view.
pub fn bridge_of(b: [u8; 32], node_id: [u8; 20]) -> Bridge {
    let public = curve25519_elligator2::EdwardsPoint::mul_base_clamped(b)
        .to_montgomery()
        .to_bytes();
    Bridge {
        node_id,
        public,
        iat_mode: 0,
    }
}

/// A fresh bridge identity and its private key.
pub fn new_bridge() -> (Bridge, [u8; 32]) {
    let b: [u8; 32] = rand::random();
    (bridge_of(b, rand::random()), b)
}

/// The mock network's bridges all have this identity (fixed, so scenario files can carry its
/// `cert=`: [`MOCK_CERT`]); a target with another cert meets a bridge that stays silent.
pub fn mock_bridge() -> (Bridge, [u8; 32]) {
    use sha2::Digest as _;
    let b: [u8; 32] = Sha256::digest(b"blockprobe mocknet obfs4 bridge").into();
    (bridge_of(b, [0x42; 20]), b)
}

/// The `cert=` of [`mock_bridge`].
pub const MOCK_CERT: &str =
    "QkJCQkJCQkJCQkJCQkJCQkJCQkJWkXPm1QtWr6+AgWBVblOLZ5g4GvgLsy8+DC5dQBmvFw";

/// One handshake attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Obfs4Attempt {
    pub server: String,
    pub source: AddrSource,
    pub phase: Phase,
    /// Bytes of the client handshake sent (random padding: 141 to 8192).
    pub sent: usize,
    /// Bytes the server sent back.
    pub received: usize,
    /// Whether the reply's mark and MAC checked out (whoever answered knows the bridge line).
    pub mac_ok: bool,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl Obfs4Attempt {
    pub fn answered(&self) -> bool {
        self.phase == Phase::Answered
    }

    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// The obfs4 step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Obfs4Observation {
    pub iat_mode: u8,
    pub direct: Vec<Obfs4Attempt>,
    /// Through the control proxy's CONNECT; `None` without one.
    pub control: Option<Obfs4Attempt>,
}

fn attempt(server: String, source: AddrSource) -> Obfs4Attempt {
    Obfs4Attempt {
        server,
        source,
        phase: Phase::Handshake,
        sent: 0,
        received: 0,
        mac_ok: false,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// The handshake over an open connection; `clear_top` as for [`Ephemeral::new`].
async fn exchange<S>(
    mut s: S,
    a: &mut Obfs4Attempt,
    bridge: &Bridge,
    clear_top: bool,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let eph = Ephemeral::new(clear_top);
    let e = epoch_hour(0);
    let request = client_handshake(bridge, &eph, &e);
    let work = async {
        s.write_all(&request).await?;
        s.flush().await?;
        a.sent = request.len();
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before a complete server handshake",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            a.received = buf.len();
            match check_reply(bridge, &eph, &e, &buf) {
                Reply::NeedMore => continue,
                r => return Ok(r),
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => a.failure = Some(Failure::timeout()),
        Ok(Err(e)) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
        Ok(Ok(Reply::Verified)) => {
            a.phase = Phase::Answered;
            a.mac_ok = true;
        }
        Ok(Ok(r)) => {
            a.mac_ok = r == Reply::BadAuth;
            a.failure = Some(Failure::new(
                FailureKind::Malformed,
                match r {
                    Reply::BadAuth => {
                        "the reply's MAC checks out but its ntor AUTH does not (not the bridge's key holder)"
                    }
                    Reply::BadMac => "the reply's MAC does not check out",
                    Reply::Echo => "our own handshake came back (an echo server, not a bridge)",
                    _ => "no obfs4 server handshake in the first 8192 bytes",
                },
            ));
        }
    }
}

/// Connects with `connect` and runs the handshake; a reply whose AUTH alone fails is tried once
/// more with the representative's top bits cleared (servers before 0.0.12).
async fn handshake<F, Fut, S>(a: &mut Obfs4Attempt, bridge: &Bridge, timeout: Duration, connect: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<S, Failure>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    for clear_top in [false, true] {
        match connect().await {
            Ok(s) => {
                let left = timeout.saturating_sub(start.elapsed());
                *a = Obfs4Attempt {
                    phase: Phase::Handshake,
                    failure: None,
                    ..a.clone()
                };
                exchange(s, a, bridge, clear_top, left).await;
                let retry = !a.answered() && a.mac_ok;
                if !retry {
                    return;
                }
            }
            Err(f) => {
                a.phase = Phase::Connect;
                a.failure = Some(f);
                return;
            }
        }
    }
}

/// The handshake with `addr` from here.
pub async fn probe(addr: SocketAddr, bridge: &Bridge, timeout: Duration) -> Obfs4Attempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage);
    handshake(&mut a, bridge, timeout, || async move {
        crate::probe::tcp::connect(addr, timeout).await.0
    })
    .await;
    a.elapsed = start.elapsed();
    a
}

/// The handshake through the control proxy's CONNECT, to the bridge by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    bridge: &Bridge,
    timeout: Duration,
) -> Obfs4Attempt {
    let start = Instant::now();
    let mut a = attempt(crate::net::host_port(host, port), AddrSource::Control);
    handshake(&mut a, bridge, timeout, || async move {
        match tokio::time::timeout(timeout, socks::connect(proxy, host, port)).await {
            Err(_) => Err(socks::setup_timeout()),
            Ok(Err(e)) => Err(socks::setup_failure(&e)),
            Ok(Ok(s)) => Ok(s),
        }
    })
    .await;
    a.elapsed = start.elapsed();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_and_its_reply_verify() {
        let (bridge, b) = new_bridge();
        let cert = bridge.cert();
        assert_eq!(Bridge::parse_cert(&cert, 0).unwrap(), bridge);
        for clear_top in [false, true] {
            let eph = Ephemeral::new(clear_top);
            let e = epoch_hour(0);
            let request = client_handshake(&bridge, &eph, &e);
            assert!((CLIENT_MIN + CLIENT_MIN_PAD..=MAX_HANDSHAKE).contains(&request.len()));
            let reply = server_reply(&bridge, &b, &request).expect("the server accepts it");
            // (Not `SERVER_MIN` itself: with no padding, 1 reply in 513, that is the whole
            // handshake, which verifies.)
            for cut in [10, SERVER_MIN - 1] {
                assert_eq!(
                    check_reply(&bridge, &eph, &e, &reply[..cut]),
                    Reply::NeedMore
                );
            }
            assert_eq!(check_reply(&bridge, &eph, &e, &reply), Reply::Verified);
            // Another key holder's reply: the MAC checks out (it knows the line), AUTH not.
            let (_, other_b) = new_bridge();
            let forged = server_reply(&bridge, &other_b, &request).unwrap();
            assert_eq!(check_reply(&bridge, &eph, &e, &forged), Reply::BadAuth);
        }
        // A client with a wrong cert gets no reply at all.
        let (wrong, _) = new_bridge();
        let eph = Ephemeral::new(false);
        let request = client_handshake(&wrong, &eph, &epoch_hour(0));
        assert_eq!(server_reply(&bridge, &b, &request), None);
        // Nor one whose clock is two hours off.
        let request = client_handshake(&bridge, &eph, &epoch_hour(2));
        assert_eq!(server_reply(&bridge, &b, &request), None);
    }

    #[test]
    fn the_mock_cert_is_the_mock_bridges() {
        assert_eq!(mock_bridge().0.cert(), MOCK_CERT);
    }

    #[test]
    fn bridge_lines_and_query() {
        let (bridge, _) = new_bridge();
        let cert = bridge.cert();
        let line = format!(
            "Bridge obfs4 192.0.2.3:443 4352E58420E68F5E40BF7C74FADDCCD9D1349413 cert={cert} iat-mode=1"
        );
        let url = from_bridge_line(&line).unwrap().unwrap();
        assert!(url.starts_with("obfs4://192.0.2.3:443?cert="), "{url}");
        let path = url.split_once(":443").unwrap().1;
        let parsed = Bridge::of_path(path).unwrap();
        assert_eq!((parsed.public, parsed.iat_mode), (bridge.public, 1));
        // A raw `+` in the query is the cert's, not a space.
        let raw = format!("/?cert={cert}&iat-mode=0");
        assert_eq!(Bridge::of_path(&raw).unwrap().public, bridge.public);
        assert!(Bridge::of_path("/?iat-mode=0").is_err());
        assert!(Bridge::of_path("/?cert=AAAA").is_err());
        assert!(Bridge::of_path(&format!("/?cert={cert}&iat-mode=3")).is_err());
        assert!(
            from_bridge_line("snowflake 192.0.2.3:1 x")
                .unwrap()
                .is_err()
        );
        assert!(
            from_bridge_line("Bridge 192.0.2.3:443 ABCDEF")
                .unwrap()
                .is_err()
        );
        assert!(
            from_bridge_line("BRIDGE OBFS4 192.0.2.3:443 x cert=y")
                .unwrap()
                .is_ok()
        );
        assert_eq!(from_bridge_line("example.com"), None);
    }
}

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
        Options::of_path(path).map(|o| o.proto)
    }
}

/// How the server wraps its control channel, with the static key (`ta.key`, 256 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// `tls-auth`: an HMAC on every control packet; `direction` as `key-direction` (the
    /// client's; `None`: the same key both ways), `digest` as the server's `auth`.
    Auth {
        key: Vec<u8>,
        direction: Option<u8>,
        digest: Digest,
    },
    /// `tls-crypt`: control packets encrypted and authenticated.
    Crypt { key: Vec<u8> },
}

/// tls-auth's HMAC digest (the server's `auth` setting; SHA1 by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Digest {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Ok(Self::Sha1),
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            _ => Err(format!("auth={s}: expected sha1, sha256 or sha512")),
        }
    }

    fn algorithm(self) -> (ring::hmac::Algorithm, usize) {
        match self {
            Self::Sha1 => (ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20),
            Self::Sha256 => (ring::hmac::HMAC_SHA256, 32),
            Self::Sha512 => (ring::hmac::HMAC_SHA512, 64),
        }
    }
}

/// A side of the exchange: the client sends with the key half its direction names, the server
/// with the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// The 64-byte half `i` (0 or 1) of a static key's cipher (`hmac = false`) or HMAC part.
fn half(key: &[u8], i: usize, hmac: bool) -> &[u8] {
    let start = i * 128 + if hmac { 64 } else { 0 };
    &key[start..start + 64]
}

/// The current time as OpenVPN's long-form packet id carries it.
fn net_time() -> [u8; 4] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    u32::try_from(now).unwrap_or(u32::MAX).to_be_bytes()
}

fn aes_ctr(key: &[u8], iv: &[u8], data: &mut [u8]) {
    use ctr::cipher::{KeyIvInit as _, StreamCipher as _};
    let mut c = ctr::Ctr128BE::<aes::Aes256>::new(key.into(), iv.into());
    c.apply_keystream(data);
}

impl Wrap {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Auth { .. } => "tls-auth",
            Self::Crypt { .. } => "tls-crypt",
        }
    }

    /// The key halves `side` sends with and receives with: tls-auth's `key-direction` (the
    /// client's; the server uses the other; none: half 0 both ways), tls-crypt's fixed
    /// directions (the server sends with half 0, the client with half 1).
    fn halves(&self, side: Side) -> (usize, usize) {
        let client = match self {
            Self::Auth {
                direction: None, ..
            } => return (0, 0),
            Self::Auth {
                direction: Some(d), ..
            } => usize::from(*d),
            Self::Crypt { .. } => 1,
        };
        let out = if side == Side::Client {
            client
        } else {
            1 - client
        };
        (out, 1 - out)
    }

    /// A plain control packet (`opcode|session id|acks…|message packet id|payload`) as `side`
    /// sends it, with packet id `pid`.
    pub fn seal_as(&self, side: Side, plain: &[u8], pid: u32) -> Vec<u8> {
        let (out, _) = self.halves(side);
        let (head, rest) = plain.split_at(9.min(plain.len()));
        let mut replay = pid.to_be_bytes().to_vec();
        replay.extend(net_time());
        match self {
            // [op|sid][HMAC][pid|time][rest]; the HMAC covers pid|time|op|sid|rest.
            Self::Auth { key, digest, .. } => {
                let (alg, len) = digest.algorithm();
                let k = ring::hmac::Key::new(alg, &half(key, out, true)[..len]);
                let mut ctx = ring::hmac::Context::with_key(&k);
                ctx.update(&replay);
                ctx.update(head);
                ctx.update(rest);
                let tag = ctx.sign();
                [head, tag.as_ref(), &replay, rest].concat()
            }
            // [op|sid|pid|time][HMAC-SHA256 tag][AES-256-CTR(rest), IV = tag's first 16 bytes].
            Self::Crypt { key } => {
                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &half(key, out, true)[..32]);
                let mut ctx = ring::hmac::Context::with_key(&k);
                ctx.update(head);
                ctx.update(&replay);
                ctx.update(rest);
                let tag = ctx.sign();
                let mut body = rest.to_vec();
                aes_ctr(&half(key, out, false)[..32], &tag.as_ref()[..16], &mut body);
                [head, &replay, tag.as_ref(), &body].concat()
            }
        }
    }

    /// A control packet from the wire, as `side` receives it, back to plain; `None` when it
    /// does not verify.
    pub fn open_as(&self, side: Side, wire: &[u8]) -> Option<Vec<u8>> {
        let (_, inn) = self.halves(side);
        match self {
            Self::Auth { key, digest, .. } => {
                let (alg, len) = digest.algorithm();
                let (head, rest) = (wire.get(..9)?, wire.get(9..)?);
                let (tag, rest) = (rest.get(..len)?, rest.get(len..)?);
                let (replay, rest) = (rest.get(..8)?, rest.get(8..)?);
                let k = ring::hmac::Key::new(alg, &half(key, inn, true)[..len]);
                ring::hmac::verify(&k, &[replay, head, rest].concat(), tag).ok()?;
                Some([head, rest].concat())
            }
            Self::Crypt { key } => {
                let (head, rest) = (wire.get(..9)?, wire.get(9..)?);
                let (replay, rest) = (rest.get(..8)?, rest.get(8..)?);
                let (tag, body) = (rest.get(..32)?, rest.get(32..)?);
                let mut plain = body.to_vec();
                aes_ctr(&half(key, inn, false)[..32], &tag[..16], &mut plain);
                let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &half(key, inn, true)[..32]);
                ring::hmac::verify(&k, &[head, replay, &plain].concat(), tag).ok()?;
                Some([head, &plain].concat())
            }
        }
    }

    fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_as(Side::Client, plain, 1)
    }

    fn open(&self, wire: &[u8]) -> Option<Vec<u8>> {
        self.open_as(Side::Client, wire)
    }
}

/// An `openvpn://` target's options: `proto=udp|tcp`, and a static key for a server with
/// `tls_auth=HEX[&key_direction=0|1]` or `tls_crypt=HEX` (the key file's 512 hex digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub proto: Proto,
    pub wrap: Option<Wrap>,
}

/// The 256 bytes of an OpenVPN static key: the file's hex, with or without its armour lines.
pub fn static_key(text: &str) -> Result<Vec<u8>, String> {
    let hex: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with("-----"))
        .collect();
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match bytes {
        Some(b) if b.len() == 256 => Ok(b),
        Some(b) => Err(format!(
            "an OpenVPN static key is 256 bytes (512 hex digits), not {}",
            b.len()
        )),
        None => Err("an OpenVPN static key is hex".into()),
    }
}

impl Options {
    pub fn of_path(path: &str) -> Result<Self, String> {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let (mut proto, mut auth, mut crypt, mut direction) = (None, None, None, None);
        let mut digest = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            fn once<T>(slot: &Option<T>, k: &str) -> Result<(), String> {
                if slot.is_some() {
                    Err(format!("give `{k}=` once"))
                } else {
                    Ok(())
                }
            }
            match k {
                "proto" => {
                    once(&proto, k)?;
                    proto = Some(match v {
                        "udp" => Proto::Udp,
                        "tcp" => Proto::Tcp,
                        _ => return Err(format!("proto={v}: expected udp or tcp")),
                    });
                }
                "tls_auth" => {
                    once(&auth, k)?;
                    auth = Some(static_key(v)?);
                }
                "tls_crypt" => {
                    once(&crypt, k)?;
                    crypt = Some(static_key(v)?);
                }
                "auth" => {
                    once(&digest, k)?;
                    digest = Some(Digest::parse(v)?);
                }
                "key_direction" => {
                    once(&direction, k)?;
                    direction = Some(match v {
                        "0" => 0u8,
                        "1" => 1,
                        _ => return Err(format!("key_direction={v}: expected 0 or 1")),
                    });
                }
                other => {
                    return Err(format!(
                        "unknown openvpn:// option `{other}` (proto, tls_auth, tls_crypt, key_direction, auth)"
                    ));
                }
            }
        }
        let wrap = match (auth, crypt) {
            (Some(_), Some(_)) => return Err("give tls_auth= or tls_crypt=, not both".into()),
            (Some(key), None) => Some(Wrap::Auth {
                key,
                direction,
                digest: digest.unwrap_or_default(),
            }),
            (None, _) if digest.is_some() => {
                return Err("auth= (the HMAC digest) goes with tls_auth=".into());
            }
            (None, Some(key)) if direction.is_none() => Some(Wrap::Crypt { key }),
            (None, Some(_)) => return Err("key_direction= goes with tls_auth=".into()),
            (None, None) if direction.is_some() => {
                return Err("key_direction= goes with tls_auth=".into());
            }
            (None, None) => None,
        };
        Ok(Self {
            proto: proto.unwrap_or(Proto::Udp),
            wrap,
        })
    }
}

/// The `openvpn://` targets of an OpenVPN client configuration (`.ovpn`): one per `remote`,
/// with its `proto`/`port` and an inline `<tls-auth>` (and `key-direction`) or `<tls-crypt>`
/// key; each with its line; a problem is an error at its line.
pub fn ovpn_targets(text: &str, first_line: u64) -> Vec<crate::probe::ConfigTarget> {
    let mut out = Vec::new();
    let (mut proto, mut port, mut direction) = ("udp".to_owned(), 1194u16, None);
    let mut digest: Option<String> = None;
    let mut remotes: Vec<(u64, String, Option<u16>, Option<String>)> = Vec::new();
    let mut wrap: Option<(&str, String)> = None;
    let mut block: Option<(String, u64, String)> = None;
    let proto_of = |p: &str| {
        let p = p.to_ascii_lowercase();
        if p.starts_with("tcp") {
            Some("tcp".to_owned())
        } else if p.starts_with("udp") {
            Some("udp".to_owned())
        } else {
            None
        }
    };
    // `remote HOST [PORT [PROTO]]`, checked.
    let remote = |line: u64, host: &str, rest: &[&str]| -> Result<_, String> {
        let port = match rest.first() {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("`remote {host} {p}`: not a port"))?,
            ),
        };
        let proto = match rest.get(1) {
            None => None,
            Some(p) => Some(proto_of(p).ok_or_else(|| format!("`remote … {p}`: not udp or tcp"))?),
        };
        Ok((line, host.to_owned(), port, proto))
    };
    for (i, raw) in text.lines().enumerate() {
        let line = first_line + i as u64;
        let l = raw.trim();
        if let Some((name, start, body)) = block.as_mut() {
            // A `<connection>` block: its remote, with its own proto and port.
            if name == "connection" && !l.eq_ignore_ascii_case("</connection>") {
                let words: Vec<&str> = l.split_whitespace().collect();
                if let ["remote", host, rest @ ..] = words.as_slice() {
                    match remote(line, host, rest) {
                        Ok(mut r) => {
                            // A proto the block gave before its remote (kept in `body`).
                            if r.3.is_none() && !body.is_empty() {
                                r.3 = Some(body.clone());
                            }
                            remotes.push(r);
                        }
                        Err(e) => out.push((line, Err(e))),
                    }
                } else if let ["proto", p, ..] = words.as_slice()
                    && let Some(p) = proto_of(p)
                {
                    // The block's proto, for its remotes that name none (before or after).
                    for r in remotes.iter_mut().filter(|r| r.0 > *start && r.3.is_none()) {
                        r.3 = Some(p.clone());
                    }
                    if body.is_empty() {
                        body.push_str(&p);
                    }
                }
                continue;
            }
            if l.eq_ignore_ascii_case(&format!("</{name}>")) {
                match name.as_str() {
                    "tls-auth" => wrap = Some(("tls_auth", std::mem::take(body))),
                    "tls-crypt" => wrap = Some(("tls_crypt", std::mem::take(body))),
                    "tls-crypt-v2" => out.push((
                        *start,
                        Err("tls-crypt-v2 client keys are not supported yet".into()),
                    )),
                    _ => {}
                }
                block = None;
            } else {
                body.push_str(l);
                body.push('\n');
            }
            continue;
        }
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(name) = l.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
            block = Some((name.to_ascii_lowercase(), line, String::new()));
            continue;
        }
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["remote", host, rest @ ..] => match remote(line, host, rest) {
                Ok(r) => remotes.push(r),
                Err(e) => out.push((line, Err(e))),
            },
            ["proto", p, ..] => {
                if let Some(p) = proto_of(p) {
                    proto = p;
                }
            }
            ["port" | "rport", p, ..] => port = p.parse().unwrap_or(port),
            ["key-direction", d, ..] | ["tls-auth", "[inline]", d, ..] => {
                direction = Some((*d).to_owned());
            }
            ["auth", d, ..] => digest = Some((*d).to_ascii_lowercase()),
            ["tls-auth" | "tls-crypt", file, ..] if *file != "[inline]" => out.push((
                line,
                Err(format!(
                    "the key is in another file ({file}): its remotes are probed without it (put it inline, <{}>…</{}>, to probe the server with it)",
                    words[0], words[0]
                )),
            )),
            ["tls-crypt-v2", ..] => out.push((
                line,
                Err("tls-crypt-v2 client keys are not supported yet".into()),
            )),
            _ => {}
        }
    }
    if remotes.is_empty() {
        out.push((
            first_line,
            Err("no `remote` in this OpenVPN configuration".into()),
        ));
    }
    for (line, host, p, pr) in remotes {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let mut t = format!(
            "openvpn://{host}:{}?proto={}",
            p.unwrap_or(port),
            pr.as_deref().unwrap_or(&proto)
        );
        if let Some((k, body)) = &wrap {
            match static_key(body) {
                Ok(key) => {
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    t.push_str(&format!("&{k}={hex}"));
                    if *k == "tls_auth"
                        && let Some(d) = &direction
                    {
                        t.push_str(&format!("&key_direction={d}"));
                    }
                    if *k == "tls_auth"
                        && let Some(d) = digest.as_deref().filter(|d| *d != "sha1")
                    {
                        t.push_str(&format!("&auth={d}"));
                    }
                }
                Err(e) => {
                    out.push((line, Err(e)));
                    continue;
                }
            }
        }
        out.push((line, Ok(t)));
    }
    out
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
    /// The control channel's wrapping the probe used (`tls-auth`, `tls-crypt`), when the
    /// target gave a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap: Option<&'static str>,
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

/// A plain control packet as it goes on the wire under `wrap`.
fn seal(wrap: Option<&Wrap>, plain: &[u8]) -> Vec<u8> {
    match wrap {
        Some(w) => w.seal(plain),
        None => plain.to_vec(),
    }
}

/// A control packet from the wire as plain, `None` when it does not verify under `wrap`. A
/// server without tls-auth may answer a wrapped reset plainly: that is an answer too.
fn open(wrap: Option<&Wrap>, wire: &[u8]) -> Option<Vec<u8>> {
    match wrap {
        Some(w) => w.open(wire).or_else(|| Some(wire.to_vec())),
        None => Some(wire.to_vec()),
    }
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
async fn udp_exchange(
    sock: &UdpSocket,
    a: &mut OpenvpnAttempt,
    wrap: Option<&Wrap>,
    timeout: Duration,
    header: &[u8],
) {
    let session: [u8; 8] = rand::random();
    let mut datagram = header.to_vec();
    datagram.extend(seal(wrap, &client_reset(session)));
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
                    if let Some(s) = open(wrap, d).and_then(|p| server_reset(&p, session)) {
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
async fn tcp_exchange(
    mut s: TcpStream,
    a: &mut OpenvpnAttempt,
    wrap: Option<&Wrap>,
    timeout: Duration,
) {
    let session: [u8; 8] = rand::random();
    let reset = seal(wrap, &client_reset(session));
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
        Ok(Ok(p)) => match open(wrap, &p).and_then(|p| server_reset(&p, session)) {
            Some(srv) => {
                a.phase = Phase::Answered;
                a.server_session = Some(hex(&srv));
            }
            None => {
                a.failure = Some(Failure::new(
                    FailureKind::Malformed,
                    if wrap.is_some() {
                        "the answer is not an OpenVPN server reset under this key"
                    } else {
                        "the answer is not an OpenVPN server reset"
                    },
                ));
            }
        },
    }
}

/// The handshake with `addr` from here.
pub async fn probe(addr: SocketAddr, opts: &Options, timeout: Duration) -> OpenvpnAttempt {
    let (proto, wrap) = (opts.proto, opts.wrap.as_ref());
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
                Ok(s) => udp_exchange(&s, &mut a, wrap, timeout, &[]).await,
                Err(e) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
            }
        }
        Proto::Tcp => {
            let (stream, _) = crate::probe::tcp::connect(addr, timeout).await;
            match stream {
                Ok(s) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    tcp_exchange(s, &mut a, wrap, left).await;
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
    opts: &Options,
    timeout: Duration,
) -> OpenvpnAttempt {
    let (proto, wrap) = (opts.proto, opts.wrap.as_ref());
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
                    tcp_exchange(s, &mut a, wrap, left).await;
                }
            }
        }
        Proto::Udp => {
            match tokio::time::timeout(timeout, socks::udp_relay(proxy, host, port)).await {
                Err(_) => a.failure = Some(socks::setup_timeout()),
                Ok(Err(e)) => a.failure = Some(socks::setup_failure(&e)),
                Ok(Ok(relay)) => {
                    let left = timeout.saturating_sub(start.elapsed());
                    udp_exchange(&relay.sock, &mut a, wrap, left, &relay.header).await;
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
        assert!(Proto::of_path("/?proto=tcp&proto=udp").is_err());
        assert_eq!(Proto::of_path("/"), Ok(Proto::Udp));
        assert!(Proto::of_path("/?proto=sctp").is_err());
    }

    #[test]
    fn wrapped_resets_round_trip_and_need_the_key() {
        let key: Vec<u8> = (0..=255u8).collect();
        let other: Vec<u8> = (0..=255u8).rev().collect();
        let reset = client_reset([7u8; 8]);
        for wrap in [
            Wrap::Auth {
                key: key.clone(),
                direction: Some(1),
                digest: Digest::Sha1,
            },
            Wrap::Auth {
                key: key.clone(),
                direction: None,
                digest: Digest::Sha1,
            },
            Wrap::Auth {
                key: key.clone(),
                direction: Some(0),
                digest: Digest::Sha512,
            },
            Wrap::Crypt { key: key.clone() },
        ] {
            let wire = wrap.seal(&reset);
            assert_ne!(wire, reset);
            assert_eq!(
                wrap.open_as(Side::Server, &wire),
                Some(reset.clone()),
                "{wrap:?}"
            );
            let answer = answer_reset(&reset, [9u8; 8]).unwrap();
            let back = wrap.seal_as(Side::Server, &answer, 1);
            assert_eq!(
                wrap.open(&back).and_then(|p| server_reset(&p, [7u8; 8])),
                Some([9u8; 8])
            );
            let wrong = match &wrap {
                Wrap::Auth {
                    direction, digest, ..
                } => Wrap::Auth {
                    key: other.clone(),
                    direction: *direction,
                    digest: *digest,
                },
                Wrap::Crypt { .. } => Wrap::Crypt { key: other.clone() },
            };
            assert_eq!(wrong.open_as(Side::Server, &wire), None, "another key");
        }
        // tls-auth with a direction: the two sides use different halves.
        let auth = Wrap::Auth {
            key,
            direction: Some(1),
            digest: Digest::Sha256,
        };
        assert_eq!(
            auth.open(&auth.seal(&reset)),
            None,
            "a client's packet is no server's"
        );
    }

    #[test]
    fn ovpn_files() {
        let key: String = (0..256)
            .map(|i| format!("{:02x}", i % 256))
            .collect::<Vec<_>>()
            .chunks(16)
            .map(|c| c.concat())
            .collect::<Vec<_>>()
            .join("\n");
        let conf = format!(
            "client\ndev tun\nproto tcp-client\nremote vpn1.example 443\nremote 192.0.2.1 1194 udp\nkey-direction 1\nauth SHA256\n<ca>\nxx\n</ca>\n<tls-auth>\n-----BEGIN OpenVPN Static key V1-----\n{key}\n-----END OpenVPN Static key V1-----\n</tls-auth>\n"
        );
        let got = ovpn_targets(&conf, 1);
        assert_eq!(got.len(), 2, "{got:?}");
        let first = got[0].1.as_ref().unwrap();
        assert!(
            first.starts_with("openvpn://vpn1.example:443?proto=tcp&tls_auth=0001"),
            "{first}"
        );
        assert!(first.ends_with("&key_direction=1&auth=sha256"), "{first}");
        let opts = Options::of_path(first.split_once(":443").unwrap().1).unwrap();
        assert!(matches!(
            opts.wrap,
            Some(Wrap::Auth {
                direction: Some(1),
                ..
            })
        ));
        assert!(
            got[1]
                .1
                .as_ref()
                .unwrap()
                .starts_with("openvpn://192.0.2.1:1194?proto=udp")
        );
        let external = ovpn_targets("client\nremote h 1194\ntls-crypt ta.key\n", 1);
        assert!(external[0].1.as_ref().unwrap_err().contains("another file"));
        // `<connection>` blocks, `tls-auth [inline] 1`, bad ports reported at their line.
        let conf = format!(
            "client\n<connection>\nremote a.example 1195\nproto tcp-client\n</connection>\n<connection>\nremote b.example 1196 udp\n</connection>\nremote c.example 99999\ntls-auth [inline] 1\n<tls-auth>\n{key}\n</tls-auth>\n"
        );
        let got = ovpn_targets(&conf, 1);
        let ok: Vec<&String> = got.iter().filter_map(|(_, t)| t.as_ref().ok()).collect();
        assert_eq!(ok.len(), 2, "{got:?}");
        assert!(
            ok[0].starts_with("openvpn://a.example:1195?proto=tcp&tls_auth="),
            "{}",
            ok[0]
        );
        assert!(ok[0].contains("&key_direction=1"), "{}", ok[0]);
        assert!(
            ok[1].starts_with("openvpn://b.example:1196?proto=udp"),
            "{}",
            ok[1]
        );
        assert!(got.iter().any(|(l, t)| *l == 9 && t.is_err()), "{got:?}");
        assert!(ovpn_targets("client\n", 1)[0].1.is_err(), "no remote");
    }
}

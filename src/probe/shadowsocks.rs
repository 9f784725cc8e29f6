//! The Shadowsocks step of an `ss://` target (SIP002): an AEAD tunnel (SIP004) to the
//! `--tunnel-check` URL through the server and one HTTP GET through it. A server proves itself
//! by answering with its salt and a response that decrypts under the key; a wrong password or
//! method gets silence (shadowsocks-libev never answers a request that does not decrypt) —
//! exactly what a censor dropping the flow gives, so silence is decided by the control path.
//!
//! Ciphers: `chacha20-ietf-poly1305`, `aes-256-gcm`, `aes-128-gcm` on ring (the AEADs and
//! HKDF-SHA1), the key from the password by OpenSSL's `EVP_BytesToKey` (MD5). AEAD-2022
//! ciphers and plugins are refused when the target is read.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::tcp::AddrSource;
use crate::probe::{Phase, ser_ms, socks};

const TAG: usize = 16;
/// A chunk's payload is at most this long (SIP004).
pub const MAX_PAYLOAD: usize = 0x3FFF;
/// Response bytes read through the tunnel at most: the status line and headers suffice.
const MAX_RESPONSE: usize = 16 * 1024;

/// The default `--tunnel-check`: the connectivity check Shadowsocks and V2Ray clients use.
pub const DEFAULT_TUNNEL_CHECK: &str = "http://www.gstatic.com/generate_204";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Method {
    #[serde(rename = "chacha20-ietf-poly1305")]
    Chacha20IetfPoly1305,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
    #[serde(rename = "aes-128-gcm")]
    Aes128Gcm,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "chacha20-ietf-poly1305" => Ok(Self::Chacha20IetfPoly1305),
            "aes-256-gcm" => Ok(Self::Aes256Gcm),
            "aes-128-gcm" => Ok(Self::Aes128Gcm),
            m if m.starts_with("2022-") => Err(format!(
                "the AEAD-2022 cipher `{s}` is not supported yet (chacha20-ietf-poly1305, aes-256-gcm, aes-128-gcm)"
            )),
            _ => Err(format!(
                "unsupported Shadowsocks cipher `{s}` (chacha20-ietf-poly1305, aes-256-gcm, aes-128-gcm)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chacha20IetfPoly1305 => "chacha20-ietf-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
            Self::Aes128Gcm => "aes-128-gcm",
        }
    }

    fn alg(self) -> &'static aead::Algorithm {
        match self {
            Self::Chacha20IetfPoly1305 => &aead::CHACHA20_POLY1305,
            Self::Aes256Gcm => &aead::AES_256_GCM,
            Self::Aes128Gcm => &aead::AES_128_GCM,
        }
    }

    /// The key length, which is also the salt's.
    pub fn key_len(self) -> usize {
        self.alg().key_len()
    }
}

/// A server's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub method: Method,
    pub password: String,
}

impl Credentials {
    /// The master key: OpenSSL's `EVP_BytesToKey` with MD5, one iteration, no salt.
    pub fn master_key(&self) -> Vec<u8> {
        let len = self.method.key_len();
        let mut key = Vec::with_capacity(len + 16);
        let mut prev: Vec<u8> = Vec::new();
        while key.len() < len {
            let mut h = md5::Md5::new();
            h.update(&prev);
            h.update(self.password.as_bytes());
            prev = h.finalize().to_vec();
            key.extend_from_slice(&prev);
        }
        key.truncate(len);
        key
    }

    /// How a target carries them internally (its `path`; the input shows them redacted).
    pub fn to_path(&self) -> String {
        let password: String =
            url::form_urlencoded::byte_serialize(self.password.as_bytes()).collect();
        format!("/?method={}&password={password}", self.method.as_str())
    }

    /// From a target's `path` (see [`Self::to_path`]).
    pub fn of_path(path: &str) -> Option<Self> {
        let query = path.split_once('?')?.1;
        let mut method = None;
        let mut password = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "method" => method = Method::parse(&v).ok(),
                "password" => password = Some(v.into_owned()),
                _ => {}
            }
        }
        Some(Self {
            method: method?,
            password: password?,
        })
    }
}

/// A SIP002 URI, read: `ss://USERINFO@HOST:PORT[/][?plugin=…][#TAG]`, USERINFO being
/// base64url(`method:password`) or percent-encoded `method:password`; also the legacy
/// `ss://BASE64(method:password@host:port)[#TAG]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Uri {
    pub credentials: Credentials,
    pub host: String,
    pub port: u16,
    pub tag: Option<String>,
}

fn base64_any(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let t = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| STANDARD_NO_PAD.decode(t))
        .ok()
}

fn split_host_port(hp: &str) -> Result<(String, u16), String> {
    let (h, p) = match hp.strip_prefix('[') {
        Some(rest) => {
            let (h, p) = rest.split_once(']').ok_or("an unclosed `[`")?;
            (h, p.strip_prefix(':').ok_or("no port")?)
        }
        None => hp.rsplit_once(':').ok_or("no port")?,
    };
    let port = p
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("bad port `{p}`"))?;
    if h.is_empty() {
        return Err("no host".into());
    }
    Ok((h.to_owned(), port))
}

impl Uri {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix("ss://").ok_or("not an ss:// URI")?.trim();
        let (rest, tag) = match rest.split_once('#') {
            Some((r, t)) => (r, Some(crate::net::percent_decode(t))),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        if let Some(plugin) = query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("plugin=").map(crate::net::percent_decode))
        }) {
            return Err(format!(
                "Shadowsocks plugins are not supported (`{}`): the probe would not speak what the server expects",
                plugin.split(';').next().unwrap_or_default()
            ));
        }
        let rest = rest.trim_end_matches('/');
        let (method_password, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                // The plain form holds a `:` (or `%3A`); base64 never does.
                let plain = userinfo.contains(':') || userinfo.to_ascii_lowercase().contains("%3a");
                let mp = if plain {
                    crate::net::percent_decode(userinfo)
                } else {
                    base64_any(&crate::net::percent_decode(userinfo))
                        .and_then(|d| String::from_utf8(d).ok())
                        .ok_or("USERINFO is neither base64 nor method:password")?
                };
                (mp, hp.to_owned())
            }
            // The legacy form: the decoded text is taken as it is (no escapes in it).
            None => {
                let plain = base64_any(rest)
                    .and_then(|d| String::from_utf8(d).ok())
                    .ok_or("neither USERINFO@HOST:PORT nor the base64 legacy form")?;
                let (u, hp) = plain.rsplit_once('@').ok_or("the legacy form has no `@`")?;
                (u.to_owned(), hp.to_owned())
            }
        };
        let (method, password) = method_password
            .split_once(':')
            .ok_or("USERINFO has no `method:password`")?;
        if password.is_empty() {
            return Err("an empty password".into());
        }
        let (host, port) = split_host_port(&hostport)?;
        Ok(Self {
            credentials: Credentials {
                method: Method::parse(method)?,
                password: password.to_owned(),
            },
            host,
            port,
            tag,
        })
    }
}

/// One direction of a session: its subkey (HKDF-SHA1 of the master key and the direction's
/// salt) and its nonce, a little-endian counter.
pub struct Cipher {
    key: LessSafeKey,
    counter: u128,
}

impl Cipher {
    pub fn new(method: Method, master: &[u8], salt: &[u8]) -> Self {
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA1_FOR_LEGACY_USE_ONLY, salt).extract(master);
        let okm = prk
            .expand(&[b"ss-subkey"], method.alg())
            .expect("a key-sized output");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            counter: 0,
        }
    }

    fn nonce(&mut self) -> Nonce {
        let mut n = [0u8; 12];
        n.copy_from_slice(&self.counter.to_le_bytes()[..12]);
        self.counter += 1;
        Nonce::assume_unique_for_key(n)
    }

    fn seal(&mut self, out: &mut Vec<u8>, plain: &[u8]) {
        let start = out.len();
        out.extend_from_slice(plain);
        let mut tail = out.split_off(start);
        let n = self.nonce();
        self.key
            .seal_in_place_append_tag(n, Aad::empty(), &mut tail)
            .expect("a chunk within the AEAD's limits");
        out.extend(tail);
    }

    /// `data` as chunks: the sealed length, then the sealed payload.
    pub fn seal_chunks(&mut self, out: &mut Vec<u8>, data: &[u8]) {
        for c in data.chunks(MAX_PAYLOAD) {
            let len = u16::try_from(c.len()).expect("a chunk fits");
            self.seal(out, &len.to_be_bytes());
            self.seal(out, c);
        }
    }

    fn open<'a>(&mut self, buf: &'a mut [u8]) -> std::io::Result<&'a mut [u8]> {
        let n = self.nonce();
        self.key.open_in_place(n, Aad::empty(), buf).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the answer does not decrypt under this password and method",
            )
        })
    }

    /// One chunk's payload; `None` at a clean end between chunks.
    pub async fn read_chunk<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 2 + TAG];
        match r.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let l = self.open(&mut len)?;
        let n = usize::from(u16::from_be_bytes([l[0], l[1]])) & MAX_PAYLOAD;
        let mut payload = vec![0u8; n + TAG];
        r.read_exact(&mut payload).await?;
        Ok(Some(self.open(&mut payload)?.to_vec()))
    }
}

/// A SOCKS5-style address, as the first chunk of a request carries it.
pub fn address(host: &str, port: u16) -> Vec<u8> {
    let mut v = Vec::new();
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            v.push(1);
            v.extend_from_slice(&a.octets());
        }
        Ok(std::net::IpAddr::V6(a)) => {
            v.push(4);
            v.extend_from_slice(&a.octets());
        }
        Err(_) => {
            v.push(3);
            v.push(u8::try_from(host.len()).unwrap_or(u8::MAX));
            v.extend_from_slice(&host.as_bytes()[..host.len().min(255)]);
        }
    }
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// The URL fetched through the tunnel (`--tunnel-check`): plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelCheck {
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path and query.
    pub path: String,
}

impl TunnelCheck {
    pub fn parse(s: &str) -> Result<Self, String> {
        let u = url::Url::parse(s).map_err(|e| format!("`{s}`: {e}"))?;
        if u.scheme() != "http" {
            return Err(format!(
                "`{s}`: the tunnel check is a plain http:// URL (what comes back must be read through the tunnel)"
            ));
        }
        let host = match u.host() {
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(h) => h.to_string(),
            None => return Err(format!("`{s}` has no host")),
        };
        let mut path = u.path().to_owned();
        if let Some(q) = u.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Self {
            url: s.to_owned(),
            host,
            port: u.port_or_known_default().unwrap_or(80),
            path,
        })
    }

    fn request(&self) -> Vec<u8> {
        let authority = match (self.host.contains(':'), self.port) {
            (true, 80) => format!("[{}]", self.host),
            (true, p) => format!("[{}]:{p}", self.host),
            (false, 80) => self.host.clone(),
            (false, p) => format!("{}:{p}", self.host),
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: blockprobe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path
        )
        .into_bytes()
    }
}

/// One tunnel attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowsocksAttempt {
    pub server: String,
    pub source: AddrSource,
    pub phase: Phase,
    /// The server's salt arrived (it answered at all).
    pub salt: bool,
    /// The status line fetched through the tunnel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_line: Option<String>,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl ShadowsocksAttempt {
    pub fn answered(&self) -> bool {
        self.phase == Phase::Answered
    }

    pub fn kind(&self) -> Option<FailureKind> {
        self.failure.as_ref().map(|f| f.kind)
    }
}

/// The Shadowsocks step's evidence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowsocksObservation {
    pub method: Method,
    /// The URL fetched through the tunnel.
    pub check: String,
    pub direct: Vec<ShadowsocksAttempt>,
    /// Through the control proxy's CONNECT; `None` without one.
    pub control: Option<ShadowsocksAttempt>,
}

fn attempt(server: String, source: AddrSource) -> ShadowsocksAttempt {
    ShadowsocksAttempt {
        server,
        source,
        phase: Phase::Handshake,
        salt: false,
        status_line: None,
        failure: None,
        elapsed: Duration::ZERO,
    }
}

/// The request (salt, then the address and the GET in one chunk — shadowsocks-libev waits
/// for a complete first chunk) and the answer, over an open connection.
async fn exchange<S>(
    mut s: S,
    a: &mut ShadowsocksAttempt,
    creds: &Credentials,
    check: &TunnelCheck,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let master = creds.master_key();
    // A fresh salt every time: shadowsocks-libev treats a repeated one as a replay.
    let salt = rand::random::<[u8; 32]>()[..creds.method.key_len()].to_vec();
    let mut ours = Cipher::new(creds.method, &master, &salt);
    let mut first = address(&check.host, check.port);
    first.extend(check.request());
    let mut out = salt;
    ours.seal_chunks(&mut out, &first);
    let work = async {
        s.write_all(&out).await?;
        s.flush().await?;
        let mut their_salt = vec![0u8; creds.method.key_len()];
        s.read_exact(&mut their_salt).await?;
        a.salt = true;
        let mut theirs = Cipher::new(creds.method, &master, &their_salt);
        let mut response = Vec::new();
        while let Some(chunk) = theirs.read_chunk(&mut s).await? {
            response.extend(chunk);
            if response.windows(2).any(|w| w == b"\r\n") || response.len() > MAX_RESPONSE {
                break;
            }
        }
        Ok::<_, std::io::Error>(response)
    };
    match tokio::time::timeout(timeout, work).await {
        Err(_) => a.failure = Some(Failure::timeout()),
        Ok(Err(e)) => a.failure = Some(Failure::new(FailureKind::from_io(&e), e.to_string())),
        Ok(Ok(response)) => {
            let line = String::from_utf8_lossy(&response);
            let line = line.lines().next().unwrap_or("").trim().to_owned();
            if line.starts_with("HTTP/") {
                a.phase = Phase::Answered;
                a.status_line = Some(line);
            } else if !response.is_empty() {
                // It decrypted: the tunnel works; the check URL answers oddly.
                a.phase = Phase::Answered;
                a.status_line = Some(format!("not HTTP: {line:.60}"));
            } else {
                a.failure = Some(Failure::new(
                    FailureKind::Eof,
                    "the tunnel closed without a response from the check URL",
                ));
            }
        }
    }
}

/// A tunnel to the check URL through the server at `addr`, from here.
pub async fn probe(
    addr: SocketAddr,
    creds: &Credentials,
    check: &TunnelCheck,
    timeout: Duration,
) -> ShadowsocksAttempt {
    let start = Instant::now();
    let mut a = attempt(addr.to_string(), AddrSource::Vantage);
    match crate::probe::tcp::connect(addr, timeout).await.0 {
        Ok(s) => {
            let left = timeout.saturating_sub(start.elapsed());
            exchange(s, &mut a, creds, check, left).await;
        }
        Err(f) => {
            a.phase = Phase::Connect;
            a.failure = Some(f);
        }
    }
    a.elapsed = start.elapsed();
    a
}

/// The same through the control proxy's CONNECT, to the server by name.
pub async fn probe_via_proxy(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    creds: &Credentials,
    check: &TunnelCheck,
    timeout: Duration,
) -> ShadowsocksAttempt {
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
            exchange(s, &mut a, creds, check, left).await;
        }
    }
    a.elapsed = start.elapsed();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip002_forms() {
        // SIP002's own examples.
        let u = Uri::parse("ss://YWVzLTEyOC1nY206dGVzdA@192.168.100.1:8888#Example1").unwrap();
        assert_eq!(u.credentials.method, Method::Aes128Gcm);
        assert_eq!(
            (u.credentials.password.as_str(), u.host.as_str(), u.port),
            ("test", "192.168.100.1", 8888)
        );
        assert_eq!(u.tag.as_deref(), Some("Example1"));
        let u = Uri::parse("ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@[::1]:8388/#T").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8388));
        let u = Uri::parse("ss://aes-256-gcm:p%40ss%3Aw@example.com:443").unwrap();
        assert_eq!(u.credentials.password, "p@ss:w");
        // A raw `&` is the password's; so are `%` and `+` in the legacy form.
        let u = Uri::parse("ss://aes-128-gcm:x&y@h.example:1").unwrap();
        assert_eq!(u.credentials.password, "x&y");
        let legacy = base64::engine::general_purpose::STANDARD
            .encode("aes-128-gcm:p@ss:w/rd#1?&=+ %41@127.0.0.1:18390");
        let u = Uri::parse(&format!("ss://{legacy}")).unwrap();
        assert_eq!(u.credentials.password, "p@ss:w/rd#1?&=+ %41");
        assert_eq!(u.port, 18390);
        // The legacy all-base64 form.
        let legacy = base64::engine::general_purpose::STANDARD
            .encode("aes-256-gcm:secret@198.51.100.2:8388");
        let u = Uri::parse(&format!("ss://{legacy}#x")).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("198.51.100.2", 8388));
        for bad in [
            "ss://YWVzLTEyOC1nY206dGVzdA@host",
            "ss://rc4-md5:x@host:1",
            "ss://2022-blake3-aes-128-gcm:a2V5@host:1",
            "ss://Y2hhY2hhMjAtaWV0Zi1wb2x5MTMwNTpwYXNz@h:1/?plugin=obfs-local%3Bobfs%3Dhttp",
            "ss://@host:1",
            "ss://aes-256-gcm:x@host:0",
            "ss://aes-256-gcm:@host:1",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_travel_in_the_path() {
        let c = Credentials {
            method: Method::Aes256Gcm,
            password: "a&b=c d+é".into(),
        };
        assert_eq!(Credentials::of_path(&c.to_path()), Some(c));
    }

    #[test]
    fn master_key_is_evp_bytes_to_key() {
        let c = Credentials {
            method: Method::Aes256Gcm,
            password: "foobar".into(),
        };
        let k = c.master_key();
        assert_eq!(k.len(), 32);
        assert_eq!(&k[..16], &md5::Md5::digest(b"foobar")[..]);
        let mut h = md5::Md5::new();
        h.update(&k[..16]);
        h.update(b"foobar");
        assert_eq!(&k[16..], &h.finalize()[..]);
    }

    #[tokio::test]
    async fn chunks_round_trip() {
        let master = [7u8; 32];
        let salt = [9u8; 32];
        let mut a = Cipher::new(Method::Chacha20IetfPoly1305, &master, &salt);
        let mut b = Cipher::new(Method::Chacha20IetfPoly1305, &master, &salt);
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        a.seal_chunks(&mut wire, &data);
        let mut r = &wire[..];
        let mut got = Vec::new();
        while let Some(c) = b.read_chunk(&mut r).await.unwrap() {
            got.extend(c);
        }
        assert_eq!(got, data);
    }
}

//! What to test. A target is parsed once from the user's text (a domain, a URL or a
//! `host:port` endpoint) into the host, port and path every probe step needs; the original text
//! is kept verbatim because reports must show the target exactly as given.

use std::fmt;
use std::net::IpAddr;

/// The three shapes of target the CLI accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// `whatsapp.com`: DNS, then TCP 443, TLS and `GET /` over HTTPS.
    Domain,
    /// `https://youtube.com/big.bin`: scheme, port and path honoured.
    Url,
    /// `host:port` or `IP:port`: DNS when a name, then TCP (and TLS on 443).
    Endpoint,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domain => "domain",
            Self::Url => "url",
            Self::Endpoint => "endpoint",
        }
    }
}

/// A host as probes see it: a DNS name (ASCII, punycode, lowercase, no trailing dot) or an IP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Application protocol spoken after the connection, when the target implies one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    /// A bare endpoint: connect (and TLS on 443) only.
    None,
    /// `stun://HOST:PORT`: a STUN Binding Request over UDP (RFC 5389).
    Stun,
    /// `tcp://HOST:PORT`: a TCP connect and nothing else, even on 443 (for services on 443
    /// that do not speak TLS, like WhatsApp's chat endpoints).
    Tcp,
    /// `quic://HOST[:PORT][/PATH]`: an HTTP/3 GET over QUIC v1 (UDP, port 443 by default).
    Quic,
    /// `echo://HOST:PORT`: protocol-shaped datagrams and random controls to a
    /// `blockprobe echo` server.
    Echo,
    /// `openvpn://HOST[:PORT][?proto=udp|tcp]`: OpenVPN's hard reset (port 1194 by default).
    Openvpn,
    /// `wireguard://HOST[:PORT]?public_key=…[&private_key=…]`: a WireGuard handshake (port
    /// 51820 by default).
    Wireguard,
    /// `tor://HOST:PORT`: a Tor relay's OR-port link handshake (TLS, then `VERSIONS`).
    Tor,
    /// `ss://…` (SIP002): a Shadowsocks AEAD tunnel to the `--tunnel-check` URL.
    Shadowsocks,
    /// `obfs4://HOST:PORT?cert=…&iat-mode=N` (or a Tor bridge line): obfs4's handshake.
    Obfs4,
    /// `media://HOST:PORT[?duration=…&pps=…&size=…]`: a call-shaped UDP stream and its random
    /// control, echoed by a `blockprobe echo` server.
    Media,
}

impl Scheme {
    /// Whether a connection with this scheme to `port` speaks TLS: HTTPS, or a bare endpoint on
    /// port 443.
    pub fn tls_on(self, port: u16) -> bool {
        self == Self::Https || (self == Self::None && port == 443)
    }
}

/// The HTTP method of the fetch. `POST` (empty body) exists for services that only answer
/// it, like Telegram's data centres; suites set it, target lists cannot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// STUN's registered port (RFC 5389).
pub const STUN_PORT: u16 = 3478;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Exactly as the user wrote it.
    pub input: String,
    pub kind: TargetKind,
    pub host: Host,
    pub port: u16,
    pub scheme: Scheme,
    /// Path and query for URLs (`/` otherwise).
    pub path: String,
    /// Citizen Lab `category_code`, when the target came from a test list or a suite.
    pub category: Option<String>,
    pub method: Method,
}

impl Target {
    /// Whether the target is fetched over TLS: an HTTPS URL, or an endpoint on port 443. The
    /// one answer for the probes, the classifier and the mock network.
    pub fn is_tls(&self) -> bool {
        self.scheme.tls_on(self.port)
    }

    /// The layer a transfer of this target runs on: `tls`, or `http` for plain HTTP.
    pub fn transfer_layer(&self) -> crate::verdict::Layer {
        if self.scheme == Scheme::Http {
            crate::verdict::Layer::Http
        } else {
            crate::verdict::Layer::Tls
        }
    }

    /// The `quic://` twin of an HTTPS target (`--probes …,quic`): the same host, port and path
    /// over HTTP/3, measured as its own record.
    pub fn quic_twin(&self) -> Option<Self> {
        if self.scheme != Scheme::Https {
            return None;
        }
        let host = match &self.host {
            Host::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        };
        let port = if self.port == 443 {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        let mut twin = Self::parse(&format!("quic://{host}{port}{}", self.path)).ok()?;
        twin.category = self.category.clone();
        Some(twin)
    }

    /// Identity for de-duplication: what would be measured, not how it was spelled.
    pub(crate) fn identity(&self) -> (TargetKind, &Host, u16, Scheme, &str, Method) {
        (
            self.kind,
            &self.host,
            self.port,
            self.scheme,
            &self.path,
            self.method,
        )
    }

    /// Parses one target written by a user.
    pub fn parse(input: &str) -> Result<Self, String> {
        // No error message repeats a secret the text carries (a password, a private key).
        Self::parse_text(input).map_err(|e| scrub(input, &e))
    }

    fn parse_text(input: &str) -> Result<Self, String> {
        let text = input.trim();
        if text.is_empty() {
            return Err("empty target".into());
        }
        if let Some(rest) = text
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ss://"))
            .and_then(|_| text.get(5..))
        {
            return parse_shadowsocks(&format!("ss://{rest}"));
        }
        // A Tor bridge line (`[Bridge] obfs4 IP:PORT FINGERPRINT cert=… iat-mode=N`).
        if let Some(url) = crate::probe::obfs4::from_bridge_line(text) {
            let url = url?;
            let mut t = parse_url(&url, &url).map_err(|e| e.replace(&url, "the bridge line"))?;
            t.input = text.split_whitespace().collect::<Vec<_>>().join(" ");
            return Ok(t);
        }
        if text.contains("://") {
            return parse_url(text, input);
        }
        if text.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("`{text}` is not a domain, URL or host:port"));
        }
        // A bare IP (v4 or v6) is an endpoint on 443, like a domain would be.
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Self::endpoint(input, Host::Ip(ip), 443));
        }
        if let Ok(sa) = text.parse::<std::net::SocketAddr>() {
            return Ok(Self::endpoint(input, Host::Ip(sa.ip()), sa.port()));
        }
        if let Some((host, port)) = text.rsplit_once(':') {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port `{port}` in `{text}`"))?;
            let host = match host.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => Host::Name(normalize_domain(host)?),
            };
            return Ok(Self::endpoint(input, host, port));
        }
        Ok(Self {
            input: input.to_owned(),
            kind: TargetKind::Domain,
            host: Host::Name(normalize_domain(text)?),
            port: 443,
            scheme: Scheme::Https,
            path: "/".into(),
            category: None,
            method: Method::Get,
        })
    }

    fn endpoint(input: &str, host: Host, port: u16) -> Self {
        Self {
            input: input.to_owned(),
            kind: TargetKind::Endpoint,
            host,
            port,
            scheme: Scheme::None,
            path: "/".into(),
            category: None,
            method: Method::Get,
        }
    }

    /// The DNS name to resolve, if the host is not an address already.
    pub fn name(&self) -> Option<&str> {
        match &self.host {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

fn parse_url(text: &str, input: &str) -> Result<Target, String> {
    let url = url::Url::parse(text).map_err(|e| format!("invalid URL `{text}`: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}`: user:password@ in a target is not supported (it would be dropped)"
        ));
    }
    if url.port() == Some(0) {
        return Err(format!("invalid port `0` in `{text}`"));
    }
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        "stun" => Scheme::Stun,
        "tcp" => Scheme::Tcp,
        "quic" => Scheme::Quic,
        "echo" => Scheme::Echo,
        "media" => Scheme::Media,
        "openvpn" => Scheme::Openvpn,
        "wireguard" => Scheme::Wireguard,
        "tor" => Scheme::Tor,
        "obfs4" => Scheme::Obfs4,
        other => {
            return Err(format!(
                "unsupported URL scheme `{other}` (use http, https, quic, tcp, stun, echo, media, openvpn, wireguard, tor, obfs4 or ss)"
            ));
        }
    };
    if matches!(
        scheme,
        Scheme::Stun | Scheme::Tcp | Scheme::Echo | Scheme::Tor
    ) && (!matches!(url.path(), "" | "/") || url.query().is_some())
    {
        return Err(format!(
            "`{text}`: a {}:// target is HOST:PORT only",
            url.scheme()
        ));
    }
    if matches!(
        scheme,
        Scheme::Tcp | Scheme::Echo | Scheme::Tor | Scheme::Obfs4 | Scheme::Media
    ) && url.port().is_none()
    {
        return Err(format!("`{text}`: {}:// targets need a port", url.scheme()));
    }
    let host = match url.host() {
        // Non-special schemes (stun://) leave addresses as opaque hosts.
        Some(url::Host::Domain(d)) => match d.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(normalize_domain(d)?),
        },
        Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
        None => return Err(format!("URL `{text}` has no host")),
    };
    let mut path = url.path().to_owned();
    if path.is_empty() {
        path.push('/');
    }
    // HTTP/3 carries the path in one header; past 8 KiB no client library sends it.
    if scheme == Scheme::Quic && path.len() + url.query().map_or(0, str::len) > 8 * 1024 {
        let start: String = text.chars().take(64).collect();
        return Err(format!("`{start}…`: a quic:// path longer than 8 KiB"));
    }
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    if scheme == Scheme::Openvpn {
        if !matches!(url.path(), "" | "/") {
            return Err(format!(
                "`{text}`: an openvpn:// target is HOST[:PORT][?proto=udp|tcp]"
            ));
        }
        crate::probe::openvpn::Options::of_path(&path).map_err(|e| format!("`{text}`: {e}"))?;
    }
    if scheme == Scheme::Obfs4 {
        if !matches!(url.path(), "" | "/") {
            return Err(format!(
                "`{text}`: an obfs4:// target is HOST:PORT?cert=…&iat-mode=N"
            ));
        }
        let b =
            crate::probe::obfs4::Bridge::of_path(&path).map_err(|e| format!("`{text}`: {e}"))?;
        // One identity per bridge, however its line or URL spelt the cert.
        let cert: String = url::form_urlencoded::byte_serialize(b.cert().as_bytes()).collect();
        path = format!("/?cert={cert}&iat-mode={}", b.iat_mode);
    }
    if scheme == Scheme::Media {
        if !matches!(url.path(), "" | "/") {
            return Err(format!(
                "`{text}`: a media:// target is HOST:PORT[?duration=10s&pps=50&size=160]"
            ));
        }
        crate::probe::media::Options::of_path(&path).map_err(|e| format!("`{text}`: {e}"))?;
    }
    if scheme == Scheme::Wireguard {
        if !matches!(url.path(), "" | "/") {
            return Err(format!(
                "`{text}`: a wireguard:// target is HOST[:PORT]?public_key=…"
            ));
        }
        crate::probe::wireguard::Keys::of_path(&path).map_err(|e| format!("`{text}`: {e}"))?;
    }
    // A client's private key is a secret: reports, the store and messages show the target
    // without it (the probe reads it from `path`).
    let input = if matches!(scheme, Scheme::Wireguard | Scheme::Openvpn) {
        redact_keys(input)
    } else {
        input.to_owned()
    };
    Ok(Target {
        input,
        kind: TargetKind::Url,
        host,
        port: url.port_or_known_default().unwrap_or(match scheme {
            Scheme::Stun => STUN_PORT,
            Scheme::Openvpn => 1194,
            Scheme::Wireguard => 51820,
            _ => 443,
        }),
        scheme,
        path,
        category: None,
        method: Method::Get,
    })
}

/// A SIP002 URI (not a URL `url` can read: base64 user info holds `/`). The password is a
/// secret: the target's `input` shows it as `REDACTED`; the probe reads it from `path`.
fn parse_shadowsocks(text: &str) -> Result<Target, String> {
    // Errors show where, never the credentials.
    let shown = format!("ss://…@{}", text.rsplit_once('@').map_or("…", |(_, h)| h));
    let uri = crate::probe::shadowsocks::Uri::parse(text).map_err(|e| format!("`{shown}`: {e}"))?;
    let host = match uri.host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(normalize_domain(&uri.host)?),
    };
    let authority = match &host {
        Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]:{}", uri.port),
        h => format!("{h}:{}", uri.port),
    };
    let tag = uri
        .tag
        .as_ref()
        .map(|t| format!("#{t}"))
        .unwrap_or_default();
    Ok(Target {
        input: format!(
            "ss://{}:{}@{authority}{tag}",
            uri.credentials.method.as_str(),
            redacted(&uri.credentials.password)
        ),
        kind: TargetKind::Url,
        host,
        port: uri.port,
        scheme: Scheme::Shadowsocks,
        path: uri.credentials.to_path(),
        category: None,
        method: Method::Get,
    })
}

/// The values of `private_key=`, `preshared_key=` (WireGuard), `tls_auth=` and `tls_crypt=`
/// (OpenVPN's static key) replaced by [`redacted`] forms.
fn redact_keys(input: &str) -> String {
    let Some((head, query)) = input.split_once('?') else {
        return input.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            // Hashed as decoded: `=` and `%3D` are one key.
            Some((k @ ("private_key" | "preshared_key" | "tls_auth" | "tls_crypt"), v)) => {
                format!("{k}={}", redacted(&crate::net::percent_decode(v)))
            }
            _ => p.to_owned(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

/// A secret as records show it: `REDACTED-` and 24 bits of a hash of it, so that two targets
/// that differ only in their secret stay two records (and keep their identity across runs)
/// without the secret being recoverable from the report.
pub fn redacted(secret: &str) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(format!("blockprobe-redacted:{secret}").as_bytes());
    format!("REDACTED-{:02x}{:02x}{:02x}", h[0], h[1], h[2])
}

/// The secrets a target's text may carry: its user info (`ss://METHOD:PASSWORD@…`, raw,
/// percent-decoded and base64-decoded, and their `:`-separated parts) and the values of
/// `private_key=`, `preshared_key=` and `password=`.
fn secrets_in(text: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let after_scheme = text.split_once("://").map_or(text, |(_, r)| r);
    if let Some((userinfo, _)) = after_scheme.rsplit_once('@') {
        let mut forms = vec![userinfo.to_owned(), crate::net::percent_decode(userinfo)];
        for engine in [
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            if let Some(d) = engine
                .decode(userinfo.trim_end_matches('='))
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
            {
                forms.push(d);
            }
        }
        for f in forms {
            out.extend(f.split([':', '@']).map(str::to_owned));
            out.push(f);
        }
    }
    // Any query option whose name says key, auth, crypt, psk, pass or secret, however spelt
    // (`TLS_AUTH=`, `tls-auth=`, `privatekey=`, `psk=`).
    if let Some((_, query)) = text.split_once('?') {
        for pair in query.split(['&', '#', ' ']) {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let k = k.to_ascii_lowercase();
            if ["key", "auth", "crypt", "psk", "pass", "secret"]
                .iter()
                .any(|s| k.contains(s))
            {
                out.push(v.to_owned());
                out.push(crate::net::percent_decode(v));
            }
        }
    }
    // Cipher names and such are no secrets; short pieces would blank ordinary words.
    out.retain(|s| s.len() >= 4 && crate::probe::shadowsocks::Method::parse(s).is_err());
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// `message` with every secret of `text` replaced by `REDACTED`.
pub fn scrub(text: &str, message: &str) -> String {
    let mut m = message.to_owned();
    for s in secrets_in(text) {
        m = m.replace(&s, "REDACTED");
    }
    m
}

/// IDNA (UTS #46) to ASCII, lowercase, without a trailing dot; rejects what DNS cannot carry.
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| format!("invalid domain `{raw}`"))?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(format!("invalid domain `{raw}`: bad length"));
    }
    // WHATWG URL rules read a name whose last label is a number as an IPv4 address
    // (`0x7f.1` is 127.0.0.1, `256.1.1.1` is invalid); no real domain ends so.
    let last = ascii.rsplit('.').next().unwrap_or("");
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if numeric {
        return Err(format!(
            "`{raw}` is neither a valid IP address nor a domain name"
        ));
    }
    for label in ascii.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(format!("invalid domain `{raw}`"));
        }
    }
    Ok(ascii)
}

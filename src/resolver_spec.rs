//! Resolver specifications as users write them (`udp://9.9.9.9`, `tls://1.1.1.1#one.one.one.one`)
//! and their canonical printed form. Parsing and printing round-trip so a spec in a report can be
//! pasted back on the command line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// How to reach one resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolverSpec {
    /// The operating system's configuration (`/etc/resolv.conf`), through hickory-resolver.
    System,
    /// Plain DNS over UDP (port 53 by default).
    Udp(SocketAddr),
    /// Plain DNS over TCP (port 53 by default).
    Tcp(SocketAddr),
    /// DNS over TLS (RFC 7858, port 853 by default); `server_name` is verified in the certificate.
    Tls {
        addr: SocketAddr,
        server_name: String,
    },
    /// DNS over HTTPS (RFC 8484): POST `application/dns-message` to this URL.
    Https {
        host: String,
        port: u16,
        path: String,
    },
}

/// A resolver with the name the user gave it; the name is what reports show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vantage {
    pub name: String,
    pub spec: ResolverSpec,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid resolver spec `{input}`: {why}")]
pub struct SpecError {
    input: String,
    why: &'static str,
}

fn err(input: &str, why: &'static str) -> SpecError {
    SpecError {
        input: input.to_owned(),
        why,
    }
}

/// Parses `IP`, `IP:PORT`, `[V6]:PORT` with a default port (never port 0).
fn parse_ip_port(s: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

impl FromStr for ResolverSpec {
    type Err = SpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s == "system" {
            return Ok(Self::System);
        }
        if let Some(rest) = s.strip_prefix("udp://") {
            return parse_ip_port(rest, 53)
                .map(Self::Udp)
                .ok_or_else(|| err(input, "expected udp://IP[:PORT]"));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            return parse_ip_port(rest, 53)
                .map(Self::Tcp)
                .ok_or_else(|| err(input, "expected tcp://IP[:PORT]"));
        }
        if let Some(rest) = s.strip_prefix("tls://") {
            let (addr, name) = match rest.split_once('#') {
                Some((a, n)) => (a, Some(n)),
                None => (rest, None),
            };
            let addr = parse_ip_port(addr, 853)
                .ok_or_else(|| err(input, "expected tls://IP[:PORT]#SERVER_NAME"))?;
            let server_name = match name {
                Some("") => return Err(err(input, "empty server name after `#`")),
                Some(n) => match n.parse::<IpAddr>() {
                    Ok(ip) => ip.to_string(),
                    Err(_) => crate::target::normalize_domain(n)
                        .map_err(|_| err(input, "the server name after `#` is not a DNS name"))?,
                },
                None => addr.ip().to_string(),
            };
            return Ok(Self::Tls { addr, server_name });
        }
        if s.starts_with("https://") {
            let url =
                url::Url::parse(s).map_err(|_| err(input, "expected https://HOST[:PORT]/PATH"))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(err(input, "a DoH URL cannot carry user:password@"));
            }
            if url.port() == Some(0) {
                return Err(err(input, "port 0"));
            }
            let host = match url.host() {
                Some(url::Host::Domain(d)) => d.to_owned(),
                Some(url::Host::Ipv4(ip)) => ip.to_string(),
                Some(url::Host::Ipv6(ip)) => ip.to_string(),
                None => return Err(err(input, "DoH URL has no host")),
            };
            let mut path = url.path().to_owned();
            if let Some(q) = url.query() {
                path.push('?');
                path.push_str(q);
            }
            return Ok(Self::Https {
                host,
                port: url.port().unwrap_or(443),
                path,
            });
        }
        if s.contains("://") {
            return Err(err(
                input,
                "unknown scheme (use system, udp://, tcp://, tls:// or https://)",
            ));
        }
        parse_ip_port(s, 53)
            .map(Self::Udp)
            .ok_or_else(|| err(input, "expected system, IP[:PORT] or a URL-like spec"))
    }
}

fn fmt_addr(addr: &SocketAddr, default_port: u16) -> String {
    match (addr, addr.port() == default_port) {
        (SocketAddr::V4(a), true) => a.ip().to_string(),
        // A scope (`[fe80::1%2]:53`) is only written with the port, where it parses back.
        (SocketAddr::V6(a), true) if a.scope_id() == 0 => format!("[{}]", a.ip()),
        _ => addr.to_string(),
    }
}

impl fmt::Display for ResolverSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("system"),
            Self::Udp(a) => write!(f, "udp://{}", fmt_addr(a, 53)),
            Self::Tcp(a) => write!(f, "tcp://{}", fmt_addr(a, 53)),
            Self::Tls { addr, server_name } => {
                write!(f, "tls://{}#{server_name}", fmt_addr(addr, 853))
            }
            Self::Https { host, port, path } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                if *port == 443 {
                    write!(f, "https://{host}{path}")
                } else {
                    write!(f, "https://{host}:{port}{path}")
                }
            }
        }
    }
}

impl FromStr for Vantage {
    type Err = String;

    /// `NAME=SPEC`; a bare SPEC is named after itself.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, spec) = match s.split_once('=') {
            Some((n, sp)) if !n.is_empty() && !n.contains("://") => (n.trim().to_owned(), sp),
            _ => (s.trim().to_owned(), s),
        };
        let spec = spec.parse::<ResolverSpec>().map_err(|e| e.to_string())?;
        Ok(Self { name, spec })
    }
}

/// Public DoH resolvers used as controls when none are given. Addressed by IP so that no
/// bootstrap lookup goes through the (possibly censored) system resolver; each certificate
/// carries the IP as a subject alternative name.
pub const DEFAULT_CONTROLS: &[(&str, &str)] = &[
    ("cloudflare", "https://1.1.1.1/dns-query"),
    ("google", "https://8.8.8.8/dns-query"),
    ("quad9", "https://9.9.9.9/dns-query"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        let cases = [
            ("system", "system"),
            ("9.9.9.9", "udp://9.9.9.9"),
            ("127.0.0.1:5353", "udp://127.0.0.1:5353"),
            ("udp://[::1]:53", "udp://[::1]"),
            ("tcp://1.1.1.1", "tcp://1.1.1.1"),
            (
                "tls://1.1.1.1#one.one.one.one",
                "tls://1.1.1.1#one.one.one.one",
            ),
            ("tls://127.0.0.1:8853", "tls://127.0.0.1:8853#127.0.0.1"),
            ("https://1.1.1.1/dns-query", "https://1.1.1.1/dns-query"),
            ("https://dns.example:8443/q", "https://dns.example:8443/q"),
        ];
        for (input, printed) in cases {
            let spec: ResolverSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), printed, "{input}");
            assert_eq!(printed.parse::<ResolverSpec>().unwrap(), spec, "{input}");
        }
    }

    #[test]
    fn issue_11_scoped_ipv6_spec_round_trips() {
        // Found writing the resolver_spec fuzz target's round-trip check: the scope was dropped
        // when the port was the default, so the printed spec named another resolver.
        for input in [
            "udp://[fe80::1%2]:53",
            "tcp://[fe80::1%2]:53",
            "tls://[fe80::1%3]:853#dns.example",
        ] {
            let spec: ResolverSpec = input.parse().unwrap();
            let printed = spec.to_string();
            assert_eq!(
                printed.parse::<ResolverSpec>().unwrap(),
                spec,
                "{input} -> {printed}"
            );
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in [
            "udp://nohost",
            "ftp://x",
            "tls://1.1.1.1#",
            "example.com",
            "",
            // Issue 11, item 16.
            "udp://1.1.1.1:0",
            "tcp://[::1]:0",
            "tls://1.1.1.1#bad name!",
            "https://user:pw@dns.example/dns-query",
            "https://dns.example:0/dns-query",
        ] {
            assert!(bad.parse::<ResolverSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn vantage_names() {
        let v: Vantage = "isp=udp://10.0.0.1".parse().unwrap();
        assert_eq!(v.name, "isp");
        let v: Vantage = "https://1.1.1.1/dns-query".parse().unwrap();
        assert_eq!(v.name, "https://1.1.1.1/dns-query");
        assert!("isp=bogus://x".parse::<Vantage>().is_err());
    }
}

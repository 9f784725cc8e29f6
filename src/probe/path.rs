//! One fetch of a target along one route — directly, with addresses from the vantage resolver,
//! or through the SOCKS5 control proxy — as a list of hops: TCP, TLS (with the SNI swap on
//! failure), HTTP, and the redirects a browser would follow. Every connection is fresh.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::net::reserved_range;
use crate::probe::dns::{DnsClient, DnsObservation};
use crate::probe::failure::{Failure, FailureKind};
use crate::probe::http::{self, HttpObservation, HttpOptions};
use crate::probe::socks;
use crate::probe::tcp::{self, AddrSource, TcpAttempt};
use crate::probe::tls::{TlsClient, TlsObservation};
use crate::target::{Method, Scheme, Target};

/// Options of the connection steps, validated by `config`.
#[derive(Clone, Debug)]
pub struct ConnOptions {
    pub timeout: Duration,
    pub http: HttpOptions,
    pub max_redirects: u32,
    pub decoy_sni: String,
    /// Fetched through Shadowsocks tunnels (`--tunnel-check`).
    pub tunnel_check: crate::probe::shadowsocks::TunnelCheck,
    /// Run TLS and HTTP after TCP (`--probes` tls / http).
    pub tls: bool,
    pub http_step: bool,
    pub remap: tcp::Remap,
}

/// How a route reaches the target.
pub enum Route<'a> {
    /// From here, first hop to these addresses; later hops resolved through `dns`.
    Direct {
        dns: &'a DnsClient,
        addrs: Vec<(IpAddr, AddrSource)>,
    },
    /// Through the control proxy, which resolves names itself.
    Proxy(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hop {
    pub url: String,
    /// Resolution of a redirect's new host through the same vantage resolver.
    pub dns: Option<DnsObservation>,
    pub tcp: Vec<TcpAttempt>,
    pub tls: Option<TlsObservation>,
    /// The same handshake with the decoy SNI, run when the target's SNI failed.
    pub decoy_tls: Option<TlsObservation>,
    pub http: Option<HttpObservation>,
    /// Plain HTTP reset or closed before any byte: the same GET with the decoy name as Host,
    /// on a new connection to the same address (is the filter keyed on the Host?).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoy_http: Option<HttpObservation>,
    /// Bytes received on the connection (TLS records included): where a flow froze on the wire.
    pub wire_bytes_in: u64,
    /// This hop was reached by a redirect from HTTPS to plain HTTP.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub downgrade: bool,
    /// A redirect from this hop that was not followed, and why (a reserved address the target
    /// itself is not on: a cloud metadata service, a LAN host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_redirect: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PathObservation {
    pub hops: Vec<Hop>,
    /// Still redirecting after `--max-redirects` hops.
    pub redirects_exhausted: bool,
}

/// Where a hop goes: the parts of a URL the steps need.
#[derive(Clone, Debug)]
struct Dest {
    scheme: Scheme,
    host: String,
    ip: Option<IpAddr>,
    port: u16,
    path: String,
}

impl Dest {
    fn of(t: &Target) -> Self {
        Self {
            scheme: t.scheme,
            host: t.host.to_string(),
            ip: match &t.host {
                crate::target::Host::Ip(ip) => Some(*ip),
                crate::target::Host::Name(_) => None,
            },
            port: t.port,
            path: t.path.clone(),
        }
    }

    fn url(&self) -> String {
        let host = match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        match self.scheme {
            Scheme::None => format!("{host}:{}", self.port),
            Scheme::Stun => format!("stun://{host}:{}", self.port),
            Scheme::Tcp => format!("tcp://{host}:{}", self.port),
            Scheme::Quic => format!("quic://{host}:{}{}", self.port, self.path),
            Scheme::Echo => format!("echo://{host}:{}", self.port),
            Scheme::Media => format!("media://{host}:{}{}", self.port, self.path),
            Scheme::Openvpn => format!("openvpn://{host}:{}{}", self.port, self.path),
            Scheme::Wireguard => format!("wireguard://{host}:{}", self.port),
            Scheme::Tor => format!("tor://{host}:{}", self.port),
            Scheme::Shadowsocks => format!("ss://{host}:{}", self.port),
            Scheme::Obfs4 => format!("obfs4://{host}:{}", self.port),
            Scheme::Http | Scheme::Https => {
                let scheme = if self.scheme == Scheme::Http {
                    "http"
                } else {
                    "https"
                };
                let default = if self.scheme == Scheme::Http { 80 } else { 443 };
                if self.port == default {
                    format!("{scheme}://{host}{}", self.path)
                } else {
                    format!("{scheme}://{host}:{}{}", self.port, self.path)
                }
            }
        }
    }

    fn authority(&self) -> String {
        let default = if self.scheme == Scheme::Http { 80 } else { 443 };
        let host = match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => self.host.clone(),
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn uses_tls(&self) -> bool {
        self.scheme.tls_on(self.port)
    }

    /// The next hop from a `Location` header, resolved against this URL.
    fn follow(&self, location: &str) -> Option<Self> {
        let base = url::Url::parse(&self.url()).ok()?;
        let next = base.join(location).ok()?;
        let scheme = match next.scheme() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return None,
        };
        let (host, ip) = match next.host()? {
            url::Host::Domain(d) => (d.to_ascii_lowercase(), None),
            url::Host::Ipv4(v4) => (v4.to_string(), Some(IpAddr::V4(v4))),
            url::Host::Ipv6(v6) => (v6.to_string(), Some(IpAddr::V6(v6))),
        };
        let mut path = next.path().to_owned();
        if let Some(q) = next.query() {
            path.push('?');
            path.push_str(q);
        }
        Some(Self {
            scheme,
            host,
            ip,
            port: next.port_or_known_default()?,
            path,
        })
    }
}

/// Fetches `target` along `route`, following redirects.
pub async fn fetch(
    target: &Target,
    route: Route<'_>,
    tls: &TlsClient,
    opts: &ConnOptions,
) -> PathObservation {
    let mut path = PathObservation::default();
    let mut dest = Dest::of(target);
    // Reserved ranges this fetch may enter: those the target itself is on (a loopback test
    // network); a redirect or a redirect's name into any other reserved range is not followed.
    let first: Vec<IpAddr> = match &route {
        Route::Direct { addrs, .. } => addrs.iter().map(|(ip, _)| *ip).collect(),
        Route::Proxy(_) => dest.ip.into_iter().collect(),
    };
    let allowed: Vec<&'static str> = first.into_iter().filter_map(reserved_range).collect();
    let permitted = |ip: IpAddr| reserved_range(ip).is_none_or(|r| allowed.contains(&r));
    let mut downgrade = false;
    for hop_no in 0..=opts.max_redirects {
        let mut hop = Hop {
            url: dest.url(),
            dns: None,
            tcp: Vec::new(),
            tls: None,
            decoy_tls: None,
            http: None,
            decoy_http: None,
            wire_bytes_in: 0,
            downgrade: std::mem::take(&mut downgrade),
            refused_redirect: None,
        };
        // The target's method on the first request; redirects are followed with GET, as
        // browsers do after a 301/302/303.
        let method = if hop_no == 0 {
            target.method
        } else {
            Method::Get
        };
        // Connect.
        let stream = match &route {
            Route::Direct { dns, addrs } => {
                let addrs = if hop_no == 0 {
                    addrs.clone()
                } else if let Some(ip) = dest.ip {
                    vec![(ip, AddrSource::Vantage)]
                } else {
                    let obs = dns.lookup(&dest.host).await;
                    // Never connect to reserved addresses a resolver hands out for a redirect.
                    let found = obs
                        .addresses()
                        .into_iter()
                        .filter(|ip| permitted(*ip))
                        .take(tcp::MAX_ADDRS)
                        .map(|ip| (ip, AddrSource::Vantage))
                        .collect();
                    hop.dns = Some(obs);
                    found
                };
                if addrs.is_empty() {
                    path.hops.push(hop);
                    break;
                }
                let (attempts, first) =
                    tcp::connect_all(&addrs, dest.port, &opts.remap, opts.timeout).await;
                hop.tcp = attempts;
                first
            }
            Route::Proxy(proxy) => {
                let start = tokio::time::Instant::now();
                let res = tokio::time::timeout(
                    opts.timeout,
                    socks::connect(*proxy, &dest.host, dest.port),
                )
                .await;
                let (ok, failure, stream) = match res {
                    Err(_) => (false, Some(Failure::timeout()), None),
                    Ok(Err(e)) => (false, Some(Failure::from_error(&e)), None),
                    Ok(Ok(s)) => (true, None, Some((*proxy, s))),
                };
                hop.tcp.push(TcpAttempt {
                    addr: *proxy,
                    source: AddrSource::Control,
                    ok,
                    failure,
                    elapsed: start.elapsed(),
                });
                stream
            }
        };
        let Some((addr, stream)) = stream else {
            path.hops.push(hop);
            break;
        };
        let (stream, wire) = tcp::Counted::new(stream);

        let next = if dest.uses_tls() && opts.tls {
            let (obs, tls_stream) = tls
                .handshake(stream, &dest.host, &[b"http/1.1"], opts.timeout)
                .await;
            hop.tls = Some(obs);
            let Some(tls_stream) = tls_stream else {
                // SNI swap: same address, decoy name. Only meaningful on the direct path.
                if matches!(route, Route::Direct { .. }) {
                    hop.decoy_tls = Some(decoy(addr, tls, opts).await);
                }
                hop.wire_bytes_in = wire.load(std::sync::atomic::Ordering::Relaxed);
                path.hops.push(hop);
                break;
            };
            if dest.scheme == Scheme::None || !opts.http_step {
                path.hops.push(hop);
                break;
            }
            http::get(
                tls_stream,
                &hop.url,
                &dest.authority(),
                &dest.path,
                method,
                opts.http,
            )
            .await
        } else {
            if dest.scheme != Scheme::Http || !opts.http_step {
                path.hops.push(hop);
                break;
            }
            let obs = http::get(
                stream,
                &hop.url,
                &dest.authority(),
                &dest.path,
                method,
                opts.http,
            )
            .await;
            let silent_reset = obs.status.is_none()
                && wire.load(std::sync::atomic::Ordering::Relaxed) == 0
                && obs
                    .failure
                    .as_ref()
                    .is_some_and(|f| matches!(f.kind, FailureKind::Reset | FailureKind::Eof));
            if silent_reset && matches!(route, Route::Direct { .. }) {
                hop.decoy_http = Some(decoy_http(addr, opts).await);
            }
            obs
        };
        hop.wire_bytes_in = wire.load(std::sync::atomic::Ordering::Relaxed);
        let mut follow = next
            .is_redirect()
            .then(|| next.location().and_then(|l| dest.follow(l)))
            .flatten();
        if let Some(ip) = follow.as_ref().and_then(|d| d.ip)
            && !permitted(ip)
        {
            let range = reserved_range(ip).unwrap_or("reserved");
            hop.refused_redirect = Some(format!(
                "redirect to {ip} ({range} address) not followed: the target is not on that network"
            ));
            follow = None;
        }
        if let Some(d) = &follow {
            downgrade = dest.scheme == Scheme::Https && d.scheme == Scheme::Http;
        }
        hop.http = Some(next);
        path.hops.push(hop);
        match follow {
            Some(d) if hop_no < opts.max_redirects => dest = d,
            Some(_) => {
                path.redirects_exhausted = true;
                break;
            }
            None => break,
        }
    }
    path
}

/// `GET /` with the decoy name as Host, on a new connection to `addr`.
async fn decoy_http(addr: SocketAddr, opts: &ConnOptions) -> HttpObservation {
    let url = format!("http://{}/", opts.decoy_sni);
    let (stream, _) = tcp::connect(opts.remap.apply(addr), opts.timeout).await;
    match stream {
        Ok(s) => http::get(s, &url, &opts.decoy_sni, "/", Method::Get, opts.http).await,
        Err(f) => HttpObservation::failed_before_request(&url, f),
    }
}

async fn decoy(addr: SocketAddr, tls: &TlsClient, opts: &ConnOptions) -> TlsObservation {
    let (stream, elapsed) = tcp::connect(opts.remap.apply(addr), opts.timeout).await;
    match stream {
        Ok(s) => {
            tls.handshake(s, &opts.decoy_sni, &[b"http/1.1"], opts.timeout)
                .await
                .0
        }
        Err(f) => TlsObservation {
            failure: Some(Failure::new(
                f.kind,
                format!("decoy connect: {}", f.message),
            )),
            elapsed,
            ..TlsObservation::new(&opts.decoy_sni)
        },
    }
}

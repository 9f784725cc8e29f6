//! `blockprobe mocknet`: a censored network on loopback, for users' CI smoke tests and our own
//! end-to-end tests: a lying ISP resolver (UDP, TCP, DoT, DoH), a truthful control resolver,
//! origin servers, a censor in front of every target, a block-page server and a SOCKS5 proxy
//! that is the uncensored outside view — driven by a scenario file whose targets carry the
//! verdict a scan must reach.

pub mod censor;
pub mod dns;
pub mod origin;
pub mod pki;
pub mod quic;
pub mod scenario;
pub mod socks;
pub mod stun;
pub mod udp;
pub mod vpn;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::Context as _;
use serde::Serialize;

use std::net::SocketAddr;

use crate::mocknet::censor::{Behaviour as CensorBehaviour, Censor};
use crate::mocknet::dns::MockDns;
use crate::mocknet::origin::Origin;
use crate::mocknet::pki::Pki;
use crate::mocknet::scenario::{
    CANARY, DnsMode, HttpMode, OriginMode, Plan, ProxyMode, QuicMode, Scenario, SchemeMode,
    TcpMode, TlsMode, UdpMode, VpnMode,
};
use crate::mocknet::socks::{Outside, SocksProxy};
use crate::mocknet::stun::{Mode as StunMode, StunServer};
use crate::target::{Host, Scheme};
use crate::verdict::{Layer, Reason, Verdict};

/// Name the mock resolvers' certificate is issued for (DoT `#NAME`).
pub const DNS_SERVER_NAME: &str = "dns.mocknet.test";

/// Everything a client needs to aim at a running mock network; printed as the ready line.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ready {
    pub scenario: String,
    /// The ISP resolver on each transport, as resolver SPECs.
    pub isp: Transports,
    /// The truthful control resolver.
    pub control: String,
    /// The SOCKS5 proxy that is the uncensored outside view.
    pub proxy: String,
    pub ca_file: PathBuf,
    pub targets_file: PathBuf,
    /// Arguments for `blockprobe` that scan this network (`scan` first).
    pub scan_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Transports {
    pub udp: String,
    pub tcp: String,
    pub dot: String,
    pub doh: String,
}

/// A running mock network. Dropping it stops the servers and removes its files.
pub struct MockNet {
    pub isp: MockDns,
    pub control: MockDns,
    pub proxy: SocksProxy,
    pub origin: Origin,
    pub plain_origin: Origin,
    pub ready: Ready,
    pub plan: Plan,
    /// The URL scanned for each scenario target, in order.
    pub urls: Vec<String>,
    /// The scenario's reference (`--reference`), not a target of the scan.
    pub reference_url: Option<String>,
    _censors: Vec<Censor>,
    /// Tor relays, Shadowsocks servers, obfs4 bridges.
    _vpn: Vec<Box<dyn Send + Sync>>,
    _stun: Vec<StunServer>,
    _udp: (
        Vec<quic::H3Origin>,
        Vec<udp::UdpCensor>,
        Vec<crate::echo::EchoServer>,
        Vec<vpn::OpenvpnServer>,
    ),
    _dir: tempfile::TempDir,
}

impl MockNet {
    /// Connections the origins took: TCP, and UDP flows the censors forwarded to them.
    pub fn origin_connections(&self) -> u64 {
        self.origin.connections()
            + self.plain_origin.connections()
            + self._udp.1.iter().map(udp::UdpCensor::flows).sum::<u64>()
    }
}

/// Third-party servers that stand in for built-in ones.
#[derive(Debug, Default)]
pub struct Upstreams {
    /// An HTTP/3 server for `quic://` targets.
    pub quic_origin: Option<SocketAddr>,
    /// Its CA certificate (PEM), added to the roots the scan trusts.
    pub quic_origin_ca: Option<String>,
}

/// A port on `ip` where nothing listens (bound, then released).
fn closed_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// A UDP port on `ip` where nothing listens (bound, then released).
fn closed_udp_port(ip: IpAddr) -> std::io::Result<u16> {
    Ok(std::net::UdpSocket::bind((ip, 0))?.local_addr()?.port())
}

impl MockNet {
    pub async fn start(scenario: Scenario, timeout: &str) -> anyhow::Result<Self> {
        Self::start_with(scenario, timeout, Upstreams::default()).await
    }

    /// [`MockNet::start`] with third-party servers in place of built-in ones.
    pub async fn start_with(
        scenario: Scenario,
        timeout: &str,
        upstreams: Upstreams,
    ) -> anyhow::Result<Self> {
        let plan = scenario.plan()?;
        let pki = Pki::generate("blockprobe mocknet CA")?;
        let rogue = Pki::generate("untrusted interception CA")?;
        let names = ["127.0.0.1", DNS_SERVER_NAME];
        let dot = pki.server_config(&names, &[b"dot"])?;
        let doh = pki.server_config(&names, &[b"h2", b"http/1.1"])?;
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let isp = MockDns::start(lo, 0, plan.vantage.clone(), Some((dot, doh)))
            .await
            .context("cannot bind the ISP resolver")?;
        let control = MockDns::start(lo, 0, plan.control.clone(), None)
            .await
            .context("cannot bind the control resolver")?;

        // Origins: one HTTPS server with a certificate for every host, one plain HTTP server.
        let mut cert_names: Vec<String> = Vec::new();
        for p in &plan.placed {
            let h = p.target.host.to_string();
            if !cert_names.contains(&h) {
                cert_names.push(h);
            }
        }
        cert_names.push(crate::config::DEFAULT_DECOY_SNI.to_owned());
        let cert_refs: Vec<&str> = cert_names.iter().map(String::as_str).collect();
        let origin = Origin::start(lo, Some(pki.server_config(&cert_refs, &[b"http/1.1"])?))
            .await
            .context("cannot bind the origin")?;
        let plain_origin = Origin::start(lo, None)
            .await
            .context("cannot bind the origin")?;

        let mut censors = Vec::new();
        let mut stun_servers = Vec::new();
        let mut urls = Vec::new();
        let mut outside = Outside::default();
        let mut connect_to: Vec<(SocketAddr, SocketAddr)> = Vec::new();
        let mut quic_targets = Vec::new();
        let mut echo_servers = Vec::new();
        let mut vpn_servers = Vec::new();
        let mut vpn_held: Vec<Box<dyn Send + Sync>> = Vec::new();
        let mut quic_censors = Vec::new();
        // Stable target texts: a name target is scanned at its scheme's default port, mapped to
        // its censor with --connect-to, so two runs of a scenario measure the same targets
        // (`diff` compares them) — unless another name target of the host wants the same
        // address and port, which then keeps the censor's port in its URL.
        let mut claims: std::collections::HashMap<(u8, bool), usize> =
            std::collections::HashMap::new();
        for (t, p) in plan.scenario.targets.iter().zip(&plan.placed) {
            if !p.literal {
                *claims
                    .entry((p.n, t.scheme == SchemeMode::Https))
                    .or_default() += 1;
            }
        }
        for (t, p) in plan.scenario.targets.iter().zip(&plan.placed) {
            let n = p.n;
            let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 1, n));
            let target = &p.target;
            let host = target.host.to_string();
            // Where a client that believes DNS connects: the host's address, or the IP given.
            let orig = match target.host {
                Host::Ip(a) => a,
                Host::Name(_) => ip,
            };
            let key = socks::key(&host, target.port);
            let down = t.origin == Some(OriginMode::Down);
            if matches!(target.scheme, Scheme::Echo | Scheme::Media) {
                let to = if down {
                    SocketAddr::new(ip, closed_udp_port(ip)?)
                } else {
                    // All flows reach the echo server from one loopback address: a high cap.
                    let limits = crate::echo::Limits {
                        packets_per_source: 100_000,
                        bytes_per_source: 1 << 30,
                        ..crate::echo::Limits::default()
                    };
                    let e = crate::echo::EchoServer::start(SocketAddr::new(lo, 0), limits).await?;
                    outside.udp.insert(key, e.udp);
                    let shapes: Vec<_> = t
                        .shapes
                        .iter()
                        .filter_map(|s| crate::probe::echo::Shape::parse(s))
                        .collect();
                    let mode = if t.udp == Some(UdpMode::Drop) {
                        udp::Mode::Drop
                    } else if let Some(m) = t.media {
                        use crate::mocknet::scenario::MediaMode;
                        udp::Mode::Calls(match m {
                            MediaMode::Throttle => udp::Calls::Throttle(10),
                            MediaMode::Cut => udp::Calls::Cut(std::time::Duration::from_secs(1)),
                            MediaMode::Block => udp::Calls::Block,
                            MediaMode::Lossy => udp::Calls::LossyPath,
                        })
                    } else if shapes.is_empty() {
                        udp::Mode::Pass
                    } else {
                        udp::Mode::DropShapes(shapes)
                    };
                    let c = udp::UdpCensor::start(SocketAddr::new(ip, 0), e.udp, mode)
                        .await
                        .with_context(|| format!("cannot bind the censor for {}", t.target))?;
                    let to = c.addr;
                    echo_servers.push(e);
                    quic_censors.push(c);
                    to
                };
                connect_to.push((SocketAddr::new(orig, target.port), to));
                urls.push(target.input.clone());
                continue;
            }
            if target.scheme == Scheme::Wireguard {
                let to = if down {
                    SocketAddr::new(ip, closed_udp_port(ip)?)
                } else {
                    let server = vpn::WireguardServer::start(SocketAddr::new(lo, 0)).await?;
                    outside.udp.insert(key, server.addr);
                    let mode = match t.vpn {
                        Some(VpnMode::Drop) => {
                            udp::Mode::DropShapes(vec![crate::probe::echo::Shape::Wireguard])
                        }
                        Some(VpnMode::Cut) => udp::Mode::CutAfterHandshake,
                        _ => udp::Mode::Pass,
                    };
                    let c = udp::UdpCensor::start(SocketAddr::new(ip, 0), server.addr, mode)
                        .await
                        .with_context(|| format!("cannot bind the censor for {}", t.target))?;
                    let to = c.addr;
                    quic_censors.push(c);
                    vpn_held.push(Box::new(server));
                    to
                };
                connect_to.push((SocketAddr::new(orig, target.port), to));
                // The scan reads the client key from the text; records show it redacted.
                urls.push(t.target.clone());
                continue;
            }
            if target.scheme == Scheme::Openvpn {
                let opts = crate::probe::openvpn::Options::of_path(&target.path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", t.target))?;
                let tcp = opts.proto == crate::probe::openvpn::Proto::Tcp;
                let to = if down {
                    if tcp {
                        SocketAddr::new(ip, closed_port(ip)?)
                    } else {
                        SocketAddr::new(ip, closed_udp_port(ip)?)
                    }
                } else {
                    let silent = t.vpn == Some(VpnMode::TlsAuth);
                    let server =
                        vpn::OpenvpnServer::start(SocketAddr::new(lo, 0), silent, opts.wrap)
                            .await?;
                    let to = if tcp {
                        outside.tcp.insert(key, server.tcp);
                        let b = match t.vpn {
                            Some(VpnMode::Drop) => CensorBehaviour::FreezeUpload(0),
                            Some(VpnMode::Reset) => CensorBehaviour::ResetAfterFirst,
                            _ => CensorBehaviour::Pass,
                        };
                        let c = Censor::start(SocketAddr::new(ip, 0), server.tcp, b)
                            .await
                            .with_context(|| format!("cannot bind the censor for {}", t.target))?;
                        let to = c.addr;
                        censors.push(c);
                        to
                    } else {
                        outside.udp.insert(key, server.udp);
                        let mode = match t.vpn {
                            Some(VpnMode::Drop) => {
                                udp::Mode::DropShapes(vec![crate::probe::echo::Shape::Openvpn])
                            }
                            _ => udp::Mode::Pass,
                        };
                        let c = udp::UdpCensor::start(SocketAddr::new(ip, 0), server.udp, mode)
                            .await
                            .with_context(|| format!("cannot bind the censor for {}", t.target))?;
                        let to = c.addr;
                        quic_censors.push(c);
                        to
                    };
                    vpn_servers.push(server);
                    to
                };
                connect_to.push((SocketAddr::new(orig, target.port), to));
                // The scan reads a static key from the text; records show it redacted.
                urls.push(t.target.clone());
                continue;
            }
            // The TCP handshake protocols: a server of the kind outside, a censor in front.
            if matches!(
                target.scheme,
                Scheme::Tor | Scheme::Shadowsocks | Scheme::Obfs4
            ) {
                let to = if down {
                    SocketAddr::new(ip, closed_port(ip)?)
                } else {
                    let bind = SocketAddr::new(lo, 0);
                    let (server, held): (SocketAddr, Box<dyn Send + Sync>) = match target.scheme {
                        Scheme::Tor => {
                            let tls = pki.server_config(&["www.mockrelay.net"], &[])?;
                            let r = vpn::TorRelay::start(bind, tls).await?;
                            (r.addr, Box::new(r))
                        }
                        Scheme::Obfs4 => {
                            let b = vpn::Obfs4Bridge::start(bind).await?;
                            (b.addr, Box::new(b))
                        }
                        _ => {
                            let creds =
                                crate::probe::shadowsocks::Credentials::of_path(&target.path)
                                    .context("ss:// credentials")?;
                            let s = vpn::ShadowsocksServer::start(bind, creds).await?;
                            (s.addr, Box::new(s))
                        }
                    };
                    outside.tcp.insert(key, server);
                    let b = match t.vpn {
                        Some(VpnMode::Drop) => CensorBehaviour::FreezeUpload(0),
                        Some(VpnMode::Reset) => CensorBehaviour::ResetAfterFirst,
                        Some(VpnMode::ResetTorTls) => CensorBehaviour::ResetTorTls,
                        _ => CensorBehaviour::Pass,
                    };
                    let c = Censor::start(SocketAddr::new(ip, 0), server, b)
                        .await
                        .with_context(|| format!("cannot bind the censor for {}", t.target))?;
                    let to = c.addr;
                    censors.push(c);
                    vpn_held.push(held);
                    to
                };
                connect_to.push((SocketAddr::new(orig, target.port), to));
                // The scan reads secrets (ss:// passwords) from the text; records show the
                // target redacted.
                urls.push(t.target.clone());
                continue;
            }
            if target.scheme == Scheme::Quic {
                // After the TCP targets: a QUIC target shares its host's mapped port.
                quic_targets.push((t, orig, ip, key, down));
                urls.push(target.input.clone());
                continue;
            }
            if target.scheme == Scheme::Stun {
                let real = if down {
                    None
                } else {
                    let s = StunServer::start(lo, StunMode::Answer).await?;
                    outside.udp.insert(key, s.addr);
                    Some(s)
                };
                let unlisted = plan
                    .scenario
                    .regime
                    .as_ref()
                    .is_some_and(|r| !r.allows(&host));
                let inside = match (t.udp, &real) {
                    // A whitelist regime drops unlisted destinations' UDP.
                    _ if unlisted => Some(StunServer::start(ip, StunMode::Drop).await?),
                    (Some(UdpMode::Drop), _) => Some(StunServer::start(ip, StunMode::Drop).await?),
                    (Some(UdpMode::Garbage), _) => {
                        Some(StunServer::start(ip, StunMode::Garbage).await?)
                    }
                    _ => None,
                };
                let to = match (&inside, &real) {
                    (Some(s), _) | (None, Some(s)) => s.addr,
                    // A dead server: a UDP port where nothing listens.
                    (None, None) => SocketAddr::new(ip, closed_udp_port(ip)?),
                };
                connect_to.push((SocketAddr::new(orig, target.port), to));
                stun_servers.extend(real);
                stun_servers.extend(inside);
                urls.push(target.input.clone());
                continue;
            }
            let https = if p.literal {
                target.is_tls()
            } else {
                t.scheme == SchemeMode::Https
            };
            let default_port = if https { 443 } else { 80 };
            let stable = !p.literal && claims.get(&(p.n, https)) == Some(&1);
            let upstream = if https {
                origin.addr
            } else {
                plain_origin.addr
            };
            let regime = plan.scenario.regime.as_ref();
            let behaviour = match (t.tcp, t.tls, t.http, t.freeze, t.throttle) {
                // A whitelist regime: unlisted destinations connect, then hear nothing.
                _ if regime.is_some_and(|r| !r.allows(&host)) => {
                    Some(CensorBehaviour::FreezeUpload(0))
                }
                _ if regime.is_some_and(|r| r.whitelist && r.sni) => {
                    Some(CensorBehaviour::AllowSni(
                        regime.map(|r| r.allowlisted.clone()).unwrap_or_default(),
                    ))
                }
                _ if t.freeze_upload.is_some() => {
                    t.freeze_upload.map(CensorBehaviour::FreezeUpload)
                }
                (Some(TcpMode::Drop), ..) => Some(CensorBehaviour::Drop),
                (Some(TcpMode::Refuse), ..) => None,
                (Some(TcpMode::Reset), ..) => Some(CensorBehaviour::Reset),
                (_, Some(TlsMode::Reset), ..) => {
                    Some(CensorBehaviour::ResetSni(vec![host.clone()]))
                }
                (_, Some(TlsMode::Silence), ..) => {
                    Some(CensorBehaviour::SilenceSni(vec![host.clone()]))
                }
                (_, Some(TlsMode::Intercept), ..) => Some(CensorBehaviour::Intercept(
                    rogue.server_config(&[host.as_str()], &[b"http/1.1"])?,
                )),
                (_, _, Some(HttpMode::Blockpage), ..) => Some(CensorBehaviour::InjectBlockPage),
                (_, _, Some(HttpMode::Reset), ..) => {
                    Some(CensorBehaviour::ResetHost(vec![host.clone()]))
                }
                (_, _, _, Some(n), _) => Some(CensorBehaviour::FreezeAfter(n)),
                (_, _, _, _, Some(r)) => Some(CensorBehaviour::Throttle(r)),
                _ => Some(CensorBehaviour::Pass),
            };
            let port = match behaviour {
                Some(b) if !down => {
                    let c = Censor::start(SocketAddr::new(ip, 0), upstream, b)
                        .await
                        .with_context(|| format!("cannot bind the censor for {host}"))?;
                    let port = c.addr.port();
                    censors.push(c);
                    port
                }
                _ => closed_port(ip)?,
            };
            // The outside view: the origin itself (or, for a dead origin, a closed port).
            let outside_addr = if down {
                SocketAddr::new(ip, port)
            } else {
                upstream
            };
            if p.literal {
                outside.tcp.insert(key, outside_addr);
                connect_to.push((
                    SocketAddr::new(orig, target.port),
                    SocketAddr::new(ip, port),
                ));
            } else {
                outside.tcp.insert(host.clone(), outside_addr);
                // The regime check reaches its references by name on port 443.
                let referenced = regime
                    .is_some_and(|r| r.allowlisted.iter().chain(&r.foreign).any(|n| *n == host));
                if stable || (referenced && https) {
                    connect_to.push((SocketAddr::new(ip, default_port), SocketAddr::new(ip, port)));
                }
            }
            if t.proxy == Some(ProxyMode::Timeout) {
                outside.silent.insert(if p.literal {
                    socks::key(&host, target.port)
                } else {
                    host.clone()
                });
            }
            if matches!(t.dns, DnsMode::Blockpage | DnsMode::Ghost) {
                let bp_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 2, n));
                let b = if https {
                    CensorBehaviour::Intercept(
                        rogue.server_config(&["blockpage.isp"], &[b"http/1.1"])?,
                    )
                } else {
                    CensorBehaviour::InjectBlockPage
                };
                censors.push(
                    Censor::start(SocketAddr::new(bp_ip, port), upstream, b)
                        .await
                        .with_context(|| format!("cannot bind the block-page server for {host}"))?,
                );
                if p.literal {
                    connect_to.push((
                        SocketAddr::new(bp_ip, target.port),
                        SocketAddr::new(bp_ip, port),
                    ));
                } else if stable {
                    connect_to.push((
                        SocketAddr::new(bp_ip, default_port),
                        SocketAddr::new(bp_ip, port),
                    ));
                }
            }
            urls.push(if p.literal {
                target.input.clone()
            } else if stable {
                let scheme = if https { "https" } else { "http" };
                format!("{scheme}://{host}{}", t.path)
            } else {
                let scheme = if https { "https" } else { "http" };
                format!("{scheme}://{host}:{port}{}", t.path)
            });
        }
        // QUIC: one real HTTP/3 origin; a UDP censor on each target's address, on the port its
        // host's TCP targets are mapped to (UDP and TCP ports are separate), or a fresh one.
        let mut quic_servers = Vec::new();
        if !quic_targets.is_empty() {
            let h3_addr = match upstreams.quic_origin {
                Some(a) => a,
                None => {
                    let h3 = quic::H3Origin::start(lo, pki.server_config(&cert_refs, &[b"h3"])?)
                        .context("cannot bind the HTTP/3 origin")?;
                    let a = h3.addr;
                    quic_servers.push(h3);
                    a
                }
            };
            for (t, orig, ip, key, down) in quic_targets {
                let p = plan
                    .placed
                    .iter()
                    .zip(&plan.scenario.targets)
                    .find(|(_, st)| std::ptr::eq(*st, t))
                    .map(|(p, _)| p)
                    .expect("placed");
                let from = SocketAddr::new(orig, p.target.port);
                let mapped = connect_to
                    .iter()
                    .find(|(f, _)| *f == from)
                    .map(|(_, to)| *to);
                let to = if down {
                    // Nothing listens on UDP there.
                    match mapped {
                        Some(to) => to,
                        None => SocketAddr::new(ip, closed_udp_port(ip)?),
                    }
                } else {
                    outside.udp.insert(key, h3_addr);
                    let host = p.target.host.to_string();
                    let unlisted = plan
                        .scenario
                        .regime
                        .as_ref()
                        .is_some_and(|r| !r.allows(&host));
                    let mode = match t.quic {
                        // A whitelist regime drops unlisted destinations' UDP.
                        _ if unlisted => udp::Mode::Drop,
                        None => udp::Mode::Pass,
                        Some(QuicMode::Drop) => udp::Mode::Drop,
                        Some(QuicMode::DropV1) => udp::Mode::DropV1,
                        Some(QuicMode::DropSni) => udp::Mode::DropSni(vec![host]),
                    };
                    let bind = mapped.unwrap_or(SocketAddr::new(ip, 0));
                    let c = udp::UdpCensor::start(bind, h3_addr, mode)
                        .await
                        .with_context(|| format!("cannot bind the QUIC censor for {}", t.target))?;
                    let to = c.addr;
                    quic_censors.push(c);
                    to
                };
                if mapped.is_none() {
                    connect_to.push((from, to));
                }
            }
        }
        // A STUN server that answers from inside (a domestic one): the scan's
        // --stun-reference, the baseline for stun:// targets when it has no control path.
        let stun_reference = if plan.placed.iter().any(|p| p.target.scheme == Scheme::Stun) {
            let s = StunServer::start(lo, StunMode::Answer).await?;
            let addr = s.addr;
            stun_servers.push(s);
            Some(addr)
        } else {
            None
        };
        let proxy = SocksProxy::start(lo, outside)
            .await
            .context("cannot bind the SOCKS5 proxy")?;

        let dir = tempfile::Builder::new()
            .prefix("blockprobe-mocknet-")
            .tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        let mut roots = pki.ca_pem().to_owned();
        if let Some(extra) = &upstreams.quic_origin_ca {
            roots.push_str(extra);
        }
        std::fs::write(&ca_file, roots)?;
        let targets_file = dir.path().join("targets.txt");
        // The targets the scan lists itself; suite targets come with `--suite`; the reference
        // is `--reference`.
        let reference_url = plan.scenario.reference.as_ref().and_then(|r| {
            plan.scenario
                .targets
                .iter()
                .zip(&urls)
                .find(|(t, _)| t.target == *r)
                .map(|(_, u)| u.clone())
        });
        let mut list = String::new();
        for (u, p) in urls.iter().zip(&plan.placed) {
            if !p.from_suite && Some(u) != reference_url.as_ref() {
                list.push_str(u);
                list.push('\n');
            }
        }
        std::fs::write(&targets_file, &list)?;

        let isp_specs = Transports {
            udp: format!("udp://{}", isp.udp),
            tcp: format!("tcp://{}", isp.tcp),
            dot: format!("tls://{}#{DNS_SERVER_NAME}", isp.dot.expect("tls given")),
            doh: format!(
                "https://127.0.0.1:{}/dns-query",
                isp.doh.expect("tls given").port()
            ),
        };
        let control_spec = format!("udp://{}", control.udp);
        let proxy_url = format!("socks5://{}", proxy.addr);
        let stall = crate::parse::parse_duration(timeout)
            .map(|d| {
                humantime::format_duration(d / 2)
                    .to_string()
                    .replace(' ', "")
            })
            .map_err(|e| anyhow::anyhow!(e))?;
        let mut scan_args = vec!["scan".to_owned()];
        if !list.is_empty() {
            scan_args.extend(["-i".into(), targets_file.display().to_string()]);
        }
        for s in &plan.scenario.suites {
            scan_args.extend(["--suite".into(), s.clone()]);
        }
        for (from, to) in &connect_to {
            scan_args.extend(["--connect-to".into(), format!("{from}={to}")]);
        }
        if let Some(r) = &reference_url {
            scan_args.extend(["--reference".into(), r.clone()]);
        }
        if let Some(a) = stun_reference {
            scan_args.extend(["--stun-reference".into(), a.to_string()]);
        }
        // The regime check with the scenario's own references, or none at all.
        match &plan.scenario.regime {
            Some(r) => scan_args.extend([
                "--regime-check".into(),
                "on".into(),
                "--allowlisted".into(),
                r.allowlisted.join(","),
                "--foreign-references".into(),
                r.foreign.join(","),
            ]),
            None => scan_args.extend(["--regime-check".into(), "off".into()]),
        }
        scan_args.extend([
            "--resolver".into(),
            format!("isp={}", isp_specs.udp),
            "--control-resolver".into(),
            format!("control={control_spec}"),
            "--control-proxy".into(),
            proxy_url.clone(),
            "--ca-file".into(),
            ca_file.display().to_string(),
            "--canary".into(),
            CANARY.into(),
            "--timeout".into(),
            timeout.into(),
            "--stall-timeout".into(),
            stall,
        ]);
        let ready = Ready {
            scenario: plan.scenario.name.clone(),
            isp: isp_specs,
            control: control_spec,
            proxy: proxy_url,
            ca_file,
            targets_file,
            scan_args,
        };
        Ok(Self {
            isp,
            control,
            proxy,
            origin,
            plain_origin,
            ready,
            plan,
            urls,
            reference_url,
            _censors: censors,
            _vpn: vpn_held,
            _stun: stun_servers,
            _udp: (quic_servers, quic_censors, echo_servers, vpn_servers),
            _dir: dir,
        })
    }

    /// Runs the scan in-process twice — with the control proxy, then without it (as most
    /// users scan) — and compares every record with the scenario's `expect` and
    /// `expect_no_proxy`. Returns the mismatches of both passes (empty when all is as expected).
    pub async fn check(&self, out: &mut impl std::io::Write) -> anyhow::Result<Checked> {
        let with = self.check_pass(true, out).await?;
        writeln!(out, "-- without a control path (no --control-proxy):")?;
        let without = self.check_pass(false, out).await?;
        Ok(Checked {
            targets: self.checked_targets().count(),
            with_proxy: with,
            without_proxy: without,
        })
    }

    /// The scenario targets a check compares (the reference is not one).
    fn checked_targets(
        &self,
    ) -> impl Iterator<Item = (&crate::mocknet::scenario::ScenarioTarget, &String)> {
        self.plan
            .scenario
            .targets
            .iter()
            .zip(&self.urls)
            .filter(|(_, u)| Some(*u) != self.reference_url.as_ref())
    }

    async fn check_pass(
        &self,
        with_proxy: bool,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<Vec<String>> {
        use clap::Parser as _;
        let mut argv = vec!["blockprobe".to_owned()];
        let mut args = self.ready.scan_args.iter();
        while let Some(a) = args.next() {
            if a == "--control-proxy" && !with_proxy {
                args.next();
                continue;
            }
            argv.push(a.clone());
        }
        argv.extend(["--quiet".into(), "--format".into(), "jsonl".into()]);
        let cli = crate::cli::Cli::try_parse_from(argv)?;
        let crate::cli::Command::Scan(args) = cli.command else {
            unreachable!("scan_args start with scan")
        };
        let cfg = crate::config::ScanConfig::from_args(*args)?;
        let meta = crate::scan::run_meta(&cfg, std::time::SystemTime::now());
        let mut buf = Vec::new();
        crate::scan::scan(cfg, meta, &mut buf, crate::scan::Hooks::default()).await?;
        let records: Vec<serde_json::Value> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()?;
        let mut mismatches = Vec::new();
        // The run's regime, when the scenario says what it should be.
        if let Some(want) = self
            .plan
            .scenario
            .regime
            .as_ref()
            .and_then(|r| r.expect.as_ref())
        {
            let got = records
                .first()
                .and_then(|r| r["regime"].as_str())
                .unwrap_or("(no record)");
            let ok = got == want;
            let line = format!(
                "{:<4} {:<28} expected {want}, got {got}",
                if ok { "ok" } else { "FAIL" },
                "(the run's regime)"
            );
            writeln!(out, "{line}")?;
            if !ok {
                mismatches.push(line);
            }
        }
        for (t, url) in self.checked_targets() {
            let expect = match (&t.expect_no_proxy, with_proxy) {
                (Some(e), false) => e,
                _ => &t.expect,
            };
            // A transfer's layer is its connection's.
            let transfer = if t.scheme == SchemeMode::Http {
                Layer::Http
            } else {
                Layer::Tls
            };
            let (want_verdict, want_reason) = expect.typed(transfer)?;
            // Records show a target as its parse does (secrets redacted); so does this list.
            let shown = crate::target::Target::parse(url).map_or_else(|_| url.clone(), |t| t.input);
            let label = crate::target::Target::parse(&t.target)
                .map_or_else(|_| t.target.clone(), |t| t.input);
            let Some(r) = records.iter().find(|r| r["target"] == shown.as_str()) else {
                mismatches.push(format!("{}: no record in the scan output", t.target));
                continue;
            };
            let got_verdict = r["verdict"].as_str().unwrap_or("?");
            let got_reason = r["reason"].as_str();
            let got_layer = r["layer"].as_str();
            let ok = got_verdict.parse::<Verdict>().ok() == Some(want_verdict)
                && got_reason.map(|g| Reason::parse(g, transfer)) == want_reason.map(Some)
                && got_layer == want_reason.map(|w| w.layer().as_str());
            let line = format!(
                "{:<4} {:<28} expected {}{}, got {}{}{} ({})",
                if ok { "ok" } else { "FAIL" },
                label,
                want_verdict.as_str(),
                want_reason
                    .map(|r| format!(" {}", r.as_str()))
                    .unwrap_or_default(),
                got_verdict,
                got_reason.map(|r| format!(" {r}")).unwrap_or_default(),
                got_layer
                    .map(|l| format!(" [layer {l}]"))
                    .unwrap_or_default(),
                r["detail"].as_str().unwrap_or(""),
            );
            writeln!(out, "{line}")?;
            if !ok {
                mismatches.push(line);
            }
        }
        Ok(mismatches)
    }
}

/// The result of `mocknet --check`: mismatches of each pass.
pub struct Checked {
    pub targets: usize,
    pub with_proxy: Vec<String>,
    pub without_proxy: Vec<String>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.with_proxy.is_empty() && self.without_proxy.is_empty()
    }
}

//! A SOCKS5 client (RFC 1928, CONNECT and UDP ASSOCIATE, no authentication) with remote name resolution
//! (socks5h semantics): the control path asks the proxy, outside the censored network, to
//! resolve and connect, so neither the local resolver nor the local path is involved.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("proxy I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("proxy refused: {0}")]
    Refused(&'static str),
    #[error("proxy spoke something other than SOCKS5")]
    Protocol,
}

fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused by destination",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

/// The SOCKS reply code as an I/O error kind, so the failure reader classifies the far side's
/// refusal, reset or timeout the same way as a direct connection's.
pub fn reply_kind(code: u8) -> std::io::ErrorKind {
    match code {
        5 => std::io::ErrorKind::ConnectionRefused,
        3 => std::io::ErrorKind::NetworkUnreachable,
        4 => std::io::ErrorKind::HostUnreachable,
        6 => std::io::ErrorKind::TimedOut,
        _ => std::io::ErrorKind::Other,
    }
}

/// Opens a tunnel to `host:port` through the proxy at `proxy`.
pub async fn connect(proxy: SocketAddr, host: &str, port: u16) -> Result<TcpStream, SocksError> {
    Ok(request(proxy, CMD_CONNECT, host, port).await?.0)
}

/// UDP ASSOCIATE: returns the control connection (the association lives as long as it does)
/// and the relay address datagrams go to, each wrapped with [`udp_header`].
pub async fn udp_associate(proxy: SocketAddr) -> Result<(TcpStream, SocketAddr), SocksError> {
    let (s, mut relay) = request(proxy, CMD_UDP_ASSOCIATE, "0.0.0.0", 0).await?;
    // A relay bound to the wildcard address is reached at the proxy's own address.
    if relay.ip().is_unspecified() {
        relay.set_ip(proxy.ip());
    }
    Ok((s, relay))
}

pub(crate) const CMD_CONNECT: u8 = 1;
pub(crate) const CMD_UDP_ASSOCIATE: u8 = 3;

/// ATYP, address and port of `host:port`: an IP as itself, a name for the proxy to resolve.
fn encode_addr(host: &str, port: u16, out: &mut Vec<u8>) -> Result<(), SocksError> {
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            // A name: the proxy resolves it (socks5h), outside the censored network.
            let name = host.as_bytes();
            let len =
                u8::try_from(name.len()).map_err(|_| SocksError::Refused("host name too long"))?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(name);
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(())
}

/// The header of a datagram sent through the UDP relay to `host:port` (RFC 1928 section 7).
pub fn udp_header(host: &str, port: u16) -> Result<Vec<u8>, SocksError> {
    let mut h = vec![0, 0, 0];
    encode_addr(host, port, &mut h)?;
    Ok(h)
}

/// Length of the relay header at the start of a datagram; `None` when it is malformed or
/// fragmented (FRAG != 0 is not supported).
pub fn udp_header_len(d: &[u8]) -> Option<usize> {
    parse_udp_header(d).map(|(_, _, len)| len)
}

/// The destination (host as text, port) and length of a relay header.
pub fn parse_udp_header(d: &[u8]) -> Option<(String, u16, usize)> {
    if d.len() < 4 || d[2] != 0 {
        return None;
    }
    let (host, at) = match d[3] {
        1 => {
            let o: [u8; 4] = d.get(4..8)?.try_into().ok()?;
            (std::net::Ipv4Addr::from(o).to_string(), 8)
        }
        4 => {
            let o: [u8; 16] = d.get(4..20)?.try_into().ok()?;
            (std::net::Ipv6Addr::from(o).to_string(), 20)
        }
        3 => {
            let len = usize::from(*d.get(4)?);
            let name = d.get(5..5 + len)?;
            (String::from_utf8_lossy(name).to_ascii_lowercase(), 5 + len)
        }
        _ => return None,
    };
    let port = u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]);
    Some((host, port, at + 2))
}

async fn request(
    proxy: SocketAddr,
    cmd: u8,
    host: &str,
    port: u16,
) -> Result<(TcpStream, SocketAddr), SocksError> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let bound = negotiate(&mut s, proxy.ip(), cmd, host, port).await?;
    Ok((s, bound))
}

/// The SOCKS5 exchange on an open connection to the proxy at `proxy_ip`: greeting, request,
/// reply. Returns the bound address the reply names.
pub(crate) async fn negotiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy_ip: IpAddr,
    cmd: u8,
    host: &str,
    port: u16,
) -> Result<SocketAddr, SocksError> {
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        return Err(SocksError::Protocol);
    }
    let mut req = vec![5, cmd, 0];
    encode_addr(host, port, &mut req)?;
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(SocksError::Protocol);
    }
    if head[1] != 0 {
        return Err(SocksError::Io(std::io::Error::new(
            reply_kind(head[1]),
            format!("SOCKS5 proxy: {}", reply_text(head[1])),
        )));
    }
    let bound = match head[3] {
        1 => {
            let mut b = [0u8; 6];
            s.read_exact(&mut b).await?;
            SocketAddr::from(([b[0], b[1], b[2], b[3]], u16::from_be_bytes([b[4], b[5]])))
        }
        4 => {
            let mut b = [0u8; 18];
            s.read_exact(&mut b).await?;
            let ip: [u8; 16] = b[..16].try_into().expect("16 bytes");
            SocketAddr::from((ip, u16::from_be_bytes([b[16], b[17]])))
        }
        3 => {
            // A bound name is unusual; it is skipped and the proxy's address used.
            let len = usize::from(s.read_u8().await?);
            let mut rest = vec![0u8; len + 2];
            s.read_exact(&mut rest).await?;
            SocketAddr::new(proxy_ip, u16::from_be_bytes([rest[len], rest[len + 1]]))
        }
        _ => return Err(SocksError::Protocol),
    };
    Ok(bound)
}

/// Parses `socks5://HOST:PORT` (or `socks5h://`); HOST must be an IP address or `localhost`.
pub fn parse_proxy(url: &str) -> Option<SocketAddr> {
    let hp = url
        .strip_prefix("socks5://")
        .or_else(|| url.strip_prefix("socks5h://"))?;
    if let Ok(sa) = hp.parse::<SocketAddr>() {
        return Some(sa);
    }
    let (h, p) = hp.rsplit_once(':')?;
    let port: u16 = p.parse().ok().filter(|p| *p != 0)?;
    match h {
        "localhost" => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => None,
    }
}

/// How a failure to set up the control path itself (reaching the proxy, its association)
/// starts: it says nothing about the target.
pub const PROXY_SETUP: &str = "control proxy: ";

/// A setup error as a failure: the proxy's own report about the destination (a SOCKS reply)
/// stays as it is; anything else is marked [`PROXY_SETUP`].
pub fn setup_failure(e: &SocksError) -> crate::probe::failure::Failure {
    let f = crate::probe::failure::Failure::from_error(e);
    if f.message.contains("SOCKS5 proxy:") {
        f
    } else {
        crate::probe::failure::Failure::new(f.kind, format!("{PROXY_SETUP}{}", f.message))
    }
}

/// The proxy did not set up the path in time.
pub fn setup_timeout() -> crate::probe::failure::Failure {
    crate::probe::failure::Failure::new(
        crate::probe::failure::FailureKind::Timeout,
        format!("{PROXY_SETUP}no answer"),
    )
}

/// A UDP association through the proxy for datagrams to `host:port`.
pub struct UdpRelay {
    /// The association lives as long as this connection.
    pub control: TcpStream,
    /// Connected to the relay.
    pub sock: tokio::net::UdpSocket,
    /// The SOCKS5 UDP header every datagram to `host:port` carries.
    pub header: Vec<u8>,
}

pub async fn udp_relay(proxy: SocketAddr, host: &str, port: u16) -> Result<UdpRelay, SocksError> {
    let (control, relay) = udp_associate(proxy).await?;
    let sock = tokio::net::UdpSocket::bind(crate::net::unspecified_for(relay)).await?;
    sock.connect(relay).await?;
    Ok(UdpRelay {
        control,
        sock,
        header: udp_header(host, port)?,
    })
}

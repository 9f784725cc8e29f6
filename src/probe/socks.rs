//! A SOCKS5 client (RFC 1928, CONNECT, no authentication) with remote name resolution
//! (socks5h semantics): the control path asks the proxy, outside the censored network, to
//! resolve and connect, so neither the local resolver nor the local path is involved.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
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
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    s.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        return Err(SocksError::Protocol);
    }
    let mut req = vec![5, 1, 0];
    match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            req.push(1);
            req.extend_from_slice(&v4.octets());
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            req.push(4);
            req.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            // A name: the proxy resolves it (socks5h), outside the censored network.
            let name = host.as_bytes();
            let len =
                u8::try_from(name.len()).map_err(|_| SocksError::Refused("host name too long"))?;
            req.push(3);
            req.push(len);
            req.extend_from_slice(name);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
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
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(s.read_u8().await?),
        _ => return Err(SocksError::Protocol),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await?;
    Ok(s)
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

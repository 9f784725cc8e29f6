//! The SOCKS5 proxy that is the uncensored outside view: CONNECT by name (resolved from its own
//! table, like a resolver outside the censored network) or by address, then a plain splice; and
//! UDP ASSOCIATE, relaying datagrams to the STUN servers in its table.
//!
//! Tables map `host:port` (exact) or `host` (any port) to where the service really is. An
//! address missing from the table is reached directly only when it is loopback: the proxy
//! never sends traffic off the machine.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::probe::socks::parse_udp_header;

pub struct SocksProxy {
    pub addr: SocketAddr,
    connects: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for SocksProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the proxy sends TCP (`tcp`) and UDP (`udp`) traffic for a destination.
#[derive(Default)]
pub struct Outside {
    pub tcp: HashMap<String, SocketAddr>,
    pub udp: HashMap<String, SocketAddr>,
    /// Destinations (same keys) whose CONNECT the proxy takes and never answers: a control
    /// path that times out (an overloaded proxy), whatever the site does.
    pub silent: std::collections::HashSet<String>,
}

/// The exact table key of `host:port` (IPv6 in brackets).
pub fn key(host: &str, port: u16) -> String {
    crate::net::host_port(host, port)
}

fn lookup(table: &HashMap<String, SocketAddr>, host: &str, port: u16) -> Option<SocketAddr> {
    if let Some(a) = table.get(&key(host, port)).or_else(|| table.get(host)) {
        return Some(*a);
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

impl SocksProxy {
    pub async fn start(ip: IpAddr, outside: Outside) -> std::io::Result<Self> {
        let l = TcpListener::bind((ip, 0)).await?;
        let addr = l.local_addr()?;
        let outside = Arc::new(outside);
        let connects = Arc::new(AtomicU64::new(0));
        let count = connects.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else {
                    continue;
                };
                let outside = outside.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let _ = serve(c, ip, &outside, &count).await;
                });
            }
        });
        Ok(Self {
            addr,
            connects,
            task,
        })
    }

    /// CONNECT and UDP ASSOCIATE requests served so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
}

async fn serve(
    mut c: TcpStream,
    ip: IpAddr,
    outside: &Outside,
    count: &AtomicU64,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods).await?;
    c.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    // The address, read into the shape of a UDP relay header to share its parser.
    let mut addr = vec![0, 0, 0, req[3]];
    match req[3] {
        1 => addr.resize(4 + 6, 0),
        4 => addr.resize(4 + 18, 0),
        3 => {
            let len = c.read_u8().await?;
            addr.push(len);
            addr.resize(5 + usize::from(len) + 2, 0);
        }
        _ => {
            c.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0]).await?; // address type not supported
            return Ok(());
        }
    }
    let from = if req[3] == 3 { 5 } else { 4 };
    c.read_exact(&mut addr[from..]).await?;
    let (host, port, _) = parse_udp_header(&addr).ok_or(std::io::ErrorKind::InvalidData)?;
    count.fetch_add(1, Ordering::Relaxed);
    match req[1] {
        1 => {}
        3 => return associate(c, ip, &outside.udp).await,
        _ => {
            c.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await?; // command not supported
            return Ok(());
        }
    }
    if outside.silent.contains(&key(&host, port)) || outside.silent.contains(&host) {
        // Hold the request until the client gives up.
        let mut sink = [0u8; 64];
        while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        return Ok(());
    }
    let Some(target) = lookup(&outside.tcp, &host, port) else {
        c.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).await?; // host unreachable
        return Ok(());
    };
    let Ok(mut up) = TcpStream::connect(target).await else {
        c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?; // connection refused
        return Ok(());
    };
    c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
    Ok(())
}

/// UDP ASSOCIATE: one relay socket for the association, alive while the TCP connection is.
/// Datagrams from the client go to the table's address for their destination (unknown ones are
/// dropped); answers come back wrapped in the header the client used.
async fn associate(
    mut c: TcpStream,
    ip: IpAddr,
    table: &HashMap<String, SocketAddr>,
) -> std::io::Result<()> {
    let relay = UdpSocket::bind((ip, 0)).await?;
    let bound = relay.local_addr()?;
    let mut reply = vec![5, 0, 0];
    match bound.ip() {
        IpAddr::V4(v4) => {
            reply.push(1);
            reply.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            reply.push(4);
            reply.extend_from_slice(&v6.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    c.write_all(&reply).await?;
    let mut client: Option<SocketAddr> = None;
    let mut headers: HashMap<SocketAddr, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    let mut tcp = [0u8; 64];
    loop {
        tokio::select! {
            r = c.read(&mut tcp) => if matches!(r, Ok(0) | Err(_)) { return Ok(()) },
            r = relay.recv_from(&mut buf) => {
                let (n, from) = r?;
                if client.is_none_or(|cl| cl == from) {
                    client = Some(from);
                    let Some((host, port, len)) = parse_udp_header(&buf[..n]) else { continue };
                    let Some(up) = lookup(table, &host, port) else { continue };
                    headers.insert(up, buf[..len].to_vec());
                    relay.send_to(&buf[len..n], up).await?;
                } else if let (Some(h), Some(cl)) = (headers.get(&from), client) {
                    let mut d = h.clone();
                    d.extend_from_slice(&buf[..n]);
                    relay.send_to(&d, cl).await?;
                }
            }
        }
    }
}

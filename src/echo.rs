//! `blockprobe echo`: the UDP and TCP echo server a researcher runs outside the censored
//! network, for `echo://HOST:PORT` targets. It will face the public internet, so it refuses to
//! be an amplifier or a relay: it answers only the sender, never more bytes than it received,
//! within a per-source rate cap, with bounded memory and connections.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The server's limits (documented in `blockprobe echo --help` and docs/echo.md).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Datagrams answered per source address and second (a burst of as many is allowed).
    pub packets_per_source: u32,
    /// Bytes answered per source address and second.
    pub bytes_per_source: u64,
    /// Sources remembered for the rate cap; beyond it the table starts over.
    pub max_sources: usize,
    /// TCP connections served at once.
    pub max_connections: usize,
    /// Bytes echoed per TCP connection, and how long one may last.
    pub tcp_bytes: u64,
    pub tcp_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            packets_per_source: 500,
            bytes_per_source: 256 * 1024,
            max_sources: 65_536,
            max_connections: 256,
            tcp_bytes: 1 << 20,
            tcp_lifetime: Duration::from_secs(30),
        }
    }
}

/// A running echo server (UDP and TCP on the same port).
pub struct EchoServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EchoServer {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both, when it can be had).
    pub async fn start(addr: SocketAddr, limits: Limits) -> std::io::Result<Self> {
        let (udp, tcp) = bind_pair(addr).await?;
        let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
        let tasks = vec![
            tokio::spawn(serve_udp(Arc::new(udp), limits)),
            tokio::spawn(serve_tcp(tcp, limits)),
        ];
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_addr,
            tasks,
        })
    }
}

/// UDP and TCP on one port: the port of the first free UDP socket whose TCP twin binds.
pub(crate) async fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    let mut last = None;
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
}

/// A token bucket per source: `packets` and `bytes` refill at their per-second rate.
struct Bucket {
    packets: f64,
    bytes: f64,
    at: Instant,
}

struct RateCap {
    limits: Limits,
    sources: HashMap<IpAddr, Bucket>,
}

impl RateCap {
    fn allow(&mut self, from: IpAddr, len: usize, now: Instant) -> bool {
        if self.sources.len() >= self.limits.max_sources && !self.sources.contains_key(&from) {
            self.sources.clear();
        }
        let (pps, bps) = (
            f64::from(self.limits.packets_per_source),
            self.limits.bytes_per_source as f64,
        );
        let b = self.sources.entry(from).or_insert(Bucket {
            packets: pps,
            bytes: bps,
            at: now,
        });
        let dt = now.duration_since(b.at).as_secs_f64();
        b.at = now;
        b.packets = (b.packets + dt * pps).min(pps);
        b.bytes = (b.bytes + dt * bps).min(bps);
        if b.packets >= 1.0 && b.bytes >= len as f64 {
            b.packets -= 1.0;
            b.bytes -= len as f64;
            true
        } else {
            false
        }
    }
}

/// Replies remembered to break echo loops (another echo server, or a spoofed source), per
/// generation; two generations of [`LOOP_WINDOW`] are kept.
const RECENT_REPLIES: usize = 65_536;
const LOOP_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

async fn serve_udp(sock: Arc<UdpSocket>, limits: Limits) {
    let mut cap = RateCap {
        limits,
        sources: HashMap::new(),
    };
    let local = sock.local_addr().ok();
    let hasher = std::collections::hash_map::RandomState::new();
    let mut replied: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut older: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut generation = Instant::now();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        // Never a reflector: nothing to privileged ports (DNS, NTP, ...), to its own port (an
        // echo server on another host), or to itself (a spoofed source).
        if from.port() < 1024 || local.is_some_and(|l| from.port() == l.port() || from == l) {
            continue;
        }
        // A datagram equal to a reply just sent to that source is the reply coming back: two
        // echo servers set ping-ponging by one spoofed packet. Break the loop.
        let now = Instant::now();
        if now.duration_since(generation) > LOOP_WINDOW {
            older = std::mem::take(&mut replied);
            generation = now;
        }
        let key = std::hash::BuildHasher::hash_one(&hasher, (from, &buf[..n]));
        if replied.contains(&key) || older.contains(&key) {
            continue;
        }
        // The reply is the request: never larger, only to the sender, within the cap.
        if cap.allow(from.ip(), n, now) {
            if replied.len() >= RECENT_REPLIES {
                replied.clear();
            }
            replied.insert(key);
            let _ = sock.send_to(&buf[..n], from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, limits: Limits) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue; // over the limit: the connection is dropped
        };
        tokio::spawn(async move {
            let _permit = permit;
            let echo = async {
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0u64;
                while total < limits.tcp_bytes {
                    let n = conn.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    let n = n.min(usize::try_from(limits.tcp_bytes - total).unwrap_or(n));
                    conn.write_all(&buf[..n]).await?;
                    total += n as u64;
                }
                Ok::<_, std::io::Error>(())
            };
            let _ = tokio::time::timeout(limits.tcp_lifetime, echo).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_cap_answers_a_burst_then_refills() {
        let limits = Limits {
            packets_per_source: 3,
            bytes_per_source: 1_000,
            ..Limits::default()
        };
        let mut cap = RateCap {
            limits,
            sources: HashMap::new(),
        };
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        assert!((0..3).all(|_| cap.allow(a, 100, t0)));
        assert!(!cap.allow(a, 100, t0), "the burst is spent");
        assert!(cap.allow(b, 100, t0), "another source has its own cap");
        assert!(
            !cap.allow(b, 2_000, t0),
            "more bytes than the cap is never answered"
        );
        assert!(
            cap.allow(a, 100, t0 + Duration::from_millis(400)),
            "refilled"
        );
    }
}

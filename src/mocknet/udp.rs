//! The mock network's UDP censor: a forwarder on a target's address that drops what a
//! censor would — every datagram to the address, QUIC v1 long headers, QUIC flows by the SNI of
//! their (decrypted) Initial, or datagrams shaped like a VPN protocol's first packet.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::mocknet::quic::{Hello, SniReader};
use crate::probe::echo::Shape;

/// What the censor does to the datagrams towards one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every datagram to the address: the address is blocked for UDP.
    Drop,
    /// QUIC v1 long-header packets (Initials): the version-negotiation ping still passes.
    DropV1,
    /// Flows whose Initial carries one of these SNIs.
    DropSni(Vec<String>),
    /// Datagrams shaped like these protocols' first packets (signature DPI).
    DropShapes(Vec<Shape>),
    /// WireGuard flows cut after their handshake: once a flow has carried two transport-data
    /// packets, everything more it sends is dropped (the TSPU's treatment); new flows pass.
    CutAfterHandshake,
    /// Calls: what is done to flows that look like a call's media (a STUN request or RTP).
    Calls(Calls),
}

/// A censor's treatment of call-shaped flows: a flow is a call from its first STUN request or
/// RTP packet on (the "STUN, then a stream" pattern); other flows pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    /// At most this many of a call's datagrams per second get through.
    Throttle(u32),
    /// Everything a call sends this long after its first packet is dropped.
    Cut(std::time::Duration),
    /// Every datagram of a call is dropped.
    Block,
    /// Every third datagram of every flow, call or not, is dropped: a bad path.
    LossyPath,
}

/// One flow's state under [`Mode::Calls`].
struct CallFlow {
    call: bool,
    first: std::time::Instant,
    tokens: f64,
    at: std::time::Instant,
    seen: u64,
}

impl Calls {
    /// Whether the flow's next datagram `d` dies.
    fn drops(self, flow: &mut CallFlow, d: &[u8]) -> bool {
        let now = std::time::Instant::now();
        flow.seen += 1;
        if !flow.call && (crate::probe::media::is_rtp(d) || Shape::of(d) == Some(Shape::Stun)) {
            flow.call = true;
            flow.first = now;
            flow.at = now;
        }
        match self {
            Self::LossyPath => flow.seen.is_multiple_of(3),
            _ if !flow.call => false,
            Self::Block => true,
            Self::Cut(after) => now.duration_since(flow.first) >= after,
            Self::Throttle(pps) => {
                let rate = f64::from(pps);
                // A bucket of two: arrival jitter does not cost the flow its rate.
                flow.tokens =
                    (flow.tokens + now.duration_since(flow.at).as_secs_f64() * rate).min(2.0);
                flow.at = now;
                if flow.tokens >= 1.0 {
                    flow.tokens -= 1.0;
                    false
                } else {
                    true
                }
            }
        }
    }
}

/// WireGuard's transport-data message (type 4, three reserved zero bytes, at least the
/// header and a tag).
pub fn is_wireguard_data(d: &[u8]) -> bool {
    d.len() >= 32 && d[..4] == [4, 0, 0, 0]
}

/// A UDP forwarder on the target's address that applies a [`Mode`] to what clients send.
pub struct UdpCensor {
    pub addr: SocketAddr,
    /// Client flows forwarded to the upstream (the origin's side of the traffic count).
    flows: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for UdpCensor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpCensor {
    pub async fn start(addr: SocketAddr, upstream: SocketAddr, mode: Mode) -> anyhow::Result<Self> {
        let sock = Arc::new(UdpSocket::bind(addr).await?);
        let addr = sock.local_addr()?;
        let flows = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(forward(sock, upstream, mode, flows.clone()));
        Ok(Self { addr, flows, task })
    }

    pub fn flows(&self) -> u64 {
        self.flows.load(Ordering::Relaxed)
    }
}

struct Flow {
    upstream: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Flows kept at most (the oldest are forgotten): bounded memory under any load.
const MAX_FLOWS: usize = 4096;

async fn forward(sock: Arc<UdpSocket>, upstream: SocketAddr, mode: Mode, count: Arc<AtomicU64>) {
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    // Flows whose Initial carried a listed SNI (or cut after their handshake): what they send
    // next dies too.
    let mut dead: HashSet<SocketAddr> = HashSet::new();
    let mut data_seen: HashMap<SocketAddr, u32> = HashMap::new();
    let mut calls: HashMap<SocketAddr, CallFlow> = HashMap::new();
    let mut hellos = SniReader::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let d = &buf[..n];
        let drop_it = match &mode {
            Mode::Pass => false,
            Mode::Drop => true,
            Mode::DropV1 => is_v1_long_header(d),
            Mode::DropShapes(shapes) => Shape::of(d).is_some_and(|s| shapes.contains(&s)),
            Mode::CutAfterHandshake => {
                if is_wireguard_data(d) && !dead.contains(&client) {
                    if data_seen.len() >= MAX_FLOWS {
                        data_seen.clear();
                    }
                    let n = data_seen.entry(client).or_default();
                    *n += 1;
                    if *n > 2 {
                        if dead.len() >= MAX_FLOWS {
                            dead.clear();
                        }
                        dead.insert(client);
                    }
                }
                dead.contains(&client)
            }
            Mode::Calls(c) => {
                if calls.len() >= MAX_FLOWS && !calls.contains_key(&client) {
                    calls.clear();
                }
                let now = std::time::Instant::now();
                let flow = calls.entry(client).or_insert(CallFlow {
                    call: false,
                    first: now,
                    tokens: 1.0,
                    at: now,
                    seen: 0,
                });
                c.drops(flow, d)
            }
            Mode::DropSni(names) => {
                dead.contains(&client)
                    || (matches!(hellos.read(client, d), Hello::Complete(Some(sni)) if names.contains(&sni))
                        && {
                            if dead.len() >= MAX_FLOWS {
                                dead.clear();
                            }
                            dead.insert(client)
                        })
            }
        };
        if drop_it {
            continue;
        }
        if !flows.contains_key(&client) {
            let Ok(flow) = open_flow(&sock, client, upstream).await else {
                continue;
            };
            if flows.len() >= MAX_FLOWS {
                flows.clear();
            }
            flows.insert(client, flow);
            count.fetch_add(1, Ordering::Relaxed);
        }
        let _ = flows[&client].upstream.send(d).await;
    }
}

async fn open_flow(
    sock: &Arc<UdpSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
) -> std::io::Result<Flow> {
    let up = Arc::new(UdpSocket::bind(SocketAddr::new(upstream.ip(), 0)).await?);
    up.connect(upstream).await?;
    let (back, from) = (sock.clone(), up.clone());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = from.recv(&mut buf).await {
            let _ = back.send_to(&buf[..n], client).await;
        }
    });
    Ok(Flow {
        upstream: up,
        reader,
    })
}

pub fn is_v1_long_header(d: &[u8]) -> bool {
    d.len() >= 5 && d[0] & 0x80 != 0 && d[1..5] == [0, 0, 0, 1]
}

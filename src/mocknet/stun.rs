//! A STUN server (RFC 5389 Binding) on UDP, and the censor's two ways of breaking it: swallow
//! the requests, or answer with bytes that are not STUN.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::probe::stun::binding_response;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A real STUN server: Binding Success with XOR-MAPPED-ADDRESS.
    Answer,
    /// Read and discard (UDP dropped on the path).
    Drop,
    /// Answer every datagram with something that is not STUN.
    Garbage,
}

/// What the `garbage` mode answers.
pub const GARBAGE: &[u8] = b"\x16\x03\x01 this is not a STUN message";

pub struct StunServer {
    pub addr: SocketAddr,
    datagrams: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for StunServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StunServer {
    pub async fn start(ip: IpAddr, mode: Mode) -> std::io::Result<Self> {
        let sock = UdpSocket::bind((ip, 0)).await?;
        let addr = sock.local_addr()?;
        let datagrams = Arc::new(AtomicU64::new(0));
        let count = datagrams.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let reply = match mode {
                    Mode::Answer => binding_response(&buf[..n], from),
                    Mode::Drop => None,
                    Mode::Garbage => Some(GARBAGE.to_vec()),
                };
                if let Some(r) = reply {
                    let _ = sock.send_to(&r, from).await;
                }
            }
        });
        Ok(Self {
            addr,
            datagrams,
            task,
        })
    }

    /// Datagrams received so far.
    pub fn datagrams(&self) -> u64 {
        self.datagrams.load(Ordering::Relaxed)
    }
}

//! The TCP step: connect to each address, record ok / refused / reset / timeout and the time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::probe::dns::ser_ms;
use crate::probe::failure::Failure;

/// Which resolver's answer an address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddrSource {
    Vantage,
    Control,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TcpAttempt {
    pub addr: SocketAddr,
    pub source: AddrSource,
    pub ok: bool,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

/// Connects with a time limit; the failure is data.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> (Result<TcpStream, Failure>, Duration) {
    let start = Instant::now();
    let res = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Failure::timeout()),
        Ok(Err(e)) => Err(Failure::from_error(&e)),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    };
    (res, start.elapsed())
}

/// Connects to every address concurrently. Returns every attempt (in address order) and the
/// stream of the first address, in that order, that connected.
pub async fn connect_all(
    addrs: &[(IpAddr, AddrSource)],
    port: u16,
    timeout: Duration,
) -> (Vec<TcpAttempt>, Option<(SocketAddr, TcpStream)>) {
    let results = futures::future::join_all(addrs.iter().map(|(ip, src)| async move {
        let addr = SocketAddr::new(*ip, port);
        let (res, elapsed) = connect(addr, timeout).await;
        (addr, *src, res, elapsed)
    }))
    .await;
    let mut attempts = Vec::with_capacity(results.len());
    let mut first = None;
    for (addr, source, res, elapsed) in results {
        let (ok, failure) = match res {
            Ok(s) => {
                if first.is_none() && source == AddrSource::Vantage {
                    first = Some((addr, s));
                }
                (true, None)
            }
            Err(f) => (false, Some(f)),
        };
        attempts.push(TcpAttempt {
            addr,
            source,
            ok,
            failure,
            elapsed,
        });
    }
    (attempts, first)
}

/// A stream that counts the bytes it reads: the wire-level evidence of where a flow froze
/// (TLS records hide the plaintext until a record is complete).
pub struct Counted<S> {
    inner: S,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> (Self, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        let read = std::sync::Arc::default();
        (
            Self {
                inner,
                read: std::sync::Arc::clone(&read),
            },
            read,
        )
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        res
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

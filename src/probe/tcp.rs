//! The TCP step: connect to each address, record ok / refused / reset / timeout and the time.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::probe::failure::Failure;
use crate::probe::ser_ms;

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

/// `--connect-to FROM=TO`: connections (TCP and UDP) that would go to FROM go to TO instead,
/// while reports keep showing FROM. A testing aid: it lets a suite's real addresses and ports
/// run against the mock network on loopback.
#[derive(Clone, Debug, Default)]
pub struct Remap(std::sync::Arc<std::collections::HashMap<SocketAddr, SocketAddr>>);

impl Remap {
    pub fn new(pairs: impl IntoIterator<Item = (SocketAddr, SocketAddr)>) -> Self {
        Self(std::sync::Arc::new(pairs.into_iter().collect()))
    }

    /// Where a connection to `addr` really goes.
    pub fn apply(&self, addr: SocketAddr) -> SocketAddr {
        self.0.get(&addr).copied().unwrap_or(addr)
    }
}

/// Parses `FROM=TO`, both `IP:PORT`.
pub fn parse_remap(s: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (from, to) = s.split_once('=').ok_or_else(|| {
        format!("`{s}`: expected FROM=TO, e.g. 149.154.175.50:443=127.0.0.1:8443")
    })?;
    let parse = |a: &str| {
        a.trim()
            .parse::<SocketAddr>()
            .map_err(|_| format!("`{a}` is not IP:PORT"))
    };
    Ok((parse(from)?, parse(to)?))
}

/// Most addresses of one DNS answer a job connects to (per source: vantage and control). An
/// answer with 250 A records must not open 250 sockets per job; the DNS evidence keeps them all.
pub const MAX_ADDRS: usize = 8;

/// Connection attempts in flight across the whole scan, from the file-descriptor limit: half
/// of `ulimit -n` (the rest is for established connections, DNS sockets and files).
fn budget() -> &'static tokio::sync::Semaphore {
    static BUDGET: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| tokio::sync::Semaphore::new((open_files_limit() / 2).max(8)))
}

/// The soft limit on open files (`ulimit -n`), read once from `/proc/self/limits` on Linux
/// (once: when it matters, there is no descriptor left to read it with).
pub(crate) fn open_files_limit() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            })
            .unwrap_or(1024)
    })
}

/// Out of file descriptors (EMFILE, ENFILE): a local shortage, not a network observation.
fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// How long a connect waits, in all, for file descriptors before it gives up.
const FD_WAIT: Duration = Duration::from_secs(60);

/// Says once that the process ran out of file descriptors, and waits a moment for some to be
/// freed.
async fn fds_short(e: &std::io::Error) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        crate::diag::warn(format_args!(
            "out of file descriptors ({e}; ulimit -n is {}): slowing down until \
             sockets close (raise `ulimit -n` or lower --concurrency)",
            open_files_limit()
        ));
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Opens a socket with `open`, waiting (up to a minute in all) while the process is out of
/// file descriptors: a local shortage must not become a measurement. Call it before the
/// measured time starts.
pub(crate) async fn open_waiting_for_fds<T>(
    mut open: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    let waiting_since = Instant::now();
    loop {
        match open() {
            Err(e) if out_of_fds(&e) && waiting_since.elapsed() < FD_WAIT => fds_short(&e).await,
            other => return other,
        }
    }
}

/// Connects with a time limit; the failure is data. Counted against the scan's connection
/// budget; when the process runs out of file descriptors anyway, it says so once and waits for
/// some to be freed (that wait is not part of the measured time), so a shortage here never
/// shows up as a timeout or a failure of the network.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
) -> (Result<TcpStream, Failure>, Duration) {
    let _permit = budget().acquire().await;
    let waiting_since = Instant::now();
    loop {
        let start = Instant::now();
        let res = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => Err(Failure::timeout()),
            Ok(Err(e)) if out_of_fds(&e) && waiting_since.elapsed() < FD_WAIT => {
                fds_short(&e).await;
                continue;
            }
            Ok(Err(e)) => Err(Failure::from_error(&e)),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
        };
        return (res, start.elapsed());
    }
}

/// Connects to every address concurrently. Returns every attempt (in address order) and the
/// stream of the first address, in that order, that connected.
pub async fn connect_all(
    addrs: &[(IpAddr, AddrSource)],
    port: u16,
    remap: &Remap,
    timeout: Duration,
) -> (Vec<TcpAttempt>, Option<(SocketAddr, TcpStream)>) {
    let results = futures::future::join_all(addrs.iter().map(|(ip, src)| async move {
        let addr = SocketAddr::new(*ip, port);
        let (res, elapsed) = connect(remap.apply(addr), timeout).await;
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

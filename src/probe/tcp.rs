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

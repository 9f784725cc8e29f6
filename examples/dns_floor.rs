//! The floor under a DNS-only scan (issue 14): what a client that does *only* the wire work of
//! `blockprobe scan --probes dns` reaches on this machine — per name, a fresh connected UDP
//! socket to the vantage resolver and another to the control resolver, A and AAAA sent on each,
//! both answers awaited, the sockets closed. No classification, no report, no injection
//! window, no retries: a bound blockprobe cannot beat while it keeps a fresh flow per lookup.
//!
//!   cargo run --release --example dns_floor -- NAMES-FILE SERVER [CONCURRENCY] [THREADS]
//!
//! `bench/peers.sh` runs it beside blockprobe and dnsperf on the same Knot. THREADS 0 (the
//! default) is tokio's multi-threaded runtime with a worker per core; 1 is a current-thread
//! runtime.
use std::net::SocketAddr;
use std::time::Instant;

use futures::StreamExt;
use tokio::net::UdpSocket;

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// A and AAAA for `name` on a fresh socket; the number of answers received.
async fn pair(server: SocketAddr, name: &str, id: u16) -> std::io::Result<usize> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::DGRAM.nonblocking().cloexec(),
        None,
    )?;
    sock.connect(&server.into())?;
    let sock = UdpSocket::from_std(sock.into())?;
    let ids = [id, id ^ 0x8000];
    sock.send(&query(ids[0], name, 1)).await?;
    sock.send(&query(ids[1], name, 28)).await?;
    let mut buf = [0u8; 1500];
    let mut got = [false; 2];
    let wait = async {
        while !(got[0] && got[1]) {
            let n = sock.recv(&mut buf).await?;
            if n >= 2 {
                let rid = u16::from_be_bytes([buf[0], buf[1]]);
                if let Some(i) = ids.iter().position(|i| *i == rid) {
                    got[i] = true;
                }
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if let Ok(r) = tokio::time::timeout(std::time::Duration::from_secs(2), wait).await {
        r?;
    }
    Ok(got.iter().filter(|g| **g).count())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, server, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: dns_floor NAMES-FILE SERVER [CONCURRENCY] [THREADS]");
    };
    let server: SocketAddr = server.parse()?;
    let concurrency: usize = rest.first().map_or(Ok(256), |c| c.parse())?;
    let threads: usize = rest.get(1).map_or(Ok(0), |c| c.parse())?;
    let names: Vec<String> = std::fs::read_to_string(file)?
        .lines()
        .map(str::to_owned)
        .collect();
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    let start = Instant::now();
    let answered: usize = rt.block_on(async {
        futures::stream::iter(names.iter().enumerate())
            .map(|(i, name)| {
                let name = name.clone();
                tokio::spawn(async move {
                    let id = i as u16 & 0x7fff;
                    let (v, c) = tokio::join!(pair(server, &name, id), pair(server, &name, id));
                    v.unwrap_or(0) + c.unwrap_or(0)
                })
            })
            .buffer_unordered(concurrency)
            .map(|r| r.unwrap_or(0))
            .fold(0, |a, b| async move { a + b })
            .await
    });
    let secs = start.elapsed().as_secs_f64();
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "{} names, {answered} of {} answers, {secs:.2} s, {:.0} queries/s",
        names.len(),
        names.len() * 4,
        (names.len() * 4) as f64 / secs
    )?;
    Ok(())
}

//! The SOCKS5 proxy that is the uncensored outside view: CONNECT by name (resolved from its own
//! table, like a resolver outside the censored network) or by address, then a plain splice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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

impl SocksProxy {
    /// `names` maps a host name (any port) to where the origin really is.
    pub async fn start(
        ip: std::net::IpAddr,
        names: HashMap<String, SocketAddr>,
    ) -> std::io::Result<Self> {
        let l = TcpListener::bind((ip, 0)).await?;
        let addr = l.local_addr()?;
        let names = Arc::new(names);
        let connects = Arc::new(AtomicU64::new(0));
        let count = connects.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else {
                    continue;
                };
                let names = names.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let _ = serve(c, &names, &count).await;
                });
            }
        });
        Ok(Self {
            addr,
            connects,
            task,
        })
    }

    /// CONNECT requests served so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }
}

async fn serve(
    mut c: TcpStream,
    names: &HashMap<String, SocketAddr>,
    count: &AtomicU64,
) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    c.read_exact(&mut methods).await?;
    c.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    let target: Option<SocketAddr> = match req[3] {
        1 => {
            let mut b = [0u8; 6];
            c.read_exact(&mut b).await?;
            Some(SocketAddr::from((
                [b[0], b[1], b[2], b[3]],
                u16::from_be_bytes([b[4], b[5]]),
            )))
        }
        4 => {
            let mut b = [0u8; 18];
            c.read_exact(&mut b).await?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[..16]);
            Some(SocketAddr::from((ip, u16::from_be_bytes([b[16], b[17]]))))
        }
        3 => {
            let len = usize::from(c.read_u8().await?);
            let mut name = vec![0u8; len];
            c.read_exact(&mut name).await?;
            let _port = c.read_u16().await?;
            names
                .get(&String::from_utf8_lossy(&name).to_ascii_lowercase())
                .copied()
        }
        _ => None,
    };
    count.fetch_add(1, Ordering::Relaxed);
    let Some(target) = target else {
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

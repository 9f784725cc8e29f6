//! VPN servers in the mock network: an OpenVPN responder that answers the client's hard
//! reset (UDP and TCP on one port) — or, like a server with `tls-auth`/`tls-crypt`, stays
//! silent to an unwrapped one — and a Tor relay's OR port (TLS, then `VERSIONS` answered by
//! `VERSIONS` and `CERTS`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use crate::probe::openvpn::answer_reset;

pub struct OpenvpnServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for OpenvpnServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl OpenvpnServer {
    /// `silent`: answer nothing (a server that requires tls-auth or tls-crypt).
    pub async fn start(bind: SocketAddr, silent: bool) -> std::io::Result<Self> {
        let (udp, tcp) = crate::echo::bind_pair(bind).await?;
        let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
        let udp = Arc::new(udp);
        let u = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(answer) = answer_reset(&buf[..n], rand::random()).filter(|_| !silent) {
                    let _ = udp.send_to(&answer, from).await;
                }
            }
        });
        let t = tokio::spawn(async move {
            while let Ok((mut c, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while c.read_exact(&mut len).await.is_ok() {
                        let mut p = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if c.read_exact(&mut p).await.is_err() {
                            return;
                        }
                        if silent {
                            continue;
                        }
                        if let Some(answer) = answer_reset(&p, rand::random()) {
                            let mut framed = u16::try_from(answer.len())
                                .expect("short")
                                .to_be_bytes()
                                .to_vec();
                            framed.extend(answer);
                            if c.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            udp: udp_addr,
            tcp: tcp_addr,
            tasks: vec![u, t],
        })
    }
}

/// A Tor relay's OR port: TLS with a self-signed `www.….net` certificate, then the link
/// handshake's first cells.
pub struct TorRelay {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TorRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TorRelay {
    pub async fn start(bind: SocketAddr, tls: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        use crate::probe::tor;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            while let Ok((c, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(c).await else {
                        return;
                    };
                    match tor::read_var_cell(&mut s, 2).await {
                        Ok((tor::VERSIONS, _)) => {}
                        _ => return,
                    }
                    let mut answer = tor::versions_cell(&tor::OFFERED);
                    let body = [0u8; 32];
                    answer.extend(tor::certs_cell(&[
                        (1, &body),
                        (2, &body),
                        (4, &body),
                        (5, &body),
                        (7, &body),
                    ]));
                    if s.write_all(&answer).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                    // Hold the link until the client goes.
                    let mut sink = [0u8; 512];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(Self { addr, task })
    }
}

//! VPN servers in the mock network: an OpenVPN responder that answers the client's hard
//! reset (UDP and TCP on one port) — or, like a server with `tls-auth`/`tls-crypt`, stays
//! silent to an unwrapped one.

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

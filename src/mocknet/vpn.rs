//! VPN servers in the mock network: an OpenVPN responder that answers the client's hard
//! reset (UDP and TCP on one port) — or, like a server with `tls-auth`/`tls-crypt`, stays
//! silent to an unwrapped one —, a Tor relay's OR port (TLS, then `VERSIONS` answered by
//! `VERSIONS` and `CERTS`), and a Shadowsocks server (AEAD; it answers a tunnel to any address
//! itself with `204 No Content`, and is silent to a request that does not decrypt), and an
//! obfs4 bridge (the fixed mock identity; silent to a handshake made with another cert), and a
//! WireGuard server (boringtun, the fixed mock keys; one registered client).

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
    /// `silent`: answer nothing (a server that requires tls-auth or tls-crypt). `wrap`: the
    /// server's tls-auth or tls-crypt key: it answers only resets wrapped with it, wrapped.
    pub async fn start(
        bind: SocketAddr,
        silent: bool,
        wrap: Option<crate::probe::openvpn::Wrap>,
    ) -> std::io::Result<Self> {
        let answer = move |p: &[u8]| -> Option<Vec<u8>> {
            use crate::probe::openvpn::Side;
            if silent {
                return None;
            }
            match &wrap {
                Some(w) => {
                    let plain = w.open_as(Side::Server, p)?;
                    let reply = answer_reset(&plain, rand::random())?;
                    Some(w.seal_as(Side::Server, &reply, 1))
                }
                None => answer_reset(p, rand::random()),
            }
        };
        let answer = Arc::new(answer);
        let udp_answer = answer.clone();
        let (udp, tcp) = crate::echo::bind_pair(bind).await?;
        let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
        let udp = Arc::new(udp);
        let u = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                if let Some(answer) = udp_answer(&buf[..n]) {
                    let _ = udp.send_to(&answer, from).await;
                }
            }
        });
        let t = tokio::spawn(async move {
            while let Ok((mut c, _)) = tcp.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while c.read_exact(&mut len).await.is_ok() {
                        let mut p = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if c.read_exact(&mut p).await.is_err() {
                            return;
                        }
                        if let Some(answer) = answer(&p) {
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

/// A Shadowsocks AEAD server with one password: a request that decrypts gets the server's salt
/// and an HTTP `204` from "the destination" (answered here, nothing is dialled); one that does
/// not decrypt gets silence until the client goes, as shadowsocks-libev does.
pub struct ShadowsocksServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ShadowsocksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShadowsocksServer {
    pub async fn start(
        bind: SocketAddr,
        creds: crate::probe::shadowsocks::Credentials,
    ) -> std::io::Result<Self> {
        use crate::probe::shadowsocks::Cipher;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let master = Arc::new(creds.master_key());
        let method = creds.method;
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                let master = master.clone();
                tokio::spawn(async move {
                    let mut salt = vec![0u8; method.key_len()];
                    if c.read_exact(&mut salt).await.is_err() {
                        return;
                    }
                    let mut theirs = Cipher::new(method, &master, &salt);
                    if let Ok(Some(_request)) = theirs.read_chunk(&mut c).await {
                        let ours_salt = rand::random::<[u8; 32]>()[..method.key_len()].to_vec();
                        let mut ours = Cipher::new(method, &master, &ours_salt);
                        let mut out = ours_salt;
                        ours.seal_chunks(
                            &mut out,
                            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
                        );
                        let _ = c.write_all(&out).await;
                        return;
                    }
                    // Silent to what does not decrypt.
                    let mut sink = [0u8; 512];
                    while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
        Ok(Self { addr, task })
    }
}

/// An obfs4 bridge with the mock identity ([`crate::probe::obfs4::mock_bridge`]): it answers a
/// handshake that verifies and, like a real bridge, stays silent to anything else until the
/// client goes.
pub struct Obfs4Bridge {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Obfs4Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Obfs4Bridge {
    pub async fn start(bind: SocketAddr) -> std::io::Result<Self> {
        use crate::probe::obfs4;
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (bridge, b) = obfs4::mock_bridge();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = c.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        if buf.len() < 8192 {
                            buf.extend_from_slice(&chunk[..n]);
                            if let Some(reply) = obfs4::server_reply(&bridge, &b, &buf) {
                                let _ = c.write_all(&reply).await;
                                buf = vec![0; 8192];
                            }
                        }
                    }
                });
            }
        });
        Ok(Self { addr, task })
    }
}

/// A WireGuard server with the mock keys ([`crate::probe::wireguard::mock_keys`]): it answers
/// the registered client's initiations (from any flow) and takes its data; a stranger's
/// initiation gets nothing.
pub struct WireguardServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for WireguardServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WireguardServer {
    pub async fn start(bind: SocketAddr) -> std::io::Result<Self> {
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        let addr = sock.local_addr()?;
        let task = tokio::spawn(async move {
            let mut tunn = crate::probe::wireguard::mock_server();
            let mut buf = vec![0u8; 2048];
            let mut out = vec![0u8; 2048];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                // The rate limiter and sessions age as on a real server.
                let _ = tunn.update_timers(&mut out);
                let mut packet = &buf[..n];
                // A response, then whatever boringtun queued, until it is done.
                while let boringtun::noise::TunnResult::WriteToNetwork(p) =
                    tunn.decapsulate(Some(from.ip()), packet, &mut out)
                {
                    let _ = sock.send_to(p, from).await;
                    packet = &[];
                }
            }
        });
        Ok(Self { addr, task })
    }
}

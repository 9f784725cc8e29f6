//! A lying DNS server for tests, benchmarks and the mock network: one zone served over UDP,
//! TCP, DoT and DoH (HTTP/2 or HTTP/1.1, whichever ALPN settles on), where each name has a
//! behaviour (an answer, an rcode, silence, a forged UDP response racing the real one, a
//! reset). Every query is counted, so a test can prove that traffic reached the server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use http_body_util::{BodyExt as _, Full, Limited};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// What the server does for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer with these addresses (A gets the v4 ones, AAAA the v6 ones; NODATA if none).
    Answer(Vec<IpAddr>),
    /// Answer through a CNAME to `target`, which resolves to `addrs`.
    Cname {
        target: String,
        addrs: Vec<IpAddr>,
    },
    NxDomain,
    /// NOERROR with an empty answer section.
    NoData,
    ServFail,
    Refused,
    /// Never answer (the client times out).
    Silent,
    /// Over UDP, send a forged answer first and the real one right after (on-path injection);
    /// over TCP, DoT and DoH only the real one.
    Inject {
        forged: Vec<IpAddr>,
        real: Vec<IpAddr>,
    },
    /// Tear the connection down (TCP, DoT, DoH); silence over UDP.
    Reset,
    /// Over UDP, an empty answer with the TC (truncated) bit; over TCP the full answer.
    Truncated(Vec<IpAddr>),
    /// Ignore the first `drop` queries for the name (a lossy path), then answer `addrs`.
    Lossy {
        drop: u64,
        addrs: Vec<IpAddr>,
    },
}

/// Names (lowercase, no trailing dot) to behaviours, and what every other name gets.
#[derive(Clone, Debug)]
pub struct Zone {
    pub names: HashMap<String, Behaviour>,
    pub default: Behaviour,
}

impl Zone {
    pub fn new(default: Behaviour) -> Self {
        Self {
            names: HashMap::new(),
            default,
        }
    }

    pub fn with(mut self, name: &str, b: Behaviour) -> Self {
        self.names.insert(name.to_ascii_lowercase(), b);
        self
    }

    fn behaviour(&self, name: &str) -> &Behaviour {
        self.names.get(name).unwrap_or(&self.default)
    }
}

/// What to do with one query.
enum Reply {
    Send(Vec<Vec<u8>>),
    Silent,
    Reset,
}

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    /// TCP, DoT and DoH connections accepted.
    connections: AtomicU64,
    /// DoH connections that negotiated HTTP/2.
    http2: AtomicU64,
    per_name: Mutex<HashMap<String, u64>>,
}

struct Inner {
    zone: Zone,
    counters: Counters,
}

impl Inner {
    fn handle(&self, wire: &[u8], udp: bool) -> Reply {
        let Ok(query) = Message::from_vec(wire) else {
            return Reply::Silent;
        };
        let Some(q) = query.queries.first() else {
            return Reply::Silent;
        };
        let qname = q.name().to_ascii();
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        let qtype = q.query_type();
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        let seen = {
            let mut per_name = self.counters.per_name.lock().expect("counter lock");
            let n = per_name.entry(qname.clone()).or_default();
            *n += 1;
            *n
        };

        let truncate = udp && matches!(self.zone.behaviour(&qname), Behaviour::Truncated(_));
        let respond = |rcode: ResponseCode, cname: Option<&str>, addrs: &[IpAddr]| {
            let mut msg = Message::response(query.metadata.id, OpCode::Query);
            msg.metadata.truncation = truncate;
            msg.metadata.message_type = MessageType::Response;
            msg.metadata.recursion_desired = query.metadata.recursion_desired;
            msg.metadata.recursion_available = true;
            msg.metadata.response_code = rcode;
            msg.add_query(q.clone());
            let mut owner = q.name().clone();
            if let Some(target) = cname
                && let Ok(t) = Name::from_ascii(format!("{target}."))
            {
                msg.answers.push(Record::from_rdata(
                    owner.clone(),
                    60,
                    RData::CNAME(CNAME(t.clone())),
                ));
                owner = t;
            }
            for ip in addrs.iter().filter(|_| !truncate) {
                let data = match (ip, qtype) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(*v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                msg.answers
                    .push(Record::from_rdata(owner.clone(), 60, data));
            }
            msg.to_vec().unwrap_or_default()
        };
        match self.zone.behaviour(&qname) {
            Behaviour::Answer(addrs) => {
                Reply::Send(vec![respond(ResponseCode::NoError, None, addrs)])
            }
            Behaviour::Cname { target, addrs } => {
                Reply::Send(vec![respond(ResponseCode::NoError, Some(target), addrs)])
            }
            Behaviour::NxDomain => Reply::Send(vec![respond(ResponseCode::NXDomain, None, &[])]),
            Behaviour::NoData => Reply::Send(vec![respond(ResponseCode::NoError, None, &[])]),
            Behaviour::ServFail => Reply::Send(vec![respond(ResponseCode::ServFail, None, &[])]),
            Behaviour::Refused => Reply::Send(vec![respond(ResponseCode::Refused, None, &[])]),
            Behaviour::Silent => Reply::Silent,
            Behaviour::Truncated(addrs) => {
                Reply::Send(vec![respond(ResponseCode::NoError, None, addrs)])
            }
            Behaviour::Lossy { drop, .. } if seen <= *drop => Reply::Silent,
            Behaviour::Lossy { addrs, .. } => {
                Reply::Send(vec![respond(ResponseCode::NoError, None, addrs)])
            }
            Behaviour::Reset => {
                if udp {
                    Reply::Silent
                } else {
                    Reply::Reset
                }
            }
            Behaviour::Inject { forged, real } => {
                let real = respond(ResponseCode::NoError, None, real);
                if udp {
                    Reply::Send(vec![respond(ResponseCode::NoError, None, forged), real])
                } else {
                    Reply::Send(vec![real])
                }
            }
        }
    }
}

/// A running server. Dropping it stops every listener.
pub struct MockDns {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// DNS over TLS, when started with a TLS configuration.
    pub dot: Option<SocketAddr>,
    /// DNS over HTTPS (`https://ADDR/dns-query`), when started with a TLS configuration.
    pub doh: Option<SocketAddr>,
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for MockDns {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MockDns {
    /// Binds every listener before returning, so the addresses are ready to use: UDP and TCP on
    /// `ip:port` (0 picks a free port), DoT and DoH on free ports. `tls` is the server
    /// configuration for DoT and DoH (both skipped when `None`).
    pub async fn start(
        ip: IpAddr,
        port: u16,
        zone: Zone,
        tls: Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
    ) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            zone,
            counters: Counters::default(),
        });
        // UDP and TCP share the port number; with port 0 the UDP pick may be taken for TCP,
        // so try again a few times.
        let mut tries = 0;
        let (udp_sock, tcp_l) = loop {
            let udp_sock = UdpSocket::bind((ip, port)).await?;
            match TcpListener::bind(udp_sock.local_addr()?).await {
                Ok(l) => break (udp_sock, l),
                Err(e) if port == 0 && tries < 20 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let mut srv = Self {
            udp: udp_sock.local_addr()?,
            tcp: tcp_l.local_addr()?,
            dot: None,
            doh: None,
            inner: inner.clone(),
            tasks: Vec::new(),
        };
        srv.tasks
            .push(tokio::spawn(serve_udp(udp_sock, inner.clone())));
        srv.tasks
            .push(tokio::spawn(serve_stream(tcp_l, inner.clone(), None)));
        if let Some((dot_cfg, doh_cfg)) = tls {
            let dot_l = TcpListener::bind((ip, 0)).await?;
            let doh_l = TcpListener::bind((ip, 0)).await?;
            srv.dot = Some(dot_l.local_addr()?);
            srv.doh = Some(doh_l.local_addr()?);
            srv.tasks.push(tokio::spawn(serve_stream(
                dot_l,
                inner.clone(),
                Some(dot_cfg),
            )));
            srv.tasks
                .push(tokio::spawn(serve_doh(doh_l, inner, doh_cfg)));
        }
        Ok(srv)
    }

    /// Queries received so far (all transports).
    pub fn hits(&self) -> u64 {
        self.inner.counters.total.load(Ordering::Relaxed)
    }

    /// TCP, DoT and DoH connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.counters.connections.load(Ordering::Relaxed)
    }

    /// DoH connections that negotiated HTTP/2 (by ALPN) so far.
    pub fn http2_connections(&self) -> u64 {
        self.inner.counters.http2.load(Ordering::Relaxed)
    }

    /// Queries received for one name (lowercase, no trailing dot).
    pub fn hits_for(&self, name: &str) -> u64 {
        self.inner
            .counters
            .per_name
            .lock()
            .expect("counter lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

async fn serve_udp(sock: UdpSocket, inner: Arc<Inner>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if let Reply::Send(msgs) = inner.handle(&buf[..n], true) {
            for m in msgs {
                let _ = sock.send_to(&m, peer).await;
            }
        }
    }
}

async fn serve_stream(l: TcpListener, inner: Arc<Inner>, tls: Option<Arc<rustls::ServerConfig>>) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        inner.counters.connections.fetch_add(1, Ordering::Relaxed);
        let inner = inner.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                None => framed_conn(tcp, &inner).await,
                Some(cfg) => {
                    if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                        framed_conn(s, &inner).await;
                    }
                }
            }
        });
    }
}

async fn framed_conn<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, inner: &Inner) {
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut msg).await.is_err() {
            return;
        }
        match inner.handle(&msg, false) {
            Reply::Send(msgs) => {
                for m in msgs {
                    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&m);
                    if s.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            }
            Reply::Silent => {}
            Reply::Reset => return,
        }
    }
}

async fn serve_doh(l: TcpListener, inner: Arc<Inner>, tls: Arc<rustls::ServerConfig>) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        inner.counters.connections.fetch_add(1, Ordering::Relaxed);
        let inner = inner.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        tokio::spawn(async move {
            let Ok(s) = acceptor.accept(tcp).await else {
                return;
            };
            let http2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
            if http2 {
                inner.counters.http2.fetch_add(1, Ordering::Relaxed);
            }
            // `Reset` tears the whole connection down (as an on-path box would), on HTTP/2 too,
            // where a failing request would otherwise only reset its own stream.
            let teardown = Arc::new(tokio::sync::Notify::new());
            let torn = teardown.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let inner = inner.clone();
                    let teardown = teardown.clone();
                    async move {
                        let body = Limited::new(req.into_body(), 65_535)
                            .collect()
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?
                            .to_bytes();
                        match inner.handle(&body, false) {
                            Reply::Send(mut msgs) => {
                                let m = msgs.pop().unwrap_or_default();
                                Ok::<_, std::io::Error>(
                                    http::Response::builder()
                                        .header(
                                            http::header::CONTENT_TYPE,
                                            "application/dns-message",
                                        )
                                        .body(Full::new(Bytes::from(m)))
                                        .expect("static response"),
                                )
                            }
                            Reply::Silent => std::future::pending().await,
                            Reply::Reset => {
                                teardown.notify_one();
                                std::future::pending().await
                            }
                        }
                    }
                });
            let io = hyper_util::rt::TokioIo::new(s);
            if http2 {
                let exec = hyper_util::rt::TokioExecutor::new();
                let conn = hyper::server::conn::http2::Builder::new(exec).serve_connection(io, svc);
                tokio::select! {
                    _ = conn => {}
                    () = torn.notified() => {}
                }
            } else {
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
                tokio::select! {
                    _ = conn => {}
                    () = torn.notified() => {}
                }
            }
        });
    }
}

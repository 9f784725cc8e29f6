//! The DNS step: A and AAAA for one name through one resolver, over its own transport.
//!
//! Wire transports (UDP, TCP, DoT, DoH) use our own sockets with hickory-proto messages, because
//! censorship evidence lives in details a stub resolver hides: every response to a UDP query
//! (an on-path injector answers first, the real resolver later), the exact rcode, a reset in the
//! middle of a TCP exchange. `system` goes through hickory-resolver with the host's
//! `/etc/resolv.conf`, as applications on the machine would.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::resolver_spec::ResolverSpec;
use crate::tls::TlsConfigs;

/// Most responses a UDP query may collect (the first plus injected or duplicate ones).
const MAX_RESPONSES: usize = 8;
/// UDP sends per query: the first plus retransmissions spread over the timeout.
const UDP_TRIES: u32 = 3;
/// Cap on a DoH response body: a DNS message is at most 64 KiB.
const MAX_DOH_BODY: usize = 65_535;

pub(crate) fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

/// One response as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsResponse {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...
    pub rcode: String,
    /// A and AAAA addresses in the answer section, in order.
    pub answers: Vec<IpAddr>,
    /// The CNAME chain, first hop first.
    pub cnames: Vec<String>,
    pub truncated: bool,
    /// Time from sending the query to receiving this response.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl DnsResponse {
    /// Two responses disagree when a censor's forged answer differs from the real one.
    fn same_content(&self, other: &Self) -> bool {
        let a: BTreeSet<_> = self.answers.iter().collect();
        let b: BTreeSet<_> = other.answers.iter().collect();
        self.rcode == other.rcode && a == b
    }
}

/// The observation of one query (A or AAAA).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QueryObservation {
    pub qtype: &'static str,
    /// Every response seen for this query, first first. More than one means duplicates or
    /// injection; see [`QueryObservation::injected`].
    pub responses: Vec<DnsResponse>,
    /// Why no response was obtained, when none was.
    pub failure: Option<Failure>,
    /// Datagrams sent for this query (UDP retransmits unanswered queries; 1 elsewhere).
    pub sent: u8,
}

impl QueryObservation {
    fn failed(qtype: RecordType, failure: Failure) -> Self {
        Self {
            qtype: qtype_str(qtype),
            responses: Vec::new(),
            failure: Some(failure),
            sent: 1,
        }
    }

    fn answered(qtype: RecordType, response: DnsResponse) -> Self {
        Self {
            qtype: qtype_str(qtype),
            responses: vec![response],
            failure: None,
            sent: 1,
        }
    }

    pub fn first(&self) -> Option<&DnsResponse> {
        self.responses.first()
    }

    /// Later responses whose content differs from the first one.
    pub fn injected(&self) -> impl Iterator<Item = &DnsResponse> {
        let first = self.responses.first();
        self.responses
            .iter()
            .skip(1)
            .filter(move |r| first.is_some_and(|f| !f.same_content(r)))
    }
}

/// The DNS step's evidence for one name through one resolver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsObservation {
    pub transport: &'static str,
    pub server: String,
    pub a: QueryObservation,
    pub aaaa: QueryObservation,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl DnsObservation {
    pub fn queries(&self) -> [&QueryObservation; 2] {
        [&self.a, &self.aaaa]
    }

    /// Addresses of the first response of each query.
    pub fn addresses(&self) -> BTreeSet<IpAddr> {
        self.queries()
            .into_iter()
            .filter_map(QueryObservation::first)
            .flat_map(|r| r.answers.iter().copied())
            .collect()
    }

    /// Addresses carried by responses that disagree with the first one.
    pub fn injected_addresses(&self) -> Option<BTreeSet<IpAddr>> {
        let mut any = false;
        let mut set = BTreeSet::new();
        for q in self.queries() {
            for r in q.injected() {
                any = true;
                set.extend(r.answers.iter().copied());
            }
        }
        any.then_some(set)
    }

    pub fn cnames(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self
            .queries()
            .into_iter()
            .filter_map(QueryObservation::first)
        {
            for c in &r.cnames {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
        }
        out
    }

    /// The rcode to show in one column: A's, else AAAA's.
    pub fn rcode(&self) -> Option<&str> {
        self.queries()
            .into_iter()
            .find_map(|q| q.first().map(|r| r.rcode.as_str()))
    }

    /// The failure to show when no query got a response.
    pub fn failure(&self) -> Option<&Failure> {
        if self.queries().iter().any(|q| q.first().is_some()) {
            return None;
        }
        self.a.failure.as_ref().or(self.aaaa.failure.as_ref())
    }
}

fn qtype_str(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        _ => "?",
    }
}

pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

const QTYPES: [RecordType; 2] = [RecordType::A, RecordType::AAAA];

/// A resolver ready to be asked: the spec plus what its transport needs, built once per run.
pub struct DnsClient {
    spec: ResolverSpec,
    tls: TlsConfigs,
    system: Option<TokioResolver>,
    timeout: Duration,
    /// How long to keep listening on UDP after the last first-response, for injected ones.
    window: Duration,
    /// Idle DoH connections (used only by `https://` specs).
    doh: DohPool,
    /// Spacing of lookups when a query rate is set.
    pacer: Option<Pacer>,
}

/// Spaces calls evenly: a lookup (A + AAAA) takes the next free slot, `interval` after the last.
/// Resolvers that rate-limit would otherwise turn a fast scan into false `dns.timeout`s.
struct Pacer {
    interval: Duration,
    next: std::sync::Mutex<Instant>,
}

impl Pacer {
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().expect("pacer lock");
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

impl DnsClient {
    pub fn new(
        spec: ResolverSpec,
        tls: TlsConfigs,
        timeout: Duration,
        window: Duration,
    ) -> anyhow::Result<Self> {
        let system = match spec {
            ResolverSpec::System => Some(system_resolver(timeout)?),
            _ => None,
        };
        Ok(Self {
            spec,
            tls,
            system,
            timeout,
            window,
            doh: DohPool::default(),
            pacer: None,
        })
    }

    /// Limits this resolver to `qps` queries per second (a lookup is two queries).
    pub fn with_rate(mut self, qps: f64) -> Self {
        self.pacer = (qps > 0.0).then(|| Pacer {
            interval: Duration::from_secs_f64(2.0 / qps),
            next: std::sync::Mutex::new(Instant::now()),
        });
        self
    }

    /// Queries A and AAAA for `name` (ASCII, no trailing dot). Never fails: failures are data.
    pub async fn lookup(&self, name: &str) -> DnsObservation {
        if let Some(p) = &self.pacer {
            p.wait().await;
        }
        let start = Instant::now();
        let (transport, server, [a, aaaa]) = match &self.spec {
            ResolverSpec::System => {
                let resolver = self.system.as_ref().expect("built in new");
                (
                    "system",
                    "system".to_owned(),
                    system_lookup(resolver, name, self.timeout).await,
                )
            }
            ResolverSpec::Udp(addr) => {
                let obs = match build_queries(name) {
                    Ok(q) => self.udp(*addr, q, start).await,
                    Err(f) => both_failed(f),
                };
                ("udp", addr.to_string(), obs)
            }
            ResolverSpec::Tcp(addr) => {
                let obs = self
                    .with_queries(name, start, |q| async move {
                        let stream = TcpStream::connect(addr).await?;
                        stream.set_nodelay(true)?;
                        Ok(stream_exchange(stream, &q, start).await)
                    })
                    .await;
                ("tcp", addr.to_string(), obs)
            }
            ResolverSpec::Tls { addr, server_name } => {
                let obs = self
                    .with_queries(name, start, |q| async move {
                        let tls = tls_connect(*addr, server_name, self.tls.dot.clone()).await?;
                        Ok(stream_exchange(tls, &q, start).await)
                    })
                    .await;
                ("dot", format!("{addr}#{server_name}"), obs)
            }
            ResolverSpec::Https { host, port, path } => {
                let obs = self
                    .with_queries(name, start, |q| async move {
                        let server = (host.as_str(), *port, path.as_str());
                        doh_exchange(server, self.tls.doh.clone(), &self.doh, &q, start).await
                    })
                    .await;
                ("doh", self.spec.to_string(), obs)
            }
        };
        DnsObservation {
            transport,
            server,
            a,
            aaaa,
            elapsed: start.elapsed(),
        }
    }

    /// Runs a connection-oriented exchange under the step timeout; a connect or handshake error
    /// becomes the failure of both queries.
    async fn with_queries<'a, F, Fut>(
        &'a self,
        name: &str,
        start: Instant,
        exchange: F,
    ) -> [QueryObservation; 2]
    where
        F: FnOnce(Arc<[(u16, Vec<u8>); 2]>) -> Fut,
        Fut: Future<Output = anyhow::Result<[QueryObservation; 2]>> + 'a,
    {
        let queries = match build_queries(name) {
            Ok(q) => Arc::new(q),
            Err(f) => return both_failed(f),
        };
        match tokio::time::timeout_at(start + self.timeout, exchange(queries)).await {
            Ok(Ok(obs)) => obs,
            Ok(Err(e)) => both_failed(Failure::from_error(e.as_ref())),
            Err(_) => both_failed(Failure::timeout()),
        }
    }

    async fn udp(
        &self,
        server: SocketAddr,
        queries: [(u16, Vec<u8>); 2],
        start: Instant,
    ) -> [QueryObservation; 2] {
        let bind: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return both_failed(Failure::from_error(&e)),
        };
        // Connected: the kernel drops datagrams from other sources. An on-path injector forges
        // the resolver's address, so injected responses still arrive.
        if let Err(e) = sock.connect(server).await {
            return both_failed(Failure::from_error(&e));
        }
        for (_, wire) in &queries {
            if let Err(e) = sock.send(wire).await {
                return both_failed(Failure::from_error(&e));
            }
        }
        let mut got: [Vec<DnsResponse>; 2] = [Vec::new(), Vec::new()];
        let mut sent = [1u8; 2];
        let mut failure: Option<Failure> = None;
        let deadline = start + self.timeout;
        // Retransmit unanswered queries like a stub resolver does, so that one lost datagram
        // is not mistaken for censorship: at 1/3 and 2/3 of the timeout.
        let retry_every = self.timeout / UDP_TRIES;
        let mut next_retry = start + retry_every;
        let mut window_end: Option<Instant> = None;
        let mut buf = vec![0u8; 4096];
        loop {
            let retrying = window_end.is_none() && next_retry < deadline;
            let until = match window_end {
                Some(end) => end,
                None if retrying => next_retry,
                None => deadline,
            };
            let n = match tokio::time::timeout_at(until, sock.recv(&mut buf)).await {
                Err(_) if retrying => {
                    for (i, (_, wire)) in queries.iter().enumerate() {
                        if got[i].is_empty() && sock.send(wire).await.is_ok() {
                            sent[i] += 1;
                        }
                    }
                    next_retry += retry_every;
                    continue;
                }
                Err(_) => break,
                Ok(Err(e)) => {
                    // ICMP port unreachable shows up as ECONNREFUSED on a connected socket.
                    failure = Some(Failure::from_error(&e));
                    break;
                }
                Ok(Ok(n)) => n,
            };
            for (i, (id, _)) in queries.iter().enumerate() {
                if got[i].len() >= MAX_RESPONSES {
                    continue;
                }
                if let Some(resp) = parse_response(&buf[..n], *id, QTYPES[i], start.elapsed()) {
                    got[i].push(resp);
                }
            }
            if window_end.is_none() && got.iter().all(|g| !g.is_empty()) {
                if self.window.is_zero() {
                    break;
                }
                window_end = Some(Instant::now() + self.window);
            }
        }
        let mut out = [0, 1].map(|i| QueryObservation {
            qtype: qtype_str(QTYPES[i]),
            responses: std::mem::take(&mut got[i]),
            failure: None,
            sent: sent[i],
        });
        for (i, obs) in out.iter_mut().enumerate() {
            if obs.responses.is_empty() {
                obs.failure = Some(failure.clone().unwrap_or_else(Failure::timeout));
            } else if obs.responses[0].truncated {
                // Too big for UDP: ask again over TCP, as a stub resolver would.
                if let Some(full) = self.tcp_retry(server, &queries[i], QTYPES[i], start).await {
                    obs.responses[0] = full;
                }
            }
        }
        out
    }

    async fn tcp_retry(
        &self,
        server: SocketAddr,
        query: &(u16, Vec<u8>),
        qtype: RecordType,
        start: Instant,
    ) -> Option<DnsResponse> {
        let fut = async {
            let mut s = TcpStream::connect(server).await.ok()?;
            write_framed(&mut s, &query.1).await.ok()?;
            let msg = read_framed(&mut s).await.ok()?;
            parse_response(&msg, query.0, qtype, start.elapsed())
        };
        tokio::time::timeout_at(start + self.timeout, fut)
            .await
            .ok()
            .flatten()
    }
}

fn both_failed(f: Failure) -> [QueryObservation; 2] {
    [
        QueryObservation::failed(RecordType::A, f.clone()),
        QueryObservation::failed(RecordType::AAAA, f),
    ]
}

/// Encodes the A and AAAA queries for `name` with random ids.
fn build_queries(name: &str) -> Result<[(u16, Vec<u8>); 2], Failure> {
    let fqdn = Name::from_ascii(format!("{name}."))
        .map_err(|e| Failure::new(FailureKind::Malformed, format!("bad name `{name}`: {e}")))?;
    let mut ids = [rand::random::<u16>(), 0];
    ids[1] = ids[0].wrapping_add(1);
    let mut out: [(u16, Vec<u8>); 2] = [(0, Vec::new()), (0, Vec::new())];
    for (i, qtype) in QTYPES.into_iter().enumerate() {
        let mut msg = Message::new(ids[i], MessageType::Query, OpCode::Query);
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(fqdn.clone(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        msg.edns = Some(edns);
        let wire = msg
            .to_vec()
            .map_err(|e| Failure::new(FailureKind::Malformed, e.to_string()))?;
        out[i] = (ids[i], wire);
    }
    Ok(out)
}

/// Decodes a response if it answers query `id` of type `qtype`; anything else is ignored.
pub(crate) fn parse_response(
    wire: &[u8],
    id: u16,
    qtype: RecordType,
    elapsed: Duration,
) -> Option<DnsResponse> {
    let msg = Message::from_vec(wire).ok()?;
    if msg.metadata.id != id || msg.metadata.message_type != MessageType::Response {
        return None;
    }
    if let Some(q) = msg.queries.first()
        && q.query_type() != qtype
    {
        return None;
    }
    Some(response_from_records(
        rcode_name(msg.metadata.response_code),
        &msg.answers,
        msg.metadata.truncation,
        elapsed,
    ))
}

fn response_from_records(
    rcode: String,
    records: &[hickory_proto::rr::Record],
    truncated: bool,
    elapsed: Duration,
) -> DnsResponse {
    let mut answers = Vec::new();
    let mut cnames = Vec::new();
    for r in records {
        match &r.data {
            RData::A(a) => answers.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => answers.push(IpAddr::V6(a.0)),
            RData::CNAME(c) => cnames.push(trim_dot(&c.0.to_ascii())),
            _ => {}
        }
    }
    DnsResponse {
        rcode,
        answers,
        cnames,
        truncated,
        elapsed,
    }
}

fn trim_dot(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()
}

async fn write_framed<S: AsyncWrite + Unpin>(s: &mut S, wire: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(wire.len()).map_err(std::io::Error::other)?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(wire);
    s.write_all(&framed).await?;
    s.flush().await
}

async fn read_framed<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await?;
    Ok(msg)
}

/// RFC 7766 framing: both queries pipelined, responses matched by id, over TCP or TLS. A reset
/// or EOF part-way fails only the queries still waiting.
async fn stream_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    queries: &[(u16, Vec<u8>); 2],
    start: Instant,
) -> [QueryObservation; 2] {
    let mut out: [Option<QueryObservation>; 2] = [None, None];
    for (_, wire) in queries {
        if let Err(e) = write_framed(&mut s, wire).await {
            return both_failed(Failure::from_error(&e));
        }
    }
    while out.iter().any(Option::is_none) {
        let msg = match read_framed(&mut s).await {
            Ok(m) => m,
            Err(e) => {
                let f = Failure::from_error(&e);
                for (i, slot) in out.iter_mut().enumerate() {
                    slot.get_or_insert_with(|| QueryObservation::failed(QTYPES[i], f.clone()));
                }
                break;
            }
        };
        for (i, (id, _)) in queries.iter().enumerate() {
            if out[i].is_none()
                && let Some(r) = parse_response(&msg, *id, QTYPES[i], start.elapsed())
            {
                out[i] = Some(QueryObservation::answered(QTYPES[i], r));
            }
        }
    }
    out.map(|o| o.expect("filled above"))
}

async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?)
}

type DohSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Idle DoH connections kept per resolver: a resolver, unlike a target, is a long-lived peer
/// (browsers keep their DoH connection open), and the default controls are DoH.
const DOH_IDLE: usize = 32;

/// Idle keep-alive connections to one DoH server.
#[derive(Default)]
struct DohPool(std::sync::Mutex<Vec<DohSender>>);

impl DohPool {
    fn take(&self) -> Option<DohSender> {
        let mut idle = self.0.lock().expect("doh pool lock");
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn give(&self, s: DohSender) {
        let mut idle = self.0.lock().expect("doh pool lock");
        if !s.is_closed() && idle.len() < DOH_IDLE {
            idle.push(s);
        }
    }
}

async fn doh_connect(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<DohSender> {
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host, port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("no address for DoH host {host}"))?,
    };
    let tls = tls_connect(addr, host, config).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    // The connection lives as long as a sender for it does (in use or idle in the pool).
    tokio::spawn(conn);
    Ok(sender)
}

/// One POST of `application/dns-message`. `Err` only when the connection itself failed.
async fn doh_query(
    sender: &mut DohSender,
    authority: &str,
    path: &str,
    (id, wire): &(u16, Vec<u8>),
    qtype: RecordType,
    start: Instant,
) -> anyhow::Result<QueryObservation> {
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/dns-message")
        .header(http::header::ACCEPT, "application/dns-message")
        .body(Full::new(Bytes::copy_from_slice(wire)))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_DOH_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading DoH body: {e}"))?
        .to_bytes();
    Ok(if !status.is_success() {
        QueryObservation::failed(
            qtype,
            Failure::new(
                FailureKind::Http,
                format!("DoH server answered HTTP {status}"),
            ),
        )
    } else {
        match parse_response(&body, *id, qtype, start.elapsed()) {
            Some(r) => QueryObservation::answered(qtype, r),
            None => QueryObservation::failed(
                qtype,
                Failure::new(
                    FailureKind::Malformed,
                    "DoH body is not a DNS response to the query",
                ),
            ),
        }
    })
}

/// RFC 8484 over HTTP/1.1: the two queries one after the other on a kept-alive connection
/// (a fresh one when the pool has none, or when a pooled one turns out to be dead).
async fn doh_exchange(
    (host, port, path): (&str, u16, &str),
    config: Arc<rustls::ClientConfig>,
    pool: &DohPool,
    queries: &[(u16, Vec<u8>); 2],
    start: Instant,
) -> anyhow::Result<[QueryObservation; 2]> {
    let authority = if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    let pooled = pool.take();
    let reused = pooled.is_some();
    let mut sender = match pooled {
        Some(s) => s,
        None => doh_connect(host, port, config.clone()).await?,
    };
    let ask = async |s: &mut DohSender, i: usize| {
        doh_query(s, &authority, path, &queries[i], QTYPES[i], start).await
    };
    let a = match ask(&mut sender, 0).await {
        Ok(a) => a,
        Err(_) if reused => {
            // The server closed the idle connection under us: that is not an observation.
            sender = doh_connect(host, port, config).await?;
            ask(&mut sender, 0).await?
        }
        Err(e) => return Err(e),
    };
    let aaaa = match ask(&mut sender, 1).await {
        Ok(o) => o,
        Err(e) => QueryObservation::failed(RecordType::AAAA, Failure::from_error(e.as_ref())),
    };
    pool.give(sender);
    Ok([a, aaaa])
}

/// hickory-resolver over the host's configuration. `BLOCKPROBE_RESOLV_CONF` points it at
/// another resolv.conf (tests use it to aim `system` at a local server).
fn system_resolver(timeout: Duration) -> anyhow::Result<TokioResolver> {
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut builder = match std::env::var_os("BLOCKPROBE_RESOLV_CONF") {
        Some(path) => {
            let data = std::fs::read(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read BLOCKPROBE_RESOLV_CONF {}: {e}",
                    path.to_string_lossy()
                )
            })?;
            let (config, opts) = hickory_resolver::system_conf::parse_resolv_conf(data)?;
            let mut b = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            *b.options_mut() = opts;
            b
        }
        None => TokioResolver::builder_tokio()
            .map_err(|e| anyhow::anyhow!("cannot read the system resolver configuration: {e}"))?,
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.preserve_intermediates = true;
    Ok(builder.build()?)
}

async fn system_lookup(
    resolver: &TokioResolver,
    name: &str,
    timeout: Duration,
) -> [QueryObservation; 2] {
    let fqdn = format!("{name}.");
    let one = |qtype: RecordType| {
        let fqdn = fqdn.clone();
        async move {
            let start = Instant::now();
            let res = tokio::time::timeout(timeout, resolver.lookup(fqdn.as_str(), qtype)).await;
            let elapsed = start.elapsed();
            let ok = |rcode: ResponseCode, records: &[hickory_proto::rr::Record]| {
                QueryObservation::answered(
                    qtype,
                    response_from_records(rcode_name(rcode), records, false, elapsed),
                )
            };
            match res {
                Err(_) => QueryObservation::failed(qtype, Failure::timeout()),
                Ok(Ok(lookup)) => ok(ResponseCode::NoError, lookup.answers()),
                Ok(Err(e)) => {
                    use hickory_resolver::net::{DnsError, NetError};
                    match &e {
                        NetError::Dns(DnsError::NoRecordsFound(nr)) => ok(nr.response_code, &[]),
                        NetError::Dns(DnsError::ResponseCode(code)) => ok(*code, &[]),
                        NetError::Timeout => QueryObservation::failed(qtype, Failure::timeout()),
                        _ => QueryObservation::failed(qtype, Failure::from_error(&e)),
                    }
                }
            }
        }
    };
    let (a, aaaa) = tokio::join!(one(RecordType::A), one(RecordType::AAAA));
    [a, aaaa]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(rcode: &str, answers: &[&str]) -> DnsResponse {
        DnsResponse {
            rcode: rcode.into(),
            answers: answers.iter().map(|a| a.parse().unwrap()).collect(),
            cnames: vec![],
            truncated: false,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn injected_means_a_later_response_disagrees() {
        let mut q = QueryObservation {
            qtype: "A",
            responses: vec![resp("NOERROR", &["1.2.3.4"]), resp("NOERROR", &["1.2.3.4"])],
            failure: None,
            sent: 1,
        };
        assert_eq!(q.injected().count(), 0, "a duplicate is not an injection");
        q.responses.push(resp("NOERROR", &["10.0.0.1"]));
        assert_eq!(q.injected().count(), 1);
    }

    #[test]
    fn queries_round_trip_through_the_parser() {
        let [(id, wire), _] = build_queries("example.com").unwrap();
        let mut msg = Message::from_vec(&wire).unwrap();
        msg.metadata.message_type = MessageType::Response;
        msg.metadata.response_code = ResponseCode::NXDomain;
        let back = msg.to_vec().unwrap();
        let r = parse_response(&back, id, RecordType::A, Duration::ZERO).unwrap();
        assert_eq!(r.rcode, "NXDOMAIN");
        assert!(parse_response(&back, id.wrapping_add(7), RecordType::A, Duration::ZERO).is_none());
        assert!(parse_response(&back, id, RecordType::AAAA, Duration::ZERO).is_none());
    }
}

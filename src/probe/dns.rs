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
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use http_body_util::{BodyExt as _, Full, Limited};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;
use crate::resolver_spec::ResolverSpec;
use crate::tls::TlsConfigs;

/// Most responses a UDP query may collect (the first plus injected or duplicate ones).
const MAX_RESPONSES: usize = 8;
/// UDP sends per query: the first plus retransmissions spread over the timeout.
const UDP_TRIES: u8 = 3;
/// Earliest first retransmission once the resolver's round-trip time is known. A recursive
/// resolver answers most names from its cache, at its smoothed RTT, and a cold name in a few
/// hundred milliseconds: a floor of 200 ms (TCP's, on Linux) made a hostile pass's resolver with
/// 10 % cold names at 600 ms see 2.3 times the queries for them. 500 ms still cuts the old
/// first retransmission (a third of the default 4 s) by more than half.
const MIN_RTO: Duration = Duration::from_millis(500);
/// Shortest spacing of UDP retransmissions, whatever the timeout: a timeout of a few
/// nanoseconds would otherwise schedule them back to back, forever.
const MIN_RETRY: Duration = Duration::from_millis(50);
/// Cap on a DoH response body: a DNS message is at most 64 KiB.
const MAX_DOH_BODY: usize = 65_535;
/// The UDP receive buffer: the largest UDP payload.
const MAX_UDP_RESPONSE: usize = 65_535;
/// The EDNS payload size advertised: DNS Flag Day 2020's value, which avoids IP fragmentation;
/// larger answers come back truncated and are asked again over TCP.
const EDNS_PAYLOAD: u16 = 1232;

/// One response as received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsResponse {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...
    pub rcode: Rcode,
    /// A and AAAA addresses in the answer section, in order.
    pub answers: Vec<IpAddr>,
    /// The CNAME chain, first hop first.
    pub cnames: Vec<String>,
    pub truncated: bool,
    /// Time from sending the query to receiving this response.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
    /// Which datagram of the query it answers (1 = the first send, 2 or 3 = a UDP
    /// retransmission, each sent with an id of its own); written only when not 1.
    #[serde(skip_serializing_if = "is_first_send")]
    pub send: u8,
}

fn is_first_send(send: &u8) -> bool {
    *send == 1
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

    /// The answer: the first response, unless it is truncated. A truncated response is
    /// replaced by the TCP one when the retry succeeds; when it stays, the retry failed and
    /// `failure` says how.
    pub fn first(&self) -> Option<&DnsResponse> {
        self.responses.first().filter(|r| !r.truncated)
    }

    /// Later responses whose content differs from the first one to the *same datagram*. A
    /// retransmission has an id of its own, so its answer is told apart from the first send's:
    /// a resolver that answers both copies with different (rotating) addresses is not a censor
    /// forging one (issue 14: retransmissions now come after the resolver's RTO, sooner than a
    /// slow recursive answer).
    pub fn injected(&self) -> impl Iterator<Item = &DnsResponse> {
        self.responses.iter().enumerate().filter_map(|(k, r)| {
            let first = self.responses[..k].iter().find(|f| f.send == r.send)?;
            (!first.same_content(r)).then_some(r)
        })
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

    /// Adds the late responses of the injection window (from [`Late`]) to A and AAAA.
    pub fn absorb(&mut self, late: [Vec<DnsResponse>; 2]) {
        let [a, aaaa] = late;
        self.a.responses.extend(a);
        self.aaaa.responses.extend(aaaa);
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
    pub fn rcode(&self) -> Option<Rcode> {
        self.queries()
            .into_iter()
            .find_map(|q| q.first().map(|r| r.rcode))
    }

    /// The failure to show when the name got no address and a query got no answer. One
    /// NODATA does not hide the other query's failure: a name whose A answer was lost and
    /// whose AAAA is empty has no address because of the loss, not because of the NODATA.
    pub fn failure(&self) -> Option<&Failure> {
        let answers = self.queries().map(QueryObservation::first);
        if answers.iter().all(Option::is_some)
            || answers.iter().flatten().any(|r| !r.answers.is_empty())
        {
            return None;
        }
        self.queries()
            .into_iter()
            .find(|q| q.first().is_none())
            .and_then(|q| q.failure.as_ref())
    }
}

fn qtype_str(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        _ => "?",
    }
}

/// A response code, as the classifier tells them apart; every other code is kept by number
/// (and written `RCODE<n>` in reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u16),
}

impl Rcode {
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::NoError => "NOERROR".into(),
            Self::FormErr => "FORMERR".into(),
            Self::ServFail => "SERVFAIL".into(),
            Self::NxDomain => "NXDOMAIN".into(),
            Self::NotImp => "NOTIMP".into(),
            Self::Refused => "REFUSED".into(),
            Self::Other(n) => format!("RCODE{n}").into(),
        }
    }
}

impl std::fmt::Display for Rcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for Rcode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl From<ResponseCode> for Rcode {
    fn from(code: ResponseCode) -> Self {
        match code {
            ResponseCode::NoError => Self::NoError,
            ResponseCode::FormErr => Self::FormErr,
            ResponseCode::ServFail => Self::ServFail,
            ResponseCode::NXDomain => Self::NxDomain,
            ResponseCode::NotImp => Self::NotImp,
            ResponseCode::Refused => Self::Refused,
            other => Self::Other(u16::from(other)),
        }
    }
}

/// Reads the names reports use (`NXDOMAIN`, `RCODE23`); an unknown name is `Other(u16::MAX)`.
impl From<&str> for Rcode {
    fn from(s: &str) -> Self {
        match s {
            "NOERROR" => Self::NoError,
            "FORMERR" => Self::FormErr,
            "SERVFAIL" => Self::ServFail,
            "NXDOMAIN" => Self::NxDomain,
            "NOTIMP" => Self::NotImp,
            "REFUSED" => Self::Refused,
            other => Self::Other(
                other
                    .strip_prefix("RCODE")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u16::MAX),
            ),
        }
    }
}

impl PartialEq<&str> for Rcode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

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
    /// Round-trip time to the resolver over UDP, for the retransmission timer.
    rtt: Rtt,
}

/// The smoothed round-trip time to a resolver and its variation (RFC 6298's estimator, in
/// microseconds, packed into one word: `srtt << 32 | rttvar`; 0 = no sample yet), from the first
/// answer to each query's first datagram (every retransmission has an id of its own, so an
/// answer names its datagram and Karn's ambiguity does not arise). Updates racing on two
/// threads may lose one sample, never corrupt it.
#[derive(Default)]
struct Rtt(std::sync::atomic::AtomicU64);

impl Rtt {
    fn sample(&self, rtt: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let r = u64::try_from(rtt.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 1 << 31);
        let old = self.0.load(Relaxed);
        let (srtt, var) = if old == 0 {
            (r, r / 2)
        } else {
            let (s, v) = (old >> 32, old & 0xffff_ffff);
            ((7 * s + r) / 8, (3 * v + s.abs_diff(r)) / 4)
        };
        self.0.store((srtt.max(1) << 32) | var, Relaxed);
    }

    /// The retransmission timeout, `srtt + 4 · rttvar`, once a sample exists.
    fn rto(&self) -> Option<Duration> {
        let v = self.0.load(std::sync::atomic::Ordering::Relaxed);
        (v != 0).then(|| Duration::from_micros((v >> 32) + 4 * (v & 0xffff_ffff)))
    }
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
            rtt: Rtt::default(),
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
    /// Over UDP the injection window is waited out before this returns.
    pub async fn lookup(&self, name: &str) -> DnsObservation {
        let (mut obs, late) = self.lookup_early(name).await;
        if let Some(late) = late {
            obs.absorb(late.collect().await);
        }
        obs
    }

    /// Like [`lookup`](Self::lookup), but returns as soon as both queries are answered: over
    /// UDP with an injection window, the socket keeps listening in the background and the
    /// returned [`Late`] yields the responses that arrive within the window (a forged answer
    /// racing the real one). Join them into the observation with
    /// [`DnsObservation::absorb`] before classifying.
    pub async fn lookup_early(&self, name: &str) -> (DnsObservation, Option<Late>) {
        let mut late = None;
        if let Some(p) = &self.pacer {
            p.wait().await;
        }
        // Over UDP the socket is opened first: waiting for a file descriptor is not part of the
        // measured time.
        let udp_socket = match &self.spec {
            ResolverSpec::Udp(addr) => {
                Some(crate::probe::tcp::open_waiting_for_fds(|| fresh_socket(*addr)).await)
            }
            _ => None,
        };
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
                let sock = udp_socket.expect("opened above");
                let obs = match build_queries(name) {
                    Ok(q) => {
                        let (obs, l) = self.udp(*addr, sock, q, start).await;
                        late = l;
                        obs
                    }
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
        (
            DnsObservation {
                transport,
                server,
                a,
                aaaa,
                elapsed: start.elapsed(),
            },
            late,
        )
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
        F: FnOnce(Arc<[WireQuery; 2]>) -> Fut,
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
        sock: std::io::Result<UdpSocket>,
        queries: [WireQuery; 2],
        start: Instant,
    ) -> ([QueryObservation; 2], Option<Late>) {
        let mut late = None;
        let out = self
            .udp_inner(server, sock, queries, start, &mut late)
            .await;
        (out, late)
    }

    async fn udp_inner(
        &self,
        server: SocketAddr,
        sock: std::io::Result<UdpSocket>,
        queries: [WireQuery; 2],
        start: Instant,
        late: &mut Option<Late>,
    ) -> [QueryObservation; 2] {
        let sock = match sock {
            Ok(s) => s,
            Err(e) => return both_failed(Failure::from_error(&e)),
        };
        for q in &queries {
            if let Err(e) = sock.send(&q.wire).await {
                return both_failed(Failure::from_error(&e));
            }
        }
        let mut got: [Vec<DnsResponse>; 2] = [Vec::new(), Vec::new()];
        let mut sent = [1u8; 2];
        let mut failure: Option<Failure> = None;
        let deadline = start + self.timeout;
        // Retransmit unanswered queries like a stub resolver does, so that one lost datagram
        // is not mistaken for censorship. Once the resolver's round-trip time is known the
        // first retransmission comes after its RTO (at least MIN_RTO) and the gap doubles;
        // before that, and at most ever, the gap is a third of the timeout. Never closer
        // together than MIN_RETRY, never more than UDP_TRIES sends in all. (A fixed third of
        // the default 4 s held a lost datagram's job for 1.3 s: a busy resolver that drops a
        // few hundred queries of a fast scan cost it a fifth of its time, issue 14.)
        // Under `--rate` the resolver is fragile by the user's word, and retransmissions are not
        // paced: they keep the widest gap.
        let widest = (self.timeout / u32::from(UDP_TRIES)).max(MIN_RETRY);
        let mut retry_every = match self.rtt.rto() {
            Some(rto) if self.pacer.is_none() => rto.max(MIN_RTO).min(widest),
            _ => widest,
        };
        let mut next_retry = start + retry_every;
        let mut window_end: Option<Instant> = None;
        loop {
            let end = window_end.unwrap_or(deadline);
            // Checked on every turn, not only when the timer fires: a steady stream of
            // datagrams (a flood, or ones for other queries) cannot keep the loop going.
            if Instant::now() >= end {
                break;
            }
            let retrying = window_end.is_none()
                && next_retry < deadline
                && (0..2).any(|i| got[i].is_empty() && sent[i] < UDP_TRIES);
            let until = if retrying { next_retry } else { end };
            // A datagram that answers neither query (wrong id, or a question that is not ours)
            // is ignored: keep listening for the real answer.
            let elapsed = || start.elapsed();
            let got_mut = &mut got;
            let (rtt, sent_now) = (&self.rtt, sent);
            let received = recv_with(&sock, |d| {
                for (i, q) in queries.iter().enumerate() {
                    if got_mut[i].len() < MAX_RESPONSES
                        && let Some(resp) = q.parse_sent(d, elapsed(), sent_now[i])
                    {
                        // The first datagram went out at `start`: the first answer to it (its
                        // own id) is an exact round trip, retransmissions or not — so a
                        // resolver slow on some names raises the timeout it is given.
                        if resp.send == 1 && got_mut[i].iter().all(|r| r.send != 1) {
                            rtt.sample(resp.elapsed);
                        }
                        got_mut[i].push(resp);
                    }
                }
            });
            match tokio::time::timeout_at(until, received).await {
                Err(_) if retrying => {
                    for (i, q) in queries.iter().enumerate() {
                        if got[i].is_empty() && sent[i] < UDP_TRIES {
                            let mut wire = q.wire.clone();
                            wire[..2].copy_from_slice(&q.id_of_send(sent[i] + 1).to_be_bytes());
                            match sock.send(&wire).await {
                                Ok(_) => sent[i] += 1,
                                // An ICMP refusal of an earlier datagram is reported on the
                                // next send: the resolver is gone, not silent.
                                Err(e) => failure = Some(Failure::from_error(&e)),
                            }
                        }
                    }
                    if failure.is_some() {
                        break;
                    }
                    retry_every = (retry_every * 2).min(widest);
                    next_retry += retry_every;
                    continue;
                }
                Err(_) => break,
                Ok(Err(e)) => {
                    // ICMP port unreachable shows up as ECONNREFUSED on a connected socket.
                    failure = Some(Failure::from_error(&e));
                    break;
                }
                Ok(Ok(())) => {}
            }
            if window_end.is_none() && got.iter().all(|g| !g.is_empty()) {
                if self.window.is_zero() {
                    break;
                }
                // Both answered: the job goes on at once, and the socket listens for the rest
                // of the window in the background (issue 14: a forged second answer must not
                // cost a concurrency slot or delay the connection steps).
                // Past the budget of lingering sockets, wait the window out here instead.
                let end = Instant::now() + self.window;
                match linger_budget().clone().try_acquire_owned() {
                    Ok(permit) => {
                        let room = [0, 1].map(|i| MAX_RESPONSES.saturating_sub(got[i].len()));
                        *late = Some(Late::listen(
                            sock,
                            queries.clone(),
                            sent,
                            start,
                            end,
                            room,
                            permit,
                        ));
                        return self
                            .udp_finish(server, &queries, got, sent, None, start)
                            .await;
                    }
                    Err(_) => window_end = Some(end),
                }
            }
        }
        drop(sock);
        self.udp_finish(server, &queries, got, sent, failure, start)
            .await
    }

    /// The observations of a UDP exchange, truncated answers asked again over TCP.
    async fn udp_finish(
        &self,
        server: SocketAddr,
        queries: &[WireQuery; 2],
        mut got: [Vec<DnsResponse>; 2],
        sent: [u8; 2],
        failure: Option<Failure>,
        start: Instant,
    ) -> [QueryObservation; 2] {
        let mut out = [0, 1].map(|i| QueryObservation {
            qtype: qtype_str(queries[i].qtype),
            responses: std::mem::take(&mut got[i]),
            failure: None,
            sent: sent[i],
        });
        // Too big for UDP: ask again over TCP, as a stub resolver would, both queries at once
        // under the same deadline. When that fails the truncated response stays as evidence,
        // but it is not an answer (an empty one is no NODATA): the query failed as TCP did.
        let retry = async |i: usize| {
            let truncated = out[i].responses.first().is_some_and(|r| r.truncated);
            if truncated {
                Some(self.tcp_retry(server, &queries[i], start).await)
            } else {
                None
            }
        };
        let retried = tokio::join!(retry(0), retry(1));
        for (obs, retried) in out.iter_mut().zip([retried.0, retried.1]) {
            match retried {
                Some(Ok(full)) => obs.responses[0] = full,
                Some(Err(f)) => obs.failure = Some(f),
                None if obs.responses.is_empty() => {
                    obs.failure = Some(failure.clone().unwrap_or_else(Failure::timeout));
                }
                None => {}
            }
        }
        out
    }

    async fn tcp_retry(
        &self,
        server: SocketAddr,
        query: &WireQuery,
        start: Instant,
    ) -> Result<DnsResponse, Failure> {
        let fut = async {
            let mut s = TcpStream::connect(server).await?;
            s.set_nodelay(true)?;
            write_framed(&mut s, &query.wire).await?;
            // Messages that answer another question are skipped, as on UDP.
            loop {
                let msg = read_framed(&mut s).await?;
                if let Some(r) = query.parse(&msg, start.elapsed()) {
                    return Ok::<_, std::io::Error>(r);
                }
            }
        };
        match tokio::time::timeout_at(start + self.timeout, fut).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Failure::from_error(&e)),
            Err(_) => Err(Failure::timeout()),
        }
    }
}

thread_local! {
    /// One datagram-sized receive buffer per thread. Sized for any datagram: a resolver may
    /// ignore the advertised EDNS payload, and a response cut short would not parse. A receive
    /// never awaits while it holds the buffer, so the thousands of sockets of a fast scan share
    /// a few buffers instead of holding (and zeroing) 64 KiB each.
    static RECV_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; MAX_UDP_RESPONSE]);
}

/// Waits for one datagram on `sock` and hands it to `f` in place.
async fn recv_with<R>(sock: &UdpSocket, mut f: impl FnMut(&[u8]) -> R) -> std::io::Result<R> {
    loop {
        sock.readable().await?;
        let r = RECV_BUF.with_borrow_mut(|buf| match sock.try_recv(buf) {
            Ok(n) => Ok(Some(f(&buf[..n]))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        })?;
        if let Some(r) = r {
            return Ok(r);
        }
    }
}

/// A fresh UDP socket per lookup, connected to the resolver (the kernel drops datagrams from
/// other sources; an on-path injector forges the resolver's address, so injected responses
/// still arrive).
///
/// Never reused. Issue 14 tried twice, and hostile passes showed why not: censors keep state
/// per flow, and a stub resolver opens a socket per lookup. A censor that forges an answer and
/// then blackholes the flow turned the next name on a reused port into a false `dns.timeout`;
/// gated on a clean exchange and a `reachable` verdict, with retransmissions from a fresh
/// socket, reuse still lost to a DPI that judges a flow by its first query (blocked names
/// riding a flow a clean name opened read `reachable`) and to a per-flow counter (clean names
/// read `blocked`). A fresh source port per lookup keeps every name's measurement independent
/// of the one before (`tests/e2e/dns.rs::per_flow_censors_see_every_name_on_a_flow_of_its_own`).
fn fresh_socket(server: SocketAddr) -> std::io::Result<UdpSocket> {
    // Connected without an explicit bind: connecting an unbound socket binds it to an
    // ephemeral port in the same call (one system call fewer per lookup).
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::DGRAM.nonblocking().cloexec(),
        None,
    )?;
    sock.connect(&server.into())?;
    UdpSocket::from_std(sock.into())
}

/// UDP responses still arriving after the first answers, collected in the background until
/// the injection window ends. The socket it holds counts against a budget of lingering sockets
/// (a quarter of `ulimit -n`), not against `--concurrency`.
pub struct Late {
    task: tokio::task::JoinHandle<[Vec<DnsResponse>; 2]>,
}

/// Lingering UDP sockets at most (each holds a file descriptor for the rest of the injection
/// window): a quarter of `ulimit -n`, between 8 and 65,536.
pub fn linger_capacity() -> usize {
    (crate::probe::tcp::open_files_limit() / 4).clamp(8, 1 << 16)
}

fn linger_budget() -> &'static Arc<tokio::sync::Semaphore> {
    static BUDGET: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(linger_capacity())))
}

impl Late {
    fn listen(
        sock: UdpSocket,
        queries: [WireQuery; 2],
        sent: [u8; 2],
        start: Instant,
        end: Instant,
        room: [usize; 2],
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        let task = tokio::spawn(Box::pin(async move {
            let _permit = permit;
            let mut got: [Vec<DnsResponse>; 2] = [Vec::new(), Vec::new()];
            while Instant::now() < end {
                let received = recv_with(&sock, |d| {
                    for (i, q) in queries.iter().enumerate() {
                        if got[i].len() < room[i]
                            && let Some(resp) = q.parse_sent(d, start.elapsed(), sent[i])
                        {
                            got[i].push(resp);
                        }
                    }
                });
                if !matches!(tokio::time::timeout_at(end, received).await, Ok(Ok(()))) {
                    break;
                }
            }
            got
        }));
        Self { task }
    }

    /// The responses that arrived within the window (none if the listener failed).
    pub async fn collect(self) -> [Vec<DnsResponse>; 2] {
        self.task.await.unwrap_or_default()
    }
}

fn both_failed(f: Failure) -> [QueryObservation; 2] {
    [
        QueryObservation::failed(RecordType::A, f.clone()),
        QueryObservation::failed(RecordType::AAAA, f),
    ]
}

/// One query as sent, and what a response must echo to be taken as its answer.
#[derive(Clone)]
struct WireQuery {
    id: u16,
    name: Name,
    qtype: RecordType,
    wire: Vec<u8>,
}

impl WireQuery {
    /// Decodes `wire` if it is the response to this query: the same id, the QR bit, and our
    /// question echoed (name case-insensitively, type and class). Anything else is ignored: a
    /// datagram for another name is not an answer, however early it arrives. A response
    /// without a question section is accepted only with an error rcode (some servers omit it
    /// on FORMERR or REFUSED); with NOERROR it could not say what it answers.
    fn parse(&self, wire: &[u8], elapsed: Duration) -> Option<DnsResponse> {
        self.parse_sent(wire, elapsed, 1)
    }

    /// [`parse`](Self::parse) for a query sent `sent` times over UDP: the response may answer
    /// any of those datagrams (each had its own id, [`Self::id_of_send`]).
    fn parse_sent(&self, wire: &[u8], elapsed: Duration, sent: u8) -> Option<DnsResponse> {
        let msg = Message::from_vec(wire).ok()?;
        let k = msg.metadata.id.wrapping_sub(self.id);
        if k % 2 != 0
            || k / 2 >= u16::from(sent.max(1))
            || msg.metadata.message_type != MessageType::Response
        {
            return None;
        }
        let rcode = msg.metadata.response_code;
        match msg.queries.as_slice() {
            [] if rcode != ResponseCode::NoError => {}
            [q] if q.name() == &self.name
                && q.query_type() == self.qtype
                && q.query_class() == DNSClass::IN => {}
            _ => return None,
        }
        let mut resp =
            response_from_records(rcode.into(), &msg.answers, msg.metadata.truncation, elapsed);
        resp.send = u8::try_from(k / 2 + 1).expect("at most UDP_TRIES");
        Some(resp)
    }

    /// The id of the `send`-th datagram (1-based) of this query: the first id, then steps of
    /// two — A's and AAAA's first ids are consecutive, so their retransmissions never share one.
    fn id_of_send(&self, send: u8) -> u16 {
        self.id.wrapping_add(2 * u16::from(send.saturating_sub(1)))
    }
}

/// The decoder as the fuzz targets drive it (the `fuzzing` module): the response to query `id` of
/// `qtype` for `name`.
pub(crate) fn parse_response(
    wire: &[u8],
    id: u16,
    name: &str,
    qtype: RecordType,
) -> Option<DnsResponse> {
    let name = Name::from_ascii(format!("{name}.")).ok()?;
    WireQuery {
        id,
        name,
        qtype,
        wire: Vec::new(),
    }
    .parse(wire, Duration::ZERO)
}

/// Encodes the A and AAAA queries for `name` with random ids.
fn build_queries(name: &str) -> Result<[WireQuery; 2], Failure> {
    let fqdn = Name::from_ascii(format!("{name}."))
        .map_err(|e| Failure::new(FailureKind::Malformed, format!("bad name `{name}`: {e}")))?;
    let id = rand::random::<u16>();
    let encode = |id: u16, qtype: RecordType| WireQuery {
        id,
        name: fqdn.clone(),
        qtype,
        wire: encode_query(id, &fqdn, qtype),
    };
    Ok([
        encode(id, RecordType::A),
        encode(id.wrapping_add(1), RecordType::AAAA),
    ])
}

/// A recursive query for `name`/`qtype` with an EDNS(0) OPT record advertising
/// [`EDNS_PAYLOAD`] — the bytes hickory's encoder gives (`encoded_queries_match_hickory`),
/// written directly: encoding four of them per target through hickory was a tenth of a DNS
/// scan's instructions (issue 14).
fn encode_query(id: u16, name: &Name, qtype: RecordType) -> Vec<u8> {
    let mut w = Vec::with_capacity(12 + 2 + name.len() + 4 + 11);
    w.extend_from_slice(&id.to_be_bytes());
    // QR = 0, opcode QUERY, RD = 1; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 1 (the OPT).
    w.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
    for label in name.iter() {
        // Name::from_ascii has checked every label (1..=63 bytes) and the total length.
        w.push(label.len() as u8);
        w.extend_from_slice(label);
    }
    w.push(0);
    w.extend_from_slice(&u16::from(qtype).to_be_bytes());
    w.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    // OPT: root name, type 41, class = UDP payload size, TTL 0 (rcode, version, flags), no data.
    w.push(0);
    w.extend_from_slice(&41u16.to_be_bytes());
    w.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    w.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    w
}

fn response_from_records(
    rcode: Rcode,
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
        send: 1,
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
    queries: &[WireQuery; 2],
    start: Instant,
) -> [QueryObservation; 2] {
    let mut out: [Option<QueryObservation>; 2] = [None, None];
    for q in queries {
        if let Err(e) = write_framed(&mut s, &q.wire).await {
            return both_failed(Failure::from_error(&e));
        }
    }
    while out.iter().any(Option::is_none) {
        let msg = match read_framed(&mut s).await {
            Ok(m) => m,
            Err(e) => {
                let f = Failure::from_error(&e);
                for (i, slot) in out.iter_mut().enumerate() {
                    slot.get_or_insert_with(|| {
                        QueryObservation::failed(queries[i].qtype, f.clone())
                    });
                }
                break;
            }
        };
        // A message that answers neither query is skipped; the step timeout bounds the wait.
        for (i, q) in queries.iter().enumerate() {
            if out[i].is_none()
                && let Some(r) = q.parse(&msg, start.elapsed())
            {
                out[i] = Some(QueryObservation::answered(q.qtype, r));
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

/// One DoH connection, on the HTTP version the server chose by ALPN: HTTP/2 when it picks
/// `h2` (RFC 8484 recommends it, and Unbound speaks nothing else), HTTP/1.1 when it picks
/// `http/1.1` or nothing.
enum DohSender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    /// Cloneable: every clone sends on the same connection, one stream per query.
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl DohSender {
    /// Sends when the connection can take a request. HTTP/2 wants the absolute URI (its
    /// `:scheme` and `:authority`); HTTP/1.1 the path and a `Host` header.
    async fn send(
        &mut self,
        authority: &str,
        path: &str,
        body: Full<Bytes>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let req = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/dns-message")
            .header(http::header::ACCEPT, "application/dns-message");
        Ok(match self {
            Self::Http1(s) => {
                let req = req.header(http::header::HOST, authority).body(body)?;
                s.ready().await?;
                s.send_request(req).await?
            }
            Self::Http2(s) => {
                let mut req = req.body(body)?;
                *req.uri_mut() = format!("https://{authority}{path}").parse()?;
                *req.version_mut() = http::Version::HTTP_2;
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }
}

/// Idle HTTP/1.1 connections kept per resolver: a resolver, unlike a target, is a long-lived
/// peer (browsers keep their DoH connection open), and the default controls are DoH.
const DOH_IDLE: usize = 32;

/// Open connections to one DoH server: one HTTP/2 connection that every lookup shares, or
/// idle keep-alive HTTP/1.1 ones that a lookup takes for itself.
#[derive(Default)]
struct DohPool(std::sync::Mutex<DohIdle>);

#[derive(Default)]
struct DohIdle {
    http2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    http1: Vec<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl DohPool {
    fn take(&self) -> Option<DohSender> {
        let mut idle = self.0.lock().expect("doh pool lock");
        match &idle.http2 {
            Some(s) if !s.is_closed() => return Some(DohSender::Http2(s.clone())),
            Some(_) => idle.http2 = None,
            None => {}
        }
        while let Some(s) = idle.http1.pop() {
            if !s.is_closed() {
                return Some(DohSender::Http1(s));
            }
        }
        None
    }

    fn give(&self, s: DohSender) {
        let mut idle = self.0.lock().expect("doh pool lock");
        match s {
            DohSender::Http1(s) if !s.is_closed() && idle.http1.len() < DOH_IDLE => {
                idle.http1.push(s);
            }
            DohSender::Http2(s)
                if !s.is_closed() && idle.http2.as_ref().is_none_or(|p| p.is_closed()) =>
            {
                idle.http2 = Some(s);
            }
            // Closed, or one too many: dropping the last sender ends its connection.
            _ => {}
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
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = hyper_util::rt::TokioIo::new(tls);
    // The connection lives as long as a sender for it does (in use or idle in the pool).
    Ok(if http2 {
        let exec = hyper_util::rt::TokioExecutor::new();
        let (sender, conn) = hyper::client::conn::http2::handshake(exec, io).await?;
        tokio::spawn(conn);
        DohSender::Http2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        DohSender::Http1(sender)
    })
}

/// One POST of `application/dns-message`. `Err` only when the connection itself failed.
async fn doh_query(
    sender: &mut DohSender,
    authority: &str,
    path: &str,
    query: &WireQuery,
    start: Instant,
) -> anyhow::Result<QueryObservation> {
    let body = Full::new(Bytes::copy_from_slice(&query.wire));
    let resp = sender.send(authority, path, body).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_DOH_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading DoH body: {e}"))?
        .to_bytes();
    let qtype = query.qtype;
    Ok(if !status.is_success() {
        QueryObservation::failed(
            qtype,
            Failure::new(
                FailureKind::Http,
                format!("DoH server answered HTTP {status}"),
            ),
        )
    } else {
        match query.parse(&body, start.elapsed()) {
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

/// Both queries on one connection: at once on HTTP/2 (two streams), one after the other on
/// HTTP/1.1. `Err` when the A query's connection failed; an AAAA failure is its observation.
async fn doh_both(
    sender: &mut DohSender,
    authority: &str,
    path: &str,
    queries: &[WireQuery; 2],
    start: Instant,
) -> anyhow::Result<[QueryObservation; 2]> {
    let (a, aaaa) = if let DohSender::Http2(s) = sender {
        let (mut one, mut two) = (DohSender::Http2(s.clone()), DohSender::Http2(s.clone()));
        tokio::join!(
            doh_query(&mut one, authority, path, &queries[0], start),
            doh_query(&mut two, authority, path, &queries[1], start),
        )
    } else {
        let a = doh_query(sender, authority, path, &queries[0], start).await?;
        let aaaa = doh_query(sender, authority, path, &queries[1], start).await;
        (Ok(a), aaaa)
    };
    let aaaa = aaaa.unwrap_or_else(|e| {
        QueryObservation::failed(RecordType::AAAA, Failure::from_error(e.as_ref()))
    });
    Ok([a?, aaaa])
}

/// RFC 8484: the two queries on a pooled connection (a fresh one when the pool has none, or
/// when a pooled one turns out to be dead).
async fn doh_exchange(
    (host, port, path): (&str, u16, &str),
    config: Arc<rustls::ClientConfig>,
    pool: &DohPool,
    queries: &[WireQuery; 2],
    start: Instant,
) -> anyhow::Result<[QueryObservation; 2]> {
    let authority = if port == 443 {
        host.to_owned()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let pooled = pool.take();
    let reused = pooled.is_some();
    let mut sender = match pooled {
        Some(s) => s,
        None => doh_connect(host, port, config.clone()).await?,
    };
    let obs = match doh_both(&mut sender, &authority, path, queries, start).await {
        Ok(obs) => obs,
        Err(_) if reused => {
            // The server closed the idle connection under us: that is not an observation.
            sender = doh_connect(host, port, config).await?;
            doh_both(&mut sender, &authority, path, queries, start).await?
        }
        Err(e) => return Err(e),
    };
    pool.give(sender);
    Ok(obs)
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
                    response_from_records(rcode.into(), records, false, elapsed),
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
    use hickory_proto::op::Query;

    fn resp(rcode: Rcode, answers: &[&str]) -> DnsResponse {
        DnsResponse {
            rcode,
            answers: answers.iter().map(|a| a.parse().unwrap()).collect(),
            cnames: vec![],
            truncated: false,
            elapsed: Duration::ZERO,
            send: 1,
        }
    }

    /// Only two different answers to the same datagram are injection; the answers to a
    /// query's retransmissions (each its own id) may differ, as a rotating CDN's do.
    #[test]
    fn injection_compares_answers_to_the_same_datagram() {
        let at = |send: u8, a: &[&str]| DnsResponse {
            send,
            ..resp(Rcode::from(ResponseCode::NoError), a)
        };
        let q = |responses| QueryObservation {
            qtype: "A",
            responses,
            failure: None,
            sent: 2,
        };
        let rotating = q(vec![at(1, &["192.0.2.1"]), at(2, &["192.0.2.2"])]);
        assert_eq!(rotating.injected().count(), 0);
        let forged = q(vec![
            at(1, &["10.0.0.1"]),
            at(2, &["192.0.2.2"]),
            at(1, &["192.0.2.1"]),
        ]);
        let injected: Vec<_> = forged.injected().collect();
        assert_eq!(injected.len(), 1);
        assert_eq!(
            injected[0].answers,
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        let duplicate = q(vec![at(1, &["192.0.2.1"]), at(1, &["192.0.2.1"])]);
        assert_eq!(duplicate.injected().count(), 0);
    }

    #[test]
    fn injected_means_a_later_response_disagrees() {
        let mut q = QueryObservation {
            qtype: "A",
            responses: vec![
                resp(Rcode::NoError, &["1.2.3.4"]),
                resp(Rcode::NoError, &["1.2.3.4"]),
            ],
            failure: None,
            sent: 1,
        };
        assert_eq!(q.injected().count(), 0, "a duplicate is not an injection");
        q.responses.push(resp(Rcode::NoError, &["10.0.0.1"]));
        assert_eq!(q.injected().count(), 1);
    }

    #[test]
    fn encoded_queries_match_hickory() {
        use hickory_proto::op::{Edns, OpCode};
        for name in [
            "example.com",
            "a.b.c.d.example.org",
            "xn--80ak6aa92e.com",
            "Mixed.Case.net",
            "x",
        ] {
            let fqdn = Name::from_ascii(format!("{name}.")).unwrap();
            for qtype in [RecordType::A, RecordType::AAAA] {
                let mut msg = Message::new(0x1234, MessageType::Query, OpCode::Query);
                msg.metadata.recursion_desired = true;
                msg.add_query(Query::query(fqdn.clone(), qtype));
                let mut edns = Edns::new();
                edns.set_max_payload(EDNS_PAYLOAD);
                msg.edns = Some(edns);
                assert_eq!(
                    encode_query(0x1234, &fqdn, qtype),
                    msg.to_vec().unwrap(),
                    "{name} {qtype}"
                );
            }
        }
    }

    #[test]
    fn queries_round_trip_through_the_parser() {
        let [a, aaaa] = build_queries("example.com").unwrap();
        let mut msg = Message::from_vec(&a.wire).unwrap();
        msg.metadata.message_type = MessageType::Response;
        msg.metadata.response_code = ResponseCode::NXDomain;
        let back = msg.to_vec().unwrap();
        let r = a.parse(&back, Duration::ZERO).unwrap();
        assert_eq!(r.rcode, "NXDOMAIN");
        assert!(aaaa.parse(&back, Duration::ZERO).is_none(), "another id");
    }

    /// Issue 11, item 14: only a response that echoes our question answers it.
    #[test]
    fn a_response_must_echo_the_question() {
        let [a, _] = build_queries("Example.com").unwrap();
        let answer = |edit: &dyn Fn(&mut Message)| {
            let mut msg = Message::from_vec(&a.wire).unwrap();
            msg.metadata.message_type = MessageType::Response;
            edit(&mut msg);
            a.parse(&msg.to_vec().unwrap(), Duration::ZERO)
        };
        let question = |name: &str, qtype: RecordType, class: DNSClass| {
            let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
            q.set_query_class(class);
            q
        };
        let with = |q: Query| move |m: &mut Message| m.queries = vec![q.clone()];
        assert!(answer(&|_| {}).is_some(), "our own question");
        let upper = with(question("EXAMPLE.COM.", RecordType::A, DNSClass::IN));
        assert!(answer(&upper).is_some(), "names compare case-insensitively");
        let other = with(question("other.com.", RecordType::A, DNSClass::IN));
        assert!(answer(&other).is_none(), "another name");
        let sub = with(question("www.example.com.", RecordType::A, DNSClass::IN));
        assert!(answer(&sub).is_none(), "a subdomain is another name");
        let aaaa = with(question("example.com.", RecordType::AAAA, DNSClass::IN));
        assert!(answer(&aaaa).is_none(), "another type");
        let chaos = with(question("example.com.", RecordType::A, DNSClass::CH));
        assert!(answer(&chaos).is_none(), "another class");
        let two = |m: &mut Message| {
            m.queries
                .push(question("other.com.", RecordType::A, DNSClass::IN));
        };
        assert!(answer(&two).is_none(), "a second question");
        let bare = |m: &mut Message| m.queries.clear();
        assert!(answer(&bare).is_none(), "NOERROR without a question");
        let refused = |m: &mut Message| {
            m.queries.clear();
            m.metadata.response_code = ResponseCode::Refused;
        };
        assert_eq!(answer(&refused).unwrap().rcode, "REFUSED");
        let query = |m: &mut Message| m.metadata.message_type = MessageType::Query;
        assert!(answer(&query).is_none(), "a query is not a response");
    }
}

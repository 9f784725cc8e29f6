//! The DNS step against hostile resolvers (issue 11, items 8 and 14): raw sockets in the test
//! that answer with what a well-behaved server never sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use blockprobe::probe::dns::{DnsClient, DnsObservation, Rcode};
use blockprobe::probe::failure::FailureKind;
use blockprobe::resolver_spec::ResolverSpec;
use blockprobe::tls::TlsConfigs;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::support::ip;

/// What the hostile server does with one query.
enum Reply {
    /// Send these messages, in order.
    Send(Vec<Message>),
    /// Say nothing; over TCP, also keep the connection open.
    Hold,
}

type Handler = fn(&Message) -> Reply;

/// A resolver on one loopback port, UDP and TCP, run by two handlers. Queries are counted.
struct Hostile {
    addr: SocketAddr,
    udp_hits: Arc<AtomicU64>,
    tcp_hits: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Hostile {
    async fn start(udp: Handler, tcp: Handler) -> Self {
        // Same port for both; with port 0 the UDP pick may be taken for TCP: try again.
        let (sock, listener) = loop {
            let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(l) = TcpListener::bind(sock.local_addr().unwrap()).await {
                break (sock, l);
            }
        };
        let addr = sock.local_addr().unwrap();
        let udp_hits = Arc::new(AtomicU64::new(0));
        let tcp_hits = Arc::new(AtomicU64::new(0));
        let hits = udp_hits.clone();
        let serve_udp = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..n]).unwrap();
                hits.fetch_add(1, Ordering::Relaxed);
                if let Reply::Send(msgs) = udp(&query) {
                    for m in msgs {
                        sock.send_to(&m.to_vec().unwrap(), peer).await.unwrap();
                    }
                }
            }
        });
        let hits = tcp_hits.clone();
        let serve_tcp = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let hits = hits.clone();
                tokio::spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut wire = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        s.read_exact(&mut wire).await.unwrap();
                        hits.fetch_add(1, Ordering::Relaxed);
                        match tcp(&Message::from_vec(&wire).unwrap()) {
                            Reply::Send(msgs) => {
                                for m in msgs {
                                    let m = m.to_vec().unwrap();
                                    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
                                    framed.extend_from_slice(&m);
                                    s.write_all(&framed).await.unwrap();
                                }
                            }
                            // Hold the connection: it lives as long as this task.
                            Reply::Hold => std::future::pending::<()>().await,
                        }
                    }
                });
            }
        });
        Self {
            addr,
            udp_hits,
            tcp_hits,
            tasks: vec![serve_udp, serve_tcp],
        }
    }

    async fn lookup(&self, spec: ResolverSpec, timeout: Duration, name: &str) -> DnsObservation {
        let c = DnsClient::new(
            spec,
            TlsConfigs::new(None).unwrap(),
            timeout,
            Duration::ZERO,
        )
        .unwrap();
        c.lookup(name).await
    }
}

/// The response a correct server would start from: our id, our question.
fn response_to(query: &Message) -> Message {
    let mut r = Message::response(query.metadata.id, query.metadata.op_code);
    r.metadata.message_type = MessageType::Response;
    r.metadata.recursion_desired = true;
    r.metadata.recursion_available = true;
    r.queries = query.queries.clone();
    r
}

fn qtype(query: &Message) -> RecordType {
    query.queries[0].query_type()
}

/// `n` distinct A records for the query's name (AAAA queries get NODATA).
fn with_a_records(query: &Message, n: u32) -> Message {
    let mut r = response_to(query);
    if qtype(query) == RecordType::A {
        let owner = query.queries[0].name().clone();
        for i in 0..n {
            let addr = std::net::Ipv4Addr::from(0x7f00_0000 + 0x100 + i);
            r.answers
                .push(Record::from_rdata(owner.clone(), 60, RData::A(A(addr))));
        }
    }
    r
}

fn hold(_: &Message) -> Reply {
    Reply::Hold
}

/// Issue 11, item 8: a timeout of a few nanoseconds against a silent resolver used to schedule
/// retransmissions back to back, forever. The lookup must end, as a timeout, with at most the
/// usual three sends per query. The guard is generous: it catches a loop, it does not time one.
#[tokio::test]
async fn a_nanosecond_timeout_against_a_silent_resolver_ends() {
    let silent = Hostile::start(hold, hold).await;
    for timeout in [Duration::from_nanos(1), Duration::from_nanos(2)] {
        let lookup = silent.lookup(ResolverSpec::Udp(silent.addr), timeout, "ok.test");
        let o = tokio::time::timeout(Duration::from_secs(10), lookup)
            .await
            .unwrap_or_else(|_| panic!("a {timeout:?} lookup did not end"));
        assert_eq!(o.failure().unwrap().kind, FailureKind::Timeout, "{o:#?}");
        assert!(o.a.sent <= 3 && o.aaaa.sent <= 3, "{o:#?}");
    }
}

/// Retransmissions stay bounded however the timeout divides: three sends per query at most.
#[tokio::test]
async fn udp_sends_each_query_at_most_three_times() {
    let silent = Hostile::start(hold, hold).await;
    let o = silent
        .lookup(
            ResolverSpec::Udp(silent.addr),
            Duration::from_millis(300),
            "ok.test",
        )
        .await;
    assert_eq!(o.failure().unwrap().kind, FailureKind::Timeout, "{o:#?}");
    assert!(o.a.sent <= 3 && o.aaaa.sent <= 3, "{o:#?}");
    assert_eq!(
        silent.udp_hits.load(Ordering::Relaxed),
        u64::from(o.a.sent + o.aaaa.sent)
    );
}

/// Issue 11, item 14: an empty truncated UDP answer whose TCP retry never answers is a
/// timeout, not NODATA. The truncated response stays as evidence.
#[tokio::test]
async fn a_truncated_answer_whose_tcp_retry_hangs_is_a_timeout() {
    fn truncated(q: &Message) -> Reply {
        let mut r = response_to(q);
        r.metadata.truncation = true;
        Reply::Send(vec![r])
    }
    let server = Hostile::start(truncated, hold).await;
    let o = server
        .lookup(
            ResolverSpec::Udp(server.addr),
            Duration::from_millis(300),
            "big.test",
        )
        .await;
    assert_eq!(
        o.rcode(),
        None,
        "a truncated answer is not an answer: {o:#?}"
    );
    assert_eq!(o.failure().unwrap().kind, FailureKind::Timeout, "{o:#?}");
    assert!(o.a.responses[0].truncated, "{o:#?}");
    assert!(o.addresses().is_empty());
    assert_eq!(
        server.tcp_hits.load(Ordering::Relaxed),
        2,
        "both retried over TCP"
    );
}

/// Issue 11, item 14: an answer larger than the old 4 KiB receive buffer (the server ignores
/// the advertised EDNS size) arrives whole.
#[tokio::test]
async fn an_answer_larger_than_4_kib_arrives_over_udp() {
    fn big(q: &Message) -> Reply {
        Reply::Send(vec![with_a_records(q, 400)])
    }
    let server = Hostile::start(big, hold).await;
    let o = server
        .lookup(
            ResolverSpec::Udp(server.addr),
            Duration::from_millis(500),
            "big.test",
        )
        .await;
    assert_eq!(o.a.failure, None, "{:#?}", o.a.failure);
    assert_eq!(o.a.responses.len(), 1);
    assert_eq!(o.a.responses[0].answers.len(), 400);
    assert_eq!(o.aaaa.first().unwrap().rcode, "NOERROR");
    assert_eq!(o.addresses().len(), 400);
}

/// Another name's answer with our id, sent first: forged answers for a different name (or a
/// confused resolver) must not be taken as ours.
fn other_name_first(q: &Message) -> Reply {
    let mut forged = with_a_records(q, 0);
    let mut question = Query::query(Name::from_ascii("elsewhere.test.").unwrap(), qtype(q));
    question.set_query_class(q.queries[0].query_class());
    forged.queries = vec![question];
    if qtype(q) == RecordType::A {
        forged.answers.push(Record::from_rdata(
            Name::from_ascii("elsewhere.test.").unwrap(),
            60,
            RData::A(A("10.66.66.66".parse().unwrap())),
        ));
    }
    // The same question with the name's case changed is still ours (0x20 randomisation).
    let mut real = with_a_records(q, 1);
    let upper = Name::from_ascii(q.queries[0].name().to_ascii().to_uppercase()).unwrap();
    real.queries[0].set_name(upper);
    Reply::Send(vec![forged, real])
}

/// Another type's answer for our name, with our id, sent first.
fn other_type_first(q: &Message) -> Reply {
    let mut forged = with_a_records(q, 0);
    forged.metadata.response_code = ResponseCode::NXDomain;
    let other = if qtype(q) == RecordType::A {
        RecordType::MX
    } else {
        RecordType::TXT
    };
    forged.queries[0].set_query_type(other);
    Reply::Send(vec![forged, with_a_records(q, 1)])
}

/// Issue 11, item 14: an answer whose question is not ours is ignored, and the client keeps
/// listening (UDP) or reading (TCP) for the real one.
#[tokio::test]
async fn an_answer_to_another_question_is_ignored() {
    for handler in [other_name_first as Handler, other_type_first] {
        let server = Hostile::start(handler, handler).await;
        for spec in [
            ResolverSpec::Udp(server.addr),
            ResolverSpec::Tcp(server.addr),
        ] {
            let o = server
                .lookup(spec.clone(), Duration::from_millis(500), "ok.test")
                .await;
            assert_eq!(o.a.responses.len(), 1, "{spec}: {o:#?}");
            assert_eq!(o.a.responses[0].answers, vec![ip("127.0.1.0")], "{spec}");
            assert_eq!(o.aaaa.responses.len(), 1, "{spec}: {o:#?}");
            assert_eq!(o.rcode(), Some(Rcode::NoError), "{spec}");
            assert!(o.injected_addresses().is_none(), "{spec}: {o:#?}");
        }
    }
}

/// Issue 14: a slow resolver that answers both copies of a retransmitted query, each with other
/// (rotating, CDN-like) addresses, is not a censor injecting: every datagram of a query carries
/// an id of its own, and only two different answers to the same datagram are injection. With
/// one id for both copies, the second answer "disagreed" with the first: a false `dns.injected`.
#[tokio::test]
async fn a_slow_resolver_rotating_addresses_over_retransmissions_is_not_injection() {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let serve = sock.clone();
    let server = tokio::spawn(async move {
        let rotation = Arc::new(AtomicU64::new(0));
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = serve.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..n]).unwrap();
            let slow = query.queries[0].name().to_ascii().starts_with("cdn.");
            let mut r = response_to(&query);
            if qtype(&query) == RecordType::A {
                let i = rotation.fetch_add(1, Ordering::Relaxed) as u32;
                let owner = query.queries[0].name().clone();
                let a = std::net::Ipv4Addr::from(0x7f00_0000 + 0x200 + i);
                r.answers
                    .push(Record::from_rdata(owner, 60, RData::A(A(a))));
            }
            let (sock, wire) = (serve.clone(), r.to_vec().unwrap());
            tokio::spawn(async move {
                if slow {
                    // A recursive resolver's cold lookup: slower than the retransmission
                    // timeout learnt from the quick answers (at least 500 ms).
                    tokio::time::sleep(Duration::from_millis(900)).await;
                }
                sock.send_to(&wire, peer).await.unwrap();
            });
        }
    });
    let c = DnsClient::new(
        ResolverSpec::Udp(addr),
        TlsConfigs::new(None).unwrap(),
        Duration::from_secs(30),
        // A window long enough to hear both copies answered.
        Duration::from_secs(2),
    )
    .unwrap();
    let warm = c.lookup("ok.test").await;
    assert!(warm.failure().is_none(), "{warm:#?}");
    let o = c.lookup("cdn.test").await;
    server.abort();
    assert!(o.a.sent >= 2, "retransmitted: {o:#?}");
    assert!(o.a.responses.len() >= 2, "both copies answered: {o:#?}");
    let sends: std::collections::BTreeSet<u8> = o.a.responses.iter().map(|r| r.send).collect();
    assert!(sends.len() >= 2, "each answer names its datagram: {o:#?}");
    assert_eq!(o.injected_addresses(), None, "{o:#?}");
}

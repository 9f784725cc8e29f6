//! Table tests of the classifier: evidence in, verdict and reason out, no sockets.

use std::time::Duration;

use blockprobe::classify::{ControlDns, ControlObservation, Evidence, Rules, classify};
use blockprobe::net::is_reserved as is_bogon;
use blockprobe::probe::dns::{DnsObservation, DnsResponse, QueryObservation};
use blockprobe::probe::failure::{Failure, FailureKind};
use blockprobe::verdict::{Layer, Reason, Verdict};

use crate::support::ip;

/// A response with an rcode and addresses.
fn resp(rcode: &str, addrs: &[&str]) -> DnsResponse {
    DnsResponse {
        rcode: rcode.into(),
        answers: addrs.iter().map(|a| ip(a)).collect(),
        cnames: vec![],
        truncated: false,
        elapsed: Duration::from_millis(5),
        send: 1,
    }
}

fn query(
    qtype: &'static str,
    responses: Vec<DnsResponse>,
    failure: Option<FailureKind>,
) -> QueryObservation {
    QueryObservation {
        qtype,
        responses,
        failure: failure.map(|k| Failure::new(k, "test")),
        sent: 1,
    }
}

/// Vantage evidence shorthand: `A` responses (the AAAA query gets NODATA unless failing).
enum V {
    Answer(&'static str, &'static [&'static str]),
    Fail(FailureKind),
    Injected(&'static [&'static str], &'static [&'static str]),
    /// Both queries: an empty truncated UDP response, then the TCP retry failed.
    TruncatedThen(FailureKind),
    /// The A query failed; AAAA says NOERROR with no address.
    AFailedAaaaEmpty(FailureKind),
}

fn obs(v: &V) -> DnsObservation {
    let (a, aaaa) = match v {
        V::Answer(rcode, addrs) => (
            query("A", vec![resp(rcode, addrs)], None),
            query("AAAA", vec![resp(rcode, &[])], None),
        ),
        V::Fail(k) => (
            query("A", vec![], Some(*k)),
            query("AAAA", vec![], Some(*k)),
        ),
        V::Injected(first, second) => (
            query(
                "A",
                vec![resp("NOERROR", first), resp("NOERROR", second)],
                None,
            ),
            query("AAAA", vec![resp("NOERROR", &[])], None),
        ),
        V::TruncatedThen(k) => {
            let truncated = DnsResponse {
                truncated: true,
                ..resp("NOERROR", &[])
            };
            (
                query("A", vec![truncated.clone()], Some(*k)),
                query("AAAA", vec![truncated], Some(*k)),
            )
        }
        V::AFailedAaaaEmpty(k) => (
            query("A", vec![], Some(*k)),
            query("AAAA", vec![resp("NOERROR", &[])], None),
        ),
    };
    DnsObservation {
        transport: "udp",
        server: "127.0.0.1:53".into(),
        a,
        aaaa,
        elapsed: Duration::from_millis(5),
    }
}

fn control(v: Option<&V>) -> Option<std::sync::Arc<ControlDns>> {
    v.map(|v| {
        std::sync::Arc::new(ControlDns {
            resolvers: vec![ControlObservation {
                resolver: "ctl".into(),
                dns: obs(v),
            }],
        })
    })
}

const PUBLIC: &[&str] = &["93.184.216.34"];

/// (row name, vantage, control, vantage healthy, expected verdict, expected reason)
type Row = (&'static str, V, Option<V>, bool, Verdict, Option<Reason>);

#[test]
fn dns_table() {
    use V::*;
    use Verdict::*;
    let rows: &[Row] = &[
        (
            "agree",
            Answer("NOERROR", PUBLIC),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Reachable,
            None,
        ),
        (
            "overlap is enough",
            Answer("NOERROR", &["93.184.216.34", "1.1.1.1"]),
            Some(Answer("NOERROR", &["93.184.216.34"])),
            true,
            Reachable,
            None,
        ),
        (
            "nxdomain",
            Answer("NXDOMAIN", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsNxdomain),
        ),
        (
            "nodata",
            Answer("NOERROR", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsNodata),
        ),
        (
            "servfail",
            Answer("SERVFAIL", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsServfail),
        ),
        (
            "refused",
            Answer("REFUSED", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsRefused),
        ),
        (
            "timeout",
            Fail(FailureKind::Timeout),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsTimeout),
        ),
        (
            "reset",
            Fail(FailureKind::Reset),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsReset),
        ),
        (
            "eof",
            Fail(FailureKind::Eof),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsReset),
        ),
        (
            // Issue 11, item 14: the empty truncated answer is no NODATA.
            "truncated, then the TCP retry timed out",
            TruncatedThen(FailureKind::Timeout),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsTimeout),
        ),
        (
            "truncated, then the TCP retry was reset",
            TruncatedThen(FailureKind::Reset),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsReset),
        ),
        (
            // Issue 11, item 14: a lost A answer next to an empty AAAA is no NODATA.
            "A timed out, AAAA empty",
            AFailedAaaaEmpty(FailureKind::Timeout),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsTimeout),
        ),
        (
            "timeout at a resolver that fails canaries",
            Fail(FailureKind::Timeout),
            Some(Answer("NOERROR", PUBLIC)),
            false,
            Inconclusive,
            None,
        ),
        (
            "nxdomain at a resolver that fails canaries",
            Answer("NXDOMAIN", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            false,
            Inconclusive,
            None,
        ),
        (
            "a certificate failure is not a censorship signature",
            Fail(FailureKind::Certificate),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Inconclusive,
            None,
        ),
        (
            "formerr",
            Answer("FORMERR", &[]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Inconclusive,
            None,
        ),
        (
            "bogon",
            Answer("NOERROR", &["10.99.34.35"]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsBogon),
        ),
        (
            "issue 10: a known block-page address (DNS fingerprint)",
            Answer("NOERROR", &["10.10.34.35"]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsBlockpage),
        ),
        (
            "issue 10: a block-page address outranks the controls' NXDOMAIN",
            Answer("NOERROR", &["10.10.34.34"]),
            Some(Answer("NXDOMAIN", &[])),
            true,
            Blocked,
            Some(Reason::DnsBlockpage),
        ),
        (
            "loopback that the control also returns is consistent",
            Answer("NOERROR", &["127.0.0.5"]),
            Some(Answer("NOERROR", &["127.0.0.5"])),
            true,
            Reachable,
            None,
        ),
        (
            "loopback for a public name is a bogon",
            Answer("NOERROR", &["127.0.0.1"]),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsBogon),
        ),
        (
            "on a loopback network another loopback address is a lie, not a bogon",
            Answer("NOERROR", &["127.0.0.1"]),
            Some(Answer("NOERROR", &["127.0.0.5"])),
            true,
            Blocked,
            Some(Reason::DnsInconsistent),
        ),
        (
            "disjoint public answers",
            Answer("NOERROR", &["1.2.3.5"]),
            Some(Answer("NOERROR", &["5.6.7.8"])),
            true,
            Blocked,
            Some(Reason::DnsInconsistent),
        ),
        (
            "injected",
            Injected(&["10.0.0.1"], PUBLIC),
            Some(Answer("NOERROR", PUBLIC)),
            true,
            Blocked,
            Some(Reason::DnsInjected),
        ),
        (
            "missing everywhere",
            Answer("NXDOMAIN", &[]),
            Some(Answer("NXDOMAIN", &[])),
            true,
            Down,
            None,
        ),
        (
            "nodata everywhere",
            Answer("NOERROR", &[]),
            Some(Answer("NOERROR", &[])),
            true,
            Down,
            None,
        ),
        (
            "vantage answers but controls are missing it",
            Answer("NOERROR", PUBLIC),
            Some(Answer("NXDOMAIN", &[])),
            true,
            Down,
            None,
        ),
        (
            "no control answered a failure",
            Answer("NXDOMAIN", &[]),
            Some(Fail(FailureKind::Timeout)),
            true,
            Inconclusive,
            None,
        ),
        (
            "no control answered a success",
            Answer("NOERROR", PUBLIC),
            Some(Fail(FailureKind::Timeout)),
            true,
            Inconclusive,
            None,
        ),
        (
            "control servfail is not missing",
            Answer("NXDOMAIN", &[]),
            Some(Answer("SERVFAIL", &[])),
            true,
            Inconclusive,
            None,
        ),
        (
            "no controls configured",
            Answer("NOERROR", PUBLIC),
            None,
            true,
            Inconclusive,
            None,
        ),
    ];
    for (name, v, c, healthy, verdict, reason) in rows {
        let f = classify(
            Evidence {
                dns: Some(obs(v)),
                control: control(c.as_ref()),
                resolver_healthy: *healthy,
                conn: None,
                tries: vec![],
                baseline: vec![],
            },
            &Rules::default(),
            Layer::Tls,
        );
        assert_eq!(
            (f.verdict, f.reason),
            (*verdict, *reason),
            "row `{name}`: {}",
            f.detail
        );
        assert!(!f.detail.is_empty(), "row `{name}` has no detail");
    }
}

#[test]
fn an_ip_target_has_no_dns_verdict() {
    let f = classify(
        Evidence {
            dns: None,
            control: None,
            resolver_healthy: true,
            conn: None,
            tries: vec![],
            baseline: vec![],
        },
        &Rules::default(),
        Layer::Tls,
    );
    assert_eq!(f.verdict, Verdict::Inconclusive);
    assert_eq!(f.reason, None);
}

#[test]
fn bogon_ranges() {
    for b in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "0.0.0.0",
        "169.254.1.1",
        "100.64.0.1",
        "198.18.0.1",
        "240.0.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "192.0.2.1",
    ] {
        assert!(is_bogon(ip(b)), "{b}");
    }
    for p in [
        "93.184.216.34",
        "1.1.1.1",
        "100.128.0.1",
        "2606:4700::1111",
        "172.32.0.1",
    ] {
        assert!(!is_bogon(ip(p)), "{p}");
    }
}

//! Table tests of the connection-layer classifier: synthetic paths in, verdicts out.

use std::time::Duration;

use blockprobe::classify::{
    Conn, ControlDns, ControlObservation, Evidence, PathEvidence, Rules, classify,
};
use blockprobe::probe::dns::{DnsObservation, DnsResponse, QueryObservation};
use blockprobe::probe::failure::{Failure, FailureKind as K};
use blockprobe::probe::http::{HttpObservation, Transfer};
use blockprobe::probe::path::{Hop, PathObservation};
use blockprobe::probe::tcp::{AddrSource, TcpAttempt};
use blockprobe::probe::tls::TlsObservation;
use blockprobe::verdict::{Layer, Verdict};

fn dns(addrs: &[&str]) -> DnsObservation {
    let q = |qtype| QueryObservation {
        qtype,
        responses: vec![DnsResponse {
            rcode: "NOERROR".into(),
            answers: if qtype == "A" {
                addrs.iter().map(|a| a.parse().unwrap()).collect()
            } else {
                vec![]
            },
            cnames: vec![],
            truncated: false,
            elapsed: Duration::ZERO,
            send: 1,
        }],
        failure: None,
        sent: 1,
    };
    DnsObservation {
        transport: "udp",
        server: "x".into(),
        a: q("A"),
        aaaa: q("AAAA"),
        elapsed: Duration::ZERO,
    }
}

/// A path shorthand: how far it got.
#[derive(Clone)]
enum P {
    Tcp(K),
    Tls(K, Option<bool>),
    /// The target's SNI and the decoy both fail this way, before any byte came back.
    TlsBoth(K),
    Cert(&'static str),
    HttpFail(K),
    Stall(u64),
    Body {
        status: u16,
        title: &'static str,
        bytes: u64,
        rate: f64,
        timed_out: bool,
    },
    Loop,
}

fn tls_obs(ok: bool, kind: Option<K>, verified: Option<bool>) -> TlsObservation {
    TlsObservation {
        sni: "t.example".into(),
        ok,
        version: None,
        alpn: None,
        certs: vec![],
        verified,
        cert_error: (verified == Some(false)).then(|| "UnknownIssuer".into()),
        failure: kind.map(|k| Failure::new(k, "x")),
        phase: None,
        elapsed: Duration::ZERO,
    }
}

#[allow(clippy::too_many_arguments)] // a test builder: one argument per field under test
fn http_obs(
    status: Option<u16>,
    title: &str,
    body: &str,
    bytes: u64,
    rate: f64,
    failure: Option<K>,
    stalled: Option<u64>,
    timed_out: bool,
) -> HttpObservation {
    HttpObservation {
        url: "https://t.example/".into(),
        status,
        headers: Default::default(),
        title: (!title.is_empty()).then(|| title.to_owned()),
        body_sha256: None,
        transfer: Transfer {
            bytes,
            throughput_bps: Some(rate),
            stalled_at: stalled,
            complete: failure.is_none() && stalled.is_none() && !timed_out,
            timed_out,
            ..Transfer::default()
        },
        failure: failure.map(|k| Failure::new(k, "x")),
        elapsed: Duration::ZERO,
        head: body.as_bytes().to_vec(),
        raw_headers: Vec::new(),
    }
}

fn path(p: &P, tls_port: bool) -> PathObservation {
    let tcp_ok = |ok: bool, k: Option<K>| {
        vec![TcpAttempt {
            addr: "93.184.216.34:443".parse().unwrap(),
            source: AddrSource::Vantage,
            ok,
            failure: k.map(|k| Failure::new(k, "x")),
            elapsed: Duration::ZERO,
        }]
    };
    let verified = tls_port.then(|| tls_obs(true, None, Some(true)));
    let mut hop = Hop {
        url: "https://t.example/".into(),
        dns: None,
        tcp: tcp_ok(true, None),
        tls: verified,
        decoy_tls: None,
        http: None,
        decoy_http: None,
        wire_bytes_in: 0,
        downgrade: false,
        refused_redirect: None,
    };
    let mut exhausted = false;
    match p {
        P::Tcp(k) => {
            hop.tcp = tcp_ok(false, Some(*k));
            hop.tls = None;
        }
        P::Tls(k, decoy) => {
            hop.tls = Some(tls_obs(false, Some(*k), None));
            hop.decoy_tls = decoy.map(|ok| tls_obs(ok, None, None));
        }
        P::TlsBoth(k) => {
            hop.tls = Some(tls_obs(false, Some(*k), None));
            hop.decoy_tls = Some(tls_obs(false, Some(*k), None));
        }
        P::Cert(body) => {
            hop.tls = Some(tls_obs(true, None, Some(false)));
            hop.http = Some(http_obs(
                Some(200),
                "",
                body,
                body.len() as u64,
                1e7,
                None,
                None,
                false,
            ));
        }
        P::HttpFail(k) => hop.http = Some(http_obs(None, "", "", 0, 0.0, Some(*k), None, false)),
        P::Stall(at) => {
            hop.http = Some(http_obs(
                Some(200),
                "",
                "",
                *at,
                1e5,
                None,
                Some(*at),
                false,
            ))
        }
        P::Body {
            status,
            title,
            bytes,
            rate,
            timed_out,
        } => {
            let body = format!("<title>{title}</title>");
            hop.http = Some(http_obs(
                Some(*status),
                title,
                &body,
                *bytes,
                *rate,
                None,
                None,
                *timed_out,
            ));
        }
        P::Loop => {
            hop.http = Some(http_obs(Some(302), "", "", 0, 1e7, None, None, false));
            exhausted = true;
        }
    }
    PathObservation {
        hops: vec![hop],
        redirects_exhausted: exhausted,
    }
}

/// Evidence: the vantage answers `vantage_addr`, the control `93.184.216.34`.
fn evidence(
    vantage_addr: &str,
    direct: PathObservation,
    control_path: Option<PathObservation>,
) -> Evidence {
    Evidence {
        dns: Some(dns(&[vantage_addr])),
        control: Some(std::sync::Arc::new(ControlDns {
            resolvers: vec![ControlObservation {
                resolver: "c".into(),
                dns: dns(&["93.184.216.34"]),
            }],
        })),
        resolver_healthy: true,
        conn: Some(Conn::Path(PathEvidence {
            direct,
            control_path,
            consistency: None,
        })),
        tries: vec![],
        baseline: vec![],
    }
}

const PAGE: P = P::Body {
    status: 200,
    title: "Home",
    bytes: 300_000,
    rate: 5e7,
    timed_out: false,
};

type Row = (
    &'static str,
    P,
    Option<P>,
    Layer,
    Verdict,
    Option<&'static str>,
);

#[test]
fn connection_table() {
    use Verdict::*;
    let rows: Vec<Row> = vec![
        (
            "tcp timeout, control ok",
            P::Tcp(K::Timeout),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tcp.timeout"),
        ),
        (
            "tcp refused, control ok",
            P::Tcp(K::Refused),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tcp.refused"),
        ),
        (
            "tcp reset, control ok",
            P::Tcp(K::Reset),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tcp.reset"),
        ),
        (
            "refused on both paths",
            P::Tcp(K::Refused),
            Some(P::Tcp(K::Refused)),
            Layer::Tls,
            Down,
            None,
        ),
        (
            "tcp timeout, no control",
            P::Tcp(K::Timeout),
            None,
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "reset at once for any SNI: a TCP-level block",
            P::TlsBoth(K::Reset),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tcp.reset"),
        ),
        (
            "timeout for any SNI stays a TLS timeout",
            P::TlsBoth(K::Timeout),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tls.timeout"),
        ),
        (
            "sni reset, decoy works",
            P::Tls(K::Reset, Some(true)),
            None,
            Layer::Tls,
            Blocked,
            Some("tls.reset"),
        ),
        (
            "sni silence, decoy works",
            P::Tls(K::Timeout, Some(true)),
            None,
            Layer::Tls,
            Blocked,
            Some("tls.timeout"),
        ),
        (
            "eof, decoy fails, control ok",
            P::Tls(K::Eof, Some(false)),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tls.eof"),
        ),
        (
            "tls reset on both paths: a reset control path proves nothing about the site",
            P::Tls(K::Reset, Some(false)),
            Some(P::Tls(K::Reset, None)),
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "the origin's own broken TLS (an alert) on both paths",
            P::Tls(K::Tls, Some(false)),
            Some(P::Tls(K::Tls, None)),
            Layer::Tls,
            Down,
            None,
        ),
        (
            "refused here; the proxy closes the tunnel before any byte (ssh -D): down",
            P::Tcp(K::Refused),
            Some(P::Tls(K::Eof, None)),
            Layer::Tls,
            Down,
            None,
        ),
        (
            "tcp timeout here, the control path times out too: not evidence of down",
            P::Tcp(K::Timeout),
            Some(P::Tcp(K::Timeout)),
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "tls fails, decoy fails, no control",
            P::Tls(K::Reset, Some(false)),
            None,
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "interception, control verifies",
            P::Cert("hello"),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("tls.cert_invalid"),
        ),
        (
            "interception serving a block page",
            P::Cert(
                "Уважаемый абонент! Доступ к запрашиваемому ресурсу ограничен по решению Роскомнадзора",
            ),
            None,
            Layer::Tls,
            Blocked,
            Some("tls.cert_invalid"),
        ),
        (
            "origin's own bad certificate",
            P::Cert("hello"),
            Some(P::Cert("hello")),
            Layer::Tls,
            Down,
            None,
        ),
        (
            "bad certificate, no control",
            P::Cert("hello"),
            None,
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "http reset, control ok",
            P::HttpFail(K::Reset),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("http.reset"),
        ),
        (
            "stall on https",
            P::Stall(16_384),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("transfer.stall"),
        ),
        (
            "stall on plain http",
            P::Stall(16_384),
            Some(PAGE),
            Layer::Http,
            Blocked,
            Some("transfer.stall"),
        ),
        (
            "silent before the head",
            P::HttpFail(K::Timeout),
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("transfer.stall"),
        ),
        (
            "stall on both: a stalling control path proves nothing",
            P::Stall(16_384),
            Some(P::Stall(20_000)),
            Layer::Tls,
            Inconclusive,
            None,
        ),
        (
            "slow and below the floor",
            P::Body {
                status: 200,
                title: "Home",
                bytes: 40_000,
                rate: 3e5,
                timed_out: true,
            },
            Some(PAGE),
            Layer::Tls,
            Throttled,
            Some("transfer.slow"),
        ),
        (
            "slower but above the floor",
            P::Body {
                status: 200,
                title: "Home",
                bytes: 300_000,
                rate: 5e6,
                timed_out: false,
            },
            Some(PAGE),
            Layer::Tls,
            Reachable,
            None,
        ),
        (
            "a small page says nothing about rate",
            P::Body {
                status: 200,
                title: "Home",
                bytes: 3_000,
                rate: 1e5,
                timed_out: false,
            },
            Some(P::Body {
                status: 200,
                title: "Home",
                bytes: 3_000,
                rate: 5e7,
                timed_out: false,
            }),
            Layer::Tls,
            Reachable,
            None,
        ),
        (
            "different status",
            P::Body {
                status: 403,
                title: "Home",
                bytes: 300_000,
                rate: 5e7,
                timed_out: false,
            },
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("http.diff"),
        ),
        (
            "different length",
            P::Body {
                status: 200,
                title: "Home",
                bytes: 1_000,
                rate: 5e7,
                timed_out: false,
            },
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("http.diff"),
        ),
        (
            "the same challenge page on both paths",
            P::Body {
                status: 503,
                title: "Just a moment",
                bytes: 900,
                rate: 5e7,
                timed_out: false,
            },
            Some(P::Body {
                status: 503,
                title: "Just a moment",
                bytes: 950,
                rate: 5e7,
                timed_out: false,
            }),
            Layer::Tls,
            Reachable,
            None,
        ),
        (
            "a block page needs no control",
            P::Body {
                status: 200,
                title: "Доступ ограничен",
                bytes: 500,
                rate: 5e7,
                timed_out: false,
            },
            None,
            Layer::Http,
            Blocked,
            Some("http.blockpage"),
        ),
        (
            "redirect loop on both",
            P::Loop,
            Some(P::Loop),
            Layer::Tls,
            Down,
            None,
        ),
        (
            "redirect loop only here",
            P::Loop,
            Some(PAGE),
            Layer::Tls,
            Blocked,
            Some("http.diff"),
        ),
        (
            "verified https, control down",
            PAGE,
            Some(P::Tcp(K::Refused)),
            Layer::Tls,
            Reachable,
            None,
        ),
        (
            "verified https, no control",
            PAGE,
            None,
            Layer::Tls,
            Reachable,
            None,
        ),
    ];
    // A refusal on the control path is the proxy's report (SOCKS5 reply 5), as the SOCKS
    // client words it; a proxy that cannot be reached says nothing (issue 15's hostile pass).
    let through_proxy = |mut p: PathObservation| {
        for hop in &mut p.hops {
            for t in &mut hop.tcp {
                if let Some(f) = t.failure.as_mut().filter(|f| f.kind == K::Refused) {
                    f.message = "proxy I/O: SOCKS5 proxy: connection refused by destination".into();
                }
            }
        }
        p
    };
    for (name, v, c, layer, verdict, reason) in rows {
        let plain = layer == Layer::Http;
        let f = classify(
            evidence(
                "93.184.216.34",
                path(&v, !plain),
                c.map(|c| through_proxy(path(&c, !plain))),
            ),
            &Rules::default(),
            layer,
        );
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "row `{name}`: {}",
            f.detail
        );
        if let Some(r) = f.reason {
            let want = if r.as_str().starts_with("transfer.") {
                layer
            } else {
                r.layer()
            };
            assert_eq!(r.layer(), want, "row `{name}`");
        }
    }
}

#[test]
fn an_unroutable_v6_address_does_not_hide_a_blackholed_v4_one() {
    let mut direct = path(&P::Tcp(K::Unreachable), true);
    direct.hops[0].tcp.push(TcpAttempt {
        addr: "93.184.216.34:443".parse().unwrap(),
        source: AddrSource::Vantage,
        ok: false,
        failure: Some(Failure::new(K::Timeout, "x")),
        elapsed: Duration::ZERO,
    });
    let f = classify(
        evidence("93.184.216.34", direct, Some(path(&PAGE, true))),
        &Rules::default(),
        Layer::Tls,
    );
    assert_eq!(
        f.reason.map(|r| r.as_str()),
        Some("tcp.timeout"),
        "{}",
        f.detail
    );
}

#[test]
fn plain_http_without_a_baseline_is_inconclusive() {
    let page = P::Body {
        status: 200,
        title: "Home",
        bytes: 3_000,
        rate: 5e7,
        timed_out: false,
    };
    let f = classify(
        evidence("93.184.216.34", path(&page, false), None),
        &Rules::default(),
        Layer::Http,
    );
    assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.detail);
}

#[test]
fn dns_consistency_is_settled_by_the_certificate() {
    let ev = |direct: P| evidence("104.16.0.7", path(&direct, true), None);
    // The vantage answers a public address the controls do not know.
    let f = classify(ev(PAGE), &Rules::default(), Layer::Tls);
    assert_eq!(
        (f.verdict, f.reason),
        (Verdict::Reachable, None),
        "{}",
        f.detail
    );

    let f = classify(
        ev(P::Cert(
            "<title>Доступ ограничен</title> Уважаемый абонент! Доступ к информационному ресурсу ограничен на основании Федерального закона от 27.07.2006 № 149-ФЗ",
        )),
        &Rules::default(),
        Layer::Tls,
    );
    assert_eq!(
        f.reason.map(|r| r.as_str()),
        Some("dns.blockpage"),
        "{}",
        f.detail
    );

    let f = classify(
        ev(P::Tls(K::Reset, Some(false))),
        &Rules::default(),
        Layer::Tls,
    );
    assert_eq!(
        f.reason.map(|r| r.as_str()),
        Some("dns.inconsistent"),
        "{}",
        f.detail
    );
}

#[test]
fn a_plain_http_target_on_a_cdn_is_settled_by_a_handshake_on_443() {
    let page = P::Body {
        status: 200,
        title: "Home",
        bytes: 3_000,
        rate: 5e7,
        timed_out: false,
    };
    let ev = |consistency| Evidence {
        conn: Some(Conn::Path(PathEvidence {
            direct: path(&page, false),
            control_path: Some(path(&page, false)),
            consistency,
        })),
        ..evidence("104.16.0.7", PathObservation::default(), None)
    };
    for (consistency, verdict, reason) in [
        (None, Verdict::Blocked, Some("dns.inconsistent")),
        (
            Some(tls_obs(true, None, Some(true))),
            Verdict::Reachable,
            None,
        ),
        (
            Some(tls_obs(true, None, Some(false))),
            Verdict::Blocked,
            Some("dns.inconsistent"),
        ),
    ] {
        let f = classify(ev(consistency), &Rules::default(), Layer::Http);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{}",
            f.detail
        );
    }
}

fn stun_attempt(source: AddrSource, failure: Option<K>) -> blockprobe::probe::stun::StunAttempt {
    blockprobe::probe::stun::StunAttempt {
        server: "203.0.113.9:3478".into(),
        source,
        ok: failure.is_none(),
        success: failure.is_none().then_some(true),
        mapped_address: None,
        rtt: failure.is_none().then_some(Duration::from_millis(30)),
        sent: if failure.is_some() { 3 } else { 1 },
        failure: failure.map(|k| Failure::new(k, "x")),
        elapsed: Duration::ZERO,
    }
}

#[test]
fn stun_table() {
    use blockprobe::probe::stun::StunObservation;
    let none: Option<Option<K>> = None;
    // (direct failure, control: None = no proxy / Some(failure), vantage answer, verdict, reason)
    type StunRow = (
        Option<K>,
        Option<Option<K>>,
        &'static str,
        Verdict,
        Option<&'static str>,
    );
    let rows: Vec<StunRow> = vec![
        (None, none, "93.184.216.34", Verdict::Reachable, None),
        (
            Some(K::Timeout),
            Some(None),
            "93.184.216.34",
            Verdict::Blocked,
            Some("udp.timeout"),
        ),
        (
            Some(K::Malformed),
            Some(None),
            "93.184.216.34",
            Verdict::Blocked,
            Some("udp.invalid"),
        ),
        (
            Some(K::Timeout),
            none,
            "93.184.216.34",
            Verdict::Inconclusive,
            None,
        ),
        // Silence here and through the relay: the relay proves nothing about the server.
        (
            Some(K::Timeout),
            Some(Some(K::Timeout)),
            "93.184.216.34",
            Verdict::Inconclusive,
            None,
        ),
        // Port unreachable here, silence from outside: the server is down.
        (
            Some(K::Refused),
            Some(Some(K::Timeout)),
            "93.184.216.34",
            Verdict::Down,
            None,
        ),
        (
            Some(K::Refused),
            Some(None),
            "93.184.216.34",
            Verdict::Inconclusive,
            None,
        ),
        // Another address than the controls', but a STUN server answers on it: not a DNS lie.
        (None, Some(None), "104.16.0.7", Verdict::Reachable, None),
        // Another address that does not answer: the DNS answer is not proven.
        (
            Some(K::Timeout),
            Some(None),
            "104.16.0.7",
            Verdict::Blocked,
            Some("dns.inconsistent"),
        ),
    ];
    for (direct, control, answer, verdict, reason) in rows {
        let mut attempts = vec![stun_attempt(AddrSource::Vantage, direct)];
        // An unroutable IPv6 address beside it changes nothing.
        if direct == Some(K::Timeout) {
            attempts.push(stun_attempt(AddrSource::Vantage, Some(K::Unreachable)));
        }
        let ev = Evidence {
            conn: Some(Conn::Stun(StunObservation {
                direct: attempts,
                control: control.map(|c| stun_attempt(AddrSource::Control, c)),
                reference: None,
            })),
            ..evidence(answer, PathObservation::default(), None)
        };
        let f = classify(ev, &Rules::default(), Layer::Udp);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{direct:?} {control:?} {answer}: {}",
            f.detail
        );
    }
}

#[test]
fn a_plain_http_reset_is_settled_by_a_decoy_host() {
    let reset = || {
        let mut p = path(&P::HttpFail(K::Reset), false);
        p.hops[0].url = "http://149.154.175.50:443/".into();
        p
    };
    let control = Some(path(&PAGE, false));
    let answered = http_obs(Some(200), "", "", 100, 1e6, None, None, false);
    let also_reset = http_obs(None, "", "", 0, 0.0, Some(K::Eof), None, false);
    for (decoy, control, verdict, reason) in [
        // The decoy Host gets an answer: keyed on the name, no control needed.
        (Some(answered), None, Verdict::Blocked, Some("http.reset")),
        // The decoy is reset too: the address is, at the TCP level.
        (
            Some(also_reset.clone()),
            control.clone(),
            Verdict::Blocked,
            Some("tcp.reset"),
        ),
        (Some(also_reset), None, Verdict::Inconclusive, None),
        // No decoy (bytes had arrived): the request failed.
        (None, control, Verdict::Blocked, Some("http.reset")),
    ] {
        let mut direct = reset();
        direct.hops[0].decoy_http = decoy;
        let ev = Evidence {
            dns: None,
            control: None,
            ..evidence("93.184.216.34", direct, control)
        };
        let f = classify(ev, &Rules::default(), Layer::Http);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{}",
            f.detail
        );
    }
}

#[test]
fn without_a_proxy_a_stun_reference_is_the_baseline() {
    use blockprobe::probe::stun::StunObservation;
    for (reference, verdict, reason) in [
        (Some(None), Verdict::Blocked, Some("udp.timeout")),
        (Some(Some(K::Timeout)), Verdict::Inconclusive, None),
        (None, Verdict::Inconclusive, None),
    ] {
        let ev = Evidence {
            conn: Some(Conn::Stun(StunObservation {
                direct: vec![stun_attempt(AddrSource::Vantage, Some(K::Timeout))],
                control: None,
                reference: reference.map(|r| stun_attempt(AddrSource::Control, r)),
            })),
            ..evidence("93.184.216.34", PathObservation::default(), None)
        };
        let f = classify(ev, &Rules::default(), Layer::Udp);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{reference:?}: {}",
            f.detail
        );
    }
}

/// Issue 10: a plain-HTTP redirect to another site (an ISP's HTTPS stub that verifies like any
/// page) is not `reachable`: `inconclusive` without a baseline, `http.diff` when the control
/// path stays on the site; a redirect within the site (http -> https://www.) is fine.
#[test]
fn offsite_plain_http_redirects_need_a_baseline() {
    let hop = |url: &str, tls: bool, status: u16, location: Option<&str>| {
        let mut h = path(&PAGE, tls).hops.remove(0);
        h.url = url.into();
        let http = h.http.as_mut().unwrap();
        http.url = url.into();
        http.status = Some(status);
        if let Some(l) = location {
            http.headers.insert("location".into(), l.into());
        }
        h
    };
    let two = |to: &str| PathObservation {
        hops: vec![
            hop("http://news.example.org/", false, 302, Some(to)),
            hop(to, true, 200, None),
        ],
        redirects_exhausted: false,
    };
    let stub = "https://stub.isp-example.ru/blocked.html";
    let f = classify(
        evidence("93.184.216.34", two(stub), None),
        &Rules::default(),
        Layer::Http,
    );
    assert_eq!(f.verdict, Verdict::Inconclusive, "{}", f.detail);
    assert!(f.detail.contains("off-site"), "{}", f.detail);
    let f = classify(
        evidence(
            "93.184.216.34",
            two(stub),
            Some(two("https://www.news.example.org/")),
        ),
        &Rules::default(),
        Layer::Http,
    );
    assert_eq!(
        (f.verdict, f.reason.map(|r| r.as_str())),
        (Verdict::Blocked, Some("http.diff")),
        "{}",
        f.detail
    );
    let f = classify(
        evidence("93.184.216.34", two("https://www.news.example.org/"), None),
        &Rules::default(),
        Layer::Http,
    );
    assert_ne!(f.verdict, Verdict::Blocked, "{}", f.detail);
    assert!(!f.detail.contains("off-site"), "{}", f.detail);
}

/// Issue 12: without a working control path, throttling and freezes are judged against the
/// run's own references; each rule at its boundaries, with the baseline and `needs` recorded.
#[test]
fn issue_12_in_run_baseline_table() {
    use Verdict::*;
    use blockprobe::classify::{FREEZE_WINDOW, Needs, Reference};
    let reference = |bps: Option<f64>, carried: u64| Reference {
        source: "reference:https://cdn.example/big".into(),
        bps,
        carried,
        error: None,
    };
    let slow = |rate: f64| P::Body {
        status: 200,
        title: "Home",
        bytes: 300_000,
        rate,
        timed_out: false,
    };
    let (lo, hi) = (*FREEZE_WINDOW.start(), *FREEZE_WINDOW.end());
    // (name, direct, wire bytes in, control path, baseline, verdict, reason, needs, baseline source)
    type Row = (
        &'static str,
        P,
        u64,
        Option<P>,
        Vec<Reference>,
        Verdict,
        Option<&'static str>,
        Option<Needs>,
        Option<&'static str>,
    );
    let big = || vec![reference(Some(5e7), 300_000)];
    let rows: Vec<Row> = vec![
        (
            "slow, reference fast",
            slow(392e3),
            0,
            None,
            big(),
            Throttled,
            Some("transfer.slow"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "slow at exactly ratio x reference",
            slow(0.25 * 1.6e6),
            0,
            None,
            vec![reference(Some(1.6e6), 300_000)],
            Reachable,
            None,
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "just under ratio x reference",
            slow(0.25 * 1.6e6 - 1.0),
            0,
            None,
            vec![reference(Some(1.6e6), 300_000)],
            Throttled,
            Some("transfer.slow"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "slow, no baseline at all",
            slow(392e3),
            0,
            None,
            vec![],
            Inconclusive,
            None,
            Some(Needs::Reference),
            None,
        ),
        (
            "slow, the reference failed",
            slow(392e3),
            0,
            None,
            vec![reference(None, 0)],
            Inconclusive,
            None,
            Some(Needs::Reference),
            None,
        ),
        (
            "above the floor needs no baseline",
            slow(3e6),
            0,
            None,
            vec![],
            Reachable,
            None,
            None,
            None,
        ),
        (
            "the control path outranks a reference",
            slow(392e3),
            0,
            Some(slow(400e3)),
            big(),
            Reachable,
            None,
            None,
            Some("control_path"),
        ),
        (
            "slow; the control path times out: the reference decides",
            slow(392e3),
            0,
            Some(P::Tcp(K::Timeout)),
            big(),
            Throttled,
            Some("transfer.slow"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "freeze at the window's start",
            P::Stall(0),
            lo,
            None,
            big(),
            Blocked,
            Some("transfer.stall"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "freeze just before the window",
            P::Stall(0),
            lo - 1,
            None,
            big(),
            Inconclusive,
            None,
            Some(Needs::ControlPath),
            None,
        ),
        (
            "freeze at the window's end",
            P::Stall(12_000),
            hi,
            None,
            big(),
            Blocked,
            Some("transfer.stall"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "stall past the window",
            P::Stall(70_000),
            hi + 1,
            None,
            big(),
            Inconclusive,
            None,
            Some(Needs::ControlPath),
            None,
        ),
        (
            "freeze, reference carried only to the window's end",
            P::Stall(12_000),
            16_384,
            None,
            vec![reference(Some(5e7), hi)],
            Inconclusive,
            None,
            Some(Needs::Reference),
            None,
        ),
        (
            "freeze, reference carried just past the window",
            P::Stall(12_000),
            16_384,
            None,
            vec![reference(None, hi + 1)],
            Blocked,
            Some("transfer.stall"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "freeze, no reference",
            P::Stall(12_000),
            16_384,
            None,
            vec![],
            Inconclusive,
            None,
            Some(Needs::Reference),
            None,
        ),
        (
            "freeze; the control path stalls too: the reference decides",
            P::Stall(12_000),
            16_384,
            Some(P::Stall(20_000)),
            big(),
            Blocked,
            Some("transfer.stall"),
            None,
            Some("reference:https://cdn.example/big"),
        ),
        (
            "blackhole, no control path",
            P::Tcp(K::Timeout),
            0,
            None,
            big(),
            Inconclusive,
            None,
            Some(Needs::ControlPath),
            None,
        ),
        (
            "blackhole, the control path times out",
            P::Tcp(K::Timeout),
            0,
            Some(P::Tcp(K::Timeout)),
            big(),
            Inconclusive,
            None,
            Some(Needs::ControlPath),
            None,
        ),
    ];
    // Plain HTTP: unauthenticated, but a slow transfer against a fast reference is throttling.
    {
        let mut ev = evidence("93.184.216.34", path(&slow(392e3), false), None);
        ev.baseline = big();
        let f = classify(ev, &Rules::default(), Layer::Http);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (Throttled, Some("transfer.slow")),
            "{}",
            f.detail
        );
        let mut ev = evidence("93.184.216.34", path(&slow(392e3), false), None);
        ev.baseline = vec![];
        let f = classify(ev, &Rules::default(), Layer::Http);
        assert_eq!(f.verdict, Inconclusive, "{}", f.detail);
    }
    for (name, d, wire, c, baseline, verdict, reason, needs, source) in rows {
        let mut direct = path(&d, true);
        direct.hops[0].wire_bytes_in = wire;
        let mut ev = evidence("93.184.216.34", direct, c.map(|c| path(&c, true)));
        ev.baseline = baseline;
        let f = classify(ev, &Rules::default(), Layer::Tls);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str()), f.needs),
            (verdict, reason, needs),
            "row `{name}`: {}",
            f.detail
        );
        assert_eq!(
            f.baseline.as_ref().map(|b| b.source.as_str()),
            source,
            "row `{name}`: {}",
            f.detail
        );
    }
}

/// Issue 15: one mapping of rcodes to reasons. A redirect whose host gets an rcode the
/// classifier does not know (NOTIMP, RCODE23) is not `dns.timeout`; NXDOMAIN and SERVFAIL keep
/// their reasons, and a lost answer stays a timeout.
#[test]
fn issue_15_a_redirects_rcode_maps_to_the_same_reasons_as_the_targets() {
    let with_rcode = |rcode: &str| {
        let mut d = dns(&[]);
        d.a.responses[0].rcode = rcode.into();
        d.aaaa.responses[0].rcode = rcode.into();
        d
    };
    let mut lost = dns(&[]);
    for q in [&mut lost.a, &mut lost.aaaa] {
        q.responses.clear();
        q.failure = Some(Failure::new(K::Timeout, "x"));
    }
    for (d, verdict, reason) in [
        (
            with_rcode("NXDOMAIN"),
            Verdict::Blocked,
            Some("dns.nxdomain"),
        ),
        (
            with_rcode("SERVFAIL"),
            Verdict::Blocked,
            Some("dns.servfail"),
        ),
        (with_rcode("NOTIMP"), Verdict::Inconclusive, None),
        (with_rcode("RCODE23"), Verdict::Inconclusive, None),
        (lost, Verdict::Blocked, Some("dns.timeout")),
    ] {
        let mut direct = path(&PAGE, true);
        direct.hops[0].http.as_mut().unwrap().status = Some(302);
        direct.hops.push(Hop {
            url: "https://elsewhere.example/".into(),
            dns: Some(d),
            tcp: vec![],
            tls: None,
            decoy_tls: None,
            http: None,
            decoy_http: None,
            wire_bytes_in: 0,
            downgrade: false,
            refused_redirect: None,
        });
        let f = classify(
            evidence("93.184.216.34", direct, Some(path(&PAGE, true))),
            &Rules::default(),
            Layer::Tls,
        );
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{}",
            f.detail
        );
    }
}

/// Issue 15's hostile pass: a control proxy that cannot be reached (our connect to it is
/// refused) says nothing about the origin; only the proxy's own SOCKS reply does.
#[test]
fn an_unreachable_proxy_is_not_the_origin_refusing() {
    for (message, verdict) in [
        (
            "proxy I/O: Connection refused (os error 111)",
            Verdict::Inconclusive,
        ),
        (
            "proxy I/O: SOCKS5 proxy: connection refused by destination",
            Verdict::Down,
        ),
    ] {
        let mut control = path(&P::Tcp(K::Refused), true);
        control.hops[0].tcp[0].failure = Some(Failure::new(K::Refused, message));
        let f = classify(
            evidence(
                "93.184.216.34",
                path(&P::Tcp(K::Refused), true),
                Some(control),
            ),
            &Rules::default(),
            Layer::Tls,
        );
        assert_eq!(f.verdict, verdict, "{message}: {}", f.detail);
    }
}

/// Issue 16's hostile pass: a lossy path is not signature filtering. A shape that never came
/// back is singled out only when its random control came back at least twice of three.
#[test]
fn echo_signature_needs_a_clear_margin() {
    use blockprobe::classify::Conn;
    use blockprobe::probe::echo::{EchoObservation, EchoRun, Shape, ShapeExchange};
    for (control_echoed, verdict) in [(1, Verdict::Reachable), (2, Verdict::Blocked)] {
        let exchanges = Shape::ALL
            .iter()
            .map(|s| ShapeExchange {
                shape: *s,
                size: 10,
                sent: 3,
                echoed: if *s == Shape::Wireguard { 0 } else { 3 },
                control_echoed: if *s == Shape::Wireguard {
                    control_echoed
                } else {
                    3
                },
                rtt: None,
            })
            .collect();
        let ev = Evidence {
            dns: None,
            control: None,
            conn: Some(Conn::Echo(EchoObservation {
                direct: vec![EchoRun {
                    server: "192.0.2.7:7007".into(),
                    exchanges,
                    failure: None,
                    elapsed: Duration::ZERO,
                }],
                control: None,
            })),
            ..evidence("93.184.216.34", PathObservation::default(), None)
        };
        let f = classify(ev, &Rules::default(), Layer::Udp);
        assert_eq!(f.verdict, verdict, "{control_echoed}: {}", f.detail);
    }
}

/// Tor's link handshake: where it died (TLS or after VERSIONS) and what the control path saw
/// decide the verdict; something that is not a relay outside too is down, never blocked.
#[test]
fn tor_table() {
    use blockprobe::probe::Phase;
    use blockprobe::probe::tor::{TorAttempt, TorObservation};
    let attempt = |source: AddrSource, tls_ok: Option<bool>, failure: Option<K>| TorAttempt {
        server: "192.0.2.7:9001".into(),
        source,
        phase: match (tls_ok, failure) {
            (_, None) => Phase::Answered,
            (None, Some(_)) => Phase::Connect,
            (Some(_), Some(_)) => Phase::Handshake,
        },
        tls: tls_ok.map(|ok| tls_obs(ok, (!ok).then_some(K::Reset), None)),
        link_versions: if failure.is_none() {
            vec![3, 4, 5]
        } else {
            Vec::new()
        },
        cert_types: Vec::new(),
        decoy: None,
        decoy_answered: false,
        failure: failure.map(|k| Failure::new(k, "x")),
        elapsed: Duration::ZERO,
    };
    let answered = Some(attempt(AddrSource::Control, Some(true), None));
    // (direct: TLS completed?, failure; control; verdict, reason)
    type TorRow = (
        Option<bool>,
        Option<K>,
        Option<TorAttempt>,
        Verdict,
        Option<&'static str>,
    );
    let rows: Vec<TorRow> = vec![
        (Some(true), None, None, Verdict::Reachable, None),
        (
            Some(false),
            Some(K::Reset),
            answered.clone(),
            Verdict::Blocked,
            Some("vpn.reset"),
        ),
        (
            Some(true),
            Some(K::Eof),
            answered.clone(),
            Verdict::Blocked,
            Some("vpn.reset"),
        ),
        (
            Some(false),
            Some(K::Timeout),
            answered.clone(),
            Verdict::Blocked,
            Some("vpn.timeout"),
        ),
        (
            None,
            Some(K::Timeout),
            answered.clone(),
            Verdict::Blocked,
            Some("tcp.timeout"),
        ),
        (
            Some(false),
            Some(K::Reset),
            None,
            Verdict::Inconclusive,
            None,
        ),
        // Not a Tor relay, here and outside: the server's own fault.
        (
            Some(true),
            Some(K::Malformed),
            Some(attempt(AddrSource::Control, Some(true), Some(K::Malformed))),
            Verdict::Down,
            None,
        ),
        // The proxy reset too: that says nothing about the relay.
        (
            Some(false),
            Some(K::Reset),
            Some(attempt(AddrSource::Control, Some(false), Some(K::Reset))),
            Verdict::Inconclusive,
            None,
        ),
    ];
    for (tls_ok, failure, control, verdict, reason) in rows {
        let ev = Evidence {
            dns: None,
            control: None,
            conn: Some(Conn::Tor(TorObservation {
                direct: vec![attempt(AddrSource::Vantage, tls_ok, failure)],
                control,
            })),
            ..evidence("93.184.216.34", PathObservation::default(), None)
        };
        let f = classify(ev, &Rules::default(), Layer::Vpn);
        assert_eq!(
            (f.verdict, f.reason.map(|r| r.as_str())),
            (verdict, reason),
            "{tls_ok:?} {failure:?}: {}",
            f.detail
        );
    }
    // No control path: the decoy SNI completing on the same address settles a TLS-stage block;
    // a decoy that fails too leaves it open.
    for (decoy_ok, verdict) in [(true, Verdict::Blocked), (false, Verdict::Inconclusive)] {
        let mut a = attempt(AddrSource::Vantage, Some(false), Some(K::Reset));
        a.decoy = Some(tls_obs(decoy_ok, (!decoy_ok).then_some(K::Reset), None));
        a.decoy_answered = decoy_ok;
        let ev = Evidence {
            dns: None,
            control: None,
            conn: Some(Conn::Tor(TorObservation {
                direct: vec![a],
                control: None,
            })),
            ..evidence("93.184.216.34", PathObservation::default(), None)
        };
        let f = classify(ev, &Rules::default(), Layer::Vpn);
        assert_eq!(f.verdict, verdict, "decoy {decoy_ok}: {}", f.detail);
    }
    // A server that resets Tor's ClientHello for everyone — the control path sees it too — is
    // not blocked, whatever the decoy says.
    let mut a = attempt(AddrSource::Vantage, Some(false), Some(K::Reset));
    a.decoy = Some(tls_obs(true, None, None));
    a.decoy_answered = true;
    let ev = Evidence {
        dns: None,
        control: None,
        conn: Some(Conn::Tor(TorObservation {
            direct: vec![a],
            control: Some(attempt(AddrSource::Control, Some(false), Some(K::Reset))),
        })),
        ..evidence("93.184.216.34", PathObservation::default(), None)
    };
    let f = classify(ev, &Rules::default(), Layer::Vpn);
    assert_ne!(f.verdict, Verdict::Blocked, "{}", f.detail);
}

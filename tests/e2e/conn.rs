//! Connection probes through the real binary against censors, origins and a SOCKS5 control
//! proxy on loopback: every tcp/tls/http/transfer reason, the `down` cases, the SNI swap, the
//! DNS consistency check, redirects, `--repeat`, and hostile servers.

use std::collections::HashMap;
use std::net::SocketAddr;

use blockprobe::mocknet::censor::{Behaviour as C, Censor};
use blockprobe::mocknet::dns::{Behaviour, MockDns, Zone};
use blockprobe::mocknet::origin::Origin;
use blockprobe::mocknet::pki::Pki;
use blockprobe::mocknet::socks::SocksProxy;
use tokio::net::TcpListener;

use crate::support::{find, ip, jsonl, run, stderr};

/// One target of the test network: its URL, expected verdict and reason.
struct Case {
    url: String,
    verdict: &'static str,
    reason: Option<&'static str>,
}

struct World {
    _keep: Vec<Censor>,
    _garbage: tokio::task::JoinHandle<()>,
    vantage: MockDns,
    control: MockDns,
    proxy: SocksProxy,
    origin: Origin,
    plain: Origin,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    cases: Vec<Case>,
}

const NAMES: &[&str] = &[
    "ok.test",
    "sni.test",
    "silent.test",
    "drop.test",
    "refused.test",
    "down.test",
    "intercept.test",
    "freeze.test",
    "slow.test",
    "inject.test",
    "loop.test",
    "challenge.test",
    "dnsbp.test",
    "cdn.test",
    "hop.test",
    "endless.test",
    "giant.test",
    "garbage.test",
    "slowloris.test",
    "example.com",
];

async fn censor(keep: &mut Vec<Censor>, b: C, up: SocketAddr) -> u16 {
    let c = Censor::start(SocketAddr::new(ip("127.0.0.1"), 0), up, b)
        .await
        .unwrap();
    let port = c.addr.port();
    keep.push(c);
    port
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn world() -> World {
    let pki = Pki::generate("conn test CA").unwrap();
    let rogue = Pki::generate("rogue interception CA").unwrap();
    let origin_tls = pki.server_config(NAMES, &[b"http/1.1"]).unwrap();
    let origin = Origin::start(ip("127.0.0.1"), Some(origin_tls))
        .await
        .unwrap();
    let plain = Origin::start(ip("127.0.0.1"), None).await.unwrap();
    let mut keep = Vec::new();
    let mut cases = Vec::new();
    let mut outside: HashMap<String, SocketAddr> = HashMap::new();
    let mut vantage = Zone::new(Behaviour::Answer(vec![ip("127.0.0.1")]));
    let mut add = |name: &str, url: String, verdict, reason, up: SocketAddr| {
        outside.insert(name.to_owned(), up);
        cases.push(Case {
            url,
            verdict,
            reason,
        });
    };
    let o = origin.addr;
    let p = censor(&mut keep, C::Pass, o).await;
    add(
        "ok.test",
        format!("https://ok.test:{p}/"),
        "reachable",
        None,
        o,
    );
    let hop = censor(&mut keep, C::Pass, o).await;
    add(
        "hop.test",
        format!("https://hop.test:{hop}/redirect/ok.test:{p}/"),
        "reachable",
        None,
        o,
    );
    let p = censor(&mut keep, C::ResetSni(vec!["sni.test".into()]), o).await;
    add(
        "sni.test",
        format!("https://sni.test:{p}/"),
        "blocked",
        Some("tls.reset"),
        o,
    );
    let p = censor(&mut keep, C::SilenceSni(vec!["silent.test".into()]), o).await;
    add(
        "silent.test",
        format!("https://silent.test:{p}/"),
        "blocked",
        Some("tls.timeout"),
        o,
    );
    let p = censor(&mut keep, C::Drop, o).await;
    add(
        "drop.test",
        format!("https://drop.test:{p}/"),
        "blocked",
        Some("tcp.timeout"),
        o,
    );
    let closed = free_port();
    add(
        "refused.test",
        format!("https://refused.test:{}/", closed.port()),
        "blocked",
        Some("tcp.refused"),
        o,
    );
    let closed2 = free_port();
    add(
        "down.test",
        format!("https://down.test:{}/", closed2.port()),
        "down",
        None,
        closed2,
    );
    let rogue_cfg = rogue
        .server_config(&["intercept.test"], &[b"http/1.1"])
        .unwrap();
    let p = censor(&mut keep, C::Intercept(rogue_cfg), o).await;
    add(
        "intercept.test",
        format!("https://intercept.test:{p}/"),
        "blocked",
        Some("tls.cert_invalid"),
        o,
    );
    let p = censor(&mut keep, C::FreezeAfter(16 * 1024), o).await;
    add(
        "freeze.test",
        format!("https://freeze.test:{p}/big"),
        "blocked",
        Some("transfer.stall"),
        o,
    );
    let p = censor(&mut keep, C::Throttle(40 * 1024), o).await;
    add(
        "slow.test",
        format!("https://slow.test:{p}/big"),
        "throttled",
        Some("transfer.slow"),
        o,
    );
    let p = censor(&mut keep, C::InjectBlockPage, plain.addr).await;
    add(
        "inject.test",
        format!("http://inject.test:{p}/"),
        "blocked",
        Some("http.blockpage"),
        plain.addr,
    );
    let p = censor(&mut keep, C::Pass, o).await;
    add(
        "loop.test",
        format!("https://loop.test:{p}/loop"),
        "down",
        None,
        o,
    );
    add(
        "challenge.test",
        format!("https://challenge.test:{p}/challenge"),
        "reachable",
        None,
        o,
    );
    add(
        "endless.test",
        format!("https://endless.test:{p}/endless"),
        "reachable",
        None,
        o,
    );
    add(
        "slowloris.test",
        format!("https://slowloris.test:{p}/slowloris"),
        "reachable",
        None,
        o,
    );
    add(
        "giant.test",
        format!("https://giant.test:{p}/giant-header"),
        "down",
        None,
        o,
    );

    // DNS block page: the ISP resolver sends the name to a block-page server (another loopback
    // address, same port), which presents a certificate it cannot have.
    let p = censor(&mut keep, C::Pass, o).await;
    let bp_cfg = rogue
        .server_config(&["blockpage.isp"], &[b"http/1.1"])
        .unwrap();
    keep.push(
        Censor::start(SocketAddr::new(ip("127.0.0.9"), p), o, C::Intercept(bp_cfg))
            .await
            .unwrap(),
    );
    vantage = vantage.with("dnsbp.test", Behaviour::Answer(vec![ip("127.0.0.9")]));
    add(
        "dnsbp.test",
        format!("https://dnsbp.test:{p}/"),
        "blocked",
        Some("dns.blockpage"),
        o,
    );
    // CDN variance: a different address that proves the name with a valid certificate.
    let p = censor(&mut keep, C::Pass, o).await;
    keep.push(
        Censor::start(SocketAddr::new(ip("127.0.0.10"), p), o, C::Pass)
            .await
            .unwrap(),
    );
    vantage = vantage.with("cdn.test", Behaviour::Answer(vec![ip("127.0.0.10")]));
    add(
        "cdn.test",
        format!("https://cdn.test:{p}/"),
        "reachable",
        None,
        o,
    );

    // An IP-address target: no DNS; the proxy gets the address itself (SOCKS5 ATYP 1).
    let p = censor(&mut keep, C::Pass, plain.addr).await;
    add(
        "127.0.0.1",
        format!("http://127.0.0.1:{p}/"),
        "reachable",
        None,
        plain.addr,
    );

    // Garbage instead of TLS, on both paths.
    let g = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gaddr = g.local_addr().unwrap();
    let garbage = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = g.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6 not TLS at all\r\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    add(
        "garbage.test",
        format!("https://garbage.test:{}/", gaddr.port()),
        "down",
        None,
        gaddr,
    );

    let control = MockDns::start(
        ip("127.0.0.1"),
        0,
        Zone::new(Behaviour::Answer(vec![ip("127.0.0.1")])),
        None,
    )
    .await
    .unwrap();
    let vantage = MockDns::start(ip("127.0.0.1"), 0, vantage, None)
        .await
        .unwrap();
    let proxy = SocksProxy::start(
        ip("127.0.0.1"),
        blockprobe::mocknet::socks::Outside {
            tcp: outside,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pki.ca_pem()).unwrap();
    World {
        _keep: keep,
        _garbage: garbage,
        vantage,
        control,
        proxy,
        origin,
        plain,
        ca_file,
        _dir: dir,
        cases,
    }
}

impl World {
    fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "scan".into(),
            "--resolver".into(),
            format!("isp=udp://{}", self.vantage.udp),
            "--control-resolver".into(),
            format!("ctl=udp://{}", self.control.udp),
            "--control-proxy".into(),
            format!("socks5://{}", self.proxy.addr),
            "--ca-file".into(),
            self.ca_file.display().to_string(),
            "--canary".into(),
            "ok.test".into(),
            "--timeout".into(),
            "1s".into(),
            "--stall-timeout".into(),
            "500ms".into(),
            "--max-body".into(),
            "256k".into(),
            "--injection-window".into(),
            "0".into(),
            "--quiet".into(),
        ];
        a.extend(self.cases.iter().map(|c| c.url.clone()));
        a
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_reason_through_the_binary() {
    let w = world().await;
    let out = run(w.args()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), w.cases.len());
    let mut wrong = Vec::new();
    for c in &w.cases {
        let r = find(&recs, &c.url);
        if r["verdict"] != c.verdict || r["reason"].as_str() != c.reason {
            wrong.push(format!(
                "{}: expected {} {:?}, got {} {} — {}",
                c.url, c.verdict, c.reason, r["verdict"], r["reason"], r["detail"]
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));

    // Evidence the verdicts rest on.
    let by = |name: &str| {
        let c = w.cases.iter().find(|c| c.url.contains(name)).unwrap();
        find(&recs, &c.url).clone()
    };
    let sni = by("//sni.test");
    assert_eq!(sni["tls_decoy_ok"], true, "{sni:#}");
    assert_eq!(sni["tls_error"], "reset");
    assert_eq!(sni["layer"], "tls");
    let freeze = by("//freeze.test");
    // The freeze cut a TLS record: no plaintext byte, but the wire shows where it happened.
    let wire = freeze["evidence"]["direct"]["hops"][0]["wire_bytes_in"]
        .as_u64()
        .unwrap();
    assert!((16 * 1024..=17 * 1024).contains(&wire), "{freeze:#}");
    assert_eq!(freeze["layer"], "tls");
    let slow = by("//slow.test");
    assert!(
        slow["throughput_bps"].as_f64().unwrap() < 2_000_000.0,
        "{slow:#}"
    );
    assert_eq!(slow["layer"], "tls");
    let inject = by("//inject.test");
    assert_eq!(inject["layer"], "http");
    assert_eq!(inject["http_title"], "Доступ ограничен");
    let intercept = by("//intercept.test");
    assert_eq!(intercept["tls_verified"], false);
    assert_eq!(
        intercept["http_title"], "Доступ ограничен",
        "block page behind interception"
    );
    let hop = by("//hop.test");
    assert_eq!(hop["redirects"], 1, "{hop:#}");
    assert_eq!(hop["http_status"], 200);
    let endless = by("//endless.test");
    assert_eq!(endless["bytes"], 256 * 1024, "capped at --max-body");
    assert_eq!(
        endless["evidence"]["direct"]["hops"][0]["http"]["transfer"]["capped"],
        true
    );
    // A byte every 200 ms: never a stall, but the step's timeout bounds it.
    let slow_loris = by("//slowloris.test");
    let transfer = &slow_loris["evidence"]["direct"]["hops"][0]["http"]["transfer"];
    assert_eq!(transfer["timed_out"], true, "{slow_loris:#}");
    assert!(slow_loris["bytes"].as_u64().unwrap() < 20);
    assert!(slow_loris["elapsed_ms"].as_f64().unwrap() < 3000.0);
    let giant = by("//giant.test");
    assert_eq!(giant["control_path_status"], "http:http", "{giant:#}");
    let garbage = by("//garbage.test");
    assert!(garbage["tls_error"].is_string(), "{garbage:#}");
    let lp = by("//loop.test");
    assert_eq!(lp["redirects"], 10);
    let ok = by("//ok.test");
    assert_eq!(ok["tls_verified"], true);
    assert_eq!(ok["control_path_status"], "200");
    assert!(
        ok["evidence"]["direct"]["hops"][0]["tls"]["certs"][0]["subject"]
            .as_str()
            .unwrap()
            .contains("ok.test")
    );
    // Traffic really flowed: origins, proxy.
    assert!(w.origin.connections() >= 10);
    assert!(w.plain.connections() >= 1);
    assert!(w.proxy.connects() >= w.cases.len() as u64 - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_control_proxy_failures_are_inconclusive_unless_the_decoy_decides() {
    let w = world().await;
    let mut args = w.args();
    let i = args.iter().position(|a| a == "--control-proxy").unwrap();
    args.drain(i..=i + 1);
    let out = run(args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let get = |name: &str| {
        let c = w.cases.iter().find(|c| c.url.contains(name)).unwrap();
        find(&recs, &c.url).clone()
    };
    // SNI filtering needs no control: the decoy on the same address succeeded.
    assert_eq!(get("//sni.test")["reason"], "tls.reset");
    // An IP-level failure cannot be told from an outage without the control path.
    assert_eq!(get("//drop.test")["verdict"], "inconclusive");
    assert_eq!(get("//refused.test")["verdict"], "inconclusive");
    // A verified HTTPS answer stands on its own; a plain-HTTP block page is still one.
    assert_eq!(get("//ok.test")["verdict"], "reachable");
    assert_eq!(get("//inject.test")["reason"], "http.blockpage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_reports_the_majority_with_every_try() {
    let w = world().await;
    let ok = w
        .cases
        .iter()
        .find(|c| c.url.contains("//ok.test"))
        .unwrap()
        .url
        .clone();
    let freeze = w
        .cases
        .iter()
        .find(|c| c.url.contains("//freeze.test"))
        .unwrap()
        .url
        .clone();
    let mut args = w.args();
    args.retain(|a| !a.starts_with("http"));
    args.extend([ok.clone(), freeze.clone(), "--repeat".into(), "3".into()]);
    let out = run(args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let f = find(&recs, &freeze);
    assert_eq!(f["reason"], "transfer.stall");
    assert_eq!(
        f["tries"],
        serde_json::json!([
            "blocked:transfer.stall",
            "blocked:transfer.stall",
            "blocked:transfer.stall"
        ])
    );
    assert!(f["detail"].as_str().unwrap().contains("3 of 3 tries"));
    assert_eq!(find(&recs, &ok)["tries"].as_array().unwrap().len(), 3);
}

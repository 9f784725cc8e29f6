//! Every wire transport against a real resolver (issue 11, item 15): Unbound from the
//! distribution, started by the test on free loopback ports, serving a static zone over UDP,
//! TCP, DoT and DoH (which Unbound speaks over HTTP/2 only). No query leaves the machine: the
//! zone is `.` static, so Unbound never recurses.
//!
//! Skipped, with a message, when `unbound` is not installed; `BLOCKPROBE_REQUIRE_UNBOUND=1`
//! (set by `.ci/run`, which installs it) turns the skip into a failure.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use blockprobe::mocknet::pki::Pki;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::support::{jsonl, run, stderr};

/// Addresses of `big.test`: more than fit the 1232-byte EDNS payload blockprobe advertises,
/// so the UDP answer comes back truncated and is asked again over TCP.
const BIG: u16 = 100;

fn unbound_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join("unbound"))
        .find(|p| p.is_file())
}

fn required() -> bool {
    std::env::var("BLOCKPROBE_REQUIRE_UNBOUND").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Three loopback ports free for both TCP and UDP when asked (all held until the function
/// returns, so they differ). Unbound binds them after they are released;
/// [`Unbound::start`] tries again should another process take one in between.
fn free_ports() -> [u16; 3] {
    let (mut tcp, mut udp, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    while ports.len() < 3 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if let Ok(u) = UdpSocket::bind(("127.0.0.1", port)) {
            udp.push(u);
            ports.push(port);
        }
        tcp.push(l);
    }
    [ports[0], ports[1], ports[2]]
}

/// The zone: the names the test asks about, and the canary the health check asks about.
fn local_data() -> Vec<String> {
    let mut data = vec![
        "canary.test. 60 IN A 127.0.0.2".to_owned(),
        "ok.test. 60 IN A 127.0.0.10".to_owned(),
        "ok.test. 60 IN AAAA ::1".to_owned(),
        "nodata.test. 60 IN TXT \"no address here\"".to_owned(),
    ];
    data.extend((0..BIG).map(|i| format!("big.test. 60 IN A 127.0.{}.{}", 100 + i / 256, i % 256)));
    data
}

fn config(dir: &Path, [plain, dot, doh]: [u16; 3]) -> String {
    let mut c = format!(
        r#"server:
    username: ""
    chroot: ""
    directory: "{dir}"
    pidfile: ""
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    do-ip6: no
    interface-automatic: no
    interface: 127.0.0.1@{plain}
    interface: 127.0.0.1@{dot}
    interface: 127.0.0.1@{doh}
    port: {plain}
    tls-port: {dot}
    https-port: {doh}
    http-endpoint: "/dns-query"
    tls-service-pem: "{dir}/cert.pem"
    tls-service-key: "{dir}/key.pem"
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "." static
"#,
        dir = dir.display()
    );
    for d in local_data() {
        c.push_str(&format!("    local-data: '{d}'\n"));
    }
    c.push_str("remote-control:\n    control-enable: no\n");
    c
}

/// A running Unbound; killed when dropped.
struct Unbound {
    _child: tokio::process::Child,
    plain: u16,
    dot: u16,
    doh: u16,
}

impl Unbound {
    /// Starts Unbound and waits until it answers a UDP query (all its listeners are bound
    /// before it serves any). A start that fails (a port taken meanwhile) is tried again on
    /// fresh ports, a few times.
    async fn start(binary: &Path, dir: &Path) -> Self {
        let pki = Pki::generate("blockprobe unbound test CA").unwrap();
        let (cert, key) = pki.issue_pem(&["dns.test", "127.0.0.1"]).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        std::fs::write(dir.join("ca.pem"), pki.ca_pem()).unwrap();
        let mut failures = Vec::new();
        for _ in 0..5 {
            let ports = free_ports();
            let conf = dir.join("unbound.conf");
            std::fs::write(&conf, config(dir, ports)).unwrap();
            let log = dir.join("unbound.log");
            let mut child = tokio::process::Command::new(binary)
                .args(["-d", "-p", "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            if answers(&mut child, ports[0]).await {
                let [plain, dot, doh] = ports;
                return Self {
                    _child: child,
                    plain,
                    dot,
                    doh,
                };
            }
            let _ = child.kill().await;
            let status = child.wait().await.unwrap();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            failures.push(format!("{status}\n{log}"));
        }
        panic!("unbound did not start:\n{}", failures.join("\n---\n"));
    }
}

/// Polls Unbound with a query for the canary until one is answered: true when it is, false
/// when Unbound exits first or nothing answers within the bound (a hundred 200 ms waits for
/// an answer). The socket is not connected, so a datagram sent before Unbound listens is lost
/// quietly (no ECONNREFUSED) and each try waits its full 200 ms.
async fn answers(child: &mut tokio::process::Child, port: u16) -> bool {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut query = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii("canary.test.").unwrap(),
        RecordType::A,
    ));
    let wire = query.to_vec().unwrap();
    let mut buf = vec![0u8; 65_535];
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        sock.send_to(&wire, to).await.unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf));
        if let Ok(Ok((n, from))) = wait.await
            && from == to
            && Message::from_vec(&buf[..n]).is_ok_and(|m| m.metadata.id == 0x5eed)
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn every_transport_against_unbound() {
    let Some(binary) = unbound_binary() else {
        assert!(
            !required(),
            "BLOCKPROBE_REQUIRE_UNBOUND is set but `unbound` is not installed"
        );
        eprintln!(
            "SKIPPED every_transport_against_unbound: `unbound` is not installed (apt-get install unbound; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unbound = Unbound::start(&binary, dir.path()).await;
    let resolvers = [
        ("u", format!("udp://127.0.0.1:{}", unbound.plain), "udp"),
        ("t", format!("tcp://127.0.0.1:{}", unbound.plain), "tcp"),
        (
            "d",
            format!("tls://127.0.0.1:{}#dns.test", unbound.dot),
            "dot",
        ),
        (
            "h",
            format!("https://127.0.0.1:{}/dns-query", unbound.doh),
            "doh",
        ),
    ];
    let mut args: Vec<String> = ["scan", "ok.test", "nx.test", "nodata.test", "big.test"]
        .map(str::to_owned)
        .into();
    for (name, spec, _) in &resolvers {
        args.extend(["--resolver".into(), format!("{name}={spec}")]);
    }
    args.extend([
        "--control-resolver".into(),
        format!("ctl=udp://127.0.0.1:{}", unbound.plain),
        "--canary".into(),
        "canary.test".into(),
        "--ca-file".into(),
        dir.path().join("ca.pem").display().to_string(),
        "--timeout".into(),
        "5s".into(),
        "--probes".into(),
        "dns".into(),
        "--quiet".into(),
    ]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let records = jsonl(&out.stdout);
    assert_eq!(records.len(), 4 * resolvers.len(), "{records:#?}");
    let big: Vec<String> = (0..BIG)
        .map(|i| format!("127.0.{}.{}", 100 + i / 256, i % 256))
        .collect();
    for (name, spec, transport) in &resolvers {
        let of = |target: &str| {
            let r = records
                .iter()
                .find(|r| r["target"] == target && r["resolver"] == *name)
                .unwrap_or_else(|| panic!("no record for {target} through {name}"));
            assert_eq!(r["dns_transport"], *transport, "{spec}: {r:#}");
            assert_eq!(r["resolver_healthy"], true, "{spec}: {r:#}");
            r
        };
        let ok = of("ok.test");
        assert_eq!(ok["dns_rcode"], "NOERROR", "{spec}: {ok:#}");
        assert_eq!(
            ok["dns_answers"],
            serde_json::json!(["127.0.0.10", "::1"]),
            "{spec}: {ok:#}"
        );
        assert_eq!(ok["verdict"], "reachable", "{spec}: {ok:#}");
        let nx = of("nx.test");
        assert_eq!(nx["dns_rcode"], "NXDOMAIN", "{spec}: {nx:#}");
        assert_eq!(nx["dns_answers"], serde_json::json!([]), "{spec}: {nx:#}");
        let nodata = of("nodata.test");
        assert_eq!(nodata["dns_rcode"], "NOERROR", "{spec}: {nodata:#}");
        assert_eq!(nodata["dns_answers"], serde_json::json!([]), "{spec}");
        assert_eq!(nodata["dns_error"], serde_json::Value::Null, "{spec}");
        let b = of("big.test");
        let mut got: Vec<String> = serde_json::from_value(b["dns_answers"].clone()).unwrap();
        got.sort();
        let mut want = big.clone();
        want.sort();
        assert_eq!(got, want, "{spec}: {b:#}");
        assert_eq!(b["verdict"], "reachable", "{spec}: {b:#}");
    }
}

//! Issue 16's lab: real OpenVPN servers (Debian's `openvpn`, `--dev null`: no tunnel device
//! needed) over UDP and TCP, one that requires tls-auth (silent to an unwrapped reset by
//! design), the mock network's UDP censor dropping the hard reset by signature in front of one,
//! and the mock SOCKS5 proxy as the outside view: every verdict right, nothing silent by design
//! called blocked. The mock-only behaviours are the `vpn` scenario's `--check`.

use std::net::SocketAddr;
use std::path::Path;

use blockprobe::mocknet::socks::{Outside, SocksProxy, key};
use blockprobe::mocknet::udp::{Mode, UdpCensor};
use blockprobe::probe::echo::Shape;

use crate::support::{jsonl, lab_tool, run, stderr, tool};

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Starts `openvpn` and waits for its readiness line: the socket is bound once it logs its
/// local link (UDP) or that it listens (TCP).
async fn openvpn(
    bin: &Path,
    dir: &Path,
    proto: &str,
    port: u16,
    extra: &[&str],
) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(bin)
        .current_dir(dir)
        .args([
            "--tls-server",
            "--dev",
            "null",
            "--dh",
            "none",
            "--verb",
            "3",
        ])
        .args(["--ca", "ca.pem", "--cert", "cert.pem", "--key", "key.pem"])
        .args([
            "--local",
            "127.0.0.1",
            "--proto",
            proto,
            "--lport",
            &port.to_string(),
        ])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.contains("link local (bound)") || l.contains("Listening for incoming TCP connection") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return child;
        }
    }
    panic!("openvpn exited before binding");
}

#[tokio::test]
async fn issue_16_real_openvpn_servers_behind_the_mock_censor() {
    let Some(bin) = lab_tool(
        "openvpn",
        "BLOCKPROBE_REQUIRE_OPENVPN",
        "apt-get install openvpn",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = blockprobe::mocknet::pki::Pki::generate("openvpn lab CA").unwrap();
    let (cert, k) = pki.issue_pem(&["vpn.lab"]).unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), k).unwrap();
    let genkey = std::process::Command::new(&bin)
        .args(["--genkey", "secret"])
        .arg(dir.path().join("ta.key"))
        .output()
        .unwrap();
    assert!(genkey.status.success(), "{genkey:?}");

    let (udp, tcp, auth, censored) = (
        free_port(true),
        free_port(false),
        free_port(true),
        free_port(true),
    );
    let _s1 = openvpn(&bin, dir.path(), "udp", udp, &[]).await;
    let _s2 = openvpn(&bin, dir.path(), "tcp-server", tcp, &[]).await;
    let _s3 = openvpn(
        &bin,
        dir.path(),
        "udp",
        auth,
        &["--tls-auth", "ta.key", "0"],
    )
    .await;
    let _s4 = openvpn(&bin, dir.path(), "udp", censored, &[]).await;
    // tls-auth with SHA256 as its HMAC digest (`auth SHA256`, common in real configurations).
    let auth256 = free_port(true);
    let _s7 = openvpn(
        &bin,
        dir.path(),
        "udp",
        auth256,
        &["--tls-auth", "ta.key", "0", "--auth", "SHA256"],
    )
    .await;
    // tls-crypt over UDP and TCP.
    let (crypt_udp, crypt_tcp) = (free_port(true), free_port(false));
    let _s5 = openvpn(
        &bin,
        dir.path(),
        "udp",
        crypt_udp,
        &["--tls-crypt", "ta.key"],
    )
    .await;
    let _s6 = openvpn(
        &bin,
        dir.path(),
        "tcp-server",
        crypt_tcp,
        &["--tls-crypt", "ta.key"],
    )
    .await;
    let ta = std::fs::read_to_string(dir.path().join("ta.key")).unwrap();
    let hex = blockprobe::probe::openvpn::static_key(&ta)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let other = {
        let out = std::process::Command::new(&bin)
            .args(["--genkey", "secret"])
            .arg(dir.path().join("other.key"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let k = std::fs::read_to_string(dir.path().join("other.key")).unwrap();
        blockprobe::probe::openvpn::static_key(&k)
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    // The censor drops OpenVPN's hard reset by its signature in front of the fourth server.
    let censor = UdpCensor::start(at(0), at(censored), Mode::DropShapes(vec![Shape::Openvpn]))
        .await
        .unwrap();
    // The outside view reaches every server directly (the censored one too).
    let mut outside = Outside::default();
    for p in [udp, auth] {
        outside.udp.insert(key("127.0.0.1", p), at(p));
    }
    outside
        .udp
        .insert(key("127.0.0.1", censor.addr.port()), at(censored));
    outside.tcp.insert(key("127.0.0.1", tcp), at(tcp));
    let proxy = SocksProxy::start("127.0.0.1".parse().unwrap(), outside)
        .await
        .unwrap();

    let targets = [
        (format!("openvpn://127.0.0.1:{udp}"), "reachable", None),
        (
            format!("openvpn://127.0.0.1:{tcp}?proto=tcp"),
            "reachable",
            None,
        ),
        // Silent by design from everywhere: never a block.
        (format!("openvpn://127.0.0.1:{auth}"), "inconclusive", None),
        // With its key (the server's direction is 0, the client's 1), it answers.
        (
            format!("openvpn://127.0.0.1:{auth}?tls_auth={hex}&key_direction=1"),
            "reachable",
            None,
        ),
        (
            format!("openvpn://127.0.0.1:{crypt_udp}?tls_crypt={hex}"),
            "reachable",
            None,
        ),
        (
            format!("openvpn://127.0.0.1:{auth256}?tls_auth={hex}&key_direction=1&auth=sha256"),
            "reachable",
            None,
        ),
        (
            format!("openvpn://127.0.0.1:{crypt_tcp}?proto=tcp&tls_crypt={hex}"),
            "reachable",
            None,
        ),
        // Another key: silent here and outside, never a block.
        (
            format!("openvpn://127.0.0.1:{crypt_udp}?tls_crypt={other}"),
            "inconclusive",
            None,
        ),
        (
            format!("openvpn://127.0.0.1:{}", censor.addr.port()),
            "blocked",
            Some("vpn.timeout"),
        ),
    ];
    expect_verdicts(&targets, proxy.addr).await;

    // The client's .ovpn file, key inline, as the scan's input.
    let ovpn = dir.path().join("client.ovpn");
    std::fs::write(
        &ovpn,
        format!("client\ndev tun\nproto udp\nremote 127.0.0.1 {crypt_udp}\n<tls-crypt>\n{ta}</tls-crypt>\n"),
    )
    .unwrap();
    let out = run(&[
        "scan",
        "-i",
        ovpn.to_str().unwrap(),
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--canary",
        "",
        "--quiet",
    ])
    .await;
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 1, "{}", stderr(&out));
    assert_eq!(recs[0]["verdict"], "reachable", "{}", recs[0]["detail"]);
    assert_eq!(recs[0]["evidence"]["openvpn"]["wrap"], "tls-crypt");
    let target = recs[0]["target"].as_str().unwrap();
    assert!(
        target.contains("tls_crypt=REDACTED-") && !target.contains(&hex[..32]),
        "{target}"
    );
}

/// Scans `targets` with the mock proxy as the control path and checks each one's verdict and
/// reason.
async fn expect_verdicts(targets: &[(String, &str, Option<&str>)], proxy: SocketAddr) {
    expect_verdicts_with(targets, proxy, &[]).await;
}

/// [`expect_verdicts`] with more scan options; records are found by their target as shown
/// (secrets redacted).
async fn expect_verdicts_with(
    targets: &[(String, &str, Option<&str>)],
    proxy: SocketAddr,
    extra: &[String],
) {
    let mut args: Vec<String> = vec!["scan".into()];
    args.extend(targets.iter().map(|t| t.0.clone()));
    args.extend(extra.iter().cloned());
    args.extend(
        [
            "--control-resolver",
            "c=udp://127.0.0.1:9",
            "--canary",
            "",
            "--timeout",
            "2s",
            "--quiet",
            "--control-proxy",
        ]
        .map(String::from),
    );
    args.push(format!("socks5://{proxy}"));
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    for (t, verdict, reason) in targets {
        let shown = blockprobe::target::Target::parse(t).unwrap().input;
        let r = recs
            .iter()
            .find(|r| r["target"] == shown.as_str())
            .unwrap_or_else(|| panic!("no record for {t}: {recs:#?}"));
        assert_eq!(
            (r["verdict"].as_str(), r["reason"].as_str()),
            (Some(*verdict), *reason),
            "{t}: {}",
            r["detail"]
        );
    }
}

fn sh(cmd: &Path, args: &[&str], input: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Deletes the lab's WireGuard interface however the test ends.
struct Interface(String);

impl Drop for Interface {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// A real WireGuard server (Debian's wireguard-go; it needs root for its tunnel device) behind
/// the mock censor dropping handshake initiations by signature and behind one cutting flows
/// after their handshake: a registered key completes the handshake and a second one after the
/// data packets, an unregistered one is inconclusive (never blocked), the censored paths are
/// blocked (`vpn.timeout` with the mock proxy as the outside view, `vpn.cut` on the fresh
/// flow's evidence), and a dead port is down.
#[tokio::test]
async fn issue_16_real_wireguard_server_behind_the_mock_censor() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let required =
        std::env::var("BLOCKPROBE_REQUIRE_WIREGUARD").is_ok_and(|v| !v.is_empty() && v != "0");
    let (Some(wggo), Some(wg), true) = (tool("wireguard-go"), tool("wg"), root) else {
        assert!(
            !required,
            "BLOCKPROBE_REQUIRE_WIREGUARD is set but wireguard-go, wg or root is missing"
        );
        eprintln!(
            "SKIPPED: needs wireguard-go and wg (apt-get install wireguard-go wireguard-tools) and root"
        );
        return;
    };
    let server_key = sh(&wg, &["genkey"], None);
    let server_pub = sh(&wg, &["pubkey"], Some(&server_key));
    let client_key = sh(&wg, &["genkey"], None);
    let client_pub = sh(&wg, &["pubkey"], Some(&client_key));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.key"), &server_key).unwrap();
    let iface = Interface(format!("bpwg{}", std::process::id() % 100_000));
    let _server = tokio::process::Command::new(&wggo)
        .arg(&iface.0)
        .env("WG_PROCESS_FOREGROUND", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Readiness: the interface answers `wg show` once wireguard-go has created it.
    let mut tries = 0;
    while !std::process::Command::new(&wg)
        .args(["show", &iface.0])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        tries += 1;
        if tries >= 500 {
            // No tunnel device here (a container without /dev/net/tun): .ci/run requires the
            // test only where it can create one.
            assert!(!required, "wireguard-go did not create {}", iface.0);
            eprintln!("SKIPPED: wireguard-go cannot create a tunnel device here");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let port = free_port(true);
    sh(
        &wg,
        &[
            "set",
            &iface.0,
            "listen-port",
            &port.to_string(),
            "private-key",
            dir.path().join("server.key").to_str().unwrap(),
            "peer",
            &client_pub,
            "allowed-ips",
            "10.99.0.2/32",
        ],
        None,
    );
    sh(Path::new("ip"), &["link", "set", &iface.0, "up"], None);

    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let censor = UdpCensor::start(at(0), at(port), Mode::DropShapes(vec![Shape::Wireguard]))
        .await
        .unwrap();
    // A second censor cuts flows after their handshake (two data packets through).
    let cutter = UdpCensor::start(at(0), at(port), Mode::CutAfterHandshake)
        .await
        .unwrap();
    let dead = free_port(true);
    let mut outside = Outside::default();
    outside.udp.insert(key("127.0.0.1", port), at(port));
    for c in [&censor, &cutter] {
        outside
            .udp
            .insert(key("127.0.0.1", c.addr.port()), at(port));
    }
    let proxy = SocksProxy::start("127.0.0.1".parse().unwrap(), outside)
        .await
        .unwrap();
    let enc = |k: &str| {
        k.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    };
    let keyed = |p: u16| {
        format!(
            "wireguard://127.0.0.1:{p}?public_key={}&private_key={}",
            enc(&server_pub),
            enc(&client_key)
        )
    };
    let targets = [
        (keyed(port), "reachable", None),
        (
            format!(
                "wireguard://127.0.0.1:{port}?public_key={}",
                enc(&server_pub)
            ),
            "inconclusive",
            None,
        ),
        (keyed(censor.addr.port()), "blocked", Some("vpn.timeout")),
        // The handshake completes, then the flow dies: a fresh flow's handshake proves the
        // server up.
        (keyed(cutter.addr.port()), "blocked", Some("vpn.cut")),
        (keyed(dead), "down", None),
    ];
    let mut args: Vec<String> = vec!["scan".into()];
    args.extend(targets.iter().map(|t| t.0.clone()));
    args.extend(
        [
            "--control-resolver",
            "c=udp://127.0.0.1:9",
            "--canary",
            "",
            "--timeout",
            "2s",
            "--quiet",
            // One client key for every target: a WireGuard server takes one initiation per
            // peer per 20 ms, so the targets go one at a time (each one's own flows are
            // already sequential).
            "--concurrency",
            "1",
            "--control-proxy",
        ]
        .map(String::from),
    );
    args.push(format!("socks5://{}", proxy.addr));
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    // The client's private key is a secret: no report carries it.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(&enc(&client_key)),
        "the private key leaked: {text}"
    );
    let recs = jsonl(&out.stdout);
    for (t, verdict, reason) in &targets {
        let shown = blockprobe::target::Target::parse(t).unwrap().input;
        assert!(
            !t.contains("private_key=") || shown.contains("private_key=REDACTED-"),
            "{shown}"
        );
        let r = recs
            .iter()
            .find(|r| r["target"] == shown.as_str())
            .unwrap_or_else(|| panic!("no record for {shown}: {recs:#?}"));
        assert_eq!(
            (r["verdict"].as_str(), r["reason"].as_str()),
            (Some(*verdict), *reason),
            "{t}: {}",
            r["detail"]
        );
    }
}

/// A real Tor relay (Debian's `tor`, on loopback, its directory authority a dead loopback port
/// so it never reaches out) directly, behind the mock censor resetting after the ClientHello
/// and swallowing it, and a dead port: the link handshake proves the relay (VERSIONS with link
/// protocol 5, CERTS with the RSA identity and Ed25519 certificates), the censored paths are
/// blocked with the mock proxy as the outside view — and, without it, a censor that resets
/// only Tor-shaped ClientHellos is blocked on the decoy handshake's evidence.
#[tokio::test]
async fn issue_16_a_real_tor_relay_behind_the_mock_censor() {
    use blockprobe::mocknet::censor::{Behaviour, Censor};
    use tokio::io::AsyncBufReadExt as _;
    let Some(bin) = lab_tool("tor", "BLOCKPROBE_REQUIRE_TOR", "apt-get install tor") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let or_port = free_port(false);
    let torrc = format!(
        "DataDirectory {data}\nSocksPort 0\nORPort 127.0.0.1:{or_port}\nAddress 127.0.0.1\n\
         AssumeReachable 1\nPublishServerDescriptor 0\nExitRelay 0\nNickname blockprobelab\n\
         ContactInfo lab\nDirAuthority lab orport=9 no-v2 127.0.0.1:9 \
         0000000000000000000000000000000000000000\nUseDefaultFallbackDirs 0\n\
         Log notice stdout\n",
        data = dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("torrc"), torrc).unwrap();
    let mut relay = tokio::process::Command::new(&bin)
        .arg("-f")
        .arg(dir.path().join("torrc"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready once its keys exist: the TLS context is built before it logs its fingerprint.
    let mut lines = tokio::io::BufReader::new(relay.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    loop {
        match lines.next_line().await.unwrap() {
            Some(l) if l.contains("identity key fingerprint") => break,
            Some(l) => log.push(l),
            None => panic!("tor exited before it was ready: {log:#?}"),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let TcpLab {
        reset,
        swallow,
        proxy,
    } = TcpLab::start(or_port).await;
    let dead = free_port(false);
    let open = format!("tor://127.0.0.1:{or_port}");
    let targets = [
        (open.clone(), "reachable", None),
        (
            format!("tor://127.0.0.1:{}", reset.addr.port()),
            "blocked",
            Some("vpn.reset"),
        ),
        (
            format!("tor://127.0.0.1:{}", swallow.addr.port()),
            "blocked",
            Some("vpn.timeout"),
        ),
        (format!("tor://127.0.0.1:{dead}"), "down", None),
    ];
    expect_verdicts(&targets, proxy.addr).await;

    // Without a control path: a censor resetting only Tor-shaped ClientHellos is settled by the
    // decoy handshake on the same address; the evidence names what proves a relay.
    let tor_tls = Censor::start(at(0), at(or_port), Behaviour::ResetTorTls)
        .await
        .unwrap();
    let fingerprinted = format!("tor://127.0.0.1:{}", tor_tls.addr.port());
    let out = run(&[
        "scan",
        &open,
        &fingerprinted,
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--canary",
        "",
        "--quiet",
    ])
    .await;
    let recs = jsonl(&out.stdout);
    let rec = |t: &str| recs.iter().find(|r| r["target"] == t).unwrap().clone();
    let blocked = rec(&fingerprinted);
    assert_eq!(
        (blocked["verdict"].as_str(), blocked["reason"].as_str()),
        (Some("blocked"), Some("vpn.reset")),
        "{blocked:#}"
    );
    assert_eq!(blocked["evidence"]["tor"]["direct"][0]["decoy"]["ok"], true);
    let open = rec(&open);
    let tor = &open["evidence"]["tor"]["direct"][0];
    assert_eq!(tor["phase"], "answered", "{tor:#}");
    assert!(
        tor["link_versions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(5)),
        "{tor:#}"
    );
    let certs = tor["cert_types"].as_array().unwrap();
    for t in [2, 4, 5, 7] {
        assert!(certs.contains(&serde_json::json!(t)), "type {t}: {tor:#}");
    }
    assert_eq!(tor["tls"]["ok"], true, "{tor:#}");
}

/// A TCP server's censored paths in the lab: the mock censor resetting after the first packet
/// and one swallowing what the client sends, both in front of the server, and the mock proxy
/// reaching the server from all three addresses (the outside view).
struct TcpLab {
    reset: blockprobe::mocknet::censor::Censor,
    swallow: blockprobe::mocknet::censor::Censor,
    proxy: SocksProxy,
}

impl TcpLab {
    async fn start(port: u16) -> Self {
        use blockprobe::mocknet::censor::{Behaviour, Censor};
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let reset = Censor::start(at(0), at(port), Behaviour::ResetAfterFirst)
            .await
            .unwrap();
        let swallow = Censor::start(at(0), at(port), Behaviour::FreezeUpload(0))
            .await
            .unwrap();
        let mut outside = Outside::default();
        for p in [port, reset.addr.port(), swallow.addr.port()] {
            outside.tcp.insert(key("127.0.0.1", p), at(port));
        }
        let proxy = SocksProxy::start("127.0.0.1".parse().unwrap(), outside)
            .await
            .unwrap();
        Self {
            reset,
            swallow,
            proxy,
        }
    }
}

/// Starts `ss-server` (shadowsocks-libev) on `port` and waits until it accepts connections.
async fn ss_server(bin: &Path, port: u16, method: &str, password: &str) -> tokio::process::Child {
    let child = tokio::process::Command::new(bin)
        .args(["-s", "127.0.0.1", "-p", &port.to_string()])
        .args(["-k", password, "-m", method])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Its readiness signal is the listening socket itself (it logs nothing when quiet).
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("ss-server never listened on {port}");
}

/// Real Shadowsocks servers (Debian's shadowsocks-libev `ss-server`) with chacha20-ietf-poly1305
/// and aes-256-gcm, directly, behind the mock censor resetting after the first packet and
/// swallowing the request, with a wrong password, and a dead port; the tunnel check is a mock
/// origin on loopback. Only the control path can tell a swallowed request from a wrong
/// password: both are silence here, and the wrong password is silence outside too.
#[tokio::test]
async fn issue_16_real_shadowsocks_servers_behind_the_mock_censor() {
    use blockprobe::mocknet::censor::{Behaviour, Censor};
    let Some(bin) = lab_tool(
        "ss-server",
        "BLOCKPROBE_REQUIRE_SHADOWSOCKS",
        "apt-get install shadowsocks-libev",
    ) else {
        return;
    };
    let origin = blockprobe::mocknet::origin::Origin::start("127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let (chacha, aes) = (free_port(false), free_port(false));
    let _s1 = ss_server(&bin, chacha, "chacha20-ietf-poly1305", "lab-secret").await;
    let _s2 = ss_server(&bin, aes, "aes-256-gcm", "lab-secret").await;
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let reset = Censor::start(at(0), at(chacha), Behaviour::ResetAfterFirst)
        .await
        .unwrap();
    let swallow = Censor::start(at(0), at(aes), Behaviour::FreezeUpload(0))
        .await
        .unwrap();
    let mut outside = Outside::default();
    outside.tcp.insert(key("127.0.0.1", chacha), at(chacha));
    outside.tcp.insert(key("127.0.0.1", aes), at(aes));
    outside
        .tcp
        .insert(key("127.0.0.1", reset.addr.port()), at(chacha));
    outside
        .tcp
        .insert(key("127.0.0.1", swallow.addr.port()), at(aes));
    let proxy = SocksProxy::start("127.0.0.1".parse().unwrap(), outside)
        .await
        .unwrap();
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let chacha_user = b64("chacha20-ietf-poly1305:lab-secret");
    let targets = [
        (
            format!("ss://{chacha_user}@127.0.0.1:{chacha}#lab"),
            "reachable",
            None,
        ),
        (
            format!("ss://aes-256-gcm:lab-secret@127.0.0.1:{aes}"),
            "reachable",
            None,
        ),
        (
            format!("ss://{chacha_user}@127.0.0.1:{}", reset.addr.port()),
            "blocked",
            Some("vpn.reset"),
        ),
        (
            format!(
                "ss://aes-256-gcm:lab-secret@127.0.0.1:{}",
                swallow.addr.port()
            ),
            "blocked",
            Some("vpn.timeout"),
        ),
        // Silent here and outside: the server ignores what does not decrypt.
        (
            // (A tag tells it apart: records show passwords redacted.)
            format!("ss://aes-256-gcm:wrong@127.0.0.1:{aes}#wrong"),
            "inconclusive",
            None,
        ),
        (
            format!("ss://aes-256-gcm:lab-secret@127.0.0.1:{}", free_port(false)),
            "down",
            None,
        ),
    ];
    let check = format!("http://{}/", origin.addr);
    expect_verdicts_with(&targets, proxy.addr, &["--tunnel-check".into(), check]).await;
}

/// A real obfs4 bridge (Debian's `obfs4proxy` as a standalone server, its ORPort a dead
/// loopback port: the handshake is answered before it is dialled) given as an `obfs4://` target
/// and as a pasted bridge line, behind the mock censor resetting after the client handshake and
/// swallowing it, with a stale cert, and a dead port.
#[tokio::test]
async fn issue_16_a_real_obfs4_bridge_behind_the_mock_censor() {
    use tokio::io::AsyncBufReadExt as _;
    let Some(bin) = lab_tool(
        "obfs4proxy",
        "BLOCKPROBE_REQUIRE_OBFS4",
        "apt-get install obfs4proxy",
    ) else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let mut bridge = tokio::process::Command::new(&bin)
        .env("TOR_PT_MANAGED_TRANSPORT_VER", "1")
        .env("TOR_PT_SERVER_TRANSPORTS", "obfs4")
        .env("TOR_PT_STATE_LOCATION", state.path())
        .env("TOR_PT_SERVER_BINDADDR", "obfs4-127.0.0.1:0")
        .env("TOR_PT_ORPORT", "127.0.0.1:9")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Ready when it names its listener: `SMETHOD obfs4 127.0.0.1:PORT ARGS:cert=…,iat-mode=0`.
    let mut lines = tokio::io::BufReader::new(bridge.stdout.take().unwrap()).lines();
    let (port, cert) = loop {
        let l = lines
            .next_line()
            .await
            .unwrap()
            .expect("obfs4proxy exited before its SMETHOD line");
        if let Some(rest) = l.strip_prefix("SMETHOD obfs4 127.0.0.1:") {
            let (port, args) = rest.split_once(' ').unwrap();
            let cert = args
                .trim_start_matches("ARGS:cert=")
                .split(',')
                .next()
                .unwrap();
            break (port.parse::<u16>().unwrap(), cert.to_owned());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let TcpLab {
        reset,
        swallow,
        proxy,
    } = TcpLab::start(port).await;
    let target = |p: u16, cert: &str| format!("obfs4://127.0.0.1:{p}?cert={cert}&iat-mode=0");
    // The same bridge with the first byte of its node id changed: a stale bridge line.
    let stale = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let mut raw = b64.decode(&cert).unwrap();
        raw[0] ^= 1;
        b64.encode(raw)
    };
    let targets = [
        (target(port, &cert), "reachable", None),
        // A pasted bridge line (the same bridge as a URL would be one target: de-duplicated).
        (
            format!(
                "Bridge obfs4 127.0.0.1:{} 0123456789ABCDEF0123456789ABCDEF01234567 cert={cert} iat-mode=0",
                reset.addr.port()
            ),
            "blocked",
            Some("vpn.reset"),
        ),
        (
            target(swallow.addr.port(), &cert),
            "blocked",
            Some("vpn.timeout"),
        ),
        (target(port, &stale), "inconclusive", None),
        (target(free_port(false), &cert), "down", None),
    ];
    expect_verdicts(&targets, proxy.addr).await;
}

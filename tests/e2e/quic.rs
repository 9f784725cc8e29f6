//! Issue 15: the QUIC probe from the real binary against the mock network's HTTP/3 origin and
//! UDP censor (the per-behaviour verdicts are the `quic` scenario's `--check`).

use crate::support::{args_without, jsonl, run, spawn_mocknet, stderr};

/// `--probes …,quic`: an HTTPS target's HTTP/3 twin is its own record, so a site can be
/// blocked over TCP and reachable over QUIC in the same run, each with its own evidence.
#[tokio::test]
async fn issue_15_an_https_target_gets_a_quic_twin_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) =
        spawn_mocknet("probes/scenarios/quic.toml", &dir.path().join("ready.json")).await;
    let mut args = args_without(&ready.scan_args, &["-i"]);
    args.extend(
        [
            "https://tcpreset.example/",
            "quic://video.example/",
            "--probes",
            "dns,tcp,tls,http,quic",
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let by_target = |t: &str| {
        recs.iter()
            .find(|r| r["target"] == t)
            .unwrap_or_else(|| panic!("no record for {t}: {recs:#?}"))
    };
    let tcp = by_target("https://tcpreset.example/");
    assert_eq!(
        (tcp["verdict"].as_str(), tcp["reason"].as_str()),
        (Some("blocked"), Some("tcp.reset")),
        "{tcp:#}"
    );
    let twin = by_target("quic://tcpreset.example/");
    assert_eq!(twin["verdict"], "reachable", "{twin:#}");
    assert_eq!(
        twin["probes"],
        serde_json::json!(["dns", "quic"]),
        "{twin:#}"
    );
    assert_eq!(
        twin["evidence"]["quic"]["direct"][0]["status"], 200,
        "{twin:#}"
    );
    // A quic:// target is measured once, with no twin of its own.
    let sni = by_target("quic://video.example/");
    assert_eq!(sni["reason"], "quic.timeout", "{sni:#}");
    assert_eq!(sni["layer"], "quic", "{sni:#}");
    assert_eq!(
        sni["evidence"]["quic"]["decoy"]["handshake"], true,
        "{sni:#}"
    );
    assert_eq!(recs.len(), 3, "{recs:#?}");
}

/// The Python with aioquic (PyPI) for the third-party HTTP/3 origin: `BLOCKPROBE_LAB_PYTHON`,
/// else `python3` when it can import aioquic.
fn lab_python() -> Option<String> {
    let python = std::env::var("BLOCKPROBE_LAB_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// Issue 15's lab: a third-party HTTP/3 server (aioquic) behind the mock network's UDP censor
/// — QUIC dropped by SNI (decrypted from the Initial), by version and by address, a site whose
/// TCP is reset while its QUIC gets through, one with no QUIC at all — and every verdict and
/// layer right, with the control proxy and without.
#[tokio::test]
async fn issue_15_a_third_party_http3_origin_behind_the_mock_censor() {
    let Some(python) = lab_python() else {
        let required =
            std::env::var("BLOCKPROBE_REQUIRE_AIOQUIC").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "BLOCKPROBE_REQUIRE_AIOQUIC is set but no Python with aioquic (set BLOCKPROBE_LAB_PYTHON)"
        );
        eprintln!("SKIPPED: no Python with aioquic (pip install aioquic; BLOCKPROBE_LAB_PYTHON)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = blockprobe::mocknet::pki::Pki::generate("aioquic lab CA").unwrap();
    // Every name of the `quic` scenario, and the decoy SNI.
    let names = [
        "h3.example",
        "video.example",
        "cdn.example",
        "blackhole.example",
        "tcpreset.example",
        "noquic.example",
        "example.com",
    ];
    let (cert, key) = pki.issue_pem(&names).unwrap();
    let path = |f: &str| dir.path().join(f);
    std::fs::write(path("cert.pem"), cert).unwrap();
    std::fs::write(path("key.pem"), key).unwrap();
    std::fs::write(path("ca.pem"), pki.ca_pem()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/h3_server.py");
    let mut server = tokio::process::Command::new(&python)
        .arg(script)
        .arg("--cert")
        .arg(path("cert.pem"))
        .arg("--key")
        .arg(path("key.pem"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Readiness: the server prints its port once it listens.
    let mut line = String::new();
    let stdout = server.stdout.take().unwrap();
    tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(stdout), &mut line)
        .await
        .unwrap();
    let port: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let origin = format!("127.0.0.1:{}", port["port"]);
    let out = tokio::process::Command::new(crate::support::bin())
        .args([
            "mocknet",
            "--scenario",
            "quic",
            "--check",
            "--quic-origin",
            &origin,
        ])
        .arg("--quic-origin-ca")
        .arg(path("ca.pem"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("quic: 7 of 7 targets as expected with the control path, 7 of 7 without"),
        "{text}"
    );
    // The GETs were answered (by aioquic: the built-in origin is not started with
    // --quic-origin).
    assert!(text.contains("HTTP/3 status 200"), "{text}");
}

/// A handshake from a quinn client whose ClientHello is padded with ALPN names past one
/// datagram (like browsers' post-quantum ClientHellos), through a mock censor.
async fn big_hello_handshake(censor: std::net::SocketAddr, sni: &str, ca: &str) -> bool {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = (0..8u8).map(|i| vec![b'a' + i; 200]).collect();
    tls.alpn_protocols.push(b"h3".to_vec());
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let cfg = quinn::ClientConfig::new(std::sync::Arc::new(quic));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = ep.connect_with(cfg, censor, sni).unwrap();
    let ok = tokio::time::timeout(std::time::Duration::from_secs(1), connecting)
        .await
        .is_ok_and(|r| r.is_ok());
    ep.close(0u32.into(), b"");
    ok
}

/// The mock censor reads the SNI of a ClientHello that spans two Initials in two datagrams,
/// as browsers send them: such a flow is dropped by SNI, and another name passes.
#[tokio::test]
async fn issue_15_the_censor_reads_a_client_hello_across_datagrams() {
    use blockprobe::mocknet::quic::H3Origin;
    use blockprobe::mocknet::udp::{Mode, UdpCensor as QuicCensor};
    let pki = blockprobe::mocknet::pki::Pki::generate("big hello CA").unwrap();
    let names = ["video.example", "other.example"];
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let origin = H3Origin::start(lo, pki.server_config(&names, &[b"h3"]).unwrap()).unwrap();
    let censor = QuicCensor::start(
        "127.0.0.1:0".parse().unwrap(),
        origin.addr,
        Mode::DropSni(vec!["video.example".into()]),
    )
    .await
    .unwrap();
    let ca = pki.ca_pem();
    assert!(
        big_hello_handshake(origin.addr, "video.example", ca).await,
        "the client works without the censor"
    );
    assert!(
        big_hello_handshake(censor.addr, "other.example", ca).await,
        "another SNI passes"
    );
    assert!(
        !big_hello_handshake(censor.addr, "video.example", ca).await,
        "a listed SNI in a two-datagram ClientHello is dropped"
    );
}

/// From the hostile-user pass: a control proxy that cannot be reached says nothing about the
/// targets (inconclusive, never `down`), and a twin also listed as a `quic://` target is
/// measured once.
#[tokio::test]
async fn issue_15_a_dead_proxy_decides_nothing_and_twins_are_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) =
        spawn_mocknet("probes/scenarios/quic.toml", &dir.path().join("ready.json")).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut args = args_without(&ready.scan_args, &["-i", "--control-proxy"]);
    args.extend(
        [
            "quic://blackhole.example/",
            "https://tcpreset.example/",
            "https://h3.example/",
            "quic://h3.example/",
            "--probes",
            "dns,tcp,tls,http,quic",
            "--control-proxy",
        ]
        .map(String::from),
    );
    args.push(format!("socks5://{closed}"));
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let of = |t: &str| recs.iter().filter(|r| r["target"] == t).collect::<Vec<_>>();
    for t in ["quic://blackhole.example/", "https://tcpreset.example/"] {
        let r = of(t);
        assert_eq!(r.len(), 1, "{t}: {recs:#?}");
        assert_eq!(r[0]["verdict"], "inconclusive", "{t}: {:#}", r[0]);
        assert_eq!(r[0]["needs"], "control_path", "{t}: {:#}", r[0]);
    }
    assert_eq!(of("quic://h3.example/").len(), 1, "{recs:#?}");
    assert_eq!(
        of("quic://tcpreset.example/").len(),
        1,
        "the twin: {recs:#?}"
    );
}

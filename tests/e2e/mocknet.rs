//! `blockprobe mocknet`: shipped scenarios pass `--check`, a wrong expectation fails it, a
//! behaviour the mock cannot produce is an error, and the ready line drives a real scan.

use crate::support::{jsonl, run, spawn_mocknet, stderr, write};

/// Every shipped scenario, each in its own mock network, a few at once: they spend most of
/// their time waiting out the censors' silences.
#[tokio::test]
async fn every_shipped_scenario_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/scenarios");
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Every shipped scenario is also in the binary (`mocknet --scenario NAME`).
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        assert!(
            blockprobe::mocknet::scenario::BUNDLED
                .iter()
                .any(|(n, _)| *n == stem),
            "{stem} is not bundled"
        );
        // The whitelist networks wait out many silent handshakes: checked on their own, at once
        // (tests/e2e/regime.rs), to keep this one well inside the CI's time limit.
        // So do the calls (their streams last seconds; tests/e2e/media.rs).
        if !stem.starts_with("whitelist") && stem != "calls" {
            paths.push(path);
        }
    }
    assert!(paths.len() >= 2, "scenarios found: {}", paths.len());
    let runs = paths.iter().map(|path| async move {
        let out = run([
            "mocknet",
            "--scenario",
            path.to_str().unwrap(),
            "--check",
            "--timeout",
            "3s",
        ])
        .await;
        (path, out)
    });
    // Three at a time: their rates (throttling against a reference) need CPU to spare.
    use futures::StreamExt as _;
    let outs: Vec<_> = futures::stream::iter(runs)
        .buffer_unordered(3)
        .collect()
        .await;
    for (path, out) in outs {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {text}{}",
            path.display(),
            stderr(&out)
        );
        assert!(!text.lines().any(|l| l.starts_with("FAIL")), "{text}");
        // The mock servers saw real traffic: no verdict without packets.
        let summary = text.lines().last().unwrap();
        let numbers: Vec<u64> = summary
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // "N of M targets ... with the control path, N2 of M without (traffic: Q DNS queries
        // ..., C at the control, O origin connections, P proxy connects)"
        assert_eq!(numbers.len(), 8, "{summary}");
        assert_eq!(numbers[0], numbers[1], "{summary}");
        assert_eq!(numbers[2], numbers[3], "{summary}");
        assert!(numbers[4..].iter().all(|n| *n > 0), "{summary}");
    }
}

#[tokio::test]
async fn a_wrong_expectation_fails_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.toml");
    write(
        &path,
        "name = \"wrong\"\n[[target]]\ntarget = \"a.example\"\ndns = \"nxdomain\"\n\
         expect = { verdict = \"reachable\" }\n[[target]]\ntarget = \"b.example\"\n\
         expect = { verdict = \"reachable\" }\n",
    );
    let out = run(["mocknet", "--scenario", path.to_str().unwrap(), "--check"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL a.example"), "{text}");
    assert!(text.contains("got blocked dns.nxdomain"), "{text}");
    assert!(text.contains("ok   b.example"), "{text}");
}

#[tokio::test]
async fn behaviours_the_mock_cannot_produce_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (body, needle) in [
        ("dns = \"nxdomain\"\nudp = \"drop\"", "udp"),
        ("tls = \"reset\"\nfreeze = 16384", "one censor behaviour"),
        ("tls = \"reset\"\nscheme = \"http\"", "https"),
        ("throttle = 0", "at least 1"),
        ("dns = \"teleport\"", "teleport"),
        (
            "expect = { verdict = \"blocked\", reason = \"dns.magic\" }",
            "dns.magic",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        let expect = if body.contains("expect") {
            ""
        } else {
            "expect = { verdict = \"blocked\" }\n"
        };
        write(
            &path,
            &format!("name = \"bad\"\n[[target]]\ntarget = \"a.example\"\n{body}\n{expect}"),
        );
        let out = run(["mocknet", "--scenario", path.to_str().unwrap(), "--check"]).await;
        assert_eq!(out.status.code(), Some(2), "{body}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{body}: {}", stderr(&out));
    }
}

#[tokio::test]
async fn ready_line_drives_a_scan_and_sigterm_stops_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("ready.json");
    let (mut child, ready) = spawn_mocknet("probes/scenarios/all.toml", &ready_file).await;
    let from_file: blockprobe::mocknet::Ready =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).unwrap()).unwrap();
    assert_eq!(from_file.scan_args, ready.scan_args);

    let mut args = ready.scan_args.clone();
    args.extend([
        "--quiet".into(),
        "--resolver".into(),
        format!("dot={}", ready.isp.dot),
    ]);
    args.extend(["--resolver".into(), format!("doh={}", ready.isp.doh)]);
    args.extend(["--resolver".into(), format!("tcp={}", ready.isp.tcp)]);
    // The ready args name `isp`; adding three more vantages keeps it.
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 34 * 4);
    let nx_doh = recs
        .iter()
        .find(|r| r["host"] == "nxdomain.example" && r["resolver"] == "doh")
        .unwrap();
    assert_eq!(nx_doh["reason"], "dns.nxdomain", "{nx_doh:#}");

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}

/// The censor's upload freeze forwards exactly N bytes towards the server, then swallows the
/// rest without closing or resetting anything.
#[tokio::test]
async fn censor_freezes_uploads_after_n_bytes() {
    use blockprobe::mocknet::censor::{Behaviour, Censor};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        all.len()
    });
    let censor = Censor::start(
        "127.0.0.1:0".parse().unwrap(),
        up_addr,
        Behaviour::FreezeUpload(16 * 1024),
    )
    .await
    .unwrap();
    let mut c = tokio::net::TcpStream::connect(censor.addr).await.unwrap();
    c.write_all(&vec![b'u'; 48 * 1024]).await.unwrap();
    c.shutdown().await.unwrap();
    assert_eq!(received.await.unwrap(), 16 * 1024);
}

//! Issue 13 (researcher experience): bundled scenarios, last-wins flags, --fail-on reasons on
//! stderr even when quiet.

use crate::support::{Net, closed_scan, run, stderr};

#[tokio::test]
async fn issue_13_bundled_scenarios_run_from_anywhere() {
    let out = run(["mocknet", "--list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["russia", "russia-apps", "all", "controls"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from {text}"
        );
    }
    // By name, from a directory without the checkout's files.
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(crate::support::bin())
        .args([
            "mocknet",
            "--scenario",
            "russia",
            "--check",
            "--timeout",
            "3s",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "russia: 17 of 17 targets as expected with the control path, 17 of 17 without"
        ),
        "{text}"
    );

    // No network named: say what is needed.
    let out = run(["mocknet"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--scenario NAME|FILE") && stderr(&out).contains("--suite NAME"),
        "{}",
        stderr(&out)
    );

    let out = run(["mocknet", "--scenario", "atlantis"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown scenario `atlantis`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("russia-apps"), "{}", stderr(&out));
}

#[tokio::test]
async fn issue_13_a_repeated_flag_takes_the_last_value_and_fail_on_says_why() {
    let net = Net::start().await;
    let mut args = net.args();
    // The mock's scan_args carry --timeout; a user appends another one: the last wins.
    args.extend(
        [
            "nx.test",
            "ok.test",
            "--timeout",
            "5s",
            "--fail-on",
            "blocked",
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // --quiet, yet the failing result is named, with its reason.
    assert!(
        err.contains("--fail-on: nx.test via isp: blocked dns.nxdomain"),
        "{err}"
    );
    assert!(!err.contains("ok.test"), "{err}");
}

/// On a terminal without `-o`, results are a readable table as they arrive (coloured by
/// verdict unless NO_COLOR), and the summary names what is blocked and the run; piped, the
/// same scan writes JSON lines (scripts keep working). The terminal is `script`'s pty.
#[tokio::test]
async fn issue_13_a_terminal_gets_a_table_and_a_pipe_gets_jsonl() {
    let Some(script) = crate::support::tool("script") else {
        eprintln!("SKIPPED: `script` (util-linux) is not installed");
        return;
    };
    let origin = blockprobe::mocknet::origin::Origin::start("127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let args = format!(
        "{} scan tcp://{} tcp://127.0.0.1:9 --control-resolver c=udp://127.0.0.1:9 --canary '' --timeout 2s --run-id tty-run",
        crate::support::bin(),
        origin.addr
    );
    for color in [true, false] {
        let out = tokio::process::Command::new(&script)
            .args(["-qec", &args, "/dev/null"])
            .env("NO_COLOR", if color { "" } else { "1" })
            .env("TERM", "xterm")
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains("{\"run_id\""),
            "no JSON on a terminal: {text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("tcp://127.0.0.1:9 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("inconclusive"), "{line}");
        assert!(line.contains("TCP fails"), "the detail follows: {line}");
        assert_eq!(text.contains("\u{1b}[32mreachable"), color, "{text}");
        assert!(text.contains("run tty-run"), "{text}");
    }
    // Piped: JSON lines.
    let out = run(closed_scan(&format!("tcp://{}", origin.addr), &[])).await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\"run_id\""));
}

/// Two runs of the mock network with the scenario changed in between measure the same targets
/// (target texts carry no random port), so `diff` reports the one site that became blocked —
/// nothing new, nothing gone — and `diff --fail-on blocked` exits 1.
#[tokio::test]
async fn issue_13_stable_mock_identities_make_diff_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("runs.db").display());
    let scenario = |site: &str| {
        format!(
            "name = \"changing\"\ndescription = \"a site that becomes blocked\"\n\n\
             [[target]]\ntarget = \"site.example\"\n{site}\n\n\
             [[target]]\ntarget = \"other.example\"\nexpect = {{ verdict = \"reachable\" }}\n"
        )
    };
    let runs = [
        ("run-a", scenario("expect = { verdict = \"reachable\" }")),
        (
            "run-b",
            scenario("tls = \"reset\"\nexpect = { verdict = \"blocked\", reason = \"tls.reset\" }"),
        ),
    ];
    for (id, text) in &runs {
        let path = dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, text).unwrap();
        let (_child, ready) = crate::support::spawn_mocknet_with(
            &["--scenario", path.to_str().unwrap()],
            &dir.path().join(format!("{id}.ready.json")),
        )
        .await;
        let mut args = ready.scan_args.clone();
        args.extend(["--quiet", "--run-id", id, "--store", &store].map(String::from));
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(&[
        "diff",
        "--store",
        &store,
        "run-a",
        "run-b",
        "--fail-on",
        "blocked",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("https://site.example/"), "{text}");
    assert!(text.contains("tls.reset"), "{text}");
    assert!(!text.contains("other.example"), "unchanged: {text}");
    assert!(text.contains("0 new, 0 gone"), "{text}");
    for kind in ["new", "gone"] {
        assert!(
            !text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(kind)),
            "{kind}: {text}"
        );
    }
}

/// `--vantage NAME` (else the host name) is in every record, the JSON run and the store, and
/// `history`/`export --vantage` pick one probe's records out of a fleet's store.
#[tokio::test]
async fn issue_13_vantage_labels_records_and_filters_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("runs.db").display());
    let origin = blockprobe::mocknet::origin::Origin::start("127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let target = format!("tcp://{}", origin.addr);
    let report = dir.path().join("msk.json");
    // A STUN server that tells the probe its public address (on loopback: 127.0.0.1).
    let stun = blockprobe::mocknet::stun::StunServer::start(
        "127.0.0.1".parse().unwrap(),
        blockprobe::mocknet::stun::Mode::Answer,
    )
    .await
    .unwrap();
    for (id, vantage) in [("run-msk", Some("msk-beeline-1")), ("run-host", None)] {
        let mut args = closed_scan(&target, &["--quiet", "--run-id", id, "--store", &store]);
        if let Some(v) = vantage {
            args.extend([
                "--vantage".into(),
                v.into(),
                "-o".into(),
                report.display().to_string(),
                "--public-ip-stun".into(),
                stun.addr.to_string(),
            ]);
        }
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["run"]["vantage"], "msk-beeline-1");
    assert_eq!(json["records"][0]["vantage"], "msk-beeline-1");
    assert_eq!(json["run"]["public_ip"], "127.0.0.1");
    assert_eq!(json["records"][0]["public_ip"], "127.0.0.1");
    let out = run(&[
        "export",
        "--store",
        &store,
        "--format",
        "csv",
        "--vantage",
        "msk-beeline-1",
    ])
    .await;
    let csv = String::from_utf8_lossy(&out.stdout);
    assert_eq!(csv.lines().count(), 2, "a header and one record: {csv}");
    assert!(
        csv.contains("run-msk") && !csv.contains("run-host"),
        "{csv}"
    );
    // The other run carries the host name.
    let host = blockprobe::store::host_name();
    let out = run(&[
        "history",
        "--store",
        &store,
        "--vantage",
        &host,
        "--format",
        "csv",
    ])
    .await;
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(
        history.contains("run-host") && !history.contains("run-msk"),
        "{history}"
    );
    // Two places are two timelines, not one that flips.
    let out = run(&["history", "--store", &store, "--target", &target]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("system@msk-beeline-1") && table.contains(&format!("system@{host}")),
        "{table}"
    );
    // A run is resumed from where it was measured, or not at all.
    let db = dir.path().join("runs.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE runs SET status = 'interrupted' WHERE run_id = 'run-msk'",
            [],
        )
        .unwrap();
    let out = run(closed_scan(
        &target,
        &["--quiet", "--store", &store, "--resume", "run-msk"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--vantage msk-beeline-1"),
        "{}",
        stderr(&out)
    );
    let bad = run(&["scan", &target, "--vantage", ""]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // A vantage the store does not have: say which it has.
    let out = run(&["history", "--store", &store, "--vantage", "nope"]).await;
    assert!(stderr(&out).contains("msk-beeline-1"), "{}", stderr(&out));
    let out = run(&[
        "export",
        "--store",
        &store,
        "--format",
        "csv",
        "--vantage",
        "nope",
    ])
    .await;
    assert!(stderr(&out).contains("msk-beeline-1"), "{}", stderr(&out));
}

/// A run that did not run every step says so in its summary line (a DNS-only run's "0 blocked"
/// is not a clean bill of health).
#[tokio::test]
async fn issue_13_the_summary_names_the_probes_when_not_the_default() {
    let base = [
        "scan",
        "tcp://127.0.0.1:9",
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--canary",
        "",
    ];
    let mut dns_only = base.to_vec();
    dns_only.extend(["--probes", "dns"]);
    let out = run(&dns_only).await;
    assert!(stderr(&out).contains("(probes dns):"), "{}", stderr(&out));
    let out = run(&base).await;
    assert!(!stderr(&out).contains("(probes"), "{}", stderr(&out));
}

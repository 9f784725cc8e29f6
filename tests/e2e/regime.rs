//! Issue 17's lab: the mock network in a whitelist regime (unlisted destinations connect, then
//! what the client sends is dropped; allow-listed ones work), by address and by address and
//! SNI, and the same network with the regime off. The run's regime must be `whitelist` (with
//! its variant) and `open` respectively — in the report's run, every record and the store —,
//! allow-listed targets `reachable`, the others `blocked` at TLS, and the summary must lead
//! with the regime.

use crate::support::{jsonl, run, spawn_mocknet, stderr};

async fn scan(scenario: &str, dir: &std::path::Path) -> (serde_json::Value, String, String) {
    let (_child, ready) = spawn_mocknet(
        &format!("probes/scenarios/{scenario}.toml"),
        &dir.join(format!("{scenario}.ready.json")),
    )
    .await;
    let report = dir.join(format!("{scenario}.json"));
    let store = format!("sqlite:{}", dir.join(format!("{scenario}.db")).display());
    let mut args = ready.scan_args.clone();
    args.extend([
        "-o".into(),
        report.display().to_string(),
        "--store".into(),
        store,
    ]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let run_id = json["run"]["run_id"].as_str().unwrap().to_owned();
    (json, stderr(&out), run_id)
}

#[tokio::test]
async fn issue_17_whitelist_regimes_and_the_same_network_open() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("whitelist", "whitelist", Some("address")),
        ("whitelist-sni", "whitelist", Some("address-and-sni")),
        ("whitelist-off", "open", None),
    ];
    // The three networks at once (each scan waits out its silent references' timeouts).
    let scans = futures::future::join_all(
        cases
            .iter()
            .map(|(scenario, ..)| scan(scenario, dir.path())),
    )
    .await;
    for ((scenario, regime, variant), (json, err, run_id)) in cases.into_iter().zip(scans) {
        let db = dir.path().join(format!("{scenario}.db"));
        let check = &json["run"]["regime"];
        assert_eq!(check["regime"], regime, "{scenario}: {check:#}");
        assert_eq!(check["variant"].as_str(), variant, "{scenario}: {check:#}");
        // The evidence: which references answered, which went silent after TCP.
        let stages: Vec<(&str, &str)> = check["probes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["stage"].as_str().unwrap()))
            .collect();
        let listed_ok = stages
            .iter()
            .any(|(n, s)| *n == "gosuslugi.example" && *s == "answered");
        assert!(listed_ok, "{scenario}: {stages:?}");
        let records = json["records"].as_array().unwrap();
        for r in records {
            assert_eq!(r["regime"], regime, "{scenario}: {}", r["target"]);
            let host = r["host"].as_str().unwrap();
            let listed = ["gosuslugi.example", "vk.example"].contains(&host);
            let want = if listed || regime == "open" {
                ("reachable", None)
            } else {
                ("blocked", Some("tls.timeout"))
            };
            assert_eq!(
                (r["verdict"].as_str().unwrap(), r["reason"].as_str()),
                want,
                "{scenario} {host}: {}",
                r["detail"]
            );
        }
        // The summary leads with a whitelist; an open network says nothing of it.
        assert_eq!(
            err.contains("whitelist regime detected"),
            regime == "whitelist",
            "{scenario}: {err}"
        );
        // The store keeps the regime per run and per record.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let stored: String = conn
            .query_row("SELECT regime FROM runs WHERE run_id = ?", [&run_id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, regime, "{scenario}");
        let per_record: i64 = conn
            .query_row(
                "SELECT count(*) FROM records WHERE run_id = ? AND regime = ?",
                [&run_id, &regime.to_owned()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(per_record as usize, records.len(), "{scenario}");
    }
}

/// `--regime-check off` leaves the regime `unknown` and runs no check; `auto` without
/// canaries (a closed lab) does the same.
#[tokio::test]
async fn issue_17_the_check_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) = spawn_mocknet(
        "probes/scenarios/whitelist.toml",
        &dir.path().join("ready.json"),
    )
    .await;
    let mut args = ready.scan_args.clone();
    args.extend(["--regime-check".into(), "off".into()]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert!(recs.iter().all(|r| r["regime"] == "unknown"), "{recs:#?}");
    assert!(!stderr(&out).contains("whitelist regime detected"));
    let bad = run(&["scan", "x.example", "--regime-check", "maybe"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// The whitelist scenarios' own `--check` (every target and the regime, with and without the
/// control proxy), all three at once.
#[tokio::test]
async fn issue_17_every_whitelist_scenario_passes_check() {
    let runs = ["whitelist", "whitelist-sni", "whitelist-off"].map(|s| async move {
        let out = run(&["mocknet", "--scenario", s, "--check", "--timeout", "2s"]).await;
        (s, out)
    });
    for (s, out) in futures::future::join_all(runs).await {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{s}: {text}{}", stderr(&out));
        assert!(text.contains("(the run's regime)"), "{s}: {text}");
    }
}

/// `diff` and `history` tell a network going into a whitelist regime from per-site changes: a
/// run in a whitelist is marked, and the sites' changes between an open run and a whitelist run
/// are `regime`, not `blocked` (`diff --fail-on blocked` stays quiet about them).
#[tokio::test]
async fn issue_17_diff_and_history_show_regime_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let store = format!("sqlite:{}", db.display());
    let origin = blockprobe::mocknet::origin::Origin::start("127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let target = format!("tcp://{}", origin.addr);
    let scan = |id: &'static str| {
        let (target, store) = (target.clone(), store.clone());
        async move {
            let out = run(&[
                "scan",
                &target,
                "--control-resolver",
                "c=udp://127.0.0.1:9",
                "--canary",
                "",
                "--timeout",
                "1s",
                "--quiet",
                "--run-id",
                id,
                "--store",
                &store,
            ])
            .await;
            assert!(out.status.success(), "{}", stderr(&out));
        }
    };
    scan("run-open").await;
    drop(origin);
    scan("run-whitelist").await;
    // The second run's network was in a whitelist regime (set as the check would have).
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE runs SET regime = 'open' WHERE run_id = 'run-open'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE runs SET regime = 'whitelist' WHERE run_id = 'run-whitelist'",
        [],
    )
    .unwrap();

    let out = run(&[
        "diff",
        "--store",
        &store,
        "run-open",
        "run-whitelist",
        "--fail-on",
        "blocked",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("regime: open -> whitelist"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("regime ")), "{text}");
    let out = run(&[
        "diff",
        "--store",
        &store,
        "run-open",
        "run-whitelist",
        "--format",
        "json",
    ])
    .await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["regime_b"], "whitelist", "{json:#}");
    assert_eq!(json["changes"][0]["change"], "regime", "{json:#}");

    let out = run(&["history", "--store", &store]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(whitelist regime)"), "{text}");
}

//! Issue 17's lab: the mock network in a whitelist regime (unlisted destinations connect, then
//! what the client sends is dropped, and their UDP is dropped; allow-listed ones work), by address and by address and
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
            let target = r["target"].as_str().unwrap();
            // Unlisted destinations' UDP is dropped too: HTTP/3 and a call's STUN.
            let want = if listed || regime == "open" {
                ("reachable", None)
            } else if target.starts_with("quic://") {
                ("blocked", Some("quic.blocked_address"))
            } else if target.starts_with("stun://") {
                ("blocked", Some("udp.timeout"))
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

/// The options of a mock network's scan arguments that `blockprobe regime` takes.
fn regime_args(scan_args: &[String]) -> Vec<String> {
    const TAKES: [&str; 6] = [
        "--connect-to",
        "--resolver",
        "--ca-file",
        "--allowlisted",
        "--foreign-references",
        "--timeout",
    ];
    let mut args = vec!["regime".to_owned()];
    for pair in scan_args.windows(2) {
        if TAKES.contains(&pair[0].as_str()) {
            args.extend(pair.iter().cloned());
        }
    }
    args
}

/// `blockprobe regime` on its own: the check as text and JSON, `--fail-on` for cron, and
/// `--discover` listing the (name, address) pairs the whitelist lets through (the others as
/// comments with their stage) — and in the same network with the regime off, every one.
#[tokio::test]
async fn issue_17_regime_command_and_allowlist_discovery() {
    let dir = tempfile::tempdir().unwrap();
    // Both networks, and every command, at once (the whitelist's silent references each
    // wait out a timeout).
    futures::future::join_all(
        [("whitelist", "whitelist"), ("whitelist-off", "open")]
            .map(|(scenario, regime)| regime_command(scenario, regime, dir.path())),
    )
    .await;
    // Usage errors.
    let out = run(&["regime", "--discover"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--discover needs names"),
        "{}",
        stderr(&out)
    );
    let out = run(&["regime", "x.example"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

async fn regime_command(scenario: &str, regime: &str, dir: &std::path::Path) {
    let (_child, ready) = spawn_mocknet(
        &format!("probes/scenarios/{scenario}.toml"),
        &dir.join(format!("{scenario}.ready.json")),
    )
    .await;
    let args = regime_args(&ready.scan_args);
    let argv = |extra: &[&str]| {
        let mut a = args.clone();
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    // Discovery over the scenario's targets plus a name that does not resolve.
    let names = dir.join(format!("{scenario}.names.txt"));
    // (The HTTPS targets: discovery tests TLS over TCP.)
    let targets: String = std::fs::read_to_string(&ready.scan_args[2])
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("https://"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&names, format!("{targets}nx.example\n")).unwrap();
    let list = dir.join(format!("{scenario}.allowlist.txt"));
    let (a, b, c) = (
        argv(&[]),
        argv(&["--format", "json", "--fail-on", "whitelist"]),
        argv(&[
            "--discover",
            "-i",
            &names.display().to_string(),
            "-o",
            &list.display().to_string(),
        ]),
    );
    let (text, json, discover) = tokio::join!(run(&a), run(&b), run(&c));
    let label = if regime == "whitelist" {
        "whitelist (by address)"
    } else {
        regime
    };

    // Text for people: the regime first, then one line per probe.
    assert!(text.status.success(), "{scenario}: {}", stderr(&text));
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert_eq!(
        text.lines().next().unwrap_or_default(),
        format!("regime: {label}"),
        "{scenario}: {text}"
    );
    assert!(text.contains("gosuslugi.example"), "{text}");

    // JSON, and the exit status cron branches on.
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["regime"], regime, "{parsed:#}");
    assert_eq!(parsed["resolver"]["name"], "isp", "{parsed:#}");
    assert_eq!(
        json.status.code(),
        Some(if regime == "whitelist" { 1 } else { 0 }),
        "{scenario}: {}",
        stderr(&json)
    );

    // The list: what got through, the rest as comments with their stage.
    assert!(
        discover.status.success(),
        "{scenario}: {}",
        stderr(&discover)
    );
    let list = std::fs::read_to_string(&list).unwrap();
    let through: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let want: &[&str] = if regime == "whitelist" {
        &["gosuslugi.example", "vk.example"]
    } else {
        &[
            "gosuslugi.example",
            "vk.example",
            "wiki.example",
            "news.example",
            "shop.example",
        ]
    };
    assert_eq!(through, want, "{scenario}: {list}");
    if regime == "whitelist" {
        assert!(
            list.lines()
                .any(|l| l.starts_with("# shop.example 127.") && l.contains(" silent")),
            "{list}"
        );
    }
    assert!(list.contains("# nx.example - dns"), "{list}");
    assert!(
        list.contains(&format!("{} of 6 names got through", want.len())),
        "{list}"
    );
    assert!(list.contains(&format!("regime: {label}")), "{list}");
}

//! Issue 18's lab: the project's own echo server (the real `blockprobe echo` binary) behind a
//! censor that throttles, cuts or blocks call-shaped UDP (a STUN request, then RTP) while
//! random UDP of the same sizes and rate passes, and behind a clean path and a lossy one. The
//! call-shaped stream must come out `throttled`/`blocked` with the right reason where the
//! censor acts and `reachable` where it does not, and the random control stream must never be
//! blamed. (The `calls` scenario's `--check` runs the same through the mock network.)

use std::time::Duration;

use blockprobe::mocknet::udp::{Calls, Mode, UdpCensor};

use crate::echo::start_echo;
use crate::support::{jsonl, run, stderr};

#[tokio::test]
async fn issue_18_call_media_throttled_cut_blocked_and_a_clean_path() {
    // A cap high enough for every stream of the run at once (all from 127.0.0.1).
    let (_echo, server) = start_echo(&["--packets-per-source", "5000"]).await;
    let censors = [
        ("clean", Mode::Pass),
        ("throttle", Mode::Calls(Calls::Throttle(10))),
        ("cut", Mode::Calls(Calls::Cut(Duration::from_millis(800)))),
        ("block", Mode::Calls(Calls::Block)),
        ("lossy", Mode::Calls(Calls::LossyPath)),
    ];
    let mut held = Vec::new();
    let mut targets = Vec::new();
    for (name, mode) in censors {
        let c = UdpCensor::start("127.0.0.1:0".parse().unwrap(), server, mode)
            .await
            .unwrap();
        targets.push((name, format!("media://{}?duration=2s", c.addr)));
        held.push(c);
    }
    let mut args = vec![
        "scan".to_owned(),
        "--control-resolver".into(),
        "c=udp://127.0.0.1:9".into(),
        "--canary".into(),
        String::new(),
        "--timeout".into(),
        "2s".into(),
        "--quiet".into(),
    ];
    args.extend(targets.iter().map(|(_, t)| t.clone()));
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let records = jsonl(&out.stdout);
    assert_eq!(records.len(), targets.len(), "{records:#?}");
    for (name, target) in &targets {
        let r = records
            .iter()
            .find(|r| r["target"] == target.as_str())
            .unwrap_or_else(|| panic!("{target}: {records:#?}"));
        let want = match *name {
            "throttle" => ("throttled", Some("media.loss")),
            "cut" => ("blocked", Some("media.cut")),
            "block" => ("blocked", Some("media.blocked")),
            _ => ("reachable", None),
        };
        assert_eq!(
            (r["verdict"].as_str().unwrap(), r["reason"].as_str()),
            want,
            "{name}: {}",
            r["detail"]
        );
        let run = &r["evidence"]["media"]["direct"][0];
        let (call, control) = (&run["call"], &run["control"]);
        let loss = |s: &serde_json::Value| s["loss"].as_f64().unwrap();
        // The random control is never what the censor acts on.
        let control_loss = if *name == "lossy" { 0.4 } else { 0.05 };
        assert!(loss(control) <= control_loss, "{name}: {run:#}");
        assert_eq!(control["sent"], 100, "{name}: 2 s at 50 packets/s");
        match *name {
            // 10 datagrams/s of 50 get through.
            "throttle" => assert!((0.7..=0.9).contains(&loss(call)), "{run:#}"),
            "cut" => {
                let at = call["cut_at_ms"].as_f64().unwrap();
                assert!((700.0..=1100.0).contains(&at), "{run:#}");
                let series = call["loss_series"].as_array().unwrap();
                assert_eq!(series.last().unwrap().as_f64(), Some(1.0), "{run:#}");
            }
            "block" => assert_eq!(call["echoed"], 0, "{run:#}"),
            // A bad path loses as much of both: the call is not singled out.
            "lossy" => assert!((loss(call) - loss(control)).abs() < 0.05, "{run:#}"),
            _ => {
                assert!(loss(call) <= 0.05, "{run:#}");
                assert!(call["jitter_ms"].as_f64().is_some(), "{run:#}");
                assert!(
                    call["delivered_bps"].as_f64().unwrap() > 50_000.0,
                    "{run:#}"
                );
            }
        }
    }
}

/// The `calls` scenario's own `--check` (every target, with and without the control path),
/// and bad media options are usage errors that name the option.
#[tokio::test]
async fn issue_18_calls_scenario_passes_check() {
    let out = run(&[
        "mocknet",
        "--scenario",
        "calls",
        "--check",
        "--timeout",
        "2s",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("calls: 7 of 7 targets as expected"), "{text}");
    let bad = run(&["scan", "media://vps.example:7007?pps=9000"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("pps=9000"), "{}", stderr(&bad));
    let bad = run(&["scan", "media://vps.example"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// `--echo-server HOST:PORT` (or `echo-server` in a config file) adds the server's `echo://`
/// and `media://` targets to the scan, beside the others.
#[tokio::test]
async fn issue_18_echo_server_adds_its_echo_and_media_targets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scan.toml");
    std::fs::write(&config, "echo-server = \"192.0.2.9:7007\"\n").unwrap();
    for args in [
        vec!["--echo-server", "192.0.2.9:7007"],
        vec!["--config", config.to_str().unwrap()],
    ] {
        let mut argv = vec![
            "scan",
            "tcp://192.0.2.1:443",
            "--probes",
            "dns",
            "--canary",
            "",
            "--control-resolver",
            "c=udp://127.0.0.1:9",
            "--quiet",
        ];
        argv.extend(args);
        let out = run(&argv).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let mut targets: Vec<String> = jsonl(&out.stdout)
            .iter()
            .map(|r| r["target"].as_str().unwrap().to_owned())
            .collect();
        targets.sort();
        assert_eq!(
            targets,
            [
                "echo://192.0.2.9:7007",
                "media://192.0.2.9:7007",
                "tcp://192.0.2.1:443"
            ],
            "{argv:?}"
        );
    }
    let bad = run(&["scan", "--echo-server", "vps.example"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--echo-server"), "{}", stderr(&bad));
}

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

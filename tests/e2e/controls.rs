//! Issue 12: honest verdicts without a control proxy, and when the controls fail. The real
//! binary against the bundled Russian scenario with the control proxy taken away, as most
//! users scan.

use crate::support::{args_without, jsonl, run, spawn_mocknet, stderr, write};

/// The record of `host` in a scan's output.
fn by_host<'a>(recs: &'a [serde_json::Value], host: &str) -> &'a serde_json::Value {
    recs.iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no record for {host}"))
}

#[tokio::test]
async fn issue_12_without_a_proxy_a_reference_decides_throttling_and_the_freeze() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) = spawn_mocknet(
        "probes/scenarios/russia.toml",
        &dir.path().join("ready.json"),
    )
    .await;
    let args = args_without(&ready.scan_args, &["--control-proxy"]);
    assert!(args.iter().any(|a| a == "--reference"), "{args:?}");
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let err = stderr(&out);
    assert_eq!(
        err.matches("no control path (--control-proxy)").count(),
        1,
        "said once: {err}"
    );
    assert!(err.contains("decided by in-run references"), "{err}");

    let video = by_host(&recs, "rr1---sn-5goeen7k.googlevideo.com");
    assert_eq!(video["verdict"], "throttled", "{video:#}");
    assert_eq!(video["reason"], "transfer.slow");
    assert!(
        video["baseline"]
            .as_str()
            .unwrap()
            .starts_with("reference:https://static.yandex.net/"),
        "{video:#}"
    );
    assert!(video["baseline_bps"].as_f64().unwrap() > 2e6, "{video:#}");

    let frozen = by_host(&recs, "www.digitalocean.com");
    assert_eq!(frozen["verdict"], "blocked", "{frozen:#}");
    assert_eq!(frozen["reason"], "transfer.stall");
    // The evidence agrees with the reason: where it stalled, in the body and on the wire.
    assert!(frozen["stalled_at"].is_u64(), "{frozen:#}");
    let wire = frozen["stalled_at_wire"].as_u64().unwrap();
    assert!(
        blockprobe::classify::FREEZE_WINDOW.contains(&wire),
        "{frozen:#}"
    );

    // A blackhole needs an outside view: inconclusive, and the record says what would decide.
    let vpn = by_host(&recs, "protonvpn.com");
    assert_eq!(vpn["verdict"], "inconclusive", "{vpn:#}");
    assert_eq!(vpn["needs"], "control_path", "{vpn:#}");
    // Nothing censored is reported reachable.
    for r in &recs {
        let host = r["host"].as_str().unwrap();
        if ["max.ru", "vk.com", "gosuslugi.ru"].contains(&host) {
            assert_eq!(r["verdict"], "reachable", "{r:#}");
        } else {
            assert_ne!(r["verdict"], "reachable", "{r:#}");
        }
    }

    // Without the reference, nothing measures what "fast" is here: the slow host is
    // inconclusive (not reachable), and the record asks for a reference.
    let args = args_without(&ready.scan_args, &["--control-proxy", "--reference"]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let video = by_host(&recs, "rr1---sn-5goeen7k.googlevideo.com");
    assert_eq!(video["verdict"], "inconclusive", "{video:#}");
    assert_eq!(video["needs"], "reference", "{video:#}");
    let frozen = by_host(&recs, "www.digitalocean.com");
    assert_eq!(frozen["verdict"], "inconclusive", "{frozen:#}");

    // A reference too small to measure a rate is said on stderr and in the evidence; the
    // verdicts it cannot decide stay inconclusive.
    let small = std::fs::read_to_string(&ready.targets_file)
        .unwrap()
        .lines()
        .find(|l| l.contains("vk.com"))
        .unwrap()
        .to_owned();
    let mut args = args_without(&ready.scan_args, &["--control-proxy", "--reference"]);
    args.extend(["--reference".into(), small.clone()]);
    let out = run(&args).await;
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "reference:{small} through resolver `isp` gives no rate baseline: only"
        )),
        "{err}"
    );
    let recs = jsonl(&out.stdout);
    let video = by_host(&recs, "rr1---sn-5goeen7k.googlevideo.com");
    assert_eq!(video["needs"], "reference", "{video:#}");
    let refs = video["evidence"]["baseline"].as_array().unwrap();
    assert!(
        refs.iter()
            .any(|r| r["error"].as_str().is_some_and(|e| e.contains("too small"))),
        "{video:#}"
    );
}

#[tokio::test]
async fn issue_12_canaries_and_probe_steps_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) =
        spawn_mocknet("probes/scenarios/all.toml", &dir.path().join("ready.json")).await;
    let mut args = args_without(&ready.scan_args, &["-i", "--reference", "--stun-reference"]);
    // answer.example is in the mock's targets file.
    let list = std::fs::read_to_string(&ready.targets_file).unwrap();
    let answer = list
        .lines()
        .find(|l| l.contains("answer.example"))
        .unwrap()
        .to_owned();
    args.extend([
        answer.clone(),
        "--format".into(),
        "json".into(),
        "--quiet".into(),
    ]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let canaries = doc["run"]["canaries"].as_array().unwrap();
    for role in ["vantage", "control"] {
        let c = canaries
            .iter()
            .find(|c| c["role"] == role && c["name"] == "canary.mocknet.test")
            .unwrap_or_else(|| panic!("no {role} canary in {canaries:#?}"));
        assert_eq!(c["answers"][0], "127.0.0.2", "{c:#}");
    }
    let rec = &doc["records"][0];
    assert_eq!(
        rec["probes"],
        serde_json::json!(["dns", "tcp", "tls", "http"])
    );

    args.extend(["--probes".into(), "dns".into()]);
    let out = run(&args).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rec = &doc["records"][0];
    assert_eq!(rec["probes"], serde_json::json!(["dns"]), "{rec:#}");
    assert_eq!(rec["verdict"], "reachable");
    // A DNS-only "reachable" claims only what it saw.
    assert!(
        rec["detail"]
            .as_str()
            .unwrap()
            .starts_with("no DNS interference"),
        "{rec:#}"
    );
}

#[tokio::test]
async fn issue_12_references_are_checked_with_file_and_line() {
    let out = run(["scan", "x.example", "--reference", "tcp://cdn.example:443"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--reference `tcp://cdn.example:443`"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("s.toml");
    write(
        &suite,
        "name = \"s\"\ndescription = \"d\"\nreferences = [\n  \"stun://x.example:3478\",\n]\n\
         [[target]]\ntarget = \"a.example\"\ncategory = \"C\"\nnote = \"n\"\n",
    );
    let out = run(["scan", "--suite", suite.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("s.toml:4: reference `stun://x.example:3478`"),
        "{e}"
    );

    let cfg = dir.path().join("c.toml");
    write(
        &cfg,
        "targets = [\"a.example\"]\nreferences = [\"ftp://x\"]\n",
    );
    let out = run(["scan", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The file and the line, like every other config error.
    assert!(
        stderr(&out).contains("c.toml:2: references: `ftp://x`: expected an http"),
        "{}",
        stderr(&out)
    );
}

/// The Russian scenario through the ISP resolver over TCP (the `--check` passes use UDP): every
/// target as the scenario expects, with the control proxy and without it.
#[tokio::test]
async fn issue_12_russia_over_a_tcp_vantage_with_and_without_a_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, ready) = spawn_mocknet(
        "probes/scenarios/russia.toml",
        &dir.path().join("ready.json"),
    )
    .await;
    let scenario = blockprobe::mocknet::scenario::Scenario::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/scenarios/russia.toml"),
    )
    .unwrap();
    for with_proxy in [true, false] {
        let mut drop = vec!["--resolver"];
        if !with_proxy {
            drop.push("--control-proxy");
        }
        let mut args = args_without(&ready.scan_args, &drop);
        args.extend([
            "--resolver".into(),
            format!("isp={}", ready.isp.tcp),
            "--quiet".into(),
        ]);
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let recs = jsonl(&out.stdout);
        for t in &scenario.targets {
            let want = match (&t.expect_no_proxy, with_proxy) {
                (Some(e), false) => e,
                _ => &t.expect,
            };
            let r = recs
                .iter()
                .find(|r| r["host"] == t.target.as_str() || r["target"] == t.target.as_str())
                .unwrap_or_else(|| panic!("no record for {}", t.target));
            assert_eq!(r["dns_transport"], "tcp");
            assert_eq!(
                (r["verdict"].as_str(), r["reason"].as_str()),
                (Some(want.verdict.as_str()), want.reason.as_deref()),
                "{} (proxy: {with_proxy}): {}",
                t.target,
                r["detail"]
            );
        }
    }
}

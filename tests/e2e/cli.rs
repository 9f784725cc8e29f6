//! The real binary: report formats decoded and checked, exit statuses, input errors, signals.

use std::io::Write as _;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::support::{CASES, Net, find, jsonl, run, stderr, write};

fn case_targets() -> Vec<String> {
    CASES.iter().map(|c| c.0.to_owned()).collect()
}

#[tokio::test]
async fn jsonl_has_every_verdict_layer_and_reason() {
    let net = Net::start().await;
    let mut args = net.args();
    args.extend(case_targets());
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), CASES.len());
    for (name, verdict, layer, reason) in CASES {
        let r = find(&recs, name);
        assert_eq!(r["verdict"], *verdict, "{name}: {r:#}");
        let want_layer = if layer.is_empty() {
            serde_json::Value::Null
        } else {
            (*layer).into()
        };
        assert_eq!(r["layer"], want_layer, "{name}");
        assert_eq!(
            r["reason"],
            reason.map_or(serde_json::Value::Null, Into::into),
            "{name}"
        );
        assert_eq!(r["resolver"], "isp");
        assert_eq!(r["evidence"]["dns"]["transport"], "udp");
        assert!(!r["run_id"].as_str().unwrap().is_empty());
        assert_eq!(r["tool_version"], env!("CARGO_PKG_VERSION"));
    }
    let inj = find(&recs, "inject.test");
    assert_eq!(inj["dns_answers"], serde_json::json!(["10.10.34.36"]));
    assert_eq!(
        inj["dns_injected_answers"],
        serde_json::json!(["127.0.0.16"])
    );
    assert_eq!(
        find(&recs, "cname.test")["dns_cnames"],
        serde_json::json!(["edge.cdn.test"])
    );
    assert_eq!(
        find(&recs, "nx.test")["control_answers"],
        serde_json::json!(["127.0.0.11"])
    );
}

#[tokio::test]
async fn controls_are_asked_once_per_name_whatever_the_number_of_vantages() {
    let net = Net::start().await;
    let mut args = net.args();
    args.extend([
        "--resolver".into(),
        format!("tcp=tcp://{}", net.vantage.tcp),
        "--resolver".into(),
        format!("dot=tls://{}#dns.test", net.vantage.dot.unwrap()),
        "ok.test".into(),
        "https://ok.test/page".into(),
        "nx.test".into(),
    ]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 9, "3 targets × 3 vantages");
    // A + AAAA once per name, shared by three vantages and two targets naming ok.test (a UDP
    // retransmission on a loaded machine may add datagrams, never lookups: at most 3 sends
    // per query, against 12 datagrams if each of the 6 jobs asked the control itself).
    assert!((2..=2 * 3).contains(&net.control.hits_for("ok.test")));
    assert!((2..=2 * 3).contains(&net.control.hits_for("nx.test")));
    // Each vantage asked each target itself.
    assert!(net.vantage.hits_for("ok.test") >= 2 * 2 * 3);
    let dot_nx = recs
        .iter()
        .find(|r| r["target"] == "nx.test" && r["resolver"] == "dot")
        .unwrap();
    assert_eq!(dot_nx["reason"], "dns.nxdomain");
    assert_eq!(dot_nx["dns_transport"], "dot");
}

#[tokio::test]
async fn tcp_dot_and_doh_vantages_classify_resets_and_timeouts() {
    let net = Net::start().await;
    let mut args = net.args();
    args.extend([
        "--resolver".into(),
        format!(
            "doh=https://127.0.0.1:{}/dns-query",
            net.vantage.doh.unwrap().port()
        ),
        "reset.test".into(),
        "silent.test".into(),
        "ok.test".into(),
    ]);
    // Replace the UDP vantage with DoH only.
    let i = args.iter().position(|a| a.starts_with("isp=")).unwrap();
    args.drain(i - 1..=i);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(find(&recs, "reset.test")["reason"], "dns.reset");
    assert_eq!(find(&recs, "silent.test")["reason"], "dns.timeout");
    assert_eq!(find(&recs, "ok.test")["verdict"], "reachable");
    assert_eq!(find(&recs, "ok.test")["dns_transport"], "doh");
}

#[tokio::test]
async fn json_document_and_csv_decode() {
    let net = Net::start().await;
    let json_path = net.path("out.json");
    let csv_path = net.path("out.csv");
    for path in [&json_path, &csv_path] {
        let mut args = net.args();
        args.extend(case_targets());
        args.extend(["-o".into(), path.display().to_string()]);
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "report goes to the file only");
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], blockprobe::report::SCHEMA_VERSION);
    assert_eq!(doc["run"]["resolvers"][0]["name"], "isp");
    assert_eq!(doc["end"]["interrupted"], false);
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), CASES.len());
    assert_eq!(doc["end"]["records"], CASES.len());
    // JSON keys: the shared columns, in order, then the nested evidence.
    let keys: Vec<&str> = records[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want: Vec<&str> = blockprobe::report::COLUMNS.to_vec();
    want.push("evidence");
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    want.sort_unstable();
    assert_eq!(sorted_keys, want);

    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, blockprobe::report::COLUMNS);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), CASES.len());
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let inj = rows
        .iter()
        .find(|r| &r[col("target")] == "inject.test")
        .unwrap();
    assert_eq!(&inj[col("reason")], "dns.injected");
    assert_eq!(&inj[col("layer")], "dns");
    let ok = rows
        .iter()
        .find(|r| &r[col("target")] == "ok.test")
        .unwrap();
    assert_eq!(&ok[col("dns_answers")], "127.0.0.10;::1");
    assert_eq!(&ok[col("layer")], "");
}

#[tokio::test]
async fn fail_on_sets_exit_status_one() {
    let net = Net::start().await;
    let mut args = net.args();
    args.extend(["ok.test".into(), "nx.test".into()]);
    assert_eq!(run(&args).await.status.code(), Some(0));
    let mut failing = args.clone();
    failing.extend(["--fail-on".into(), "blocked,throttled".into()]);
    assert_eq!(run(&failing).await.status.code(), Some(1));
    let mut passing = args;
    passing.extend(["--fail-on".into(), "down".into()]);
    assert_eq!(run(&passing).await.status.code(), Some(0));
}

#[tokio::test]
async fn usage_and_input_errors_exit_two_with_a_clear_message() {
    let net = Net::start().await;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["scan".into()], "no targets"),
        (
            vec!["scan".into(), "-i".into(), "/nonexistent/list.txt".into()],
            "/nonexistent/list.txt",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--resolver".into(),
                "isp=bogus://1".into(),
            ],
            "bogus://1",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--timeout".into(),
                "soon".into(),
            ],
            "soon",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--fail-on".into(),
                "blockd".into(),
            ],
            "blockd",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--probes".into(),
                "dns,ftp".into(),
            ],
            "ftp",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "-o".into(),
                "out.xyz".into(),
            ],
            "--format",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--ca-file".into(),
                "/nonexistent.pem".into(),
            ],
            "/nonexistent.pem",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--control-proxy".into(),
                "http://x:1".into(),
            ],
            "socks5://",
        ),
        (
            vec![
                "scan".into(),
                "x.test".into(),
                "--config".into(),
                "/nonexistent.toml".into(),
            ],
            "/nonexistent.toml",
        ),
        (
            vec!["scan".into(), "x.test".into(), "--bogus-flag".into()],
            "--bogus-flag",
        ),
    ];
    for (args, needle) in cases {
        let out = run(&args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A bad CA file content is reported too.
    let bad_pem = net.path("bad.pem");
    write(&bad_pem, "not a certificate\n");
    let mut args = net.args();
    let i = args.iter().position(|a| a == "--ca-file").unwrap();
    args[i + 1] = bad_pem.display().to_string();
    args.push("ok.test".into());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.pem"), "{}", stderr(&out));
}

#[tokio::test]
async fn malformed_lines_are_reported_with_file_and_line_and_skipped() {
    let net = Net::start().await;
    let list = net.path("targets.txt");
    write(&list, "ok.test\nthis is not a target\n# comment\nnx.test\n");
    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:2:", list.display())), "{err}");
    assert_eq!(jsonl(&out.stdout).len(), 2);

    args.push("--strict".into());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(":2:"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_resolver_failing_its_canaries_gives_inconclusive() {
    let net = Net::start().await;
    let mut args = net.args();
    let i = args.iter().position(|a| a == "canary.test").unwrap();
    args[i] = "silent.test".into();
    args.extend(["nx.test".into(), "silent.test".into()]);
    args.retain(|a| a != "--quiet");
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("canary"), "{err}");
    // Without --quiet and off a terminal (cron), one summary line closes the run on stderr.
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("blockprobe: run ")
            && last.ends_with("2 results, 0 blocked, 0 throttled, 0 down, 2 inconclusive"),
        "{err}"
    );
    for r in jsonl(&out.stdout) {
        assert_eq!(r["verdict"], "inconclusive", "{r:#}");
        assert_eq!(r["resolver_healthy"], false);
    }
}

#[tokio::test]
async fn config_file_supplies_settings_and_flags_override() {
    let net = Net::start().await;
    let cfg = net.path("blockprobe.toml");
    write(
        &cfg,
        &format!(
            "timeout = \"400ms\"\ncanaries = [\"canary.test\"]\nformat = \"csv\"\nquiet = true\n\
             [resolvers]\nfromfile = \"udp://{}\"\n[control-resolvers]\nctl = \"udp://{}\"\n",
            net.vantage.udp, net.control.udp
        ),
    );
    let out = run(["scan", "nx.test", "--config", cfg.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("run_id,"), "{text}");
    assert!(
        text.contains("fromfile") && text.contains("dns.nxdomain"),
        "{text}"
    );

    let out = run([
        "scan",
        "nx.test",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "jsonl",
    ])
    .await;
    assert_eq!(jsonl(&out.stdout)[0]["resolver"], "fromfile");

    write(&cfg, "timeout = \"400ms\"\nresolverz = {}\n");
    let out = run(["scan", "nx.test", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("resolverz"), "{}", stderr(&out));
}

/// The binary with `args`, its standard streams piped; its standard input.
fn spawn_piped(args: &[String]) -> (tokio::process::Child, tokio::process::ChildStdin) {
    let mut child = tokio::process::Command::new(crate::support::bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// SIGINT, as Ctrl-C sends it.
fn interrupt(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// SIGINT mid-run: the JSON document is still complete and valid, and says it was interrupted.
#[tokio::test]
async fn interrupt_finishes_the_json_document() {
    let net = Net::start().await;
    let mut args = net.args();
    args.extend(["--format".into(), "json".into(), "-i".into(), "-".into()]);
    let (mut child, mut stdin) = spawn_piped(&args);
    stdin.write_all(b"ok.test\nnx.test\n").await.unwrap();
    stdin.flush().await.unwrap();
    // Readiness: wait until both records are out; stdin stays open, so the scan waits for more.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while seen.matches("\"run_id\"").count() < 3 {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).await.unwrap() > 0,
            "eof early: {seen}"
        );
        seen.push_str(&line);
    }
    interrupt(&child);
    stdout.read_to_string(&mut seen).await.unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130));
    drop(stdin);
    let doc: serde_json::Value =
        serde_json::from_str(&seen).unwrap_or_else(|e| panic!("{e}: {seen}"));
    assert_eq!(doc["end"]["interrupted"], true);
    assert_eq!(doc["records"].as_array().unwrap().len(), 2);
}

/// Issue 14: the first interrupt starts no more jobs — also not the one that was waiting for a
/// concurrency slot when it came (the task that starts jobs checked only between targets, so a
/// scan measured one more target after being told to stop, and ended a whole job later).
#[tokio::test]
async fn an_interrupt_starts_no_job_that_waits_for_a_slot() {
    let net = Net::start().await;
    let mut args = crate::support::args_without(&net.args(), &["--timeout"]);
    args.extend(
        [
            "--timeout",
            "3s",
            "--concurrency",
            "1",
            "--format",
            "jsonl",
            "-i",
            "-",
        ]
        .map(String::from),
    );
    let (mut child, mut stdin) = spawn_piped(&args);
    // silent.test holds the only slot (the resolver never answers); ok.test waits for it.
    stdin.write_all(b"silent.test\nok.test\n").await.unwrap();
    stdin.flush().await.unwrap();
    // Readiness: the resolver has the first job's query (bounded poll on the server's count).
    for _ in 0..500 {
        if net.vantage.hits_for("silent.test") > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if net.vantage.hits_for("silent.test") == 0 {
        child.start_kill().unwrap();
        let out = child.wait_with_output().await.unwrap();
        panic!("the first job never asked: {}", stderr(&out));
    }
    interrupt(&child);
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let targets: Vec<&str> = recs.iter().filter_map(|r| r["target"].as_str()).collect();
    assert_eq!(targets, ["silent.test"], "{recs:#?}");
    assert_eq!(net.vantage.hits_for("ok.test"), 0);
}

#[test]
fn help_teaches_the_contract() {
    let out = std::process::Command::new(crate::support::bin())
        .args(["scan", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--input",
        "--resolver",
        "--control-resolver",
        "--control-proxy",
        "--ca-file",
        "--timeout",
        "--concurrency",
        "--probes",
        "--format",
        "--output",
        "--fail-on",
        "--config",
        "--quiet",
        "--strict",
        "Examples:",
        "Exit status",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let _ = std::io::stdout().flush();
}

/// `blockprobe scan ... | head -1`: a closed stdout ends the scan quietly with status 0.
#[tokio::test]
async fn a_closed_pipe_ends_the_scan_quietly() {
    let net = Net::start().await;
    let list = net.path("many.txt");
    let names: String = (0..2000).map(|i| format!("n{i}.ok.test\n")).collect();
    write(&list, &names);
    let mut args = net.args();
    args.extend([
        "-i".into(),
        list.display().to_string(),
        "--concurrency".into(),
        "4".into(),
    ]);
    let mut child = crate::support::spawn_piped(&args);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    assert!(line.starts_with('{'), "{line}");
    drop(stdout);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
}

/// `--help` is part of the interface: a change to it must be deliberate. Regenerate with
/// `BLOCKPROBE_UPDATE_SNAPSHOTS=1 cargo nextest run help_snapshots`.
#[test]
fn help_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for (file, args) in [
        ("help.txt", &["--help"][..]),
        ("scan-help.txt", &["scan", "--help"][..]),
        ("mocknet-help.txt", &["mocknet", "--help"][..]),
    ] {
        let out = std::process::Command::new(crate::support::bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let got = String::from_utf8(out.stdout).unwrap();
        let path = dir.join(file);
        if std::env::var_os("BLOCKPROBE_UPDATE_SNAPSHOTS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            got, want,
            "{file} changed: review it and regenerate the snapshot"
        );
    }
}

#[test]
fn generate_man_and_completions() {
    for (args, needle) in [
        (&["generate", "man"][..], ".TH blockprobe"),
        (&["generate", "completions", "bash"][..], "_blockprobe"),
        (
            &["generate", "completions", "zsh"][..],
            "#compdef blockprobe",
        ),
    ] {
        let out = std::process::Command::new(crate::support::bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(needle),
            "{args:?}"
        );
    }
    // Issue 13: a page for every subcommand, as the top page refers to them.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .args(["generate", "man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for sub in [
        "scan",
        "mocknet",
        "history",
        "diff",
        "export",
        "suites",
        "blockpage",
    ] {
        let page = dir.path().join(format!("blockprobe-{sub}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{page:?}: {e}"));
        assert!(text.contains(&format!(".TH blockprobe-{sub}")), "{sub}");
    }
    assert!(dir.path().join("blockprobe.1").exists());
}

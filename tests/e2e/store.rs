//! The measurement store through the real binary: runs recorded in SQLite and PostgreSQL, what
//! changed between two runs where targets change state, history, export, the cron lock, atomic
//! report files under SIGKILL, and interrupt + resume measuring every target exactly once.

use std::process::Stdio;

use blockprobe::mocknet::dns::{Behaviour, Zone};
use blockprobe::store::{Store, StoreUrl, Value};
use tokio::io::AsyncWriteExt as _;

use crate::support::{Net, bin, ip, run, stderr, vantage_zone};

/// The vantage after a change: ok.test is now deleted from DNS, nx.test is back.
fn changed_zone() -> Zone {
    vantage_zone()
        .with("ok.test", Behaviour::NxDomain)
        .with("nx.test", Behaviour::Answer(vec![ip("127.0.0.11")]))
}

async fn scan_into(store: &str, zone: Zone, run_id: &str) {
    let net = Net::start_with(zone).await;
    let mut args = net.args();
    args.extend(
        [
            "ok.test",
            "nx.test",
            "bogon.test",
            "--probes",
            "dns",
            "--store",
            store,
            "--run-id",
            run_id,
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Two runs where two targets change state: diff (table, CSV, JSON), history and export.
/// Retention: a dry run counts, a prune deletes runs and their records.
async fn prune_everything(store: &str) {
    let out = run([
        "prune",
        "--store",
        store,
        "--older-than",
        "2999-01-01",
        "--dry-run",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("would delete 2 runs (6 records)"),
        "{text}{}",
        stderr(&out)
    );
    let out = run(["prune", "--store", store, "--older-than", "1d"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("deleted 0 runs"));
    let out = run(["prune", "--store", store, "--older-than", "2999-01-01"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("deleted 2 runs (6 records)"));
    let out = run(["export", "--store", store, "--format", "jsonl"]).await;
    assert!(out.stdout.is_empty());
}

async fn runs_and_changes(store: &str) {
    scan_into(store, vantage_zone(), "run-1").await;
    scan_into(store, changed_zone(), "run-2").await;

    let out = run(["diff", "--store", store]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(table.starts_with("run-1 -> run-2"), "{table}");
    let row = |kind: &str, target: &str| {
        table
            .lines()
            .find(|l| l.starts_with(kind) && l.contains(target))
            .unwrap_or_else(|| panic!("{kind} {target}: {table}"))
            .to_owned()
    };
    assert!(
        row("blocked", "ok.test").ends_with("blocked dns.nxdomain"),
        "{table}"
    );
    assert!(
        row("unblocked", "nx.test").contains("blocked dns.nxdomain"),
        "{table}"
    );
    assert!(
        table.contains("2 changes: 1 became blocked, 1 became reachable"),
        "{table}"
    );
    assert!(
        !table.contains("bogon.test"),
        "unchanged targets are not listed: {table}"
    );

    // For alerting: exit 1 only when a change of the named kinds is listed.
    let out = run(["diff", "--store", store, "--fail-on", "blocked"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = run(["diff", "--store", store, "--fail-on", "gone,new"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = run([
        "diff", "--store", store, "run-1", "run-2", "--format", "json",
    ])
    .await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["changes"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(doc["changes"][1]["target"], "ok.test");
    assert_eq!(doc["changes"][1]["before"], "reachable");
    let out = run([
        "diff", "--store", store, "run-1", "run-2", "--format", "csv",
    ])
    .await;
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.lines()
            .any(|l| l == "blocked,ok.test,isp,reachable,blocked dns.nxdomain,run-1,run-2"),
        "{csv}"
    );

    let out = run(["history", "--store", store, "--target", "ok.test"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "header + two spans: {text}");
    assert!(
        text.lines().nth(1).unwrap().ends_with("reachable"),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .ends_with("blocked dns.nxdomain"),
        "{text}"
    );
    let out = run([
        "history", "--store", store, "--format", "csv", "--since", "1d",
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1 + 6);
    let out = run(["history", "--store", store, "--since", "2999-01-01"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no records match"
    );

    let out = run([
        "export", "--store", store, "--format", "jsonl", "--run", "run-2",
    ])
    .await;
    let recs = crate::support::jsonl(&out.stdout);
    assert_eq!(recs.len(), 3);
    assert!(
        recs.iter().all(|r| r["evidence"]["dns"].is_object()),
        "full records"
    );
    let out = run(["export", "--store", store, "--format", "csv"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1 + 6, "{text}");
    assert!(text.starts_with(&blockprobe::report::COLUMNS.join(",")));
}

#[tokio::test]
async fn sqlite_store_records_runs_and_reports_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("sub/runs.db").display());
    runs_and_changes(&store).await;
    // Both runs are complete, with their counts.
    let mut st = Store::open(&store.parse().unwrap()).unwrap();
    let rows = st
        .query(
            "SELECT run_id, status, records, blocked FROM runs ORDER BY run_id",
            &[],
        )
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![
                "run-1".into(),
                "complete".into(),
                Value::Int(3),
                Value::Int(2)
            ],
            vec![
                "run-2".into(),
                "complete".into(),
                Value::Int(3),
                Value::Int(2)
            ],
        ]
    );
    assert_eq!(st.schema_version().unwrap(), 7);
    // A second run with the same id is refused rather than mixed in.
    let net = Net::start().await;
    let mut args = net.args();
    args.extend(
        [
            "ok.test", "--probes", "dns", "--store", &store, "--run-id", "run-1",
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--resume run-1"), "{}", stderr(&out));
    prune_everything(&store).await;
}

/// A fresh database on the test server, dropped afterwards. `None` (test skipped, with the
/// reason printed) when no server is configured outside CI.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create() -> Option<Self> {
        let Ok(admin) = std::env::var("BLOCKPROBE_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("BLOCKPROBE_REQUIRE_POSTGRES").is_none(),
                "BLOCKPROBE_REQUIRE_POSTGRES is set but BLOCKPROBE_TEST_POSTGRES is not"
            );
            eprintln!(
                "SKIPPED: no PostgreSQL (set BLOCKPROBE_TEST_POSTGRES=postgres://…; .ci/postgres.sh starts one)"
            );
            return None;
        };
        let name = format!("bp_test_{:08x}", rand::random::<u32>());
        let (a, n) = (admin.clone(), name.clone());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&a, postgres::NoTls).unwrap();
            c.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
        })
        .join()
        .unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        Some(Self {
            admin,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (a, n) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(mut c) = postgres::Client::connect(&a, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        })
        .join();
    }
}

#[tokio::test]
async fn postgres_store_records_runs_and_reports_what_changed() {
    let Some(db) = PgDb::create() else { return };
    runs_and_changes(&db.url).await;
    prune_everything(&db.url).await;
    // TLS as libpq does it. The test server's certificate comes from a private CA:
    // `require` encrypts without checking it, `verify-full` refuses it until the URL names
    // the CA, and then the session is encrypted.
    if let Some(ca) = std::env::var("BLOCKPROBE_TEST_POSTGRES_CA")
        .ok()
        .filter(|c| c != "-")
    {
        let url = db.url.clone();
        let (require, unknown_ca, verified) = std::thread::spawn(move || {
            let ssl = |u: String| {
                Store::open(&u.parse().unwrap())
                    .and_then(|mut s| {
                        s.query(
                            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                            &[],
                        )
                    })
                    .map(|r| r[0][0].clone())
                    .map_err(|e| format!("{e:#}"))
            };
            (
                ssl(format!("{url}?sslmode=require")),
                ssl(format!("{url}?sslmode=verify-full")),
                ssl(format!("{url}?sslmode=verify-full&sslrootcert={ca}")),
            )
        })
        .join()
        .unwrap();
        assert_eq!(require, Ok(Value::Int(1)));
        let e = unknown_ca.expect_err("an unknown CA is refused with verify-full");
        assert!(e.contains("TLS"), "{e}");
        assert_eq!(verified, Ok(Value::Int(1)));
    } else {
        eprintln!("SKIPPED (TLS part): the test server has no TLS (no openssl)");
    }
    // The lock is per host: a second session cannot take it while the first holds it.
    let url: StoreUrl = db.url.parse().unwrap();
    std::thread::spawn(move || {
        let mut first = Store::open(&url).unwrap();
        first.lock("test", false, || false).unwrap();
        let mut second = Store::open(&url).unwrap();
        let e = second.lock("test", false, || false).unwrap_err();
        assert!(e.downcast_ref::<blockprobe::store::Busy>().is_some(), "{e}");
        drop(first);
        second.lock("test", false, || false).unwrap();
    })
    .join()
    .unwrap();
}

#[tokio::test]
async fn a_locked_store_exits_75_or_waits_with_lock_wait() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("runs.db").display());
    let mut held = Store::open(&url.parse().unwrap()).unwrap();
    held.lock("the test", false, || false).unwrap();
    let mut args = net.args();
    args.extend(["ok.test", "--probes", "dns", "--store", &url].map(String::from));
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another blockprobe run holds the lock"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "nothing measured while locked");

    args.push("--lock-wait".into());
    let child = tokio::process::Command::new(bin())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(held);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(crate::support::jsonl(&out.stdout).len(), 1);
}

/// A scan reading its targets from a pipe: it runs until the pipe closes or a signal.
fn scan_reading_stdin(args: &[String]) -> (tokio::process::Child, tokio::process::ChildStdin) {
    let mut child = tokio::process::Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Waits (polling, bounded) until `cond` holds: a readiness check on state the scan writes.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn records_in(url: &str, run_id: &str) -> i64 {
    // Never create the store before the scan does.
    if !std::path::Path::new(url.trim_start_matches("sqlite:")).exists() {
        return 0;
    }
    let Ok(mut st) = Store::open(&url.parse().unwrap()) else {
        return 0;
    };
    st.query(
        "SELECT COUNT(*) FROM records WHERE run_id = ?",
        &[run_id.into()],
    )
    .map(|r| r[0][0].int().unwrap_or(0))
    .unwrap_or(0)
}

#[tokio::test]
async fn interrupt_then_resume_measures_every_target_exactly_once() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("runs.db").display());
    let names: Vec<String> = (0..40).map(|i| format!("n{i}.test")).collect();
    let list = dir.path().join("targets.txt");
    crate::support::write(&list, &names.join("\n"));
    let report = dir.path().join("first.csv");

    // First run: targets arrive on stdin; after some are recorded, SIGINT.
    let mut args = net.args();
    args.extend(
        [
            "-i",
            "-",
            "--probes",
            "dns",
            "--store",
            &url,
            "--run-id",
            "r1",
            "--concurrency",
            "4",
        ]
        .map(String::from),
    );
    args.extend(["-o".into(), report.display().to_string()]);
    let (child, mut stdin) = scan_reading_stdin(&args);
    stdin
        .write_all(format!("{}\n", names[..15].join("\n")).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    until("records in the store", || records_in(&url, "r1") >= 5).await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // Issue 13: even with --quiet, the exact command that continues the run.
    let err = stderr(&out);
    let hint = err
        .lines()
        .skip_while(|l| !l.contains("continue it with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in {err}"));
    assert!(hint.trim_start().starts_with("blockprobe scan "), "{hint}");
    assert!(hint.ends_with(" --resume r1"), "{hint}");
    assert!(!hint.contains("--run-id"), "{hint}");
    assert!(err.contains("same targets on standard input"), "{err}");
    assert!(err.contains("export --run r1"), "{err}");
    let first = records_in(&url, "r1");
    // A resume that is given no targets (stdin at EOF) measures nothing and leaves the run
    // resumable, not `complete`.
    let empty = dir.path().join("empty.txt");
    crate::support::write(&empty, "");
    let mut args = net.args();
    args.extend(["--store", &url, "--resume", "r1", "-i"].map(String::from));
    args.push(empty.display().to_string());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        Store::open(&url.parse().unwrap())
            .unwrap()
            .query("SELECT status FROM runs WHERE run_id = 'r1'", &[])
            .unwrap()[0][0],
        Value::from("interrupted")
    );
    assert!((5..=15).contains(&first), "{first}");
    // The interrupted run is closed as such, and its CSV is complete (atomic, closed).
    let mut st = Store::open(&url.parse().unwrap()).unwrap();
    let status = st
        .query("SELECT status FROM runs WHERE run_id = 'r1'", &[])
        .unwrap();
    assert_eq!(status[0][0], Value::from("interrupted"));
    let csv = std::fs::read_to_string(&report).unwrap();
    assert_eq!(csv.lines().count() as i64, 1 + first, "{csv}");

    // Resume with the whole list: only what is missing is measured.
    let mut args = net.args();
    args.extend(
        [
            "-i",
            list.to_str().unwrap(),
            "--probes",
            "dns",
            "--store",
            &url,
            "--resume",
            "r1",
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = crate::support::jsonl(&out.stdout).len() as i64;
    assert_eq!(first + resumed, 40, "second run measured {resumed}");
    let counts = st
        .query(
            "SELECT COUNT(*), COUNT(DISTINCT target) FROM records WHERE run_id = 'r1'",
            &[],
        )
        .unwrap();
    assert_eq!(counts[0], vec![Value::Int(40), Value::Int(40)]);
    let status = st
        .query("SELECT status, records FROM runs WHERE run_id = 'r1'", &[])
        .unwrap();
    assert_eq!(status[0], vec![Value::from("complete"), Value::Int(40)]);

    // A complete run cannot be resumed; an unknown one is named.
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is complete"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_killed_run_leaves_no_partial_report_and_keeps_its_records() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("runs.db").display());
    let report = dir.path().join("out.csv");
    let mut args = net.args();
    args.extend(
        [
            "-i", "-", "--probes", "dns", "--store", &url, "--run-id", "k1",
        ]
        .map(String::from),
    );
    args.extend(["-o".into(), report.display().to_string()]);
    let (mut child, mut stdin) = scan_reading_stdin(&args);
    stdin
        .write_all(b"ok.test\nnx.test\nbogon.test\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    until("records in the store", || records_in(&url, "k1") == 3).await;
    child.kill().await.unwrap();
    drop(stdin);
    assert!(
        !report.exists(),
        "no report file appears before the run ends"
    );
    let visible: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.starts_with("runs.db"))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    // What was measured before the kill is in the store; the run stays resumable.
    let mut st = Store::open(&url.parse().unwrap()).unwrap();
    let status = st
        .query("SELECT status FROM runs WHERE run_id = 'k1'", &[])
        .unwrap();
    assert_eq!(status[0][0], Value::from("running"));
}

#[tokio::test]
async fn jsonl_reports_append_and_csv_reports_appear_whole() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("runs.jsonl");
    for _ in 0..2 {
        let mut args = net.args();
        args.extend(["ok.test", "--probes", "dns", "--append", "-o"].map(String::from));
        args.push(jsonl.display().to_string());
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let mut args = net.args();
    args.extend(["ok.test", "--probes", "dns", "--append", "-o"].map(String::from));
    args.push(dir.path().join("x.csv").display().to_string());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--append works with JSONL"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_usage_error_records_no_run() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("runs.db").display());
    let missing = dir.path().join("missing.txt");
    let out = run([
        "scan",
        "-i",
        missing.to_str().unwrap(),
        "--probes",
        "dns",
        "--resolver",
        "udp://127.0.0.1:9",
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--store",
        &url,
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.txt"), "{}", stderr(&out));
    assert!(
        !dir.path().join("runs.db").exists(),
        "no store, no run for a usage error"
    );
}

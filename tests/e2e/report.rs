//! `blockprobe report`: one self-contained HTML page from a report file or the store — a
//! target × resolver grid, the breakdown by reason, and from the store a timeline and a trend
//! with whitelist runs marked — checked as text and in a real browser (Debian's Chromium,
//! headless): the page renders its grid and timeline and requests nothing from the network.

use std::path::Path;

use crate::support::{args_without, lab_tool, run, spawn_mocknet, stderr};

/// Two stored runs of the WhatsApp suite at its real names: on the uncensored mock, then on the
/// censored one (`russia-apps`), the second marked as under a whitelist regime. Returns the
/// store URL, a JSON report of the second run and the number of targets.
async fn two_runs(dir: &Path) -> (String, std::path::PathBuf, usize) {
    let db = dir.join("runs.db");
    let store = format!("sqlite:{}", db.display());
    let json = dir.join("second.json");
    let scan = |args: Vec<String>, id: &'static str, extra: Vec<String>| {
        let store = store.clone();
        async move {
            let mut args = args_without(&args, &["--suite"]);
            args.extend(
                [
                    "--suite", "whatsapp", "--quiet", "--run-id", id, "--store", &store,
                ]
                .map(String::from),
            );
            args.extend(extra);
            let out = run(&args).await;
            assert!(out.status.success(), "{}", stderr(&out));
        }
    };
    {
        let (_child, ready) = crate::support::spawn_mocknet_with(
            &["--suite", "whatsapp"],
            &dir.join("open.ready.json"),
        )
        .await;
        scan(ready.scan_args, "run-1", Vec::new()).await;
    }
    let (_child, ready) = spawn_mocknet(
        "probes/scenarios/russia-apps.toml",
        &dir.join("censored.ready.json"),
    )
    .await;
    scan(
        ready.scan_args,
        "run-2",
        vec!["-o".into(), json.display().to_string()],
    )
    .await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE runs SET regime = 'whitelist' WHERE run_id = 'run-2'",
        [],
    )
    .unwrap();
    let targets = blockprobe::suite::Suite::load("whatsapp")
        .unwrap()
        .targets
        .len();
    (store, json, targets)
}

#[tokio::test]
async fn issue_13_html_report_from_a_file_and_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (store, json, targets) = two_runs(dir.path()).await;

    // From the JSON report of one run: the grid and the breakdown, no timeline.
    let from_file = dir.path().join("file.html");
    let out = run(&[
        "report",
        json.to_str().unwrap(),
        "-o",
        from_file.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(&from_file).unwrap();
    assert!(
        page.contains("id=\"grid\"") && page.contains("id=\"reasons\""),
        "{page}"
    );
    assert!(!page.contains("id=\"timeline\""), "one run has no timeline");
    assert!(page.contains(">whatsapp.com<"), "{page}");
    assert!(page.contains("dns.nxdomain"), "{page}");

    // From the store: both runs, the timeline and the trend, the whitelist run marked.
    let from_store = dir.path().join("store.html");
    let out = run(&[
        "report",
        "--store",
        &store,
        "-o",
        from_store.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{} record(s) of 2 run(s)", 2 * targets)),
        "{}",
        stderr(&out)
    );
    let page = std::fs::read_to_string(&from_store).unwrap();
    for part in [
        "id=\"grid\"",
        "id=\"timeline\"",
        "id=\"trend\"",
        "class=\"run wl\"",
        "id=\"regime\"",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }
    // Self-contained: no script, no external resource, and a policy that forbids loading any.
    assert!(page.contains("default-src 'none'"));
    for banned in ["<script", "src=", "<link", "url(", "@import"] {
        assert!(!page.contains(banned), "{banned} in the page");
    }

    // Usage: no -o on a terminal is refused elsewhere; a CSV report is not a JSON one.
    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "target,verdict\nx,blocked\n").unwrap();
    let bad = run(&["report", csv.to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("line 1"), "{}", stderr(&bad));

    // In a real browser: the page renders the grid and the timeline, and requests nothing.
    let Some(chromium) = lab_tool(
        "chromium",
        "BLOCKPROBE_REQUIRE_CHROMIUM",
        "apt-get install chromium",
    ) else {
        return;
    };
    let netlog = dir.path().join("net.json");
    let profile = dir.path().join("profile");
    let url = format!("file://{}", from_store.display());
    let browser = |extra: Vec<String>| {
        let mut c = std::process::Command::new(&chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--window-size=1280,1024",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        c.output().unwrap()
    };
    let dom = browser(vec![
        "--dump-dom".into(),
        format!("--log-net-log={}", netlog.display()),
    ]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The parsed document: a grid row per target, a timeline cell per run.
    assert_eq!(
        dom.matches("<td class=\"t\">").count(),
        2 * targets,
        "{dom}"
    );
    // whatsapp.com went from reachable to blocked in the second run.
    assert!(dom.contains("dns.nxdomain since "), "{dom}");
    assert!(
        dom.contains("class=\"v v-reachable\"") && dom.contains("class=\"v v-"),
        "{dom}"
    );
    assert!(dom.contains("<svg id=\"trend\""), "{dom}");
    // Nothing was requested of the targets (or of anything but the file).
    let log = std::fs::read_to_string(&netlog).unwrap_or_default();
    for host in ["whatsapp.com", "whatsapp.net", "127.0.0.1"] {
        assert!(!log.contains(host), "the page requested {host}");
    }
    // A screenshot renders (a picture to paste into a report).
    let shot = dir.path().join("report.png");
    let out = browser(vec![format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

//! Bundled suites: every one is served by the mock network at its real names, addresses and
//! ports and comes out reachable; `scan --suite whatsapp --suite telegram` against a censored
//! mock reports each block with its reason; bad suite files name the file and line.

use crate::support::{args_without, find, jsonl, run, spawn_mocknet, stderr, write};

fn bundled_names() -> Vec<&'static str> {
    blockprobe::suite::BUNDLED.iter().map(|(n, _)| *n).collect()
}

#[tokio::test]
async fn every_bundled_suite_is_reachable_on_the_uncensored_mock() {
    // All suites in one mock network: every target (domains, tcp:// endpoints, Telegram's data
    // centres by IP, stun://) scanned as written, through --suite and --connect-to.
    let mut args = vec!["mocknet".to_owned()];
    for n in bundled_names() {
        args.extend(["--suite".into(), n.to_owned()]);
    }
    args.extend(["--check".into(), "--timeout".into(), "4s".into()]);
    let out = run(&args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    let total: usize = blockprobe::suite::Suite::bundled()
        .unwrap()
        .iter()
        .flat_map(|s| s.targets.iter().map(|t| t.target.input.clone()))
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(
        text.contains(&format!("{total} of {total} targets as expected")),
        "{text}"
    );
    for needle in [
        "ok   tcp://e16.whatsapp.net:5222",
        "ok   http://149.154.175.50:443/",
        "ok   stun://stun.l.google.com:19302",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

#[tokio::test]
async fn scan_whatsapp_and_telegram_suites_through_a_censored_mock() {
    let dir = tempfile::tempdir().unwrap();
    let (child, ready) = spawn_mocknet(
        "probes/scenarios/russia-apps.toml",
        &dir.path().join("ready.json"),
    )
    .await;
    // The scan names the suites itself; the rest of the ready arguments point at the mock.
    assert!(
        ready
            .scan_args
            .windows(2)
            .any(|w| w == ["--suite", "whatsapp"])
    );
    let mut args = args_without(&ready.scan_args, &["--suite"]);
    args.extend(["--suite", "whatsapp", "--suite", "telegram", "--quiet"].map(String::from));
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let whatsapp = blockprobe::suite::Suite::load("whatsapp").unwrap();
    let telegram = blockprobe::suite::Suite::load("telegram").unwrap();
    assert_eq!(recs.len(), whatsapp.targets.len() + telegram.targets.len());
    for (target, verdict, reason) in [
        ("whatsapp.com", "blocked", Some("dns.nxdomain")),
        ("tcp://e1.whatsapp.net:5222", "blocked", Some("tcp.timeout")),
        ("tcp://e1.whatsapp.net:443", "reachable", None),
        ("telegram.org", "blocked", Some("tls.reset")),
        ("http://149.154.175.50:443/", "blocked", Some("tcp.reset")),
        ("http://149.154.167.51:80/", "blocked", Some("tcp.timeout")),
        ("http://149.154.175.50:80/", "reachable", None),
    ] {
        let r = find(&recs, target);
        assert_eq!(r["verdict"], verdict, "{target}: {r}");
        assert_eq!(r["reason"].as_str(), reason, "{target}: {r}");
        // Suite metadata travels into the record.
        assert_eq!(r["category"], "COMT", "{target}: {r}");
    }
    // A data centre is asked with POST (the mock origin names the method in its title), and
    // the report shows the target's real address, not the loopback it was mapped to.
    let dc = find(&recs, "http://149.154.175.50:80/");
    let hop = &dc["evidence"]["direct"]["hops"][0];
    assert_eq!(hop["http"]["title"], "POST 149.154.175.50", "{dc}");
    assert_eq!(hop["tcp"][0]["addr"], "149.154.175.50:80", "{dc}");
    // A connect-only endpoint on 443 never attempts TLS.
    let e1 = find(&recs, "tcp://e1.whatsapp.net:443");
    assert!(e1["evidence"]["direct"]["hops"][0]["tls"].is_null(), "{e1}");
    drop(child);
}

#[tokio::test]
async fn suites_lists_the_bundled_suites_and_a_suites_targets() {
    let out = run(["suites"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for s in blockprobe::suite::Suite::bundled().unwrap() {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("{}: {text}", s.name));
        assert!(row.contains(&format!(" {} ", s.targets.len())), "{row}");
    }
    let out = run(["suites", "telegram"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.lines()
            .any(|l| l.starts_with("http://149.154.175.50:443/") && l.ends_with("[POST]")),
        "{text}"
    );
}

#[tokio::test]
async fn bad_suites_are_usage_errors_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    write(
        &path,
        "name = \"mine\"\ndescription = \"d\"\n\n[[target]]\ntarget = \"a.example\"\ncategory = \"COMM\"\nnote = \"ok\"\n\n[[target]]\ntarget = \"ftp://b.example/\"\ncategory = \"COMM\"\nnote = \"bad\"\n",
    );
    let out = run([
        "scan",
        "--suite",
        path.to_str().unwrap(),
        "--probes",
        "dns",
        "--resolver",
        "udp://127.0.0.1:9",
        "--control-resolver",
        "c=udp://127.0.0.1:9",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("mine.toml:10: ") && err.contains("ftp"),
        "{err}"
    );

    let out = run(["scan", "--suite", "whatsap"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown suite `whatsap`") && stderr(&out).contains("whatsapp"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn a_users_suite_combines_with_targets_and_lists() {
    use crate::support::Net;
    let net = Net::start().await;
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("mine.toml");
    write(
        &suite,
        "name = \"mine\"\ndescription = \"d\"\n[[target]]\ntarget = \"nx.test\"\ncategory = \"NEWS\"\nnote = \"n\"\n",
    );
    let list = dir.path().join("list.txt");
    write(&list, "ok.test\n");
    let mut args = net.args();
    args.extend([
        "bogon.test".into(),
        "-i".into(),
        list.to_str().unwrap().into(),
        "--suite".into(),
        suite.to_str().unwrap().into(),
    ]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(recs.len(), 3);
    assert_eq!(find(&recs, "nx.test")["category"], "NEWS");
    assert_eq!(find(&recs, "nx.test")["reason"], "dns.nxdomain");
    find(&recs, "ok.test");
    find(&recs, "bogon.test");
}

#[tokio::test]
async fn without_a_proxy_a_stun_reference_tells_blocked_from_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let (child, ready) =
        spawn_mocknet("probes/scenarios/all.toml", &dir.path().join("ready.json")).await;
    // The mock's scan arguments without the control proxy, and only the STUN targets.
    let mut args = args_without(
        &ready.scan_args,
        &["--control-proxy", "-i", "--stun-reference", "--reference"],
    );
    args.extend(
        [
            "stun://stun.drop.example:3478",
            "stun://stun.garbage.example:19302",
            "stun://stun.ok.example:3478",
            "--quiet",
        ]
        .map(String::from),
    );
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    assert_eq!(
        find(&recs, "stun://stun.drop.example:3478")["verdict"],
        "inconclusive"
    );
    assert_eq!(
        find(&recs, "stun://stun.ok.example:3478")["verdict"],
        "reachable"
    );

    args.extend(["--stun-reference".into(), "stun.ok.example:3478".into()]);
    let out = run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = jsonl(&out.stdout);
    let dropped = find(&recs, "stun://stun.drop.example:3478");
    assert_eq!(dropped["reason"], "udp.timeout", "{dropped}");
    assert_eq!(
        dropped["evidence"]["stun"]["reference"]["ok"], true,
        "{dropped}"
    );
    assert_eq!(
        find(&recs, "stun://stun.garbage.example:19302")["reason"],
        "udp.invalid"
    );
    drop(child);
}

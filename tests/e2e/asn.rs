//! Issue 13: the vantage's ASN, network name and country from offline MaxMind DB files
//! (`--asn-db`), written here byte by byte (the format: maxmind.github.io/MaxMind-DB) and read
//! by the `maxminddb` crate — the same reader the binary uses for DB-IP, IPinfo and GeoLite2
//! files.

use std::net::IpAddr;
use std::path::Path;

use crate::support::{closed_scan, run, stderr};

/// A value of the MaxMind DB data section.
enum V {
    Str(&'static str),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'static str, Self)>),
    Arr(Vec<Self>),
}

fn encode(v: &V, out: &mut Vec<u8>) {
    // Control byte: type in the top 3 bits (0 = extended: the type - 7 in the next byte),
    // size in the low 5; 29 means "29 + the byte after" (sizes here stay below 285).
    fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
        let low = size.min(29) as u8;
        if ty <= 7 {
            out.push(ty << 5 | low);
        } else {
            out.push(low);
            out.push(ty - 7);
        }
        if size >= 29 {
            out.push(u8::try_from(size - 29).unwrap());
        }
    }
    match v {
        V::Str(s) => {
            ctrl(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        V::U16(n) => {
            ctrl(out, 5, 2);
            out.extend_from_slice(&n.to_be_bytes());
        }
        V::U32(n) => {
            ctrl(out, 6, 4);
            out.extend_from_slice(&n.to_be_bytes());
        }
        V::U64(n) => {
            ctrl(out, 9, 8);
            out.extend_from_slice(&n.to_be_bytes());
        }
        V::Map(kv) => {
            ctrl(out, 7, kv.len());
            for (k, v) in kv {
                encode(&V::Str(k), out);
                encode(v, out);
            }
        }
        V::Arr(items) => {
            ctrl(out, 11, items.len());
            for v in items {
                encode(v, out);
            }
        }
    }
}

/// An IPv6 database (IPv4 networks under ::/96, as in the real files) with 24-bit records.
fn mmdb(database_type: &'static str, networks: Vec<(&str, V)>) -> Vec<u8> {
    #[derive(Clone, Copy)]
    enum Rec {
        Empty,
        Node(usize),
        Data(usize),
    }
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
    let mut data = Vec::new();
    for (net, value) in networks {
        let (addr, len) = net.split_once('/').unwrap();
        let (bits, len): (u128, u32) = match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(a) => (u32::from(a).into(), 96 + len.parse::<u32>().unwrap()),
            IpAddr::V6(a) => (a.into(), len.parse().unwrap()),
        };
        let at = data.len();
        encode(&value, &mut data);
        let mut node = 0;
        for i in 0..len {
            let bit = (bits >> (127 - i) & 1) as usize;
            if i + 1 == len {
                nodes[node][bit] = Rec::Data(at);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty; 2]);
                        nodes[node][bit] = Rec::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for pair in &nodes {
        for rec in pair {
            let v = match *rec {
                Rec::Empty => count,
                Rec::Node(n) => n,
                Rec::Data(at) => count + 16 + at,
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    encode(
        &V::Map(vec![
            ("binary_format_major_version", V::U16(2)),
            ("binary_format_minor_version", V::U16(0)),
            ("build_epoch", V::U64(1_764_000_000)),
            ("database_type", V::Str(database_type)),
            (
                "description",
                V::Map(vec![("en", V::Str("blockprobe test"))]),
            ),
            ("ip_version", V::U16(6)),
            ("languages", V::Arr(vec![V::Str("en")])),
            ("node_count", V::U32(count as u32)),
            ("record_size", V::U16(24)),
        ]),
        &mut out,
    );
    out
}

fn net(asn: Option<u32>, org: Option<&str>, country: Option<&str>) -> blockprobe::asn::Network {
    blockprobe::asn::Network {
        asn,
        as_org: org.map(Into::into),
        country: country.map(Into::into),
    }
}

/// DB-IP / GeoLite2 ASN layout.
fn asn_db(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("asn.mmdb");
    let bytes = mmdb(
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        vec![
            (
                "127.0.0.0/8",
                V::Map(vec![
                    ("autonomous_system_number", V::U32(8402)),
                    ("autonomous_system_organization", V::Str("Beeline Moscow")),
                ]),
            ),
            (
                "2001:db8::/32",
                V::Map(vec![("autonomous_system_number", V::U32(12389))]),
            ),
        ],
    );
    std::fs::write(&p, bytes).unwrap();
    p
}

/// DB-IP / GeoLite2 country layout.
fn country_db(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("country.mmdb");
    let bytes = mmdb(
        "DBIP-Country-Lite",
        vec![(
            "127.0.0.0/16",
            V::Map(vec![("country", V::Map(vec![("iso_code", V::Str("RU"))]))]),
        )],
    );
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn issue_13_asn_databases_of_every_common_layout() {
    use blockprobe::asn::Databases;
    let dir = tempfile::tempdir().unwrap();
    let ipinfo = dir.path().join("ipinfo.mmdb");
    std::fs::write(
        &ipinfo,
        mmdb(
            "ipinfo lite.mmdb",
            vec![
                (
                    "10.1.0.0/16",
                    V::Map(vec![
                        ("asn", V::Str("AS13335")),
                        ("as_name", V::Str("Cloudflare, Inc.")),
                        ("as_domain", V::Str("cloudflare.com")),
                        ("country_code", V::Str("US")),
                        ("country", V::Str("United States")),
                    ]),
                ),
                // Writers store small numbers in the smallest type, or as text.
                (
                    "10.2.0.0/16",
                    V::Map(vec![("autonomous_system_number", V::U16(8359))]),
                ),
                ("10.3.0.0/16", V::Map(vec![("asn", V::U32(12389))])),
                (
                    "10.4.0.0/16",
                    V::Map(vec![("autonomous_system_number", V::Str("3216"))]),
                ),
                // An entry blockprobe cannot read anything from.
                ("10.5.0.0/16", V::Map(vec![("foo", V::Str("bar"))])),
            ],
        ),
    )
    .unwrap();
    let dbs =
        Databases::open(&[asn_db(dir.path()), country_db(dir.path()), ipinfo.clone()]).unwrap();
    // An ASN file and a country file together fill all three.
    assert_eq!(
        dbs.lookup("127.0.0.1".parse().unwrap()),
        net(Some(8402), Some("Beeline Moscow"), Some("RU"))
    );
    // Outside the country file's /16: the ASN only.
    assert_eq!(
        dbs.lookup("127.9.0.1".parse().unwrap()),
        net(Some(8402), Some("Beeline Moscow"), None)
    );
    // IPinfo Lite: `asn` as text, `country` a name (not a map), `country_code`.
    assert_eq!(
        dbs.lookup("10.1.2.3".parse().unwrap()),
        net(Some(13335), Some("Cloudflare, Inc."), Some("US"))
    );
    assert_eq!(dbs.lookup("2001:db8::1".parse().unwrap()).asn, Some(12389));
    for (ip, asn) in [("10.2.0.1", 8359), ("10.3.0.1", 12389), ("10.4.0.1", 3216)] {
        assert_eq!(dbs.lookup(ip.parse().unwrap()).asn, Some(asn), "{ip}");
    }
    // An IPv4-mapped address is the IPv4 address.
    assert_eq!(
        dbs.lookup("::ffff:127.0.0.1".parse().unwrap()).asn,
        Some(8402)
    );
    // What is said when nothing is found, or nothing readable.
    let (n, notes) = dbs.lookup_noting("192.0.2.1".parse().unwrap());
    assert!(n.is_empty());
    assert!(
        notes.iter().any(|n| n.contains("is in none of")),
        "{notes:?}"
    );
    let (n, notes) = dbs.lookup_noting("10.5.0.1".parse().unwrap());
    assert!(n.is_empty());
    assert!(
        notes.iter().any(|n| n.contains("none of the fields")),
        "{notes:?}"
    );
    // A FIFO would block the start of the run: only regular files are read.
    let fifo = dir.path().join("fifo.mmdb");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let e = Databases::open(std::slice::from_ref(&fifo))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
    // Not a database: the error names the file.
    let junk = dir.path().join("junk.mmdb");
    std::fs::write(&junk, b"GIF89a not a database").unwrap();
    let e = Databases::open(std::slice::from_ref(&junk))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&junk.display().to_string()) && e.contains("not a MaxMind DB"),
        "{e}"
    );
}

/// MaxMind's own test databases (tests/fixtures/mmdb): files blockprobe did not write.
#[test]
fn issue_13_maxmind_test_databases() {
    use blockprobe::asn::Databases;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mmdb");
    let dbs = Databases::open(&[
        dir.join("GeoLite2-ASN-Test.mmdb"),
        dir.join("GeoLite2-Country-Test.mmdb"),
    ])
    .unwrap();
    assert_eq!(
        dbs.lookup("1.128.0.1".parse().unwrap()),
        net(Some(1221), Some("Telstra Pty Ltd"), None)
    );
    // The country where the address is (GB), not where it is registered (US).
    assert_eq!(
        dbs.lookup("81.2.69.142".parse().unwrap()),
        net(None, None, Some("GB"))
    );
    assert_eq!(dbs.lookup("23.32.1.1".parse().unwrap()).asn, Some(35994));
}

/// `--asn-db` with `--public-ip`/`--public-ip-stun`: ASN, network and country in every record,
/// the JSON run and the store; `history`/`export --asn` and `diff --vantage` pick a fleet's
/// probes apart.
#[tokio::test]
async fn issue_13_asn_in_records_and_store_filters() {
    let dir = tempfile::tempdir().unwrap();
    let (asn, country) = (asn_db(dir.path()), country_db(dir.path()));
    let store = format!("sqlite:{}", dir.path().join("runs.db").display());
    let origin = blockprobe::mocknet::origin::Origin::start("127.0.0.1".parse().unwrap(), None)
        .await
        .unwrap();
    let target = format!("tcp://{}", origin.addr);
    let stun = blockprobe::mocknet::stun::StunServer::start(
        "127.0.0.1".parse().unwrap(),
        blockprobe::mocknet::stun::Mode::Answer,
    )
    .await
    .unwrap();
    let report = dir.path().join("msk.json");
    let scan = |id: &str, vantage: &str, ip: Vec<String>| {
        let mut args = closed_scan(
            &target,
            &[
                "--quiet",
                "--run-id",
                id,
                "--store",
                &store,
                "--vantage",
                vantage,
                "--asn-db",
                &asn.display().to_string(),
                "--asn-db",
                &country.display().to_string(),
            ],
        );
        args.extend(ip);
        args
    };
    // Moscow through STUN (the mock answers 127.0.0.1: AS8402, RU); a second probe whose
    // address is given and is in no file.
    let mut msk = scan(
        "run-msk-1",
        "msk",
        vec!["--public-ip-stun".into(), stun.addr.to_string()],
    );
    msk.extend(["-o".into(), report.display().to_string()]);
    for args in [
        msk,
        scan(
            "run-ams-1",
            "ams",
            vec!["--public-ip".into(), "192.0.2.7".into()],
        ),
        scan(
            "run-msk-2",
            "msk",
            vec!["--public-ip-stun".into(), stun.addr.to_string()],
        ),
        scan(
            "run-ams-2",
            "ams",
            vec!["--public-ip".into(), "192.0.2.7".into()],
        ),
    ] {
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for obj in [&json["run"], &json["records"][0]] {
        assert_eq!(obj["public_ip"], "127.0.0.1", "{obj}");
        assert_eq!(obj["asn"], 8402, "{obj}");
        assert_eq!(obj["as_org"], "Beeline Moscow", "{obj}");
        assert_eq!(obj["country"], "RU", "{obj}");
    }
    // The HTML report says where, from the report file and from the store (one vantage's
    // page).
    for args in [
        vec!["report".to_owned(), report.display().to_string()],
        ["report", "--store", &store, "--run", "run-msk-2"]
            .map(String::from)
            .to_vec(),
        ["report", "--store", &store, "--vantage", "msk"]
            .map(String::from)
            .to_vec(),
    ] {
        let out = run(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(
            page.contains("Measured from msk — 127.0.0.1, AS8402 Beeline Moscow, RU"),
            "{args:?}: {page}"
        );
    }
    // export --asn: Moscow's two runs, nothing of Amsterdam's.
    for asn in ["AS8402", "8402"] {
        let out = run(&["export", "--store", &store, "--format", "csv", "--asn", asn]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let csv = String::from_utf8_lossy(&out.stdout);
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(
            csv.contains("run-msk-1") && csv.contains("run-msk-2"),
            "{csv}"
        );
        assert!(csv.contains(",8402,Beeline Moscow,RU,"), "{csv}");
        assert!(!csv.contains("run-ams"), "{csv}");
    }
    let out = run(&[
        "history", "--store", &store, "--asn", "8402", "--format", "csv",
    ])
    .await;
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(
        history.contains("run-msk-2") && !history.contains("run-ams"),
        "{history}"
    );
    // An ASN nobody measured from: said, with the ASNs the store has.
    let out = run(&["history", "--store", &store, "--asn", "AS1"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("AS8402"), "{}", stderr(&out));
    // diff --vantage: that probe's last two runs, not the fleet's last two.
    let out = run(&[
        "diff",
        "--store",
        &store,
        "--vantage",
        "msk",
        "--format",
        "json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diff["run_a"], "run-msk-1", "{diff}");
    assert_eq!(diff["run_b"], "run-msk-2", "{diff}");
    // diff --asn: the last two runs from that network (Amsterdam's address is in no file).
    let out = run(&[
        "diff", "--store", &store, "--asn", "AS8402", "--format", "json",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diff["run_a"], "run-msk-1", "{diff}");
    assert_eq!(diff["run_b"], "run-msk-2", "{diff}");
    let out = run(&["diff", "--store", &store, "--vantage", "nowhere"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ams, msk"), "{}", stderr(&out));
    // A run is resumed from the network it was measured from, or not at all.
    rusqlite::Connection::open(dir.path().join("runs.db"))
        .unwrap()
        .execute(
            "UPDATE runs SET status = 'interrupted' WHERE run_id = 'run-msk-2'",
            [],
        )
        .unwrap();
    let mut resume = scan(
        "run-msk-2",
        "msk",
        vec!["--public-ip".into(), "127.0.0.2".into()],
    );
    let at = resume.iter().position(|a| a == "--run-id").unwrap();
    resume[at] = "--resume".into();
    let out = run(&resume).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mix two networks") && stderr(&out).contains("127.0.0.1 (AS8402)"),
        "{}",
        stderr(&out)
    );
    // In a config file: paths relative to the file, the address given.
    let conf = dir.path().join("probe.toml");
    std::fs::write(
        &conf,
        "asn-db = [\"asn.mmdb\", \"country.mmdb\"]\npublic-ip = \"127.0.0.9\"\n",
    )
    .unwrap();
    let out = run(closed_scan(
        &target,
        &[
            "--config",
            &conf.display().to_string(),
            "--quiet",
            "--format",
            "jsonl",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["public_ip"], "127.0.0.9", "{rec}");
    assert_eq!(rec["asn"], 8402, "{rec}");
    assert_eq!(rec["country"], "RU", "{rec}");
    // A flag replaces the file's source of the address (here: ask STUN instead).
    let out = run(closed_scan(
        &target,
        &[
            "--config",
            &conf.display().to_string(),
            "--public-ip-stun",
            &stun.addr.to_string(),
            "--format",
            "jsonl",
        ],
    ))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rec["public_ip"], "127.0.0.1", "{rec}");
    // The summary says where the run measured from (a cron mail shows the lookup worked).
    assert!(
        stderr(&out).contains("from 127.0.0.1, AS8402 Beeline Moscow, RU:"),
        "{}",
        stderr(&out)
    );
    // One vantage, two networks (a probe moved): history names the network on each span,
    // diff says the runs measured from different networks.
    for (id, ip) in [("run-mob-1", "127.0.0.5"), ("run-mob-2", "2001:db8::7")] {
        let out = run(scan(id, "mob", vec!["--public-ip".into(), ip.into()])).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(&["history", "--store", &store, "--vantage", "mob"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("[AS8402]") && table.contains("[AS12389]"),
        "{table}"
    );
    let out = run(&[
        "history",
        "--store",
        &store,
        "--vantage",
        "mob",
        "--format",
        "csv",
    ])
    .await;
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.lines().next().unwrap().ends_with(",vantage,asn"),
        "{csv}"
    );
    assert!(csv.contains(",mob,12389"), "{csv}");
    let out = run(&["diff", "--store", &store, "--vantage", "mob"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("network: AS8402 -> AS12389"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The database needs an address to look up.
    let out = run(&[
        "scan",
        &target,
        "--asn-db",
        &asn.display().to_string(),
        "--quiet",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--public-ip"), "{}", stderr(&out));
}

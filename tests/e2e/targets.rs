//! Target parsing: each form, IDN, CSV test lists, malformed lines with their line numbers.

use blockprobe::input::{self, Item, Source};
use blockprobe::target::{Host, Scheme, Target, TargetKind};

fn parse(s: &str) -> Target {
    Target::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn each_form() {
    let d = parse("WhatsApp.com");
    assert_eq!(
        (d.kind, d.port, d.scheme),
        (TargetKind::Domain, 443, Scheme::Https)
    );
    assert_eq!(d.host, Host::Name("whatsapp.com".into()));
    assert_eq!(d.input, "WhatsApp.com");

    let u = parse("https://youtube.com/big.bin?x=1");
    assert_eq!(
        (u.kind, u.port, u.path.as_str()),
        (TargetKind::Url, 443, "/big.bin?x=1")
    );
    let h = parse("http://host.example:8080/x");
    assert_eq!(
        (h.port, h.scheme, h.path.as_str()),
        (8080, Scheme::Http, "/x")
    );

    let e = parse("e1.whatsapp.net:5222");
    assert_eq!(
        (e.kind, e.port, e.scheme),
        (TargetKind::Endpoint, 5222, Scheme::None)
    );
    let ip4 = parse("149.154.167.51:443");
    assert_eq!(ip4.host, Host::Ip("149.154.167.51".parse().unwrap()));
    assert_eq!(ip4.name(), None);
    // A Shadowsocks URI: the password never shows.
    let ss = parse("ss://YWVzLTI1Ni1nY206c2VjcmV0LXB3@Proxy.Example:8388#nl-1");
    assert_eq!(ss.scheme, Scheme::Shadowsocks);
    assert_eq!(
        ss.input,
        "ss://aes-256-gcm:REDACTED-fe07a7@proxy.example:8388#nl-1"
    );
    assert!(
        ss.path.contains("secret-pw"),
        "the probe reads it from the path"
    );
    // Nor does it in an error about the URI.
    let err = Target::parse("ss://rc4-md5:secret-pw@h.example:1").unwrap_err();
    assert!(!err.contains("secret-pw"), "{err}");
    let tor = parse("tor://192.0.2.7:9001");
    assert_eq!((tor.scheme, tor.port), (Scheme::Tor, 9001));
    let ip6 = parse("[2001:67c:4e8:f004::a]:443");
    assert_eq!(ip6.port, 443);
    assert!(matches!(ip6.host, Host::Ip(_)));
    let trailing_dot = parse("example.com.");
    assert_eq!(trailing_dot.name(), Some("example.com"));
}

#[test]
fn idn_becomes_punycode() {
    assert_eq!(parse("пример.рф").name(), Some("xn--e1afmkfd.xn--p1ai"));
    assert_eq!(
        parse("https://почта.рф/").name(),
        Some("xn--80a1acny.xn--p1ai")
    );
}

#[test]
fn rejects_garbage() {
    for bad in [
        "",
        "two words",
        "ftp://x.org/",
        "a..b",
        "host:99999",
        "host:0",
        "http://",
        "-x-/y",
        // Issue 11, item 16: not addresses, not names; credentials would be dropped; port 0.
        "0x7f.1",
        "256.1.1.1",
        "256.1.1.1:80",
        "https://user:pw@example.org/",
        "http://example.org:0/",
        "stun://stun.example:0",
        // A Tor relay's OR port has no default and no path.
        "tor://relay.example",
        "tor://relay.example:9001/x",
        "tor://relay.example:9001?fingerprint=AB",
        // Shadowsocks: plugins, AEAD-2022 and unknown ciphers are refused, not guessed at.
        "ss://YWVzLTI1Ni1nY206eA@h.example:1/?plugin=v2ray-plugin",
        "ss://2022-blake3-aes-256-gcm:eA@h.example:1",
        "ss://rc4-md5:x@h.example:1",
        "ss://aes-256-gcm:x@h.example",
    ] {
        assert!(Target::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

fn collect(text: &str, name: &str) -> (Vec<Target>, Vec<(u64, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let sources = input::open(&[Source::File(path)]).unwrap();
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    input::stream(sources, |item| {
        match item {
            Item::Target(t) => targets.push(t),
            Item::Malformed(e) | Item::Failed(e) => errors.push((e.line, e.message)),
        }
        true
    });
    (targets, errors)
}

#[test]
fn text_list_with_comments_duplicates_and_bad_lines() {
    let (targets, errors) = collect(
        "# messengers\n\nwhatsapp.com\nWHATSAPP.COM\nnot a target\nhttps://t.me/\n  \nbad:port:x\n",
        "list.txt",
    );
    let inputs: Vec<_> = targets.iter().map(|t| t.input.as_str()).collect();
    assert_eq!(inputs, ["whatsapp.com", "https://t.me/"]);
    let lines: Vec<u64> = errors.iter().map(|e| e.0).collect();
    assert_eq!(lines, [5, 8], "{errors:?}");
}

#[test]
fn citizen_lab_csv_keeps_the_category() {
    let csv = "url,category_code,category_description,date_added,source,notes\n\
               https://www.whatsapp.com/,COMT,Communication Tools,2017-04-12,citizenlab,\n\
               \"http://t.me/\",COMT,Communication Tools,2017-04-12,citizenlab,\"a, quoted note\"\n\
               not a url at all,NEWS,News,2020-01-01,x,\n\
               https://meduza.io/,NEWS,News Media,2019-01-01,citizenlab,\n";
    let (targets, errors) = collect(csv, "ru.csv");
    let got: Vec<_> = targets
        .iter()
        .map(|t| (t.input.as_str(), t.category.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("https://www.whatsapp.com/", Some("COMT")),
            ("http://t.me/", Some("COMT")),
            ("https://meduza.io/", Some("NEWS")),
        ]
    );
    assert_eq!(
        errors.iter().map(|e| e.0).collect::<Vec<_>>(),
        [4],
        "{errors:?}"
    );
}

#[test]
fn unreadable_file_is_an_error_up_front() {
    let err = input::open(&[Source::File("/nonexistent/list.txt".into())])
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/list.txt"), "{err}");
}

/// A wg-quick configuration given with `-i`: one `wireguard://` target per peer with an
/// endpoint (the interface's private key redacted in the records), a peer without one reported
/// at its line; a Tor bridge line in a plain list is an obfs4 target.
#[test]
fn issue_16_wg_quick_files_and_bridge_lines() {
    let conf = "# exported by a VPN provider\n[Interface]\nPrivateKey = 7oYLtPkdgaAFgZq5Hoy0XtOHe4FvpfcNgM7FAGF122o=\nAddress = 10.8.0.2/32\n\n[Peer]\nPublicKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\nEndpoint = nl.vpn.example:51820\n\n[Peer]\nPublicKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\n";
    let (targets, errors) = collect(conf, "wg0.conf");
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0].scheme, Scheme::Wireguard);
    assert_eq!(targets[0].port, 51820);
    assert!(
        targets[0].input.contains("private_key=REDACTED"),
        "{}",
        targets[0].input
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 10, "the second [Peer]'s line");

    let (targets, errors) = collect(
        "Bridge obfs4 192.0.2.5:443 4352E58420E68F5E40BF7C74FADDCCD9D1349413 cert=QkJCQkJCQkJCQkJCQkJCQkJCQkJWkXPm1QtWr6+AgWBVblOLZ5g4GvgLsy8+DC5dQBmvFw iat-mode=0\n",
        "bridges.txt",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!((targets[0].scheme, targets[0].port), (Scheme::Obfs4, 443));
    // The same bridge as a URL (its `+` raw or encoded) is the same measurement.
    let cert = "QkJCQkJCQkJCQkJCQkJCQkJCQkJWkXPm1QtWr6+AgWBVblOLZ5g4GvgLsy8+DC5dQBmvFw";
    for url in [
        format!("obfs4://192.0.2.5:443?cert={cert}&iat-mode=0"),
        format!(
            "obfs4://192.0.2.5:443?iat-mode=0&cert={}",
            cert.replace('+', "%2B")
        ),
    ] {
        assert_eq!(Target::parse(&url).unwrap().path, targets[0].path, "{url}");
    }
}

/// Issue 16, hostile pass: no error message, no record and no store row repeats a target's
/// secret, and two targets that differ only in their secret stay two records.
#[tokio::test]
async fn issue_16_secrets_stay_out_of_errors_records_and_the_store() {
    for (bad, secret) in [
        ("SS://aes-256-gcm:s3cr3tpw@127.0.0.1:0", "s3cr3tpw"),
        ("ss://s3cr3tPW:aes-256-gcm@127.0.0.1:1", "s3cr3tPW"),
        ("ss://aes-256-gcm:s3cr3t99?plugin=x@127.0.0.1:1", "s3cr3t99"),
        ("ss://YWVzLTI1Ni1nY206czNjcjN0cHc@h.example:0", "s3cr3tpw"),
        (
            "wireguard://127.0.0.1:0?public_key=AAAA&private_key=WGSECRETKEY",
            "WGSECRETKEY",
        ),
    ] {
        let err = Target::parse(bad).unwrap_err();
        assert!(!err.contains(secret), "{bad}: {err}");
    }
    assert_eq!(
        Target::parse("SS://aes-256-gcm:pw12@h.example:1")
            .unwrap()
            .scheme,
        Scheme::Shadowsocks
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    let out = crate::support::run(&[
        "scan",
        "ss://aes-256-gcm:firstSecret1@127.0.0.1:9",
        "ss://aes-256-gcm:otherSecret2@127.0.0.1:9",
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--canary",
        "",
        "--timeout",
        "1s",
        "--quiet",
        "--store",
        &format!("sqlite:{}", db.display()),
    ])
    .await;
    assert!(out.status.success(), "{}", crate::support::stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Secret"), "{text}");
    assert_eq!(crate::support::jsonl(&out.stdout).len(), 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sources: String = conn
        .query_row("SELECT sources FROM runs", [], |r| r.get(0))
        .unwrap();
    assert!(!sources.contains("Secret"), "{sources}");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "both records kept");
}

/// Issue 16, second hostile pass: an OpenVPN `.conf` (first line a directive, `;` comments, a
/// cp1251 comment) is read as a configuration — its static key never becomes names to
/// resolve —, a wg-quick file may start with `[Peer]`, and misspelt secret options never echo
/// their value.
#[test]
fn issue_16_vpn_configurations_never_leak_their_keys() {
    let key: String = (0..16)
        .map(|i| {
            format!(
                "{:032x}\n",
                0x3f2a_7030_2385_3a1b_54a7_8df0_b429_b76b_u128 + i
            )
        })
        .collect();
    let mut conf = format!(
        "; exported\ndev tun\nclient\nremote 192.0.2.9 1194 udp\nkey-direction 1\n<tls-auth>\n{key}</tls-auth>\n"
    )
    .into_bytes();
    conf.extend(b"# \xcd\xe0\xf1\xf2\xf0\xee\xe9\xea\xe8\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.conf");
    std::fs::write(&path, &conf).unwrap();
    let sources = input::open(&[Source::File(path)]).unwrap();
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    input::stream(sources, |item| {
        match item {
            Item::Target(t) => targets.push(t),
            Item::Malformed(e) | Item::Failed(e) => errors.push(e.to_string()),
        }
        true
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0].scheme, Scheme::Openvpn);
    assert!(
        !targets[0].input.contains("3f2a7030"),
        "{}",
        targets[0].input
    );

    let (targets, errors) = collect(
        "[Peer]\nPublicKey = 5AhMecT+Jf4DuDzMuT4Ip1chDbmt71f38K7MAqNEsQs=\nEndpoint = 192.0.2.1:51820\n[Interface]\nPrivateKey = 7oYLtPkdgaAFgZq5Hoy0XtOHe4FvpfcNgM7FAGF122o=\n",
        "peer-first.conf",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(targets.len(), 1);
    assert!(targets[0].input.contains("private_key=REDACTED-"));

    let hex = "ab".repeat(256);
    for bad in [
        format!("openvpn://127.0.0.1:1?TLS_AUTH={hex}"),
        format!("openvpn://127.0.0.1:1?tls-auth={hex}"),
        "wireguard://127.0.0.1:1?public_key=AAAA&privatekey=WGSECRETKEY1".into(),
        "wireguard://127.0.0.1:1?public_key=AAAA&psk=WGSECRETKEY2".into(),
    ] {
        let err = Target::parse(&bad).unwrap_err();
        assert!(
            !err.contains("abababab") && !err.contains("WGSECRET"),
            "{err}"
        );
    }
}

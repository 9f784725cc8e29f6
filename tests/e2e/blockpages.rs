//! Issue 10: real block pages. `blockprobe blockpage` on saved pages, ordinary pages that must
//! never match, and block pages in the connection classifier.

use crate::support::{bin, stderr};

fn check(page: &[u8], url: Option<&str>) -> (i32, String) {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("blockpage");
    if let Some(u) = url {
        cmd.args(["--url", u]);
    }
    let mut child = cmd
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Real-style ISP stubs, in the encodings ISPs serve them.
#[test]
fn stubs_match_whatever_their_charset() {
    let text = "<html><head><title>Доступ ограничен</title></head><body>Уважаемый абонент! \
                Доступ к запрашиваемому ресурсу ограничен на основании Федерального закона \
                от 27.07.2006 № 149-ФЗ.</body></html>";
    let (koi8, _, _) = encoding_rs::KOI8_R.encode(text);
    let koi8 = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=koi8-r\r\n\r\n".as_slice(),
        &koi8,
    ]
    .concat();
    let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(text);
    let meta = [
        b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1251\">"
            .as_slice(),
        &cp1251,
    ]
    .concat();
    for page in [text.as_bytes().to_vec(), koi8, meta] {
        let (code, out) = check(&page, None);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("(country RU"), "{out}");
    }
    // A Rostelecom-style redirect to the stub host, without fetching the stub.
    let (code, out) = check(
        b"HTTP/1.1 302 Moved\r\nLocation: http://warning.rt.ru/?id=17&st=0\r\n\r\n",
        Some("http://blocked.example/"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(country RU, matched in location"), "{out}");
}

/// Ordinary pages, many of them about censorship, never match (exit 1).
#[test]
fn ordinary_pages_never_match() {
    for page in [
        "<html><head><title>Роскомнадзор</title></head><body>Федеральная служба по надзору в \
         сфере связи. Новости: доступ к ресурсу ограничен по решению суда; реестр \
         запрещённой информации.</body></html>",
        "<title>Роскомсвобода</title><p>Как проверить, заблокирован ли сайт: \
         blocklist.rkn.gov.ru. Роскомнадзор ограничил доступ к WhatsApp.</p>",
        "<title>Russia blocks WhatsApp</title><p>Access to WhatsApp was restricted by \
         Roskomnadzor on Tuesday, the regulator said.</p>",
        "<title>Just a moment...</title><p>Checking your browser before accessing</p>",
        "<title>Welcome to nginx!</title>",
        "<title>404 Not Found</title><center>nginx</center>",
        "<title>Вход</title><form>Логин Пароль</form>",
    ] {
        let (code, out) = check(page.as_bytes(), Some("https://news.example/"));
        assert_eq!(code, 1, "{page}: {out}");
        assert!(out.starts_with("no fingerprint matches"), "{out}");
    }
}

#[test]
fn the_list_names_source_and_country() {
    let out = std::process::Command::new(bin())
        .args(["blockpage", "--list"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let line = text
        .lines()
        .find(|l| l.starts_with("blockprobe:ru.isp-stub-hosts"))
        .unwrap();
    assert_eq!(line.split('\t').nth(1), Some("RU"), "{line}");
}

/// Serves raw fixture responses on loopback: the response is chosen by the request's Host
/// (`f{i}.test`), written as stored, then the connection is closed.
async fn stub_server(pages: Vec<Vec<u8>>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let pages = std::sync::Arc::new(pages);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                return;
            };
            let pages = pages.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let page = req
                    .lines()
                    .find_map(|l| l.strip_prefix("host: f"))
                    .and_then(|h| h.split('.').next()?.parse::<usize>().ok())
                    .and_then(|i| pages.get(i).cloned());
                if let Some(p) = page {
                    let _ = c.write_all(&p).await;
                }
                let _ = c.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Scans every page of `dir` served by a stub server, with the vantage resolver answering
/// `vantage` and the control `control` for each name; returns (file, verdict, reason).
async fn scan_corpus(dir: &str, vantage: &str, control: &str) -> Vec<(String, String, String)> {
    use blockprobe::mocknet::dns::{Behaviour, MockDns, Zone};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    files.sort();
    let pages = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let (addr, task) = stub_server(pages).await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let lo = ip("127.0.0.1");
    let zone = |a: &str| {
        Zone::new(Behaviour::Answer(vec![ip(a)])).with("canary.test", Behaviour::Answer(vec![lo]))
    };
    let v = MockDns::start(lo, 0, zone(vantage), None).await.unwrap();
    let c = MockDns::start(lo, 0, zone(control), None).await.unwrap();
    let mut args = vec![
        "scan".to_owned(),
        "--resolver".into(),
        format!("isp=udp://{}", v.udp),
        "--control-resolver".into(),
        format!("ctl=udp://{}", c.udp),
        "--canary".into(),
        "canary.test".into(),
        "--injection-window".into(),
        "0".into(),
        "--timeout".into(),
        "3s".into(),
        "--max-redirects".into(),
        "2".into(),
        "--quiet".into(),
    ];
    args.extend((0..files.len()).map(|i| format!("http://f{i}.test:{}/", addr.port())));
    let out = crate::support::run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = crate::support::jsonl(&out.stdout);
    task.abort();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let r = crate::support::find(&recs, &format!("http://f{i}.test:{}/", addr.port()));
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                r["verdict"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The real stubs in both delivery modes, without a control proxy: the ISP's resolver
/// pointing at the stub server (`dns.blockpage`), and the page on the HTTP path with honest
/// DNS (`http.blockpage`); none `reachable`. Ordinary pages served the same way never are
/// block pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_stubs_in_both_delivery_modes_and_ordinary_pages() {
    let dns_mode = scan_corpus(
        "tests/fixtures/blockpages/blocked",
        "127.0.0.1",
        "127.0.0.3",
    )
    .await;
    let http_mode = scan_corpus(
        "tests/fixtures/blockpages/blocked",
        "127.0.0.1",
        "127.0.0.1",
    )
    .await;
    for (mode, results, reason) in [
        ("dns", &dns_mode, "dns.blockpage"),
        ("http", &http_mode, "http.blockpage"),
    ] {
        let hits = results.iter().filter(|r| r.2 == reason).count();
        let wrong: Vec<_> = results.iter().filter(|r| r.2 != reason).collect();
        eprintln!(
            "{mode} mode: {hits} of {} recognised as {reason}",
            results.len()
        );
        assert!(
            hits * 100 >= results.len() * 95,
            "{mode} mode: {hits} of {} recognised; missed: {wrong:#?}",
            results.len()
        );
        assert!(
            results.iter().all(|r| r.1 != "reachable"),
            "{mode}: {results:#?}"
        );
    }
    let ordinary = scan_corpus(
        "tests/fixtures/blockpages/ordinary",
        "127.0.0.1",
        "127.0.0.1",
    )
    .await;
    let flagged: Vec<_> = ordinary
        .iter()
        .filter(|r| r.2.ends_with("blockpage"))
        .collect();
    eprintln!(
        "ordinary: {} pages, {} flagged",
        ordinary.len(),
        flagged.len()
    );
    assert!(flagged.is_empty(), "{flagged:#?}");
}

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

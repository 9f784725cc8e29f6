//! Block-page fingerprints (`probes/blockpages/*.toml`, compiled in), taken from the public
//! collections researchers maintain (OONI's blocking-fingerprints, Censored Planet's block-page
//! signatures) plus our own, each with its source and original id.
//!
//! An HTTP fingerprint looks at one place of one response — the body (decoded by its charset),
//! the title, the `Location` header, another header, or the host of the URL or redirect target
//! (an ISP's stub host) — and matches it in full, as a prefix, as a substring or as a regex. A
//! DNS fingerprint is an address known to serve block pages. Every hop of a fetch is matched,
//! not only the last page. The classifier adds the rule that keeps ordinary pages out: a page
//! the control path also gets is never a block page.

use std::net::IpAddr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::probe::http::HttpObservation;

/// The shipped fingerprint files, in the order they are tried.
const BUILTIN: &[(&str, &str)] = &[(
    "blockprobe.toml",
    include_str!("../probes/blockpages/blockprobe.toml"),
)];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    fingerprint: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    source: String,
    #[serde(default)]
    country: String,
    isp: Option<String>,
    kind: Kind,
    #[serde(rename = "where")]
    place: String,
    #[serde(rename = "match")]
    how: How,
    pattern: String,
    confidence: Option<String>,
    #[allow(dead_code)]
    note: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Http,
    Dns,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum How {
    Full,
    Prefix,
    Contains,
    Regex,
}

/// Where in a response a fingerprint looks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Body,
    Title,
    Location,
    Header(String),
    /// The host of the hop's URL or of its redirect target.
    Host,
    /// A DNS answer.
    Address,
}

enum Matcher {
    Full(String),
    Prefix(String),
    Contains(String),
    Regex(regex::Regex),
}

impl Matcher {
    fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Full(p) => text.trim() == p,
            Self::Prefix(p) => text.starts_with(p.as_str()),
            Self::Contains(p) => text.contains(p.as_str()),
            Self::Regex(r) => r.is_match(text),
        }
    }
}

/// One fingerprint, with where it came from.
pub struct Fingerprint {
    pub id: String,
    pub source: String,
    pub country: String,
    pub isp: Option<String>,
    pub confidence: Option<String>,
    place: Place,
    matcher: Matcher,
}

/// What a report says about a matched fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Match {
    pub id: String,
    pub source: String,
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Where it matched: `body`, `title`, `location`, `header:server`, `host`, `address`.
    #[serde(rename = "where")]
    pub place: String,
}

impl Fingerprint {
    pub fn to_match(&self) -> Match {
        Match {
            id: self.id.clone(),
            source: self.source.clone(),
            country: self.country.clone(),
            isp: self.isp.clone(),
            place: match &self.place {
                Place::Body => "body".into(),
                Place::Title => "title".into(),
                Place::Location => "location".into(),
                Place::Header(h) => format!("header:{h}"),
                Place::Host => "host".into(),
                Place::Address => "address".into(),
            },
        }
    }
}

pub struct Fingerprints {
    http: Vec<Fingerprint>,
    dns: Vec<Fingerprint>,
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .host_str()
        .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
}

impl Fingerprints {
    /// Parses fingerprint files (`(name, text)` pairs); errors name the file and the entry.
    pub fn parse(files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut out = Self {
            http: Vec::new(),
            dns: Vec::new(),
        };
        let mut ids = std::collections::HashSet::new();
        for (name, text) in files {
            let file: File = toml::from_str(text).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            for e in file.fingerprint {
                let bad = |why: String| anyhow::anyhow!("{name}: fingerprint `{}`: {why}", e.id);
                if !ids.insert(e.id.clone()) {
                    return Err(bad("the id is used twice".into()));
                }
                let place = match (e.kind, e.place.as_str()) {
                    (Kind::Dns, "address") => Place::Address,
                    (Kind::Http, "body") => Place::Body,
                    (Kind::Http, "title") => Place::Title,
                    (Kind::Http, "location") => Place::Location,
                    (Kind::Http, "host") => Place::Host,
                    (Kind::Http, h) if h.starts_with("header:") => {
                        Place::Header(h["header:".len()..].to_ascii_lowercase())
                    }
                    (k, p) => return Err(bad(format!("`where = \"{p}\"` with kind {k:?}"))),
                };
                if e.pattern.is_empty() {
                    return Err(bad("empty pattern".into()));
                }
                let matcher = match e.how {
                    How::Full => Matcher::Full(e.pattern.clone()),
                    How::Prefix => Matcher::Prefix(e.pattern.clone()),
                    How::Contains => Matcher::Contains(e.pattern.clone()),
                    How::Regex => Matcher::Regex(
                        regex::Regex::new(&e.pattern).map_err(|err| bad(err.to_string()))?,
                    ),
                };
                let fp = Fingerprint {
                    id: e.id,
                    source: e.source,
                    country: e.country,
                    isp: e.isp,
                    confidence: e.confidence,
                    place,
                    matcher,
                };
                match e.kind {
                    Kind::Http => out.http.push(fp),
                    Kind::Dns => out.dns.push(fp),
                }
            }
        }
        Ok(out)
    }

    /// The fingerprints shipped in the binary.
    pub fn builtin() -> &'static Self {
        static FP: LazyLock<Fingerprints> =
            LazyLock::new(|| Fingerprints::parse(BUILTIN).expect("probes/blockpages/*.toml parse"));
        &FP
    }

    /// Every fingerprint, HTTP first.
    pub fn iter(&self) -> impl Iterator<Item = &Fingerprint> {
        self.http.iter().chain(&self.dns)
    }

    pub fn len(&self) -> usize {
        self.http.len() + self.dns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Header names some fingerprint looks at.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.http.iter().filter_map(|f| match &f.place {
            Place::Header(h) => Some(h.as_str()),
            _ => None,
        })
    }

    /// The first fingerprint that one response (one hop, fetched from `url`) matches.
    pub fn match_http(&self, http: &HttpObservation, url: &str) -> Option<&Fingerprint> {
        let body = http.body_text();
        let hosts: Vec<String> = [Some(url), http.location()]
            .into_iter()
            .flatten()
            .filter_map(|u| {
                // A relative Location stays on the hop's host.
                url::Url::parse(url)
                    .ok()
                    .and_then(|base| base.join(u).ok())
                    .and_then(|full| host_of(full.as_str()))
            })
            .collect();
        self.http.iter().find(|f| match &f.place {
            Place::Body => f.matcher.is_match(&body),
            Place::Title => http.title.as_deref().is_some_and(|t| f.matcher.is_match(t)),
            Place::Location => http.location().is_some_and(|l| f.matcher.is_match(l)),
            Place::Header(h) => http.headers.get(h).is_some_and(|v| f.matcher.is_match(v)),
            Place::Host => hosts.iter().any(|h| f.matcher.is_match(h)),
            Place::Address => false,
        })
    }

    /// The first DNS fingerprint an answer matches (an address known to serve block pages).
    pub fn match_address(&self, ip: IpAddr) -> Option<&Fingerprint> {
        let text = ip.to_string();
        self.dns.iter().find(|f| f.matcher.is_match(&text))
    }
}

/// A saved page or a raw HTTP response (status line, headers, blank line, body) as the probe
/// would have observed it: `blockprobe blockpage FILE`.
pub fn observation_from_bytes(bytes: &[u8], url: &str) -> HttpObservation {
    let mut obs = HttpObservation::empty(url);
    let mut body = bytes;
    if bytes.starts_with(b"HTTP/") {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| (i, i + 4))
            .or_else(|| bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
        if let Some((head_end, body_start)) = end {
            let head = String::from_utf8_lossy(&bytes[..head_end]);
            let mut lines = head.lines();
            obs.status = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|c| c.parse().ok());
            for line in lines {
                if let Some((k, v)) = line.split_once(':') {
                    obs.headers
                        .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
            body = &bytes[body_start..];
        }
    } else {
        obs.status = Some(200);
    }
    obs.head = body[..body.len().min(crate::probe::http::HEAD_KEEP)].to_vec();
    obs.transfer.bytes = body.len() as u64;
    obs.title = crate::probe::http::extract_title(&obs.body_text());
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn page(body: &str) -> HttpObservation {
        HttpObservation {
            url: "http://x/".into(),
            status: Some(200),
            headers: Default::default(),
            title: crate::probe::http::extract_title(body),
            body_sha256: None,
            transfer: Default::default(),
            failure: None,
            elapsed: Default::default(),
            head: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn builtin_fingerprints_parse_with_unique_ids() {
        let fp = Fingerprints::builtin();
        assert!(!fp.is_empty());
    }

    #[test]
    fn every_place_and_kind_of_match() {
        let fp = Fingerprints::parse(&[(
            "t.toml",
            r#"
[[fingerprint]]
id = "t:body"
source = "test"
kind = "http"
where = "body"
match = "contains"
pattern = "Доступ к ресурсу ограничен"

[[fingerprint]]
id = "t:host"
source = "test"
kind = "http"
where = "host"
match = "full"
pattern = "warning.rt.ru"

[[fingerprint]]
id = "t:server"
source = "test"
kind = "http"
where = "header:Server"
match = "prefix"
pattern = "Blocker/"

[[fingerprint]]
id = "t:addr"
source = "test"
kind = "dns"
where = "address"
match = "full"
pattern = "10.10.34.34"
"#,
        )])
        .unwrap();
        let id = |h: &HttpObservation, url: &str| fp.match_http(h, url).map(|f| f.id.as_str());
        assert_eq!(
            id(&page("<p>Доступ к ресурсу ограничен</p>"), "http://x/"),
            Some("t:body")
        );
        let mut redirect = page("");
        redirect.status = Some(302);
        redirect
            .headers
            .insert("location".into(), "http://warning.rt.ru/?id=1".into());
        assert_eq!(id(&redirect, "http://blocked.example/"), Some("t:host"));
        // The stub host itself, reached after the redirect.
        assert_eq!(id(&page("stub"), "https://warning.rt.ru/"), Some("t:host"));
        let mut server = page("");
        server.headers.insert("server".into(), "Blocker/1.0".into());
        assert_eq!(id(&server, "http://x/"), Some("t:server"));
        assert_eq!(id(&page("<title>WhatsApp</title>"), "http://x/"), None);
        assert_eq!(
            fp.match_address("10.10.34.34".parse().unwrap())
                .map(|f| f.id.as_str()),
            Some("t:addr")
        );
        assert!(fp.match_address("10.10.34.3".parse().unwrap()).is_none());
    }

    #[test]
    fn bad_files_name_the_file_and_entry() {
        for (text, needle) in [
            (
                "[[fingerprint]]\nid='a'\nsource='s'\nkind='http'\nwhere='address'\nmatch='full'\npattern='x'",
                "f.toml: fingerprint `a`",
            ),
            (
                "[[fingerprint]]\nid='a'\nsource='s'\nkind='http'\nwhere='body'\nmatch='regex'\npattern='('",
                "f.toml: fingerprint `a`",
            ),
        ] {
            let e = Fingerprints::parse(&[("f.toml", text)]).err().unwrap();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }
}

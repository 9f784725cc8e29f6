//! Block-page fingerprints (`probes/blockpages.toml`, compiled in): regexes over a response's
//! body, title and redirect target, and addresses known to serve block pages.

use std::net::IpAddr;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::probe::http::HttpObservation;

const BUILTIN: &str = include_str!("../probes/blockpages.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    page: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    pattern: String,
    #[serde(default)]
    addresses: Vec<IpAddr>,
}

pub struct Fingerprint {
    pub name: String,
    regex: regex::Regex,
    addresses: Vec<IpAddr>,
}

pub struct Fingerprints(Vec<Fingerprint>);

impl Fingerprints {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: File = toml::from_str(text)?;
        file.page
            .into_iter()
            .map(|e| {
                Ok(Fingerprint {
                    regex: regex::Regex::new(&e.pattern)
                        .map_err(|err| anyhow::anyhow!("block page `{}`: {err}", e.name))?,
                    name: e.name,
                    addresses: e.addresses,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    /// The fingerprints shipped in the binary.
    pub fn builtin() -> &'static Self {
        static FP: LazyLock<Fingerprints> =
            LazyLock::new(|| Fingerprints::parse(BUILTIN).expect("probes/blockpages.toml parses"));
        &FP
    }

    /// The name of the first fingerprint the response matches.
    pub fn matches(&self, http: &HttpObservation, from: Option<IpAddr>) -> Option<&str> {
        let body = http.body_text();
        self.0
            .iter()
            .find(|f| {
                from.is_some_and(|ip| f.addresses.contains(&ip))
                    || f.regex.is_match(&body)
                    || http.title.as_deref().is_some_and(|t| f.regex.is_match(t))
                    || http.location().is_some_and(|l| f.regex.is_match(l))
            })
            .map(|f| f.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> HttpObservation {
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
    fn builtin_fingerprints_match_known_pages() {
        let fp = Fingerprints::builtin();
        for (body, name) in [
            (
                "<title>Доступ ограничен</title> по решению Роскомнадзора",
                "ru.rkn",
            ),
            (
                "Access to the resource is restricted by decision of Roskomnadzor",
                "ru.rkn",
            ),
            ("see https://blocklist.rkn.gov.ru/", "ru.rkn"),
            (
                "<iframe src=\"http://10.10.34.34/?type=Invalid\">",
                "ir.peyvandha",
            ),
            (
                "Bilgi Teknolojileri ve İletişim Kurumu tarafından",
                "tr.btk",
            ),
        ] {
            assert_eq!(fp.matches(&page(body), None), Some(name), "{body}");
        }
        assert_eq!(fp.matches(&page("<title>WhatsApp</title>"), None), None);
        assert_eq!(
            fp.matches(&page("nothing"), Some("10.10.34.35".parse().unwrap())),
            Some("ir.peyvandha")
        );
    }
}

//! The vantage's network — autonomous system, its name, country — looked up in offline IP
//! databases the user supplies (`--asn-db FILE`, repeatable). Nothing is asked of the network:
//! each file is read once at the start of the run.
//!
//! The files are in MaxMind DB format; the fields of the free databases researchers use are
//! understood: MaxMind GeoLite2-ASN and DB-IP ASN Lite (`autonomous_system_number`,
//! `autonomous_system_organization`), GeoLite2-Country/-City and DB-IP Country/City Lite
//! (`country.iso_code`, else `registered_country.iso_code`), IPinfo Lite (`asn` as `"AS13335"`,
//! `as_name`, `country_code`). With several files, the first that knows a field gives it (an
//! ASN file and a country file together fill all three).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use maxminddb::{PathElement, Reader};
use serde::Serialize;

/// What the databases say about one address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_org: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Network {
    pub fn is_empty(&self) -> bool {
        self.asn.is_none() && self.as_org.is_none() && self.country.is_none()
    }
}

/// The opened databases, in the order given.
pub struct Databases(Vec<(PathBuf, Reader<Vec<u8>>)>);

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(p, r)| (p, &r.metadata().database_type)))
            .finish()
    }
}

impl Databases {
    /// Opens every file; an error names the file and what is wrong with it.
    pub fn open(paths: &[PathBuf]) -> anyhow::Result<Self> {
        paths
            .iter()
            .map(|p| Ok((p.clone(), open_one(p)?)))
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }

    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.iter().map(|(p, _)| p.as_path())
    }

    /// The network of `ip`; fields no file knows stay empty.
    pub fn lookup(&self, ip: IpAddr) -> Network {
        self.lookup_noting(ip).0
    }

    /// [`lookup`](Self::lookup), and what a user should hear about it: an address in no file,
    /// an entry without a field blockprobe reads, a file that could not be searched.
    pub fn lookup_noting(&self, ip: IpAddr) -> (Network, Vec<String>) {
        // ::ffff:192.0.2.1 is 192.0.2.1 (IPv4-only files cannot be searched for the former).
        let ip = ip.to_canonical();
        let mut n = Network::default();
        let mut notes = Vec::new();
        let mut found_any = false;
        for (path, db) in &self.0 {
            let found = match db.lookup(ip) {
                Ok(f) => f,
                Err(_) if ip.is_ipv6() && db.metadata().ip_version == 4 => {
                    notes.push(format!(
                        "{} holds IPv4 addresses only; {ip} is IPv6",
                        path.display()
                    ));
                    continue;
                }
                Err(e) => {
                    notes.push(format!(
                        "{}: cannot search it for {ip} ({e}); is the file damaged?",
                        path.display()
                    ));
                    continue;
                }
            };
            if !found.has_data() {
                continue;
            }
            found_any = true;
            // A field of another type in this layout (IPinfo's `country` is a name, not a
            // map) is not an error: the next candidate is tried.
            let get_str = |path: &[&str]| -> Option<String> {
                found
                    .decode_path::<String>(&keys(path))
                    .ok()
                    .flatten()
                    .map(|s| clean(&s))
                    .filter(|s| !s.is_empty())
            };
            let get_asn = |path: &[&str]| -> Option<u32> {
                match found.decode_path::<Number>(&keys(path)).ok().flatten()? {
                    Number::Unsigned(n) => u32::try_from(n).ok(),
                    Number::Signed(n) => u32::try_from(n).ok(),
                    Number::Text(s) => parse_asn(&s),
                }
            };
            let before = n.clone();
            n.asn = n
                .asn
                .or_else(|| get_asn(&["autonomous_system_number"]))
                .or_else(|| get_asn(&["asn"]));
            n.as_org = n
                .as_org
                .take()
                .or_else(|| get_str(&["autonomous_system_organization"]))
                .or_else(|| get_str(&["as_name"]));
            n.country = n
                .country
                .take()
                .or_else(|| get_str(&["country", "iso_code"]))
                .or_else(|| get_str(&["country_code"]))
                .or_else(|| get_str(&["registered_country", "iso_code"]))
                .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .map(|c| c.to_ascii_uppercase());
            if n == before && before.is_empty() {
                notes.push(format!(
                    "{} has an entry for {ip} but none of the fields blockprobe reads \
                     (autonomous_system_number or asn, autonomous_system_organization or \
                     as_name, country.iso_code or country_code)",
                    path.display()
                ));
            }
        }
        if !found_any {
            notes.push(format!(
                "{ip} is in none of {}; asn, as_org and country stay empty",
                self.paths()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        (n, notes)
    }
}

/// An AS number as the files store it: any integer type, or text (`"AS13335"`, `"13335"`).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Number {
    Unsigned(u64),
    Signed(i64),
    Text(String),
}

/// The longest network name kept (some files carry whole descriptions).
const MAX_ORG: usize = 256;

/// A name from the file as one printable line: control, bidi-override and zero-width
/// characters dropped, whitespace runs made one space, at most [`MAX_ORG`] characters.
fn clean(s: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    };
    let mut out = String::new();
    for word in s
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !invisible(*c)));
    }
    match out.char_indices().nth(MAX_ORG) {
        Some((at, _)) => {
            out.truncate(at);
            out.push('…');
            out
        }
        None => out,
    }
}

fn keys<'a>(path: &[&'a str]) -> Vec<PathElement<'a>> {
    path.iter().map(|k| PathElement::Key(k)).collect()
}

/// The largest file read (the biggest free city databases are a few hundred MB).
const MAX_FILE: u64 = 2 << 30;

fn open_one(p: &Path) -> anyhow::Result<Reader<Vec<u8>>> {
    // A FIFO or a device would block or never end: only a regular file is read.
    let meta = std::fs::metadata(p).with_context(|| format!("--asn-db {}", p.display()))?;
    if !meta.is_file() {
        anyhow::bail!(
            "--asn-db {}: not a regular file (give the .mmdb file itself)",
            p.display()
        );
    }
    if meta.len() > MAX_FILE {
        anyhow::bail!(
            "--asn-db {}: {} bytes; IP-to-ASN and country files are far smaller (at most {MAX_FILE} read)",
            p.display(),
            meta.len()
        );
    }
    let bytes = std::fs::read(p).with_context(|| format!("--asn-db {}", p.display()))?;
    Reader::from_source(bytes).map_err(|e| {
        anyhow::anyhow!(
            "--asn-db {}: not a MaxMind DB file ({e}); use an .mmdb file such as DB-IP's \
             ip-to-asn-lite, IPinfo Lite or MaxMind GeoLite2-ASN",
            p.display()
        )
    })
}

/// `13335`, `AS13335` or `as13335` → 13335.
pub fn parse_asn(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s
        .strip_prefix("AS")
        .or_else(|| s.strip_prefix("as"))
        .or_else(|| s.strip_prefix("As"))
        .unwrap_or(s);
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_printable_line() {
        assert_eq!(
            clean("Beeline\n\u{202E}Moscow\r\t \u{1b}[2J"),
            "Beeline Moscow [2J"
        );
        assert_eq!(clean(&"x".repeat(1000)).chars().count(), MAX_ORG + 1);
        assert_eq!(clean(" \u{200B} "), "");
    }

    #[test]
    fn asn_forms() {
        assert_eq!(parse_asn("AS13335"), Some(13335));
        assert_eq!(parse_asn("as8359"), Some(8359));
        assert_eq!(parse_asn(" 12389 "), Some(12389));
        assert_eq!(parse_asn("ASX"), None);
        assert_eq!(parse_asn(""), None);
    }
}

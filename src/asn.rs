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
        let mut n = Network::default();
        for (_, db) in &self.0 {
            // An IPv6 address in an IPv4-only file is an error: that file just does not know it.
            let Ok(found) = db.lookup(ip) else { continue };
            let get_u32 = |path: &[&str]| -> Option<u32> {
                found.decode_path::<u32>(&keys(path)).ok().flatten()
            };
            let get_str = |path: &[&str]| -> Option<String> {
                found
                    .decode_path::<String>(&keys(path))
                    .ok()
                    .flatten()
                    .filter(|s| !s.trim().is_empty())
            };
            n.asn = n
                .asn
                .or_else(|| get_u32(&["autonomous_system_number"]))
                .or_else(|| get_str(&["asn"]).and_then(|s| parse_asn(&s)));
            n.as_org = n
                .as_org
                .take()
                .or_else(|| get_str(&["autonomous_system_organization"]))
                .or_else(|| get_str(&["as_name"]))
                .map(|s| crate::diag::printable(&s).into_owned());
            n.country = n
                .country
                .take()
                .or_else(|| get_str(&["country", "iso_code"]))
                .or_else(|| get_str(&["country_code"]))
                .or_else(|| get_str(&["registered_country", "iso_code"]))
                .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .map(|c| c.to_ascii_uppercase());
        }
        n
    }
}

fn keys<'a>(path: &[&'a str]) -> Vec<PathElement<'a>> {
    path.iter().map(|k| PathElement::Key(k)).collect()
}

fn open_one(p: &Path) -> anyhow::Result<Reader<Vec<u8>>> {
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
    fn asn_forms() {
        assert_eq!(parse_asn("AS13335"), Some(13335));
        assert_eq!(parse_asn("as8359"), Some(8359));
        assert_eq!(parse_asn(" 12389 "), Some(12389));
        assert_eq!(parse_asn("ASX"), None);
        assert_eq!(parse_asn(""), None);
    }
}

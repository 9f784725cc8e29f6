//! Probe suites: curated target lists in `probes/suites/*.toml` (bundled into the binary) or a
//! user's own file, selected with `--suite`. Format: `docs/suites.md`.

use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::target::{Method, Scheme, Target};

/// The bundled suites, compiled in so the binary needs no data files.
pub const BUNDLED: &[(&str, &str)] = &[
    ("whatsapp", include_str!("../probes/suites/whatsapp.toml")),
    ("telegram", include_str!("../probes/suites/telegram.toml")),
    ("signal", include_str!("../probes/suites/signal.toml")),
    ("max", include_str!("../probes/suites/max.toml")),
    ("vk", include_str!("../probes/suites/vk.toml")),
    ("youtube", include_str!("../probes/suites/youtube.toml")),
    ("social", include_str!("../probes/suites/social.toml")),
    ("vpn", include_str!("../probes/suites/vpn.toml")),
    ("tor", include_str!("../probes/suites/tor.toml")),
    ("news", include_str!("../probes/suites/news.toml")),
    ("calls", include_str!("../probes/suites/calls.toml")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    name: String,
    description: String,
    /// In-run baselines for throttling and freezes (`--reference`): large objects on
    /// domestic servers.
    #[serde(default)]
    references: Vec<toml::Spanned<String>>,
    #[serde(rename = "target", default)]
    targets: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    target: toml::Spanned<String>,
    category: String,
    note: String,
    #[serde(default)]
    method: Method,
}

/// A suite, parsed and checked: every target is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suite {
    pub name: String,
    pub description: String,
    /// Where it came from: `bundled` or the file's path.
    pub origin: String,
    pub targets: Vec<SuiteTarget>,
    /// `--reference` URLs the suite brings.
    pub references: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteTarget {
    pub target: Target,
    pub note: String,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Suite {
    /// `--suite SPEC`: a bundled suite's name, or a path to a TOML file (anything with a `/`
    /// or ending in `.toml`).
    pub fn load(spec: &str) -> anyhow::Result<Self> {
        if spec.ends_with(".toml") || spec.contains('/') || spec.contains('\\') {
            let path = Path::new(spec);
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read suite {}", path.display()))?;
            return Self::parse(&text, &path.display().to_string());
        }
        let Some((_, text)) = BUNDLED.iter().find(|(n, _)| *n == spec) else {
            let names: Vec<&str> = BUNDLED.iter().map(|(n, _)| *n).collect();
            bail!(
                "unknown suite `{spec}` (bundled: {}; or give a path to a .toml file)",
                names.join(", ")
            );
        };
        Self::parse(text, &format!("probes/suites/{spec}.toml"))
    }

    /// Every bundled suite, in [`BUNDLED`] order.
    pub fn bundled() -> anyhow::Result<Vec<Self>> {
        BUNDLED.iter().map(|(n, _)| Self::load(n)).collect()
    }

    /// Parses suite text; errors name `origin` and the line.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let file: SuiteFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            match line {
                Some(l) => anyhow::anyhow!("{origin}:{l}: {}", e.message()),
                None => anyhow::anyhow!("{origin}: {e}"),
            }
        })?;
        if file.name.trim().is_empty() {
            bail!("{origin}: `name` is empty");
        }
        if file.targets.is_empty() {
            bail!("{origin}: the suite has no [[target]]");
        }
        let mut targets: Vec<SuiteTarget> = Vec::with_capacity(file.targets.len());
        for e in file.targets {
            let line = line_of(text, e.target.span().start);
            let raw = e.target.into_inner();
            let mut t = Target::parse(&raw).map_err(|m| anyhow::anyhow!("{origin}:{line}: {m}"))?;
            if e.method == Method::Post && !matches!(t.scheme, Scheme::Http | Scheme::Https) {
                bail!("{origin}:{line}: `method = \"POST\"` needs an http:// or https:// target");
            }
            if e.category.trim().is_empty() {
                bail!("{origin}:{line}: `category` is empty");
            }
            if targets.iter().any(|o| o.target.input == raw) {
                bail!("{origin}:{line}: `{raw}` is listed twice");
            }
            t.category = Some(e.category.trim().to_owned());
            t.method = e.method;
            targets.push(SuiteTarget {
                target: t,
                note: e.note,
            });
        }
        let mut references = Vec::with_capacity(file.references.len());
        for r in file.references {
            let line = line_of(text, r.span().start);
            let r = r.into_inner();
            crate::parse::check_reference(&r)
                .map_err(|m| anyhow::anyhow!("{origin}:{line}: reference `{r}`: {m}"))?;
            references.push(r);
        }
        Ok(Self {
            name: file.name,
            description: file.description,
            origin: origin.to_owned(),
            targets,
            references,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_suite_parses_and_is_named_after_its_file() {
        let suites = Suite::bundled().unwrap();
        assert_eq!(suites.len(), BUNDLED.len());
        for (s, (name, _)) in suites.iter().zip(BUNDLED) {
            assert_eq!(s.name, *name);
            assert!(!s.description.is_empty(), "{name}");
            assert!(s.targets.len() >= 3, "{name}");
        }
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let text = "name = \"x\"\ndescription = \"d\"\n\n[[target]]\ntarget = \"bad target\"\ncategory = \"COMM\"\nnote = \"n\"\n";
        let e = Suite::parse(text, "my.toml").unwrap_err().to_string();
        assert!(e.starts_with("my.toml:5: "), "{e}");
        let text = "name = \"x\"\ndescription = \"d\"\n[[target]]\ntarget = \"a.example\"\nnote = \"n\"\ncolour = 1\ncategory = \"C\"\n";
        let e = Suite::parse(text, "my.toml").unwrap_err().to_string();
        assert!(e.starts_with("my.toml:6: ") && e.contains("colour"), "{e}");
        let text = "name = \"x\"\ndescription = \"d\"\n[[target]]\ntarget = \"a.example:5222\"\ncategory = \"C\"\nnote = \"n\"\nmethod = \"POST\"\n";
        let e = Suite::parse(text, "my.toml").unwrap_err().to_string();
        assert!(e.starts_with("my.toml:4: ") && e.contains("POST"), "{e}");
        let e = Suite::load("nonesuch").unwrap_err().to_string();
        assert!(e.contains("whatsapp") && e.contains("calls"), "{e}");
    }

    #[test]
    fn suite_targets_carry_category_and_method() {
        let text = "name = \"x\"\ndescription = \"d\"\n[[target]]\ntarget = \"http://192.0.2.1:443/\"\ncategory = \"COMM\"\nnote = \"dc\"\nmethod = \"POST\"\n[[target]]\ntarget = \"stun://stun.example:19302\"\ncategory = \"COMM\"\nnote = \"s\"\n";
        let s = Suite::parse(text, "x.toml").unwrap();
        assert_eq!(s.targets[0].target.method, Method::Post);
        assert_eq!(s.targets[0].target.category.as_deref(), Some("COMM"));
        assert_eq!(s.targets[1].target.scheme, Scheme::Stun);
        assert_eq!(s.targets[1].target.port, 19302);
    }
}

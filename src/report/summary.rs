//! The end-of-run table on stderr: counts per verdict per resolver. Bounded by the number of
//! resolvers, not targets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::verdict::Verdict;

#[derive(Default, Debug)]
pub struct Summary {
    counts: BTreeMap<String, [u64; 5]>,
    /// Verdicts on a transfer decided against an in-run reference (no working control path).
    pub by_reference: u64,
    /// `inconclusive` verdicts that a (working) control path would have decided.
    pub want_control_path: u64,
    /// `inconclusive` verdicts that an in-run reference (`--reference`) would have decided.
    pub want_reference: u64,
    /// The run's network regime, when the check found a whitelist or nothing working: the
    /// summary leads with it.
    pub regime: Option<String>,
    /// The probe steps, when `--probes` chose other than the default (`dns`, `dns,tcp`, …).
    pub probes: Option<String>,
    /// Where the run measured from, when its public address is known (`--public-ip-stun`,
    /// `--public-ip`, with `--asn-db` its network): "203.0.113.7, AS8402 Beeline, RU".
    pub place: Option<String>,
    /// The first blocked or throttled results, named in the summary: (target, resolver,
    /// verdict, reason).
    failures: Vec<(String, String, Verdict, Option<&'static str>)>,
    /// Blocked or throttled results past those.
    more_failures: u64,
}

/// Blocked or throttled results named in the summary at most.
pub const NAMED: usize = 20;

impl Summary {
    /// Counts what decided a record (in-run references, a missing control path).
    pub fn note(&mut self, r: &crate::report::Record) {
        if matches!(r.verdict, Verdict::Blocked | Verdict::Throttled) {
            if self.failures.len() < NAMED {
                self.failures.push((
                    r.target.clone(),
                    r.resolver.clone(),
                    r.verdict,
                    r.reason.map(crate::verdict::Reason::as_str),
                ));
            } else {
                self.more_failures += 1;
            }
        }
        if r.baseline.as_deref().is_some_and(|b| b != "control_path")
            && r.verdict != Verdict::Inconclusive
        {
            self.by_reference += 1;
        }
        match r.needs {
            Some(crate::classify::Needs::ControlPath) => self.want_control_path += 1,
            Some(crate::classify::Needs::Reference) => self.want_reference += 1,
            _ => {}
        }
    }

    pub fn add(&mut self, resolver: &str, verdict: Verdict) {
        let idx = Verdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .expect("all");
        match self.counts.get_mut(resolver) {
            Some(row) => row[idx] += 1,
            None => {
                let mut row = [0; 5];
                row[idx] = 1;
                self.counts.insert(resolver.to_owned(), row);
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().flatten().sum()
    }

    pub fn count(&self, verdict: Verdict) -> u64 {
        let idx = Verdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .expect("all");
        self.counts.values().map(|r| r[idx]).sum()
    }

    /// What is blocked or throttled, by name: one line each (the first [`NAMED`]).
    pub fn render_failures(&self) -> String {
        let mut s = String::new();
        if self.failures.is_empty() {
            return s;
        }
        s.push_str("blocked or throttled:\n");
        for (target, resolver, verdict, reason) in &self.failures {
            let _ = writeln!(
                s,
                "  {target} via {resolver}: {}{}",
                verdict.as_str(),
                reason.map(|r| format!(" {r}")).unwrap_or_default()
            );
        }
        if self.more_failures > 0 {
            let _ = writeln!(s, "  … and {} more (see the report)", self.more_failures);
        }
        s
    }

    pub fn render(&self) -> String {
        let width = self
            .counts
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(8);
        let mut s = format!("{:<width$}", "resolver");
        for v in Verdict::ALL {
            let _ = write!(s, " {:>12}", v.as_str());
        }
        s.push('\n');
        for (name, row) in &self.counts {
            let _ = write!(s, "{name:<width$}");
            for n in row {
                let _ = write!(s, " {n:>12}");
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders() {
        let mut s = Summary::default();
        s.add("isp", Verdict::Blocked);
        s.add("isp", Verdict::Blocked);
        s.add("dot", Verdict::Reachable);
        assert_eq!(s.total(), 3);
        assert_eq!(s.count(Verdict::Blocked), 2);
        let table = s.render();
        assert!(table.starts_with("resolver"), "{table}");
        assert!(table.contains("isp"));
        assert_eq!(table.lines().count(), 3);
    }
}

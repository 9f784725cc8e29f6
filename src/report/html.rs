//! `blockprobe report`: one self-contained HTML page from a scan's report (JSON or JSONL) or
//! from the store — no scripts, no external assets, nothing loaded from the network (its
//! Content-Security-Policy forbids it), so it opens offline and from an email.
//!
//! * a target × resolver grid of the latest run, coloured by verdict, the reason in the cell
//!   and the detail on hover;
//! * the latest run's breakdown by verdict and by layer and reason;
//! * from several runs (a store): a timeline per (target, resolver) — one cell per run, when it
//!   became blocked, when it came back — with runs under a whitelist regime marked, and a
//!   per-run trend chart of the verdicts.
//!
//! Memory is bounded: at most [`MAX_ROWS`] (target, resolver) pairs and [`MAX_RUNS`] runs are
//! drawn; what is left out is counted and said.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead;

use serde::Deserialize;

/// (target, resolver) pairs drawn at most.
pub const MAX_ROWS: usize = 5_000;
/// Runs drawn at most (the latest).
pub const MAX_RUNS: usize = 60;

/// The fields of a record the page shows.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Row {
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub regime: String,
    pub target: String,
    pub resolver: String,
    pub verdict: String,
    #[serde(default)]
    pub layer: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub detail: String,
    // Where it was measured from (the fields of [`Place`]; not flattened: serde would buffer
    // every other field, evidence and all, to find them).
    #[serde(default)]
    pub vantage: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub as_org: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

/// Where a run measured from (`--vantage`, `--public-ip-stun`/`--public-ip`, `--asn-db`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Place {
    #[serde(default)]
    pub vantage: Option<String>,
    #[serde(default)]
    pub public_ip: Option<String>,
    #[serde(default)]
    pub asn: Option<u32>,
    #[serde(default)]
    pub as_org: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
}

impl Place {
    /// "msk-beeline-1 — 203.0.113.7, AS8402 Beeline Moscow, RU", or nothing known.
    pub fn describe(&self) -> Option<String> {
        let asn = self.asn.map(|a| match &self.as_org {
            Some(o) => format!("AS{a} {o}"),
            None => format!("AS{a}"),
        });
        let net: Vec<&str> = [
            self.public_ip.as_deref(),
            asn.as_deref(),
            self.country.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        match (&self.vantage, net.is_empty()) {
            (None, true) => None,
            (Some(v), true) => Some(v.clone()),
            (None, false) => Some(net.join(", ")),
            (Some(v), false) => Some(format!("{v} — {}", net.join(", "))),
        }
    }
}

/// One run's column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub started_at: String,
    pub regime: String,
    pub place: Place,
}

#[derive(Clone, Debug)]
struct Cell {
    verdict: String,
    reason: Option<String>,
    detail: String,
}

/// What the page draws, gathered row by row.
#[derive(Debug, Default)]
pub struct Data {
    /// Where the records came from, for the heading.
    pub source: String,
    runs: Vec<RunInfo>,
    run_index: HashMap<String, usize>,
    /// (target, resolver) → (run index → cell).
    cells: BTreeMap<(String, String), BTreeMap<usize, Cell>>,
    /// Records not drawn (past [`MAX_ROWS`] pairs or [`MAX_RUNS`] runs).
    pub left_out: u64,
    pub records: u64,
    /// Per run, every record counted (drawn or not): by verdict, and by (layer, reason,
    /// verdict) — bounded by the reasons there are, not by the records.
    counts: Vec<[u64; 5]>,
    reasons: Vec<BTreeMap<(String, String, String), u64>>,
}

impl Data {
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Declares a run (in time order); runs past [`MAX_RUNS`] drop the oldest.
    pub fn run(&mut self, r: RunInfo) {
        if self.run_index.contains_key(&r.run_id) {
            return;
        }
        self.run_index.insert(r.run_id.clone(), self.runs.len());
        self.runs.push(r);
        self.counts.push([0; 5]);
        self.reasons.push(BTreeMap::new());
    }

    /// Runs read.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn add(&mut self, row: Row) {
        self.records += 1;
        let run = match self.run_index.get(&row.run_id) {
            Some(i) => *i,
            None => {
                self.run(RunInfo {
                    run_id: row.run_id.clone(),
                    started_at: row.started_at.clone(),
                    regime: row.regime.clone(),
                    place: Place {
                        vantage: row.vantage.clone(),
                        public_ip: row.public_ip.clone(),
                        asn: row.asn,
                        as_org: row.as_org.clone(),
                        country: row.country.clone(),
                    },
                });
                self.runs.len() - 1
            }
        };
        let v = VERDICTS.iter().position(|v| *v == row.verdict).unwrap_or(4);
        self.counts[run][v] += 1;
        if let Some(r) = &row.reason {
            let layer = row
                .layer
                .clone()
                .unwrap_or_else(|| r.split('.').next().unwrap_or("").to_owned());
            *self.reasons[run]
                .entry((layer, r.clone(), VERDICTS[v].to_owned()))
                .or_default() += 1;
        }
        let key = (row.target, row.resolver);
        if !self.cells.contains_key(&key) && self.cells.len() >= MAX_ROWS {
            self.left_out += 1;
            return;
        }
        self.cells.entry(key).or_default().insert(
            run,
            Cell {
                verdict: row.verdict,
                reason: row.reason,
                detail: row.detail,
            },
        );
    }

    /// Reads a scan report: a JSON document (`{"run": …, "records": […]}`) or JSONL, one
    /// record per line.
    pub fn read_report(&mut self, input: impl BufRead) -> anyhow::Result<()> {
        let mut lines = input.lines();
        let mut first = String::new();
        for line in lines.by_ref() {
            let line = line?;
            if !line.trim().is_empty() {
                first = line;
                break;
            }
        }
        let head = first.trim_start();
        if head == "{" || head.starts_with("{\"schema_version\"") || head.starts_with("{\"run\"") {
            // A JSON document: read it whole (only the fields drawn are kept).
            #[derive(Deserialize)]
            struct Doc {
                run: DocRun,
                records: Vec<Row>,
            }
            #[derive(Deserialize)]
            struct DocRun {
                run_id: String,
                started_at: String,
                #[serde(default)]
                regime: Option<serde_json::Value>,
                #[serde(flatten)]
                place: Place,
            }
            let mut text = first;
            for line in lines {
                text.push('\n');
                text.push_str(&line?);
            }
            let doc: Doc = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("not a blockprobe JSON report: {e}"))?;
            let regime = doc
                .run
                .regime
                .as_ref()
                .and_then(|r| r.get("regime"))
                .and_then(|r| r.as_str())
                .unwrap_or("unknown")
                .to_owned();
            self.run(RunInfo {
                run_id: doc.run.run_id,
                started_at: doc.run.started_at,
                regime,
                place: doc.run.place,
            });
            for r in doc.records {
                self.add(r);
            }
            return Ok(());
        }
        let head = first.trim_start();
        if !head.is_empty() && !head.starts_with('{') {
            anyhow::bail!(
                "line 1: not a JSON or JSONL report{} (give the scan's -o x.json or -o x.jsonl, or --store)",
                if head.contains(',') {
                    " — a CSV report?"
                } else {
                    ""
                }
            );
        }
        let mut n = 1usize;
        let mut parse = |line: &str, n: usize| -> anyhow::Result<()> {
            if line.trim().is_empty() {
                return Ok(());
            }
            let row: Row = serde_json::from_str(line).map_err(|e| {
                anyhow::anyhow!(
                    "line {n}: not a blockprobe JSONL record ({e}); give a JSON or JSONL report"
                )
            })?;
            self.add(row);
            Ok(())
        };
        parse(&first, n)?;
        for line in lines {
            n += 1;
            parse(&line?, n)?;
        }
        Ok(())
    }
}

/// Colours by verdict (readable on white, distinguishable in grey print by lightness).
fn colour(verdict: &str) -> (&'static str, &'static str) {
    match verdict {
        "reachable" => ("#2e7d32", "#fff"),
        "blocked" => ("#c62828", "#fff"),
        "throttled" => ("#ef6c00", "#fff"),
        "down" => ("#546e7a", "#fff"),
        _ => ("#e0e0e0", "#222"),
    }
}

const VERDICTS: [&str; 5] = ["reachable", "blocked", "throttled", "down", "inconclusive"];

/// HTML-escapes text for element content and attribute values. Control characters and
/// bidirectional overrides (U+202E can make `https://` followed by `gnp.exe` read as a PNG
/// file name) become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push('\u{fffd}');
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn label(c: &Cell) -> String {
    c.reason.clone().unwrap_or_else(|| c.verdict.clone())
}

fn is_failure(v: &str) -> bool {
    matches!(v, "blocked" | "throttled")
}

/// The short date of a run's start (`2026-11-28 18:23`).
fn short_date(started_at: &str) -> String {
    started_at
        .get(..16)
        .map_or_else(|| started_at.to_owned(), |s| s.replace('T', " "))
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin:0 0 12px}
.chips span{display:inline-block;padding:3px 10px;border-radius:12px;margin:0 6px 6px 0;font-weight:600}
.regime{background:#fff3cd;border:1px solid #e0b100;padding:8px 12px;border-radius:6px;margin:12px 0}
table{border-collapse:collapse}th,td{border:1px solid #fff;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2;font-weight:600;white-space:nowrap}
td.v{white-space:nowrap;font-size:12px}
td.t{max-width:420px;overflow-wrap:anywhere}
.timeline td.v{width:14px;min-width:14px;padding:0;height:18px}
th.wl{background:repeating-linear-gradient(45deg,#fff3cd,#fff3cd 4px,#f0d060 4px,#f0d060 8px)}
.bar{display:inline-block;height:12px;vertical-align:middle}
.note{color:#555;font-size:13px}
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px;font-size:12px}
";

/// Renders the page.
pub fn render(d: &Data, generated_at: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let latest = d.runs.len().checked_sub(1);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>blockprobe report — {}</title><style>{STYLE}</style></head><body>\n",
        esc(&d.source)
    );
    let _ = writeln!(
        h,
        "<h1>blockprobe report</h1><p class=\"meta\">{} — {} record(s), {} run(s); generated {} by blockprobe {}</p>",
        esc(&d.source),
        d.records,
        d.runs.len(),
        esc(generated_at),
        env!("CARGO_PKG_VERSION")
    );
    if d.left_out > 0 {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} record(s) past the first {MAX_ROWS} (target, resolver) pairs are not drawn.</p>",
            d.left_out
        );
    }
    let Some(latest) = latest else {
        h.push_str("<p>No records.</p></body></html>\n");
        return h;
    };
    let run = &d.runs[latest];
    // The latest run's cells.
    let current: Vec<(&(String, String), &Cell)> = d
        .cells
        .iter()
        .filter_map(|(k, runs)| runs.get(&latest).map(|c| (k, c)))
        .collect();

    let _ = writeln!(
        h,
        "<h2 id=\"latest\">Latest run: {} ({})</h2>",
        esc(&run.run_id),
        esc(&short_date(&run.started_at))
    );
    if let Some(place) = run.place.describe() {
        let _ = writeln!(
            h,
            "<p class=\"meta\" id=\"place\">Measured from {}</p>",
            esc(&place)
        );
    }
    if matches!(run.regime.as_str(), "whitelist" | "offline") {
        let _ = writeln!(
            h,
            "<div class=\"regime\" id=\"regime\"><b>{} regime detected</b> — per-site results reflect the allow-list, not targeted blocking.</div>",
            esc(&run.regime)
        );
    }
    // Counts by verdict: every record of the run, drawn or not.
    h.push_str("<div class=\"chips\" id=\"counts\">");
    for (v, n) in VERDICTS.iter().zip(d.counts[latest]) {
        let (bg, fg) = colour(v);
        let _ = write!(
            h,
            "<span class=\"v-{v}\" style=\"background:{bg};color:{fg}\">{v}: {n}</span>"
        );
    }
    h.push_str("</div>\n");

    // The grid: targets × resolvers.
    let resolvers: Vec<&str> = {
        let mut r: Vec<&str> = current.iter().map(|((_, r), _)| r.as_str()).collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    let mut by_target: BTreeMap<&str, HashMap<&str, &Cell>> = BTreeMap::new();
    for ((t, r), c) in &current {
        by_target
            .entry(t.as_str())
            .or_default()
            .insert(r.as_str(), *c);
    }
    h.push_str("<h2>Targets × resolvers</h2><p class=\"note\">Hover a cell for the evidence in words.</p><table class=\"grid\" id=\"grid\"><tr><th>target</th>");
    for r in &resolvers {
        let _ = write!(h, "<th>{}</th>", esc(r));
    }
    h.push_str("</tr>\n");
    for (t, row) in &by_target {
        let _ = write!(h, "<tr><td class=\"t\">{}</td>", esc(t));
        for r in &resolvers {
            match row.get(r) {
                Some(c) => {
                    let (bg, fg) = colour(&c.verdict);
                    let _ = write!(
                        h,
                        "<td class=\"v v-{}\" style=\"background:{bg};color:{fg}\" title=\"{}: {}\">{}</td>",
                        esc(&c.verdict),
                        esc(&c.verdict),
                        esc(&c.detail),
                        esc(&label(c))
                    );
                }
                None => h.push_str("<td class=\"v\"></td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");

    // Breakdown by layer and reason.
    // (layer, reason, verdict), every record of the run: a transfer reason's layer is its
    // connection's (tls or http).
    let reasons = d.reasons[latest].clone();
    if !reasons.is_empty() {
        let max = reasons.values().copied().max().unwrap_or(1).max(1);
        h.push_str("<h2>By layer and reason</h2><table id=\"reasons\"><tr><th>layer</th><th>reason</th><th>verdict</th><th>results</th></tr>\n");
        let mut sorted: Vec<_> = reasons.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for ((layer, reason, verdict), n) in sorted {
            let (bg, _) = colour(&verdict);
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{}px;background:{bg}\"></span> {n}</td></tr>",
                esc(&layer),
                esc(&reason),
                esc(&verdict),
                (n * 240 / max).max(2)
            );
        }
        h.push_str("</table>\n");
    }

    if d.runs.len() > 1 {
        trend(&mut h, d);
        timeline(&mut h, d);
    }
    h.push_str("</body></html>\n");
    h
}

/// Per-run stacked bars of the verdicts (inline SVG).
fn trend(h: &mut String, d: &Data) {
    let per_run = &d.counts;
    let max = per_run
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (bar, gap, height) = (18u64, 6u64, 160u64);
    let width = (bar + gap) * d.runs.len() as u64 + 40;
    let _ = write!(
        h,
        "<h2>Verdicts per run</h2><svg id=\"trend\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"verdicts per run\">",
        height + 34
    );
    for (i, counts) in per_run.iter().enumerate() {
        let x = 30 + i as u64 * (bar + gap);
        let mut y = height;
        for (v, n) in VERDICTS.iter().zip(counts) {
            if *n == 0 {
                continue;
            }
            let hgt = (n * height / max).max(1);
            y -= hgt;
            let _ = write!(
                h,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{hgt}\" fill=\"{}\"><title>{}: {v} {n}</title></rect>",
                colour(v).0,
                esc(&short_date(&d.runs[i].started_at))
            );
        }
        if matches!(d.runs[i].regime.as_str(), "whitelist" | "offline") {
            let _ = write!(
                h,
                "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">W</text>",
                x + bar / 2,
                height + 14
            );
        }
        // The date under every few bars (about ten labels at most).
        if i % d.runs.len().div_ceil(10).max(1) == 0 {
            let date = d.runs[i].started_at.get(5..10).unwrap_or("");
            let _ = write!(
                h,
                "<text x=\"{x}\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>",
                height + 28,
                esc(date)
            );
        }
    }
    h.push_str("</svg>\n");
    if d.runs
        .iter()
        .any(|r| matches!(r.regime.as_str(), "whitelist" | "offline"))
    {
        h.push_str("<p class=\"note\">W: the run was under a whitelist (or offline) regime.</p>\n");
    }
}

/// One row per (target, resolver), one cell per run, and when it became blocked or came back.
fn timeline(h: &mut String, d: &Data) {
    h.push_str("<h2>Timeline</h2><p class=\"legend\">");
    for v in VERDICTS {
        let (bg, fg) = colour(v);
        let _ = write!(h, "<span style=\"background:{bg};color:{fg}\">{v}</span>");
    }
    h.push_str("— a striped column: the run was under a whitelist regime (a shutdown, not per-site blocking).</p><table class=\"timeline\" id=\"timeline\"><tr><th>target</th><th>resolver</th>");
    for r in &d.runs {
        let wl = matches!(r.regime.as_str(), "whitelist" | "offline");
        let _ = write!(
            h,
            "<th class=\"run{}\" title=\"{} {}{}\"></th>",
            if wl { " wl" } else { "" },
            esc(&r.run_id),
            esc(&short_date(&r.started_at)),
            if wl {
                format!(" ({} regime)", esc(&r.regime))
            } else {
                String::new()
            }
        );
    }
    h.push_str("<th>since</th></tr>\n");
    for ((target, resolver), runs) in &d.cells {
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td>{}</td>",
            esc(target),
            esc(resolver)
        );
        for (i, r) in d.runs.iter().enumerate() {
            match runs.get(&i) {
                Some(c) => {
                    let (bg, _) = colour(&c.verdict);
                    let _ = write!(
                        h,
                        "<td class=\"v v-{}\" style=\"background:{bg}\" title=\"{}: {}\"></td>",
                        esc(&c.verdict),
                        esc(&short_date(&r.started_at)),
                        esc(&label(c))
                    );
                }
                None => h.push_str("<td class=\"v\"></td>"),
            }
        }
        let _ = writeln!(h, "<td class=\"since\">{}</td></tr>", esc(&since(d, runs)));
    }
    h.push_str("</table>\n");
}

/// "blocked since DATE" (the start of the last span of failures), "reachable again since DATE"
/// (after a blocked span), or nothing.
fn since(d: &Data, runs: &BTreeMap<usize, Cell>) -> String {
    let seq: Vec<(usize, &Cell)> = runs.iter().map(|(i, c)| (*i, c)).collect();
    let Some((_, last)) = seq.last() else {
        return String::new();
    };
    let failing = is_failure(&last.verdict);
    // Where the last span (failing, or not) began.
    let mut start = seq.len() - 1;
    while start > 0 && is_failure(&seq[start - 1].1.verdict) == failing {
        start -= 1;
    }
    let when = short_date(&d.runs[seq[start].0].started_at);
    if failing {
        format!("{} since {when}", label(last))
    } else if start > 0 && last.verdict == "reachable" {
        format!("reachable again since {when}")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(run: &str, at: &str, target: &str, verdict: &str, reason: Option<&str>) -> Row {
        Row {
            run_id: run.into(),
            started_at: at.into(),
            regime: "open".into(),
            target: target.into(),
            resolver: "isp".into(),
            verdict: verdict.into(),
            layer: None,
            reason: reason.map(Into::into),
            detail: format!("<b>{target}</b> & more"),
            ..Row::default()
        }
    }

    #[test]
    fn the_page_escapes_draws_and_dates_the_changes() {
        let mut d = Data::new("runs.db");
        d.add(row(
            "r1",
            "2026-11-01T10:00:00Z",
            "a.example",
            "reachable",
            None,
        ));
        d.add(row(
            "r2",
            "2026-11-02T10:00:00Z",
            "a.example",
            "blocked",
            Some("tls.reset"),
        ));
        d.add(row(
            "r3",
            "2026-11-03T10:00:00Z",
            "a.example",
            "blocked",
            Some("tls.reset"),
        ));
        d.add(row(
            "r1",
            "2026-11-01T10:00:00Z",
            "b.example",
            "blocked",
            Some("dns.nxdomain"),
        ));
        d.add(row(
            "r3",
            "2026-11-03T10:00:00Z",
            "b.example",
            "reachable",
            None,
        ));
        let page = render(&d, "now");
        assert!(page.contains("tls.reset since 2026-11-02 10:00"), "{page}");
        assert!(
            page.contains("reachable again since 2026-11-03 10:00"),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;a.example&lt;/b&gt; &amp; more"));
        assert!(!page.contains("<b>a.example"));
        assert!(page.contains("id=\"trend\"") && page.contains("id=\"timeline\""));
        assert!(!page.contains("<script") && !page.contains("src="));
    }

    /// Past the rows drawn, every record still counts (a run with thousands blocked after the
    /// first 5,000 pairs must not look clean), and text cannot reorder itself.
    #[test]
    fn counts_cover_every_record_and_text_is_tamed() {
        let mut d = Data::new("big");
        for i in 0..MAX_ROWS + 100 {
            let v = if i < MAX_ROWS { "reachable" } else { "blocked" };
            let r = (v == "blocked").then_some("tcp.reset");
            d.add(row("r", "2026-11-01T10:00:00Z", &format!("t{i}"), v, r));
        }
        let page = render(&d, "now");
        assert!(
            page.contains(">blocked: 100<"),
            "the chips count every record"
        );
        assert!(page.contains("tcp.reset"), "and so does the breakdown");
        assert!(page.contains("100 record(s) past the first"));
        assert_eq!(esc("a\u{202e}b\u{0}c"), "a\u{fffd}b\u{fffd}c");
        assert!(!page.contains("W: the run"), "no whitelist run, no legend");
    }

    #[test]
    fn reports_are_read_as_json_or_jsonl() {
        let jsonl = "{\"run_id\":\"r\",\"started_at\":\"t\",\"target\":\"x\",\"resolver\":\"isp\",\"verdict\":\"blocked\",\"reason\":\"tcp.reset\",\"detail\":\"d\"}\n";
        let mut d = Data::new("x");
        d.read_report(jsonl.as_bytes()).unwrap();
        assert_eq!(d.records, 1);
        let doc = format!(
            "{{\n\"run\": {{\"run_id\": \"r\", \"started_at\": \"t\", \"regime\": {{\"regime\": \"whitelist\"}}}},\n\"records\": [{}]\n}}",
            jsonl.trim()
        );
        let mut d = Data::new("x");
        d.read_report(doc.as_bytes()).unwrap();
        assert_eq!((d.records, d.runs[0].regime.as_str()), (1, "whitelist"));
        let err = Data::new("x")
            .read_report("target,verdict\n".as_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}

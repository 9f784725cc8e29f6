//! `blockprobe history`, `diff` and `export`: reading the store.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use anyhow::bail;

use crate::report::{COLUMNS, csv_safe};
use crate::store::{Store, Value};

/// How `history` and `diff` print: a table for people, CSV or JSON for scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Csv,
    Json,
}

/// `--since`: a date (2026-11-01), an RFC 3339 time, or an age (7d, 24h) before now.
pub fn parse_since(s: &str) -> Result<String, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        let t = std::time::SystemTime::now()
            .checked_sub(d)
            .ok_or_else(|| format!("--since {s}: too far back"))?;
        return Ok(humantime::format_rfc3339_millis(t).to_string());
    }
    if humantime::parse_rfc3339_weak(s).is_ok() {
        return Ok(s.replace(' ', "T"));
    }
    let date_only = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if date_only {
        return Ok(format!("{s}T00:00:00Z"));
    }
    Err(format!(
        "invalid --since `{s}` (use a date like 2026-11-01, an RFC 3339 time, or an age like 7d)"
    ))
}

#[derive(Debug, Default)]
pub struct HistoryFilter {
    pub target: Option<String>,
    pub resolver: Option<String>,
    pub since: Option<String>,
    /// Only records measured from this vantage (`--vantage`).
    pub vantage: Option<String>,
    /// Only records measured from this autonomous system (`--asn`).
    pub asn: Option<u32>,
}

/// One row of the timeline.
#[derive(Debug, serde::Serialize)]
struct Point {
    target: String,
    resolver: String,
    run_id: String,
    started_at: String,
    verdict: String,
    reason: Option<String>,
    /// The run's network regime (`open`, `whitelist`, …; empty for runs before it was kept).
    regime: String,
    /// Where the run measured from (empty for runs before it was kept).
    vantage: String,
    /// The autonomous system it measured from (`scan --asn-db`), when known.
    asn: Option<u32>,
}

pub fn history(
    store: &mut Store,
    f: &HistoryFilter,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut sql = "SELECT r.target, r.resolver, r.run_id, runs.started_at, r.verdict, r.reason, \
                   runs.regime, r.vantage, r.asn FROM records r JOIN runs ON runs.run_id = r.run_id WHERE 1 = 1"
        .to_owned();
    let mut params: Vec<Value> = Vec::new();
    if let Some(t) = &f.target {
        sql.push_str(" AND (r.target = ? OR r.host = ?)");
        params.push(t.clone().into());
        params.push(t.clone().into());
    }
    if let Some(r) = &f.resolver {
        sql.push_str(" AND r.resolver = ?");
        params.push(r.clone().into());
    }
    if let Some(v) = &f.vantage {
        sql.push_str(" AND r.vantage = ?");
        params.push(v.clone().into());
    }
    if let Some(a) = f.asn {
        sql.push_str(" AND r.asn = ?");
        params.push(a.to_string().into());
    }
    if let Some(s) = &f.since {
        sql.push_str(" AND runs.started_at >= ?");
        params.push(s.clone().into());
    }
    sql.push_str(" ORDER BY r.target, r.resolver, r.vantage, runs.started_at, r.run_id");
    let mut points: Vec<Point> = store
        .query(&sql, &params)?
        .into_iter()
        .map(|r| Point {
            target: r[0].str_or_empty(),
            resolver: r[1].str_or_empty(),
            run_id: r[2].str_or_empty(),
            started_at: r[3].str_or_empty(),
            verdict: r[4].str_or_empty(),
            reason: r[5].text().map(str::to_owned),
            regime: r[6].str_or_empty(),
            vantage: r[7].str_or_empty(),
            asn: r[8].text().and_then(|a| a.parse().ok()),
        })
        .collect();
    if points.is_empty()
        && let Some(why) = unknown_filter(store, f.vantage.as_deref(), f.asn)?
    {
        anyhow::bail!(why);
    }
    // A fleet's store: one timeline per resolver *and vantage* (two places are two timelines,
    // not one that flips), shown as RESOLVER@VANTAGE in the table.
    let several = points.iter().any(|p| p.vantage != points[0].vantage);
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut *out, &points)?;
            writeln!(out)?;
        }
        Output::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "target",
                "resolver",
                "run_id",
                "started_at",
                "verdict",
                "reason",
                "regime",
                "vantage",
                "asn",
            ])?;
            for p in &points {
                let asn = p.asn.map(|a| a.to_string()).unwrap_or_default();
                w.write_record(
                    [
                        &p.target,
                        &p.resolver,
                        &p.run_id,
                        &p.started_at,
                        &p.verdict,
                        p.reason.as_deref().unwrap_or(""),
                        &p.regime,
                        &p.vantage,
                        &asn,
                    ]
                    .map(|c| csv_safe(c).into_owned()),
                )?;
            }
            w.flush()?;
        }
        Output::Table => {
            if several {
                for p in &mut points {
                    p.resolver = format!("{}@{}", p.resolver, p.vantage);
                }
            }
            history_table(&points, out)?;
        }
    }
    Ok(())
}

fn label(verdict: &str, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{verdict} {r}"),
        None => verdict.to_owned(),
    }
}

/// Consecutive runs with the same outcome collapse into one span.
fn history_table(points: &[Point], out: &mut impl Write) -> anyhow::Result<()> {
    if points.is_empty() {
        writeln!(out, "no records match")?;
        return Ok(());
    }
    let tw = points
        .iter()
        .map(|p| p.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let rw = points
        .iter()
        .map(|p| p.resolver.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:<tw$}  {:<rw$}  {:<24}  {:<24}  {:>4}  OUTCOME",
        "TARGET", "RESOLVER", "FROM", "TO", "RUNS"
    )?;
    let mut i = 0;
    let mut last_key: Option<(&str, &str)> = None;
    // Timelines measured from more than one network (a probe moved, a VPN switched on) name
    // the network on every span: the same outcome from two networks is two facts.
    let mut networks: HashMap<(&str, &str), Option<u32>> = HashMap::new();
    let mut moved: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for p in points {
        let key = (p.target.as_str(), p.resolver.as_str());
        if *networks.entry(key).or_insert(p.asn) != p.asn {
            moved.insert(key);
        }
    }
    // A span is one outcome under one regime: a region going into whitelist mode shows as
    // its own span, marked, not as the site's change.
    let shown = |p: &Point| {
        let mut outcome = label(&p.verdict, p.reason.as_deref());
        if let "whitelist" | "offline" = p.regime.as_str() {
            outcome = format!("{outcome} ({} regime)", p.regime);
        }
        if moved.contains(&(p.target.as_str(), p.resolver.as_str())) {
            outcome = match p.asn {
                Some(a) => format!("{outcome} [AS{a}]"),
                None => format!("{outcome} [AS?]"),
            };
        }
        outcome
    };
    while i < points.len() {
        let p = &points[i];
        let outcome = shown(p);
        let mut j = i + 1;
        while j < points.len()
            && points[j].target == p.target
            && points[j].resolver == p.resolver
            && shown(&points[j]) == outcome
        {
            j += 1;
        }
        let key = (p.target.as_str(), p.resolver.as_str());
        let (t, r) = if last_key == Some(key) { ("", "") } else { key };
        writeln!(
            out,
            "{t:<tw$}  {r:<rw$}  {:<24}  {:<24}  {:>4}  {outcome}",
            p.started_at,
            points[j - 1].started_at,
            j - i
        )?;
        last_key = Some(key);
        i = j;
    }
    Ok(())
}

/// Names of the vantage resolvers in a run's `resolvers` JSON.
fn resolver_names(json: &str) -> Vec<String> {
    serde_json::from_str::<Vec<serde_json::Value>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// The last finished run (of `vantage`, when given), and the one before it from the same
/// place with the same resolver names. The place is the run's vantage label, or its host name
/// for runs from before the label was kept.
fn default_pair(
    store: &mut Store,
    vantage: Option<&str>,
    asn: Option<u32>,
) -> anyhow::Result<(String, String)> {
    // With an ASN: runs measured from that network (their first record says where).
    let mut sql = "SELECT run_id, COALESCE(vantage, host_name), resolvers FROM runs \
         WHERE status IN ('complete', 'interrupted')"
        .to_owned();
    let mut params = Vec::new();
    if let Some(a) = asn {
        sql.push_str(
            " AND (SELECT r.asn FROM records r WHERE r.run_id = runs.run_id ORDER BY r.id LIMIT 1) = ?",
        );
        params.push(Value::from(a.to_string()));
    }
    sql.push_str(" ORDER BY started_at DESC");
    let runs = store.query(&sql, &params)?;
    let mut runs = runs
        .iter()
        .filter(|r| vantage.is_none_or(|v| r[1].str_or_empty() == v));
    let Some(b) = runs.next() else {
        if let Some(why) = unknown_filter(store, vantage, asn)? {
            bail!(why);
        }
        if let Some(v) = vantage {
            bail!("no finished run from vantage `{v}` yet");
        }
        if let Some(a) = asn {
            bail!("no finished run from AS{a} yet");
        }
        bail!("the store has no finished run yet");
    };
    let names = resolver_names(&b[2].str_or_empty());
    let Some(a) = runs.find(|r| r[1] == b[1] && resolver_names(&r[2].str_or_empty()) == names)
    else {
        bail!(
            "run {} is the only finished run from vantage `{}` with these resolvers; nothing to compare it with yet (or name two runs)",
            b[0].str_or_empty(),
            b[1].str_or_empty()
        );
    };
    Ok((a[0].str_or_empty(), b[0].str_or_empty()))
}

type Outcomes = HashMap<(String, String), (String, Option<String>)>;

/// The autonomous system a run measured from (its first record's; `--asn-db`), when known.
fn asn_of(store: &mut Store, run: &str) -> anyhow::Result<Option<u32>> {
    Ok(store
        .query(
            "SELECT asn FROM records WHERE run_id = ? ORDER BY id LIMIT 1",
            &[run.into()],
        )?
        .first()
        .and_then(|r| r[0].text().and_then(|a| a.parse().ok())))
}

/// A run's network regime (empty for runs before it was kept).
fn regime_of(store: &mut Store, run: &str) -> anyhow::Result<String> {
    Ok(store
        .query("SELECT regime FROM runs WHERE run_id = ?", &[run.into()])?
        .first()
        .map(|r| r[0].str_or_empty())
        .unwrap_or_default())
}

fn outcomes(store: &mut Store, run: &str) -> anyhow::Result<Outcomes> {
    let exists = store.query("SELECT 1 FROM runs WHERE run_id = ?", &[run.into()])?;
    if exists.is_empty() {
        bail!("no run `{run}` in {}", store.url);
    }
    Ok(store
        .query(
            "SELECT target, resolver, verdict, reason FROM records WHERE run_id = ?",
            &[run.into()],
        )?
        .into_iter()
        .map(|r| {
            (
                (r[0].str_or_empty(), r[1].str_or_empty()),
                (r[2].str_or_empty(), r[3].text().map(str::to_owned)),
            )
        })
        .collect())
}

#[derive(Debug, serde::Serialize)]
pub struct Change {
    /// `blocked` (became blocked or throttled), `unblocked` (became reachable), `changed`
    /// (another verdict or reason), `regime` (changed as the network went into or out of a
    /// whitelist or offline regime), `new` or `gone` (measured in one run only).
    pub change: &'static str,
    pub target: String,
    pub resolver: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn censored(v: &str) -> bool {
    v == "blocked" || v == "throttled"
}

pub fn diff(
    store: &mut Store,
    runs: Option<(String, String)>,
    (vantage, asn): (Option<&str>, Option<u32>),
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<Vec<Change>> {
    let (a, b) = match runs {
        Some(p) => p,
        None => default_pair(store, vantage, asn)?,
    };
    let before = outcomes(store, &a)?;
    let after = outcomes(store, &b)?;
    let (regime_a, regime_b) = (regime_of(store, &a)?, regime_of(store, &b)?);
    let (asn_a, asn_b) = (asn_of(store, &a)?, asn_of(store, &b)?);
    // Into or out of a whitelist (or offline): the sites' changes are the regime's.
    let regime_changed = regime_a != regime_b
        && [&regime_a, &regime_b]
            .iter()
            .any(|r| matches!(r.as_str(), "whitelist" | "offline"));
    let mut changes: BTreeMap<(String, String), Change> = BTreeMap::new();
    for (key, (verdict, reason)) in &after {
        let now = label(verdict, reason.as_deref());
        let change = match before.get(key) {
            None => "new",
            Some((v0, r0)) if (v0, r0) == (verdict, reason) => continue,
            Some(_) if regime_changed => "regime",
            Some((v0, _)) if censored(verdict) && !censored(v0) => "blocked",
            Some((v0, _)) if censored(v0) && verdict == "reachable" => "unblocked",
            Some(_) => "changed",
        };
        changes.insert(
            key.clone(),
            Change {
                change,
                target: key.0.clone(),
                resolver: key.1.clone(),
                before: before.get(key).map(|(v, r)| label(v, r.as_deref())),
                after: Some(now),
            },
        );
    }
    for (key, (v, r)) in &before {
        if !after.contains_key(key) {
            changes.insert(
                key.clone(),
                Change {
                    change: "gone",
                    target: key.0.clone(),
                    resolver: key.1.clone(),
                    before: Some(label(v, r.as_deref())),
                    after: None,
                },
            );
        }
    }
    let changes: Vec<Change> = changes.into_values().collect();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &serde_json::json!({
                    "run_a": a,
                    "run_b": b,
                    "regime_a": regime_a,
                    "regime_b": regime_b,
                    "asn_a": asn_a,
                    "asn_b": asn_b,
                    "changes": changes,
                }),
            )?;
            writeln!(out)?;
        }
        Output::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record([
                "change", "target", "resolver", "before", "after", "run_a", "run_b",
            ])?;
            for c in &changes {
                w.write_record(
                    [
                        c.change,
                        &c.target,
                        &c.resolver,
                        c.before.as_deref().unwrap_or(""),
                        c.after.as_deref().unwrap_or(""),
                        &a,
                        &b,
                    ]
                    .map(|c| csv_safe(c).into_owned()),
                )?;
            }
            w.flush()?;
        }
        Output::Table => {
            writeln!(out, "{a} -> {b}")?;
            if let (Some(x), Some(y)) = (asn_a, asn_b)
                && x != y
            {
                writeln!(
                    out,
                    "network: AS{x} -> AS{y} (the runs measured from different networks)"
                )?;
            }
            if regime_a != regime_b {
                let label = |r: &str| {
                    if r.is_empty() {
                        "unknown".to_owned()
                    } else {
                        r.to_owned()
                    }
                };
                writeln!(
                    out,
                    "regime: {} -> {}{}",
                    label(&regime_a),
                    label(&regime_b),
                    if regime_changed {
                        " (the sites' changes below are marked `regime`: the network's, not targeted blocking)"
                    } else {
                        ""
                    }
                )?;
            }
            let tw = changes
                .iter()
                .map(|c| c.target.len())
                .max()
                .unwrap_or(6)
                .max(6);
            if !changes.is_empty() {
                writeln!(
                    out,
                    "{:<9}  {:<tw$}  {:<10}  {:<28}  AFTER",
                    "CHANGE", "TARGET", "RESOLVER", "BEFORE"
                )?;
            }
            for c in &changes {
                writeln!(
                    out,
                    "{:<9}  {:<tw$}  {:<10}  {:<28}  {}",
                    c.change,
                    c.target,
                    c.resolver,
                    c.before.as_deref().unwrap_or("-"),
                    c.after.as_deref().unwrap_or("-")
                )?;
            }
            let count = |k: &str| changes.iter().filter(|c| c.change == k).count();
            writeln!(
                out,
                "{} changes: {} became blocked, {} became reachable, {} changed, {} with the regime, {} new, {} gone",
                changes.len(),
                count("blocked"),
                count("unblocked"),
                count("changed"),
                count("regime"),
                count("new"),
                count("gone")
            )?;
        }
    }
    Ok(changes)
}

/// `export` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// The records of the latest [`MAX_RUNS`](crate::report::html::MAX_RUNS) runs (since
/// `since`, or `run` alone) into the HTML report's data, read in pages.
pub fn report_data(
    store: &mut Store,
    since: Option<&str>,
    run: Option<&str>,
    vantage: Option<&str>,
    data: &mut crate::report::html::Data,
) -> anyhow::Result<()> {
    use crate::report::html::{MAX_RUNS, Place, Row, RunInfo};
    // Where each run measured from: its vantage, and the network of its first record.
    let mut sql = "SELECT run_id, started_at, regime, vantage, \
         (SELECT public_ip FROM records r WHERE r.run_id = runs.run_id ORDER BY r.id LIMIT 1), \
         (SELECT asn FROM records r WHERE r.run_id = runs.run_id ORDER BY r.id LIMIT 1), \
         (SELECT as_org FROM records r WHERE r.run_id = runs.run_id ORDER BY r.id LIMIT 1), \
         (SELECT country FROM records r WHERE r.run_id = runs.run_id ORDER BY r.id LIMIT 1) \
         FROM runs WHERE 1 = 1"
        .to_owned();
    let mut params: Vec<Value> = Vec::new();
    if let Some(s) = since {
        sql.push_str(" AND started_at >= ?");
        params.push(s.into());
    }
    if let Some(r) = run {
        sql.push_str(" AND run_id = ?");
        params.push(r.into());
    }
    if let Some(v) = vantage {
        sql.push_str(" AND vantage = ?");
        params.push(v.into());
    }
    sql.push_str(&format!(
        " ORDER BY started_at DESC, run_id DESC LIMIT {MAX_RUNS}"
    ));
    let mut runs: Vec<RunInfo> = store
        .query(&sql, &params)?
        .into_iter()
        .map(|r| RunInfo {
            run_id: r[0].str_or_empty(),
            started_at: r[1].str_or_empty(),
            regime: r[2].text().unwrap_or("unknown").to_owned(),
            place: {
                let text = |i: usize| r[i].text().filter(|t| !t.is_empty()).map(str::to_owned);
                Place {
                    vantage: text(3),
                    public_ip: text(4),
                    asn: text(5).and_then(|a| a.parse().ok()),
                    as_org: text(6),
                    country: text(7),
                }
            },
        })
        .collect();
    if runs.is_empty()
        && let Some(why) = unknown_filter(store, vantage, None)?
    {
        anyhow::bail!(why);
    }
    if runs.is_empty() {
        anyhow::bail!(
            "no runs in the store{}",
            match (since, run) {
                (_, Some(r)) => format!(" with id {r}"),
                (Some(s), None) => format!(" since {s}"),
                _ => String::new(),
            }
        );
    }
    runs.reverse();
    const PAGE: i64 = 5_000;
    let page_sql = format!(
        "SELECT id, target, resolver, verdict, layer, reason, detail FROM records WHERE run_id = ? AND id > ? ORDER BY id LIMIT {PAGE}"
    );
    for info in runs {
        let id = info.run_id.clone();
        let (at, regime) = (info.started_at.clone(), info.regime.clone());
        data.run(info);
        let mut last = 0i64;
        loop {
            let rows = store.query(&page_sql, &[id.clone().into(), Value::Int(last)])?;
            for r in &rows {
                last = r[0].int().unwrap_or(last);
                data.add(Row {
                    run_id: id.clone(),
                    started_at: at.clone(),
                    regime: regime.clone(),
                    target: r[1].str_or_empty(),
                    resolver: r[2].str_or_empty(),
                    verdict: r[3].str_or_empty(),
                    layer: r[4].text().map(str::to_owned),
                    reason: r[5].text().map(str::to_owned),
                    detail: r[6].str_or_empty(),
                    ..Row::default()
                });
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
    }
    Ok(())
}

/// When a filter that matched nothing names a vantage or an ASN the store has never seen:
/// says so, with those it has (a filter that is known but matched nothing with the others is
/// not blamed).
pub fn unknown_filter(
    store: &mut Store,
    vantage: Option<&str>,
    asn: Option<u32>,
) -> anyhow::Result<Option<String>> {
    fn some_of(all: &[String]) -> String {
        const SHOWN: usize = 20;
        let mut s = all[..all.len().min(SHOWN)].join(", ");
        if all.len() > SHOWN {
            s.push_str(&format!(" … and {} more", all.len() - SHOWN));
        }
        s
    }
    if let Some(v) = vantage {
        let known = known_vantages(store)?;
        if !known.iter().any(|k| k == v) {
            return Ok(Some(if known.is_empty() {
                format!(
                    "no records from vantage `{v}`; the store's runs carry no vantage label (scan --vantage)"
                )
            } else {
                format!(
                    "no records from vantage `{v}`; the store's vantages: {}",
                    some_of(&known)
                )
            }));
        }
    }
    if let Some(a) = asn {
        let known: Vec<String> = store
            .query(
                "SELECT DISTINCT asn FROM records WHERE asn IS NOT NULL AND asn <> ''",
                &[],
            )?
            .iter()
            .filter_map(|r| r[0].text().and_then(|t| t.parse::<u32>().ok()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|a| format!("AS{a}"))
            .collect();
        if !known.iter().any(|k| *k == format!("AS{a}")) {
            return Ok(Some(if known.is_empty() {
                format!("no records from AS{a}; no record has an ASN (scan with --asn-db)")
            } else {
                format!(
                    "no records from AS{a}; the store's ASNs: {}",
                    some_of(&known)
                )
            }));
        }
    }
    Ok(None)
}

/// The vantages the store's runs were measured from (for a filter that matched nothing).
pub fn known_vantages(store: &mut Store) -> anyhow::Result<Vec<String>> {
    Ok(store
        .query(
            "SELECT DISTINCT vantage FROM runs WHERE vantage IS NOT NULL ORDER BY vantage",
            &[],
        )?
        .into_iter()
        .map(|r| r[0].str_or_empty())
        .collect())
}

/// Streams records (oldest first) in pages, so memory does not grow with the store.
pub fn export(
    store: &mut Store,
    format: ExportFormat,
    since: Option<&str>,
    run: Option<&str>,
    vantage: Option<&str>,
    asn: Option<u32>,
    out: &mut impl Write,
) -> anyhow::Result<u64> {
    const PAGE: i64 = 5_000;
    let cols: Vec<String> = COLUMNS.iter().map(|c| format!("r.{c}")).collect();
    let mut sql = format!(
        "SELECT r.id, r.record, {} FROM records r JOIN runs ON runs.run_id = r.run_id WHERE r.id > ?",
        cols.join(", ")
    );
    if since.is_some() {
        sql.push_str(" AND runs.started_at >= ?");
    }
    if run.is_some() {
        sql.push_str(" AND r.run_id = ?");
    }
    if vantage.is_some() {
        sql.push_str(" AND r.vantage = ?");
    }
    if asn.is_some() {
        sql.push_str(" AND r.asn = ?");
    }
    sql.push_str(&format!(" ORDER BY r.id LIMIT {PAGE}"));
    enum Rows<'a, W: Write> {
        Csv(Box<csv::Writer<&'a mut W>>),
        Jsonl(&'a mut W),
    }
    let mut rows_out = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(COLUMNS)?;
            Rows::Csv(Box::new(w))
        }
        ExportFormat::Jsonl => Rows::Jsonl(&mut *out),
    };
    let mut last = 0i64;
    let mut n = 0u64;
    loop {
        let mut params: Vec<Value> = vec![Value::Int(last)];
        params.extend(since.map(Value::from));
        params.extend(run.map(Value::from));
        params.extend(vantage.map(Value::from));
        params.extend(asn.map(|a| Value::from(a.to_string())));
        let rows = store.query(&sql, &params)?;
        for r in &rows {
            last = r[0].int().unwrap_or(last);
            match &mut rows_out {
                Rows::Csv(w) => w.write_record(
                    r[2..]
                        .iter()
                        .map(|v| csv_safe(&v.str_or_empty()).into_owned()),
                )?,
                Rows::Jsonl(o) => {
                    o.write_all(r[1].str_or_empty().as_bytes())?;
                    o.write_all(b"\n")?;
                }
            }
            n += 1;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    match rows_out {
        Rows::Csv(mut w) => w.flush()?,
        Rows::Jsonl(o) => o.flush()?,
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_times_and_ages() {
        assert_eq!(parse_since("2026-11-01").unwrap(), "2026-11-01T00:00:00Z");
        assert_eq!(
            parse_since("2026-11-01T12:00:00Z").unwrap(),
            "2026-11-01T12:00:00Z"
        );
        assert!(parse_since("7d").unwrap().starts_with("20"));
        assert!(parse_since("last tuesday").is_err());
    }
}

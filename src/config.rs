//! From flags and an optional TOML file to a validated `ScanConfig` the engine trusts.
//! Precedence: flag > file > default. Nothing after this module re-checks user input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::{ScanArgs, parse_duration};
use crate::report::Format;
use crate::resolver_spec::{DEFAULT_CONTROLS, Vantage};
use crate::target::{Source, normalize_domain};
use crate::verdict::Verdict;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_CONCURRENCY: usize = 100;
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(250);
pub const DEFAULT_PROBES: &[&str] = &["dns", "tcp", "tls", "http"];
pub const DEFAULT_DECOY_SNI: &str = "example.com";
pub const DEFAULT_CANARIES: &[&str] = &["example.com", "iana.org", "wikipedia.org"];

/// Probe steps, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    Dns,
    Tcp,
    Tls,
    Http,
}

impl Probe {
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "dns" => Ok(Self::Dns),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            "http" => Ok(Self::Http),
            other => bail!("unknown probe `{other}` (expected dns, tcp, tls or http)"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Http => "http",
        }
    }
}

/// Parses a rate like `2M`, `500k`, `2000000` (bits per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .trim_end_matches("bit/s")
        .trim_end_matches("bps")
        .trim_end_matches("bit");
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1e3),
        Some('m') => (&t[..t.len() - 1], 1e6),
        Some('g') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(|v| v * mult)
        .ok_or_else(|| format!("invalid rate `{s}` (use bits/s, e.g. 2M or 500k)"))
}

/// Parses a size like `1MiB`, `64k`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .map(|v| v * mult)
        .ok_or_else(|| format!("invalid size `{s}` (use bytes, e.g. 1MiB or 64k)"))
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub targets: Option<Vec<String>>,
    pub inputs: Option<Vec<String>>,
    pub suites: Option<Vec<String>>,
    pub store: Option<String>,
    pub resolvers: Option<BTreeMap<String, String>>,
    pub control_resolvers: Option<BTreeMap<String, String>>,
    pub control_proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub concurrency: Option<usize>,
    pub probes: Option<Vec<String>>,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub fail_on: Option<Vec<String>>,
    pub quiet: Option<bool>,
    pub strict: Option<bool>,
    pub canaries: Option<Vec<String>>,
    pub injection_window: Option<String>,
    pub decoy_sni: Option<String>,
    pub rate: Option<f64>,
    pub max_redirects: Option<u32>,
    pub max_body: Option<String>,
    pub stall_timeout: Option<String>,
    pub repeat: Option<u32>,
    pub throttle_floor: Option<String>,
    pub throttle_ratio: Option<f64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

#[derive(Clone, Debug)]
pub struct DnsOptions {
    pub timeout: Duration,
    pub injection_window: Duration,
    pub canaries: Vec<String>,
    /// Queries per second per resolver; 0 = unlimited.
    pub rate: f64,
}

/// The connection steps' settings.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    pub control_proxy: Option<std::net::SocketAddr>,
    pub decoy_sni: String,
    pub max_redirects: u32,
    pub max_body: u64,
    pub stall_timeout: Duration,
    pub repeat: u32,
    pub rules: crate::classify::Rules,
    /// `--connect-to` pairs.
    pub connect_to: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// `--stun-reference HOST:PORT`.
    pub stun_reference: Option<(String, u16)>,
}

#[derive(Clone, Debug)]
pub struct OutputOptions {
    pub format: Format,
    pub path: Option<PathBuf>,
    pub quiet: bool,
    pub fail_on: Vec<Verdict>,
    pub append: bool,
}

#[derive(Clone, Debug)]
pub struct ScanConfig {
    pub sources: Vec<Source>,
    pub vantages: Vec<Vantage>,
    pub controls: Vec<Vantage>,
    pub ca_file: Option<PathBuf>,
    pub dns: DnsOptions,
    pub conn: ConnSettings,
    pub concurrency: usize,
    pub probes: Vec<Probe>,
    pub output: OutputOptions,
    pub strict: bool,
    pub run_id: Option<String>,
    pub store: Option<crate::store::StoreUrl>,
    /// `--resume RUN_ID`.
    pub resume: Option<String>,
    pub lock_wait: bool,
}

/// `HOST:PORT` (a name or an IP; IPv6 in brackets).
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let t = crate::target::Target::parse(&format!("stun://{}", s.trim_start_matches("stun://")))?;
    Ok((t.host.to_string(), t.port))
}

fn parse_named(
    named: impl IntoIterator<Item = String>,
    what: &str,
) -> anyhow::Result<Vec<Vantage>> {
    let mut out: Vec<Vantage> = Vec::new();
    for s in named {
        let v: Vantage = s
            .parse()
            .map_err(|e| anyhow::anyhow!("--{what} {s}: {e}"))?;
        if out.iter().any(|o| o.name == v.name) {
            bail!("--{what}: the name `{}` is used twice", v.name);
        }
        out.push(v);
    }
    Ok(out)
}

fn table(map: Option<BTreeMap<String, String>>) -> Option<Vec<String>> {
    map.map(|m| m.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn nonempty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// `-i list.txt -o list.txt` would truncate the list before it is read: refuse any output path
/// that is one of the run's own files (checked before anything is opened for writing).
fn refuse_overwriting_inputs(
    out: &Path,
    sources: &[Source],
    config: Option<&Path>,
    ca_file: Option<&Path>,
    store: Option<&crate::store::StoreUrl>,
) -> anyhow::Result<()> {
    // A device or FIFO (`-i /dev/stdin -o /dev/stdout` on one terminal) is not a file to lose.
    if crate::outfile::is_stream(out) {
        return Ok(());
    }
    let mut inputs: Vec<(&str, &Path)> = sources
        .iter()
        .filter_map(|s| match s {
            Source::File(p) => Some(("an input file (-i)", p.as_path())),
            _ => None,
        })
        .collect();
    inputs.extend(config.map(|p| ("the config file", p)));
    inputs.extend(ca_file.map(|p| ("the --ca-file", p)));
    if let Some(crate::store::StoreUrl::Sqlite(p)) = store {
        inputs.push(("the store", p.as_path()));
    }
    for (what, p) in inputs {
        if crate::outfile::same_file(out, p) {
            bail!(
                "--output {} is {what}; the report would overwrite it (choose another path)",
                out.display()
            );
        }
    }
    Ok(())
}

impl ScanConfig {
    pub fn from_args(args: ScanArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };

        let mut sources: Vec<Source> = args.targets.iter().cloned().map(Source::Arg).collect();
        sources.extend(args.inputs.iter().map(|s| Source::from_input_flag(s)));
        for spec in &args.suites {
            sources.push(Source::Suite(Box::new(crate::suite::Suite::load(spec)?)));
        }
        if sources.is_empty() {
            sources.extend(
                file.targets
                    .unwrap_or_default()
                    .into_iter()
                    .map(Source::Arg),
            );
            sources.extend(
                file.inputs
                    .unwrap_or_default()
                    .iter()
                    .map(|s| Source::from_input_flag(s)),
            );
            for spec in file.suites.unwrap_or_default() {
                sources.push(Source::Suite(Box::new(crate::suite::Suite::load(&spec)?)));
            }
        }
        if sources.is_empty() {
            bail!(
                "no targets: give TARGET arguments, --input FILE or --suite NAME (see `blockprobe scan --help`)"
            );
        }
        if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
            bail!("standard input (`-i -`) can be read only once");
        }

        let vantages = parse_named(
            nonempty(args.resolvers)
                .or_else(|| table(file.resolvers))
                .unwrap_or_else(|| vec!["system=system".into()]),
            "resolver",
        )?;
        let controls = parse_named(
            nonempty(args.control_resolvers)
                .or_else(|| table(file.control_resolvers))
                .unwrap_or_else(|| {
                    DEFAULT_CONTROLS
                        .iter()
                        .map(|(n, s)| format!("{n}={s}"))
                        .collect()
                }),
            "control-resolver",
        )?;

        let control_proxy = match args.control_proxy.or(file.control_proxy) {
            Some(p) => Some(crate::probe::socks::parse_proxy(&p).ok_or_else(|| {
                anyhow::anyhow!(
                    "--control-proxy `{p}`: expected socks5://IP:PORT (or localhost:PORT)"
                )
            })?),
            None => None,
        };
        let stall_timeout = match (args.stall_timeout, file.stall_timeout) {
            (Some(t), _) => t,
            (None, Some(s)) => {
                parse_duration(&s).map_err(|e| anyhow::anyhow!("config stall-timeout: {e}"))?
            }
            (None, None) => Duration::from_secs(3),
        };
        let max_body = match (args.max_body, file.max_body) {
            (Some(b), _) => b,
            (None, Some(s)) => {
                parse_size(&s).map_err(|e| anyhow::anyhow!("config max-body: {e}"))?
            }
            (None, None) => 1024 * 1024,
        };
        let throttle_floor_bps = match (args.throttle_floor, file.throttle_floor) {
            (Some(r), _) => r,
            (None, Some(s)) => {
                parse_rate(&s).map_err(|e| anyhow::anyhow!("config throttle-floor: {e}"))?
            }
            (None, None) => 2_000_000.0,
        };
        let throttle_ratio = args.throttle_ratio.or(file.throttle_ratio).unwrap_or(0.25);
        if !(throttle_ratio > 0.0 && throttle_ratio <= 1.0) {
            bail!("--throttle-ratio must be in (0, 1]");
        }
        let repeat = args.repeat.or(file.repeat).unwrap_or(1);
        if repeat == 0 {
            bail!("--repeat must be at least 1");
        }
        let decoy_sni = args
            .decoy_sni
            .or(file.decoy_sni)
            .unwrap_or_else(|| DEFAULT_DECOY_SNI.to_owned());
        let decoy_sni =
            normalize_domain(&decoy_sni).map_err(|e| anyhow::anyhow!("--decoy-sni: {e}"))?;
        let conn = ConnSettings {
            control_proxy,
            decoy_sni,
            max_redirects: args.max_redirects.or(file.max_redirects).unwrap_or(10),
            max_body,
            stall_timeout,
            repeat,
            rules: crate::classify::Rules {
                throttle_ratio,
                throttle_floor_bps,
            },
            connect_to: args.connect_to,
            stun_reference: args
                .stun_reference
                .as_deref()
                .map(parse_host_port)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--stun-reference: {e}"))?,
        };

        let ca_file = args.ca_file.or(file.ca_file);
        if let Some(p) = &ca_file {
            std::fs::metadata(p).with_context(|| format!("--ca-file {}", p.display()))?;
        }

        let timeout = match (args.timeout, file.timeout) {
            (Some(t), _) => t,
            (None, Some(s)) => {
                parse_duration(&s).map_err(|e| anyhow::anyhow!("config timeout: {e}"))?
            }
            (None, None) => DEFAULT_TIMEOUT,
        };
        if timeout.is_zero() {
            bail!("--timeout must be greater than zero");
        }
        let injection_window = match (args.injection_window, file.injection_window) {
            (Some(t), _) => t,
            (None, Some(s)) => {
                parse_duration(&s).map_err(|e| anyhow::anyhow!("config injection-window: {e}"))?
            }
            (None, None) => DEFAULT_WINDOW,
        };
        let rate = args.rate.or(file.rate).unwrap_or(0.0);
        if !(rate >= 0.0 && rate.is_finite()) {
            bail!("--rate must be a number of queries per second, 0 for unlimited");
        }
        let concurrency = args
            .concurrency
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }

        let mut probes = Vec::new();
        for p in args
            .probes
            .or(file.probes)
            .unwrap_or_else(|| DEFAULT_PROBES.iter().map(|s| (*s).to_owned()).collect())
        {
            // Later steps need the earlier ones: http runs over tcp (and tls for https).
            let implied: &[Probe] = match Probe::parse(&p)? {
                Probe::Dns => &[Probe::Dns],
                Probe::Tcp => &[Probe::Tcp],
                Probe::Tls => &[Probe::Tcp, Probe::Tls],
                Probe::Http => &[Probe::Tcp, Probe::Tls, Probe::Http],
            };
            for q in implied {
                if !probes.contains(q) {
                    probes.push(*q);
                }
            }
        }
        probes.sort();

        let canaries = args
            .canaries
            .or(file.canaries)
            .unwrap_or_else(|| DEFAULT_CANARIES.iter().map(|s| (*s).to_owned()).collect())
            .into_iter()
            .filter(|c| !c.trim().is_empty())
            .map(|c| normalize_domain(c.trim()).map_err(|e| anyhow::anyhow!("--canary: {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let path = args.output.or(file.output);
        let format = match (args.format.or(file.format), &path) {
            (Some(f), _) => f,
            (None, None) => Format::Jsonl,
            // `-o /dev/null`, a FIFO: a stream of lines.
            (None, Some(p)) if crate::outfile::is_stream(p) && Format::from_path(p).is_none() => {
                Format::Jsonl
            }
            (None, Some(p)) => Format::from_path(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot tell the report format from `{}`; use a .csv, .json or .jsonl name or pass --format",
                    p.display()
                )
            })?,
        };
        let fail_on = match (args.fail_on, file.fail_on) {
            (Some(v), _) => v,
            (None, Some(v)) => v
                .iter()
                .map(|s| {
                    s.parse::<Verdict>()
                        .map_err(|e| anyhow::anyhow!("config fail-on: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
            (None, None) => Vec::new(),
        };

        let store = args
            .store
            .or(file.store)
            .map(|s| s.parse::<crate::store::StoreUrl>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
        if args.append && format != Format::Jsonl {
            bail!("--append works with JSONL output only (CSV and JSON are replaced atomically)");
        }
        if args.resume.is_some() && store.is_none() {
            bail!("--resume needs --store (the run to resume is in the store)");
        }
        if let Some(out) = &path {
            refuse_overwriting_inputs(
                out,
                &sources,
                args.config.as_deref(),
                ca_file.as_deref(),
                store.as_ref(),
            )?;
        }
        Ok(Self {
            sources,
            vantages,
            controls,
            ca_file,
            dns: DnsOptions {
                timeout,
                injection_window,
                canaries,
                rate,
            },
            conn,
            concurrency,
            probes,
            output: OutputOptions {
                format,
                path,
                quiet: args.quiet || file.quiet.unwrap_or(false),
                fail_on,
                append: args.append,
            },
            strict: args.strict || file.strict.unwrap_or(false),
            run_id: args.resume.clone().or(args.run_id),
            store,
            resume: args.resume,
            lock_wait: args.lock_wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes() {
        for (s, bps) in [
            ("2M", 2e6),
            ("500k", 5e5),
            ("2000000", 2e6),
            ("1.5mbit/s", 1.5e6),
        ] {
            assert_eq!(parse_rate(s), Ok(bps), "{s}");
        }
        for (s, bytes) in [
            ("1MiB", 1 << 20),
            ("64k", 64 << 10),
            ("4096", 4096),
            ("2mb", 2 << 20),
        ] {
            assert_eq!(parse_size(s), Ok(bytes), "{s}");
        }
        for bad in ["", "fast", "-1", "0", "1x"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    fn cfg(args: &[&str]) -> anyhow::Result<ScanConfig> {
        use clap::Parser as _;
        let cli =
            crate::cli::Cli::try_parse_from(["blockprobe", "scan"].iter().chain(args).copied())?;
        let crate::cli::Command::Scan(a) = cli.command else {
            unreachable!()
        };
        ScanConfig::from_args(*a)
    }

    #[test]
    fn store_resume_and_suites() {
        let c = cfg(&[
            "--suite",
            "calls",
            "--store",
            "sqlite:r.db",
            "--resume",
            "r1",
        ])
        .unwrap();
        assert_eq!(c.store, Some(crate::store::StoreUrl::Sqlite("r.db".into())));
        assert_eq!(
            c.run_id.as_deref(),
            Some("r1"),
            "a resumed run keeps its id"
        );
        assert!(matches!(&c.sources[..], [Source::Suite(s)] if s.name == "calls"));
        let c = cfg(&["x.example", "--stun-reference", "stun.example"]).unwrap();
        assert_eq!(
            c.conn.stun_reference,
            Some(("stun.example".into(), crate::target::STUN_PORT))
        );
    }

    #[test]
    fn defaults_and_implied_probes() {
        let c = cfg(&["x.example"]).unwrap();
        assert_eq!(c.probes, [Probe::Dns, Probe::Tcp, Probe::Tls, Probe::Http]);
        assert_eq!(c.dns.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.conn.max_body, 1 << 20);
        assert_eq!(c.conn.decoy_sni, DEFAULT_DECOY_SNI);
        assert_eq!(c.controls.len(), DEFAULT_CONTROLS.len());
        assert_eq!(c.vantages[0].name, "system");
        let c = cfg(&["x.example", "--probes", "http"]).unwrap();
        assert_eq!(c.probes, [Probe::Tcp, Probe::Tls, Probe::Http]);
        let c = cfg(&[
            "x.example",
            "--probes",
            "dns",
            "--decoy-sni",
            "Decoy.Example",
        ])
        .unwrap();
        assert_eq!(c.probes, [Probe::Dns]);
        assert_eq!(c.conn.decoy_sni, "decoy.example");
    }

    #[test]
    fn bad_values_are_errors() {
        for (args, needle) in [
            (&["x.example", "--repeat", "0"][..], "--repeat"),
            (
                &["x.example", "--throttle-ratio", "2"][..],
                "--throttle-ratio",
            ),
            (&["x.example", "--concurrency", "0"][..], "--concurrency"),
            (&["x.example", "--timeout", "0s"][..], "--timeout"),
            (&["x.example", "--rate=-5"][..], "--rate"),
            (
                &[
                    "x.example",
                    "--resolver",
                    "a=udp://1.1.1.1",
                    "--resolver",
                    "a=tcp://1.1.1.1",
                ][..],
                "twice",
            ),
            (
                &["x.example", "--control-proxy", "socks5://example.org:1080"][..],
                "socks5://IP:PORT",
            ),
            (&["x.example", "--store", "mysql://db/x"][..], "sqlite:PATH"),
            (&["x.example", "--store", "sqlite:"][..], "needs a path"),
            (
                &["x.example", "-o", "x.csv", "--append"][..],
                "--append works with JSONL",
            ),
            (&["x.example", "--suite", "nonesuch"][..], "unknown suite"),
            (
                &["x.example", "--stun-reference", "stun.example:notaport"][..],
                "--stun-reference",
            ),
        ] {
            let e = cfg(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(format!("{e:#}").contains(needle), "{args:?}: {e:#}");
        }
    }
}

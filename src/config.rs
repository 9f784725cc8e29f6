//! From flags and an optional TOML file to a validated `ScanConfig` the engine trusts.
//! Precedence: flag > file > default. Nothing after this module re-checks user input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::cli::ScanArgs;
use crate::input::Source;
use crate::parse::{check_reference, parse_duration, parse_rate, parse_size};
use crate::report::Format;
use crate::resolver_spec::{DEFAULT_CONTROLS, Vantage};
use crate::target::normalize_domain;
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
    /// HTTP/3 over QUIC: `quic://` targets always; HTTPS targets too when asked for.
    Quic,
}

impl Probe {
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s.trim() {
            "dns" => Ok(Self::Dns),
            "tcp" => Ok(Self::Tcp),
            "tls" => Ok(Self::Tls),
            "http" => Ok(Self::Http),
            "quic" => Ok(Self::Quic),
            other => bail!("unknown probe `{other}` (expected dns, tcp, tls, http or quic)"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Http => "http",
            Self::Quic => "quic",
        }
    }
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
    pub control_concurrency: Option<usize>,
    pub probes: Option<Vec<String>>,
    pub stun_reference: Option<String>,
    pub echo_server: Option<String>,
    pub connect_to: Option<Vec<String>>,
    pub append: Option<bool>,
    pub run_id: Option<String>,
    pub vantage: Option<String>,
    pub public_ip_stun: Option<String>,
    pub public_ip: Option<std::net::IpAddr>,
    pub asn_db: Option<Vec<PathBuf>>,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub fail_on: Option<Vec<String>>,
    pub quiet: Option<bool>,
    pub strict: Option<bool>,
    pub canaries: Option<Vec<String>>,
    pub regime_check: Option<String>,
    pub allowlisted: Option<Vec<String>>,
    pub foreign_references: Option<Vec<String>>,
    pub injection_window: Option<String>,
    pub decoy_sni: Option<String>,
    pub tunnel_check: Option<String>,
    pub rate: Option<f64>,
    pub max_redirects: Option<u32>,
    pub max_body: Option<String>,
    pub stall_timeout: Option<String>,
    pub repeat: Option<u32>,
    pub throttle_floor: Option<String>,
    pub throttle_ratio: Option<f64>,
    pub references: Option<Vec<String>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::load_with_origin(path)?.0)
    }

    fn load_with_origin(path: &Path) -> anyhow::Result<(Self, FileOrigin)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let cfg = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok((
            cfg,
            FileOrigin {
                path: path.to_path_buf(),
                text,
            },
        ))
    }
}

/// The config file a setting came from: for errors that name the file and line, and for
/// paths in it, which are relative to the file (not to wherever cron started us).
struct FileOrigin {
    path: PathBuf,
    text: String,
}

impl FileOrigin {
    /// `FILE:LINE: key` for a top-level `key = ...` (the line is left out when not found).
    fn at(&self, key: &str) -> String {
        let table = format!("[{key}]");
        let line = self.text.lines().position(|l| {
            let l = l.trim_start();
            l.starts_with(&table)
                || l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        match line {
            Some(i) => format!("{}:{}: {key}", self.path.display(), i + 1),
            None => format!("{}: {key}", self.path.display()),
        }
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// One setting, layered: the flag's value, else the file's (parsed by `parse`), else the
/// default; then `check`ed. Errors name `--flag`, or the file, line and key.
struct Layered<'a> {
    origin: Option<&'a FileOrigin>,
}

impl Layered<'_> {
    fn get<T, F>(
        &self,
        key: &str,
        flag: Option<T>,
        file: Option<F>,
        parse: impl FnOnce(F) -> Result<T, String>,
        default: T,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) -> anyhow::Result<T> {
        let (value, from_file) = match (flag, file) {
            (Some(v), _) => (v, false),
            (None, Some(raw)) => (parse(raw).map_err(|e| self.error(key, true, &e))?, true),
            (None, None) => (default, false),
        };
        check(&value).map_err(|e| self.error(key, from_file, &e))?;
        Ok(value)
    }

    fn error(&self, key: &str, from_file: bool, msg: &str) -> anyhow::Error {
        match self.origin {
            Some(o) if from_file => anyhow::anyhow!("{}: {msg}", o.at(key)),
            _ => anyhow::anyhow!("--{key}: {msg}"),
        }
    }
}

/// A check that a value lies in `lo..=hi` (shown with `show`).
fn within<T: PartialOrd + Copy>(
    lo: T,
    hi: T,
    show: impl Fn(T) -> String,
) -> impl Fn(&T) -> Result<(), String> {
    move |v: &T| {
        if *v < lo || *v > hi {
            Err(format!("must be between {} and {}", show(lo), show(hi)))
        } else {
            Ok(())
        }
    }
}

fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A vantage label: printable and short (it is in every record and filters the store).
fn check_vantage(v: String) -> anyhow::Result<String> {
    let ok = !v.trim().is_empty() && v.len() <= 64 && !v.chars().any(char::is_control);
    if !ok {
        bail!("--vantage `{v}`: use 1 to 64 printable characters (e.g. msk-beeline-1)");
    }
    Ok(v)
}

/// A run id names files, store rows and `--resume` arguments: printable, no spaces, not empty.
fn check_run_id(id: String) -> anyhow::Result<String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+".contains(c));
    if !ok {
        bail!("--run-id `{id}`: use 1 to 128 letters, digits and - _ . : + (e.g. 2026-11-28-isp1)");
    }
    Ok(id)
}

fn rel_path(origin: Option<&FileOrigin>, p: &Path) -> PathBuf {
    origin.map_or_else(|| p.to_path_buf(), |o| o.resolve(p))
}

/// Bounds on numeric settings: beyond them a value is a typo, and an unchecked one can overflow
/// a deadline or allocate without limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
pub const MAX_INJECTION_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_CONCURRENCY: usize = 100_000;
pub const DEFAULT_CONTROL_CONCURRENCY: usize = 32;
pub const MAX_REPEAT: u32 = 100;
pub const MAX_REDIRECTS: u32 = 100;
pub const MAX_BODY: u64 = 1 << 30;
pub const MAX_RATE: f64 = 1e7;
pub const MIN_RATE: f64 = 0.001;

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
    /// `--tunnel-check`: fetched through Shadowsocks tunnels.
    pub tunnel_check: crate::probe::shadowsocks::TunnelCheck,
    pub max_redirects: u32,
    pub max_body: u64,
    pub stall_timeout: Duration,
    pub repeat: u32,
    pub rules: crate::classify::Rules,
    /// `--connect-to` pairs.
    pub connect_to: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// `--stun-reference HOST:PORT`.
    pub stun_reference: Option<(String, u16)>,
    /// Control-path fetches in flight at once (`--control-concurrency`).
    pub control_concurrency: usize,
    /// `--reference URL` (and the suites' `references`): in-run baselines for throttling and
    /// freezes when there is no working control path.
    pub references: Vec<String>,
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
    /// Where the run measures from (`--vantage`, else the host name).
    pub vantage: String,
    /// `--public-ip-stun HOST:PORT`: the STUN server that tells the run its public address.
    pub public_ip_stun: Option<(String, u16)>,
    /// `--public-ip ADDR`: the public address, given.
    pub public_ip: Option<std::net::IpAddr>,
    /// `--asn-db FILE...`, opened: the public address's ASN, network name and country.
    pub asn_dbs: Option<std::sync::Arc<crate::asn::Databases>>,
    pub store: Option<crate::store::StoreUrl>,
    /// `--resume RUN_ID`.
    pub resume: Option<String>,
    pub lock_wait: bool,
    /// The network-regime check (`--regime-check`, `--allowlisted`, `--foreign-references`).
    pub regime: crate::regime::RegimeOptions,
}

/// `HOST:PORT` (a name or an IP; IPv6 in brackets).
/// The `echo://` and `media://` targets of an echo server given as HOST:PORT.
fn echo_targets(s: &str) -> Result<[Source; 2], String> {
    let t = crate::target::Target::parse(&format!("echo://{}", s.trim_start_matches("echo://")))
        .map_err(|e| format!("{e} (expected HOST:PORT, e.g. vps.example:7007)"))?;
    let at = crate::net::host_port(&t.host.to_string(), t.port);
    Ok([
        Source::Arg(format!("echo://{at}")),
        Source::Arg(format!("media://{at}")),
    ])
}

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
        let v: Vantage = s.parse().map_err(|e| anyhow::anyhow!("{what} {s}: {e}"))?;
        if out.iter().any(|o| o.name == v.name) {
            bail!("{what}: the name `{}` is used twice", v.name);
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
    asn_dbs: &[PathBuf],
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
    inputs.extend(asn_dbs.iter().map(|p| ("an --asn-db file", p.as_path())));
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
        Self::build(args, true)
    }

    /// The settings of a scan without targets: what `blockprobe regime` needs (resolvers, CA
    /// file, timeout, `--connect-to`, the regime's references), layered over `--config` the same
    /// way.
    pub fn without_targets(args: ScanArgs) -> anyhow::Result<Self> {
        Self::build(args, false)
    }

    fn build(args: ScanArgs, need_targets: bool) -> anyhow::Result<Self> {
        let (file, origin) = match &args.config {
            Some(p) => {
                let (f, o) = FileConfig::load_with_origin(p)?;
                (f, Some(o))
            }
            None => (FileConfig::default(), None),
        };
        let layered = Layered {
            origin: origin.as_ref(),
        };
        // Paths in the file are relative to the file.
        let rel = |p: &str| match &origin {
            Some(o) if p != "-" => o.resolve(Path::new(p)).display().to_string(),
            _ => p.to_owned(),
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
                    .map(|s| Source::from_input_flag(&rel(s))),
            );
            for spec in file.suites.unwrap_or_default() {
                // A bundled suite's name stays a name; a path is relative to the file.
                let spec = if spec.ends_with(".toml") {
                    rel(&spec)
                } else {
                    spec
                };
                sources.push(Source::Suite(Box::new(crate::suite::Suite::load(&spec)?)));
            }
        }
        // `--echo-server`: the researcher's echo server abroad, measured for protocol-shaped
        // datagrams (echo://) and a call's media stream (media://), whatever else is scanned.
        match (&args.echo_server, &file.echo_server) {
            (Some(s), _) => {
                sources.extend(echo_targets(s).map_err(|e| anyhow::anyhow!("--echo-server: {e}"))?)
            }
            (None, Some(s)) => {
                let at = origin
                    .as_ref()
                    .map_or_else(|| "echo-server".to_owned(), |o| o.at("echo-server"));
                sources.extend(echo_targets(s).map_err(|e| anyhow::anyhow!("{at}: {e}"))?);
            }
            (None, None) => {}
        }
        // In-run references: the flags (else the file's), then those the suites name.
        let references_from_file = args.references.is_empty() && file.references.is_some();
        let mut references: Vec<String> = if args.references.is_empty() {
            file.references.clone().unwrap_or_default()
        } else {
            args.references.clone()
        };
        if references_from_file {
            for r in &references {
                check_reference(r).map_err(|e| {
                    let at = origin
                        .as_ref()
                        .map_or_else(|| "references".to_owned(), |o| o.at("references"));
                    anyhow::anyhow!("{at}: `{r}`: {e}")
                })?;
            }
        }
        for s in &sources {
            if let Source::Suite(suite) = s {
                references.extend(suite.references.iter().cloned());
            }
        }
        let mut seen = std::collections::HashSet::new();
        references.retain(|r| seen.insert(r.clone()));
        for r in &references {
            check_reference(r).map_err(|e| anyhow::anyhow!("--reference `{r}`: {e}"))?;
        }
        if sources.is_empty() && need_targets {
            bail!(
                "no targets: give TARGET arguments, --input FILE, --suite NAME or --echo-server HOST:PORT (see `blockprobe scan --help`)"
            );
        }
        if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
            bail!("standard input (`-i -`) can be read only once");
        }

        // Errors name the flag, or the file and line of the table.
        let label = |flag: &str, key: &str, from_flag: bool| match &origin {
            Some(o) if !from_flag => o.at(key),
            _ => format!("--{flag}"),
        };
        let from_flag = !args.resolvers.is_empty();
        let vantages = parse_named(
            nonempty(args.resolvers)
                .or_else(|| table(file.resolvers))
                .unwrap_or_else(|| vec!["system=system".into()]),
            &label("resolver", "resolvers", from_flag),
        )?;
        let from_flag = !args.control_resolvers.is_empty();
        let controls = parse_named(
            nonempty(args.control_resolvers)
                .or_else(|| table(file.control_resolvers))
                .unwrap_or_else(|| {
                    DEFAULT_CONTROLS
                        .iter()
                        .map(|(n, s)| format!("{n}={s}"))
                        .collect()
                }),
            &label("control-resolver", "control-resolvers", from_flag),
        )?;

        let control_proxy = match args.control_proxy.or(file.control_proxy) {
            Some(p) => Some(crate::probe::socks::parse_proxy(&p).ok_or_else(|| {
                anyhow::anyhow!(
                    "--control-proxy `{p}`: expected socks5://IP:PORT (or localhost:PORT)"
                )
            })?),
            None => None,
        };
        let stall_timeout = layered.get(
            "stall-timeout",
            args.stall_timeout,
            file.stall_timeout,
            |s| parse_duration(&s),
            Duration::from_secs(3),
            within(MIN_TIMEOUT, MAX_TIMEOUT, show_duration),
        )?;
        let max_body = layered.get(
            "max-body",
            args.max_body,
            file.max_body,
            |s| parse_size(&s),
            1024 * 1024,
            within(1, MAX_BODY, |b| format!("{b} bytes")),
        )?;
        let throttle_floor_bps = layered.get(
            "throttle-floor",
            args.throttle_floor,
            file.throttle_floor,
            |s| parse_rate(&s),
            2_000_000.0,
            within(1.0, 1e12, |r| format!("{r} bit/s")),
        )?;
        let throttle_ratio = layered.get(
            "throttle-ratio",
            args.throttle_ratio,
            file.throttle_ratio,
            Ok,
            0.25,
            |r| {
                (*r > 0.0 && *r <= 1.0)
                    .then_some(())
                    .ok_or_else(|| "must be in (0, 1]".to_owned())
            },
        )?;
        let repeat = layered.get(
            "repeat",
            args.repeat,
            file.repeat,
            Ok,
            1,
            within(1, MAX_REPEAT, |n| n.to_string()),
        )?;
        let decoy_sni = args
            .decoy_sni
            .or(file.decoy_sni)
            .unwrap_or_else(|| DEFAULT_DECOY_SNI.to_owned());
        let decoy_sni =
            normalize_domain(&decoy_sni).map_err(|e| anyhow::anyhow!("--decoy-sni: {e}"))?;
        let tunnel_check = crate::probe::shadowsocks::TunnelCheck::parse(
            args.tunnel_check
                .as_deref()
                .or(file.tunnel_check.as_deref())
                .unwrap_or(crate::probe::shadowsocks::DEFAULT_TUNNEL_CHECK),
        )
        .map_err(|e| anyhow::anyhow!("--tunnel-check: {e}"))?;
        let conn = ConnSettings {
            control_proxy,
            decoy_sni,
            tunnel_check,
            max_redirects: layered.get(
                "max-redirects",
                args.max_redirects,
                file.max_redirects,
                Ok,
                10,
                within(0, MAX_REDIRECTS, |n| n.to_string()),
            )?,
            max_body,
            stall_timeout,
            repeat,
            rules: crate::classify::Rules {
                throttle_ratio,
                throttle_floor_bps,
            },
            connect_to: if args.connect_to.is_empty() {
                file.connect_to
                    .clone()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| {
                        crate::probe::tcp::parse_remap(p).map_err(|e| {
                            let at = origin
                                .as_ref()
                                .map_or_else(|| "connect-to".to_owned(), |o| o.at("connect-to"));
                            anyhow::anyhow!("{at}: `{p}`: {e}")
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            } else {
                args.connect_to
            },
            stun_reference: match (
                args.stun_reference.as_deref(),
                file.stun_reference.as_deref(),
            ) {
                (Some(flag), _) => Some(
                    parse_host_port(flag).map_err(|e| anyhow::anyhow!("--stun-reference: {e}"))?,
                ),
                (None, Some(f)) => Some(parse_host_port(f).map_err(|e| {
                    let at = origin
                        .as_ref()
                        .map_or_else(|| "stun-reference".to_owned(), |o| o.at("stun-reference"));
                    anyhow::anyhow!("{at}: {e}")
                })?),
                (None, None) => None,
            },
            control_concurrency: layered.get(
                "control-concurrency",
                args.control_concurrency,
                file.control_concurrency,
                Ok,
                DEFAULT_CONTROL_CONCURRENCY,
                within(1, MAX_CONCURRENCY, |n| n.to_string()),
            )?,
            references,
        };

        let ca_file = args.ca_file.or_else(|| {
            file.ca_file
                .as_deref()
                .map(|p| rel_path(origin.as_ref(), p))
        });
        if let Some(p) = &ca_file {
            std::fs::metadata(p).with_context(|| format!("--ca-file {}", p.display()))?;
        }

        let timeout = layered.get(
            "timeout",
            args.timeout,
            file.timeout,
            |s| parse_duration(&s),
            DEFAULT_TIMEOUT,
            within(MIN_TIMEOUT, MAX_TIMEOUT, show_duration),
        )?;
        let injection_window = layered.get(
            "injection-window",
            args.injection_window,
            file.injection_window,
            |s| parse_duration(&s),
            DEFAULT_WINDOW,
            within(Duration::ZERO, MAX_INJECTION_WINDOW, show_duration),
        )?;
        let rate = layered.get("rate", args.rate, file.rate, Ok, 0.0, |r| {
            (*r == 0.0 || (MIN_RATE..=MAX_RATE).contains(r))
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "must be a number of queries per second between {MIN_RATE} and {MAX_RATE}, or 0 for unlimited"
                    )
                })
        })?;
        let concurrency = layered.get(
            "concurrency",
            args.concurrency,
            file.concurrency,
            Ok,
            DEFAULT_CONCURRENCY,
            within(1, MAX_CONCURRENCY, |n| n.to_string()),
        )?;

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
                Probe::Quic => &[Probe::Quic],
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

        let names = |list: Option<Vec<String>>, defaults: &[&str], what: &str| {
            list.unwrap_or_else(|| defaults.iter().map(|s| (*s).to_owned()).collect())
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .map(|c| normalize_domain(c.trim()).map_err(|e| anyhow::anyhow!("{what}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let regime_mode = args
            .regime_check
            .or(file.regime_check)
            .unwrap_or_else(|| "auto".to_owned());
        let regime = crate::regime::RegimeOptions {
            enabled: match regime_mode.as_str() {
                "on" => true,
                "off" => false,
                // The start-of-run checks go together: no canaries, no regime check.
                "auto" => !canaries.is_empty(),
                other => anyhow::bail!("--regime-check {other}: expected auto, on or off"),
            },
            allowlisted: names(
                args.allowlisted.or(file.allowlisted),
                &crate::regime::DEFAULT_ALLOWLISTED,
                "--allowlisted",
            )?,
            foreign: names(
                args.foreign_references.or(file.foreign_references),
                &crate::regime::DEFAULT_FOREIGN,
                "--foreign-references",
            )?,
        };

        let path = args
            .output
            .or_else(|| file.output.as_deref().map(|p| rel_path(origin.as_ref(), p)));
        let format = match (args.format.or(file.format), &path) {
            (Some(f), _) => f,
            // People read a terminal; scripts read JSON lines.
            (None, None) if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Format::Table,
            (None, None) => Format::Jsonl,
            // `-o /dev/null`, a FIFO: a stream of lines.
            (None, Some(p)) if crate::outfile::is_stream(p) && Format::from_path(p).is_none() => {
                Format::Jsonl
            }
            (None, Some(p)) => Format::from_path(p).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot tell the report format from `{}`; use a .csv, .json, .jsonl or .txt (table) name or pass --format",
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
                        .map_err(|e| layered.error("fail-on", true, &e.to_string()))
                })
                .collect::<anyhow::Result<_>>()?,
            (None, None) => Vec::new(),
        };

        let store = match (args.store, file.store) {
            (Some(s), _) => Some(
                s.parse::<crate::store::StoreUrl>()
                    .map_err(|e| anyhow::anyhow!("--store: {e}"))?,
            ),
            (None, Some(s)) => Some(
                match s
                    .parse::<crate::store::StoreUrl>()
                    .map_err(|e| layered.error("store", true, &e))?
                {
                    crate::store::StoreUrl::Sqlite(p) => {
                        crate::store::StoreUrl::Sqlite(rel_path(origin.as_ref(), &p))
                    }
                    pg => pg,
                },
            ),
            (None, None) => None,
        };
        let append = args.append || file.append.unwrap_or(false);
        if append && format != Format::Jsonl {
            bail!("--append works with JSONL output only (CSV and JSON are replaced atomically)");
        }
        if args.resume.is_some() && store.is_none() {
            bail!("--resume needs --store (the run to resume is in the store)");
        }
        // Where the public address comes from: a flag replaces the file's choice, whichever
        // of the two the file made.
        let (stun, given) = if args.public_ip_stun.is_some() || args.public_ip.is_some() {
            (args.public_ip_stun, args.public_ip)
        } else {
            (file.public_ip_stun, file.public_ip)
        };
        let public_ip_stun = stun
            .map(|s| parse_host_port(&s).map_err(|e| anyhow::anyhow!("--public-ip-stun: {e}")))
            .transpose()?;
        let public_ip = given;
        if public_ip.is_some() && public_ip_stun.is_some() {
            bail!("--public-ip and --public-ip-stun: give one (the address, or where to learn it)");
        }
        let asn_paths = if args.asn_db.is_empty() {
            file.asn_db
                .unwrap_or_default()
                .iter()
                .map(|p| rel_path(origin.as_ref(), p))
                .collect()
        } else {
            args.asn_db
        };
        let asn_dbs = if asn_paths.is_empty() {
            None
        } else if public_ip.is_none() && public_ip_stun.is_none() {
            bail!(
                "--asn-db looks up this probe's public address: add --public-ip-stun HOST:PORT \
                 (a STUN server tells it) or --public-ip ADDR"
            );
        } else {
            Some(std::sync::Arc::new(crate::asn::Databases::open(
                &asn_paths,
            )?))
        };
        if let Some(out) = &path {
            refuse_overwriting_inputs(
                out,
                &sources,
                args.config.as_deref(),
                ca_file.as_deref(),
                &asn_paths,
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
                append,
            },
            strict: args.strict || file.strict.unwrap_or(false),
            run_id: args
                .resume
                .clone()
                .or(args.run_id)
                .or(file.run_id)
                .map(check_run_id)
                .transpose()?,
            public_ip_stun,
            public_ip,
            asn_dbs,
            vantage: match args.vantage.or(file.vantage) {
                Some(v) => check_vantage(v)?,
                None => crate::store::host_name(),
            },
            store,
            resume: args.resume,
            lock_wait: args.lock_wait,
            regime,
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
            // Issue 11, item 7: huge or tiny values are refused at parse time, by name.
            (
                &["x.example", "--timeout", "500000000000y"][..],
                "--timeout",
            ),
            (&["x.example", "--timeout", "1ns"][..], "--timeout"),
            (&["x.example", "--timeout", "2h"][..], "--timeout"),
            (
                &["x.example", "--injection-window", "500000000000y"][..],
                "--injection-window",
            ),
            (
                &["x.example", "--stall-timeout", "9999999h"][..],
                "--stall-timeout",
            ),
            (&["x.example", "--rate", "1e-300"][..], "--rate"),
            (&["x.example", "--rate", "inf"][..], "--rate"),
            (&["x.example", "--repeat", "4000000000"][..], "--repeat"),
            (
                &["x.example", "--max-body", "17179869184g"][..],
                "--max-body",
            ),
            (&["x.example", "--max-body", "2g"][..], "--max-body"),
            (
                &["x.example", "--concurrency", "1000000000"][..],
                "--concurrency",
            ),
            (
                &["x.example", "--max-redirects", "4000000000"][..],
                "--max-redirects",
            ),
            // Item 16.
            (&["x.example", "--run-id", ""][..], "--run-id"),
            (&["x.example", "--run-id", "a b"][..], "--run-id"),
        ] {
            let e = cfg(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(format!("{e:#}").contains(needle), "{args:?}: {e:#}");
        }
    }

    /// Issue 11, item 16: errors in the config file name the file and line, and its paths are
    /// relative to the file.
    #[test]
    fn config_file_errors_name_file_and_line_and_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bp.toml");
        let f = file.to_str().unwrap();
        for (text, needle) in [
            (
                "probes = [\"dns\"]\ntimeout = \"9999h\"\n",
                ":2: timeout: must be between",
            ),
            ("\nrepeat = 0\n", ":2: repeat: must be between"),
            ("max-body = \"lots\"\n", ":1: max-body: invalid size"),
            ("rate = 1e-300\n", ":1: rate: must be"),
            (
                "[resolvers]\nisp = \"udp://1.1.1.1:0\"\n",
                "bp.toml:1: resolvers isp=",
            ),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = cfg(&["x.example", "--config", f]).expect_err(text);
            let e = format!("{e:#}");
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("bp.toml"), "{text}: {e}");
        }
        std::fs::write(dir.path().join("list.txt"), "x.example\n").unwrap();
        std::fs::write(
            &file,
            "inputs = [\"list.txt\"]\noutput = \"out.csv\"\nstore = \"sqlite:runs.db\"\n",
        )
        .unwrap();
        let c = cfg(&["--config", f]).unwrap();
        assert_eq!(c.sources, [Source::File(dir.path().join("list.txt"))]);
        assert_eq!(c.output.path, Some(dir.path().join("out.csv")));
        assert_eq!(
            c.store,
            Some(crate::store::StoreUrl::Sqlite(dir.path().join("runs.db")))
        );
    }

    /// Issue 13: every scan setting that makes sense in a file is accepted there; flags win.
    #[test]
    fn issue_13_stun_reference_connect_to_append_and_run_id_in_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bp.toml");
        let f = file.to_str().unwrap();
        std::fs::write(
            &file,
            "stun-reference = \"stun.example:3478\"\nconnect-to = [\"192.0.2.1:443=127.0.0.1:8443\"]\n\
             append = true\nformat = \"jsonl\"\nrun-id = \"weekly-1\"\n",
        )
        .unwrap();
        let c = cfg(&["x.example", "--config", f]).unwrap();
        assert_eq!(c.conn.stun_reference, Some(("stun.example".into(), 3478)));
        assert_eq!(
            c.conn.connect_to,
            [(
                "192.0.2.1:443".parse().unwrap(),
                "127.0.0.1:8443".parse().unwrap()
            )]
        );
        assert!(c.output.append);
        assert_eq!(c.run_id.as_deref(), Some("weekly-1"));
        // The flags win.
        let c = cfg(&["x.example", "--config", f, "--run-id", "other"]).unwrap();
        assert_eq!(c.run_id.as_deref(), Some("other"));
        // Errors name the file and the line.
        for (text, needle) in [
            (
                "\nconnect-to = [\"nonsense\"]\n",
                "bp.toml:2: connect-to: `nonsense`",
            ),
            ("stun-reference = \"a:b:c\"\n", "bp.toml:1: stun-reference"),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = format!("{:#}", cfg(&["x.example", "--config", f]).expect_err(text));
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}

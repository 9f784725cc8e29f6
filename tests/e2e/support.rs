//! Shared fixtures: a vantage DNS server that lies per name, a truthful control server, a test
//! CA written to a PEM file, and a runner for the real binary.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use blockprobe::mocknet::dns::{Behaviour, MockDns, Zone};
use blockprobe::mocknet::pki::Pki;

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// (name, expected verdict, layer, reason) through the UDP vantage of [`vantage_zone`].
pub(crate) const CASES: &[(&str, &str, &str, Option<&str>)] = &[
    ("ok.test", "reachable", "", None),
    ("cname.test", "reachable", "", None),
    ("nx.test", "blocked", "dns", Some("dns.nxdomain")),
    ("nodata.test", "blocked", "dns", Some("dns.nodata")),
    ("servfail.test", "blocked", "dns", Some("dns.servfail")),
    ("refused.test", "blocked", "dns", Some("dns.refused")),
    ("silent.test", "blocked", "dns", Some("dns.timeout")),
    ("bogon.test", "blocked", "dns", Some("dns.bogon")),
    ("inject.test", "blocked", "dns", Some("dns.injected")),
    ("lie.test", "blocked", "dns", Some("dns.inconsistent")),
    ("gone.test", "down", "", None),
];

pub(crate) fn vantage_zone() -> Zone {
    Zone::new(Behaviour::NxDomain)
        .with("canary.test", Behaviour::Answer(ips(&["127.0.0.2"])))
        .with("ok.test", Behaviour::Answer(ips(&["127.0.0.10", "::1"])))
        .with(
            "cname.test",
            Behaviour::Cname {
                target: "edge.cdn.test".into(),
                addrs: ips(&["127.0.0.15"]),
            },
        )
        .with("nx.test", Behaviour::NxDomain)
        .with("nodata.test", Behaviour::NoData)
        .with("servfail.test", Behaviour::ServFail)
        .with("refused.test", Behaviour::Refused)
        .with("silent.test", Behaviour::Silent)
        .with("reset.test", Behaviour::Reset)
        .with("bogon.test", Behaviour::Answer(ips(&["10.99.34.35"])))
        .with(
            "inject.test",
            Behaviour::Inject {
                forged: ips(&["10.10.34.36"]),
                real: ips(&["127.0.0.16"]),
            },
        )
        .with("lie.test", Behaviour::Answer(ips(&["1.2.3.5"])))
        .with("gone.test", Behaviour::NxDomain)
}

pub(crate) fn control_zone() -> Zone {
    let mut z = Zone::new(Behaviour::NxDomain);
    for (name, addrs) in [
        ("canary.test", &["127.0.0.2"][..]),
        ("ok.test", &["127.0.0.10", "::1"]),
        ("nx.test", &["127.0.0.11"]),
        ("nodata.test", &["127.0.0.12"]),
        ("servfail.test", &["127.0.0.13"]),
        ("refused.test", &["127.0.0.14"]),
        ("silent.test", &["127.0.0.17"]),
        ("reset.test", &["127.0.0.18"]),
        ("bogon.test", &["127.0.0.19"]),
        ("inject.test", &["127.0.0.16"]),
        ("lie.test", &["5.6.7.8"]),
    ] {
        z = z.with(name, Behaviour::Answer(ips(addrs)));
    }
    z.with(
        "cname.test",
        Behaviour::Cname {
            target: "edge.cdn.test".into(),
            addrs: ips(&["127.0.0.15"]),
        },
    )
}

pub(crate) struct Net {
    pub(crate) vantage: MockDns,
    pub(crate) control: MockDns,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca_file: PathBuf,
}

impl Net {
    pub(crate) async fn start() -> Self {
        Self::start_with(vantage_zone()).await
    }

    pub(crate) async fn start_with(zone: Zone) -> Self {
        let pki = Pki::generate("blockprobe test CA").unwrap();
        let dot = pki
            .server_config(&["127.0.0.1", "dns.test"], &[b"dot"])
            .unwrap();
        let doh = pki
            .server_config(&["127.0.0.1", "dns.test"], &[b"h2", b"http/1.1"])
            .unwrap();
        let vantage = MockDns::start(ip("127.0.0.1"), 0, zone, Some((dot, doh)))
            .await
            .unwrap();
        let control = MockDns::start(ip("127.0.0.1"), 0, control_zone(), None)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pki.ca_pem()).unwrap();
        Self {
            vantage,
            control,
            dir,
            ca_file,
        }
    }

    /// Arguments that aim a scan at this network (UDP vantage named `isp`).
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "scan".into(),
            "--resolver".into(),
            format!("isp=udp://{}", self.vantage.udp),
            "--control-resolver".into(),
            format!("ctl=udp://{}", self.control.udp),
            "--ca-file".into(),
            self.ca_file.display().to_string(),
            "--canary".into(),
            "canary.test".into(),
            "--timeout".into(),
            "400ms".into(),
            "--injection-window".into(),
            "100ms".into(),
            "--probes".into(),
            "dns".into(),
            "--quiet".into(),
        ]
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `scan TARGET EXTRA…` on loopback alone: the control resolver is a closed port (nothing
/// beyond loopback is asked, and nothing answers) and there are no canaries.
pub(crate) fn closed_scan(target: &str, extra: &[&str]) -> Vec<String> {
    [
        "scan",
        target,
        "--control-resolver",
        "c=udp://127.0.0.1:9",
        "--canary",
        "",
    ]
    .iter()
    .chain(extra)
    .map(|s| (*s).to_owned())
    .collect()
}

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_blockprobe")
}

/// Runs the real binary without blocking the runtime that serves the mock network.
pub(crate) async fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    tokio::process::Command::new(bin())
        .args(args)
        .env_remove("BLOCKPROBE_RESOLV_CONF")
        .output()
        .await
        .unwrap()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Decodes JSONL output into values, one per line.
pub(crate) fn jsonl(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l}: {e}")))
        .collect()
}

pub(crate) fn find<'a>(records: &'a [serde_json::Value], target: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no record for {target} in {records:#?}"))
}

pub(crate) fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A `blockprobe mocknet` process for a shipped scenario, and its ready line (read from its
/// stdout: the readiness signal). The process is killed when the returned child is dropped.
pub(crate) async fn spawn_mocknet(
    scenario: &str,
    ready_file: &Path,
) -> (tokio::process::Child, blockprobe::mocknet::Ready) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join(scenario);
    spawn_mocknet_with(&["--scenario", scenario.to_str().unwrap()], ready_file).await
}

/// A mock network with these `mocknet` arguments (`--scenario …`, `--suite …`), once ready.
pub(crate) async fn spawn_mocknet_with(
    args: &[&str],
    ready_file: &Path,
) -> (tokio::process::Child, blockprobe::mocknet::Ready) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(bin())
        .arg("mocknet")
        .args(args)
        .args([
            // Generous: a debug build on a loaded 2-core CI machine handshakes slowly, and a
            // tight timeout there turns a slow success into a false timeout.
            "--timeout",
            "3s",
            "--ready-file",
            ready_file.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    (child, serde_json::from_str(&line).unwrap())
}

/// Ready arguments without the flags named in `drop` (each with its value).
pub(crate) fn args_without(args: &[String], drop: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if drop.contains(&a.as_str()) {
            it.next();
        } else {
            out.push(a.clone());
        }
    }
    out
}

/// A vantage and a control resolver on loopback answering from their own zones.
pub(crate) struct Resolvers {
    pub(crate) vantage: MockDns,
    pub(crate) control: MockDns,
}

impl Resolvers {
    pub(crate) async fn start(vantage: Zone, control: Zone) -> Self {
        let lo = ip("127.0.0.1");
        Self {
            vantage: MockDns::start(lo, 0, vantage, None).await.unwrap(),
            control: MockDns::start(lo, 0, control, None).await.unwrap(),
        }
    }

    /// `scan` aimed at them: UDP vantage `isp`, control `ctl`, the given canary, no injection
    /// window, quiet.
    pub(crate) fn args(&self, canary: &str) -> Vec<String> {
        vec![
            "scan".into(),
            "--resolver".into(),
            format!("isp=udp://{}", self.vantage.udp),
            "--control-resolver".into(),
            format!("ctl=udp://{}", self.control.udp),
            "--canary".into(),
            canary.into(),
            "--injection-window".into(),
            "0".into(),
            "--quiet".into(),
        ]
    }
}

/// The real binary with piped stdout and stderr, killed if the test drops it.
pub(crate) fn spawn_piped(args: &[String]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A lab server's program, or `None` (the test is skipped) — unless `require` names a set
/// environment variable, as in CI, where a missing program fails the test.
pub(crate) fn lab_tool(name: &str, require: &str, install: &str) -> Option<PathBuf> {
    let found = tool(name);
    if found.is_none() {
        let required = std::env::var(require).is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(!required, "{require} is set but `{name}` is not installed");
        eprintln!("SKIPPED: `{name}` is not installed ({install})");
    }
    found
}

/// A program on PATH (or in the sbin folders Debian puts servers in).
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

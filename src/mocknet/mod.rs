//! `blockprobe mocknet`: a censored network on loopback, for users' CI smoke tests and our own
//! end-to-end tests. This version runs the DNS side of it: a lying ISP resolver (UDP, TCP, DoT,
//! DoH) and a truthful control resolver, driven by a scenario file whose targets carry the
//! verdict a scan must reach.

pub mod censor;
pub mod dns;
pub mod origin;
pub mod pki;
pub mod scenario;
pub mod socks;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use crate::mocknet::dns::MockDns;
use crate::mocknet::pki::Pki;
use crate::mocknet::scenario::{CANARY, Plan, Scenario};

/// Name the mock resolvers' certificate is issued for (DoT `#NAME`).
pub const DNS_SERVER_NAME: &str = "dns.mocknet.test";

/// Everything a client needs to aim at a running mock network; printed as the ready line.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Ready {
    pub scenario: String,
    /// The ISP resolver on each transport, as resolver SPECs.
    pub isp: Transports,
    /// The truthful control resolver.
    pub control: String,
    pub ca_file: PathBuf,
    pub targets_file: PathBuf,
    /// Arguments for `blockprobe` that scan this network (`scan` first).
    pub scan_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Transports {
    pub udp: String,
    pub tcp: String,
    pub dot: String,
    pub doh: String,
}

/// A running mock network. Dropping it stops the servers and removes its files.
pub struct MockNet {
    pub isp: MockDns,
    pub control: MockDns,
    pub ready: Ready,
    pub plan: Plan,
    _dir: tempfile::TempDir,
}

impl MockNet {
    pub async fn start(scenario_path: &Path, timeout: &str) -> anyhow::Result<Self> {
        let plan = Scenario::load(scenario_path)?.plan()?;
        let pki = Pki::generate("blockprobe mocknet CA")?;
        let names = ["127.0.0.1", DNS_SERVER_NAME];
        let dot = pki.server_config(&names, &[b"dot"])?;
        let doh = pki.server_config(&names, &[b"http/1.1"])?;
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let isp = MockDns::start(lo, 0, plan.vantage.clone(), Some((dot, doh)))
            .await
            .context("cannot bind the ISP resolver")?;
        let control = MockDns::start(lo, 0, plan.control.clone(), None)
            .await
            .context("cannot bind the control resolver")?;

        let dir = tempfile::Builder::new()
            .prefix("blockprobe-mocknet-")
            .tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, pki.ca_pem())?;
        let targets_file = dir.path().join("targets.txt");
        let mut list = String::new();
        for t in &plan.scenario.targets {
            list.push_str(&t.target);
            list.push('\n');
        }
        std::fs::write(&targets_file, list)?;

        let isp_specs = Transports {
            udp: format!("udp://{}", isp.udp),
            tcp: format!("tcp://{}", isp.tcp),
            dot: format!("tls://{}#{DNS_SERVER_NAME}", isp.dot.expect("tls given")),
            doh: format!(
                "https://127.0.0.1:{}/dns-query",
                isp.doh.expect("tls given").port()
            ),
        };
        let control_spec = format!("udp://{}", control.udp);
        let scan_args = vec![
            "scan".to_owned(),
            "-i".into(),
            targets_file.display().to_string(),
            "--resolver".into(),
            format!("isp={}", isp_specs.udp),
            "--control-resolver".into(),
            format!("control={control_spec}"),
            "--ca-file".into(),
            ca_file.display().to_string(),
            "--canary".into(),
            CANARY.into(),
            "--timeout".into(),
            timeout.into(),
            // The mock network serves DNS only in this version: no origin servers to connect to.
            "--probes".into(),
            "dns".into(),
        ];
        let ready = Ready {
            scenario: plan.scenario.name.clone(),
            isp: isp_specs,
            control: control_spec,
            ca_file,
            targets_file,
            scan_args,
        };
        Ok(Self {
            isp,
            control,
            ready,
            plan,
            _dir: dir,
        })
    }

    /// Runs the scan in-process and compares every record with the scenario. Returns the
    /// mismatches (empty when all is as expected).
    pub async fn check(&self, out: &mut impl std::io::Write) -> anyhow::Result<Vec<String>> {
        use clap::Parser as _;
        let mut argv = vec!["blockprobe".to_owned()];
        argv.extend(self.ready.scan_args.iter().cloned());
        argv.extend(["--quiet".into(), "--format".into(), "jsonl".into()]);
        let cli = crate::cli::Cli::try_parse_from(argv)?;
        let crate::cli::Command::Scan(args) = cli.command else {
            unreachable!("scan_args start with scan")
        };
        let cfg = crate::config::ScanConfig::from_args(*args)?;
        let meta = crate::scan::run_meta(&cfg, std::time::SystemTime::now());
        let mut buf = Vec::new();
        crate::scan::scan(cfg, meta, &mut buf).await?;
        let records: Vec<serde_json::Value> = buf
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()?;
        let mut mismatches = Vec::new();
        for t in &self.plan.scenario.targets {
            let want_reason = t.expect.reason.as_deref();
            let Some(r) = records.iter().find(|r| r["target"] == t.target.as_str()) else {
                mismatches.push(format!("{}: no record in the scan output", t.target));
                continue;
            };
            let got_verdict = r["verdict"].as_str().unwrap_or("?");
            let got_reason = r["reason"].as_str();
            let ok = got_verdict == t.expect.verdict && got_reason == want_reason;
            let line = format!(
                "{:<4} {:<28} expected {}{}, got {}{} ({})",
                if ok { "ok" } else { "FAIL" },
                t.target,
                t.expect.verdict,
                want_reason.map(|r| format!(" {r}")).unwrap_or_default(),
                got_verdict,
                got_reason.map(|r| format!(" {r}")).unwrap_or_default(),
                r["detail"].as_str().unwrap_or(""),
            );
            writeln!(out, "{line}")?;
            if !ok {
                mismatches.push(line);
            }
        }
        Ok(mismatches)
    }
}

//! Insert rate of the measurement store: N realistic records (DNS evidence from two resolvers)
//! through the same writer a scan uses, into SQLite (a temporary file) and, when
//! BLOCKPROBE_TEST_POSTGRES is set, PostgreSQL.
//!
//! cargo bench --bench store -- 100000

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use blockprobe::classify::{ControlDns, ControlObservation, Evidence, Finding};
use blockprobe::probe::dns::{DnsObservation, DnsResponse, QueryObservation};
use blockprobe::report::{Record, RunMeta};
use blockprobe::resolver_spec::Vantage;
use blockprobe::store::{Store, StoreUrl};
use blockprobe::target::Target;
use blockprobe::verdict::{Reason, Verdict};

fn dns(rcode: &str, answers: &[&str]) -> DnsObservation {
    let q = |qtype| QueryObservation {
        qtype,
        responses: vec![DnsResponse {
            rcode: rcode.into(),
            answers: answers.iter().map(|a| a.parse().unwrap()).collect(),
            cnames: vec![],
            truncated: false,
            elapsed: Duration::from_micros(4200),
            send: 1,
        }],
        failure: None,
        sent: 1,
    };
    DnsObservation {
        transport: "udp",
        server: "192.0.2.53:53".into(),
        a: q("A"),
        aaaa: q("AAAA"),
        elapsed: Duration::from_micros(4300),
    }
}

fn bench(url: &StoreUrl, n: usize) -> anyhow::Result<(f64, usize)> {
    let run_id = format!("bench-{:08x}", rand::random::<u32>());
    let meta = RunMeta {
        run_id: run_id.clone(),
        started_at: blockprobe::store::now(),
        tool_version: "bench".into(),
        resolvers: vec![],
        control_resolvers: vec![],
        probes: vec!["dns".into()],
        vantage: "bench".into(),
        public_ip: None,
        network: Default::default(),
        canaries: vec![],
        regime: blockprobe::regime::RegimeCheck::unchecked(),
    };
    let vantage: Vantage = "isp=udp://192.0.2.53".parse().unwrap();
    let finding = Finding {
        verdict: Verdict::Blocked,
        reason: Some(Reason::DnsNxdomain),
        detail: "vantage resolver gave NXDOMAIN; the controls resolve the name".into(),
        blockpage: None,
        baseline: None,
        needs: None,
        evidence: Evidence {
            dns: Some(dns("NXDOMAIN", &[])),
            control: Some(std::sync::Arc::new(ControlDns {
                resolvers: vec![
                    ControlObservation {
                        resolver: "cloudflare".into(),
                        dns: dns("NOERROR", &["157.240.0.53"]),
                    },
                    ControlObservation {
                        resolver: "google".into(),
                        dns: dns("NOERROR", &["157.240.0.53"]),
                    },
                ],
            })),
            resolver_healthy: true,
            conn: None,
            baseline: vec![],
            tries: vec![],
        },
    };
    let mut store = Store::open(url)?;
    store.begin_run(&meta, &[])?;
    let writer = store.into_writer(run_id);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let start = Instant::now();
    let mut size = 0;
    runtime.block_on(async {
        for i in 0..n {
            let t = Target::parse(&format!("n{i}.whatsapp.example")).unwrap();
            let rec = Record::new(
                &meta,
                &t,
                &vantage,
                finding.clone(),
                Duration::from_millis(5),
            );
            if i == 0 {
                size = serde_json::to_string(&rec).unwrap().len();
            }
            writer.write(&rec).await?;
        }
        anyhow::Ok(())
    })?;
    writer.finish("complete")?;
    Ok((n as f64 / start.elapsed().as_secs_f64(), size))
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let mut stores = vec![("sqlite", StoreUrl::Sqlite(dir.path().join("bench.db")))];
    if let Ok(u) = std::env::var("BLOCKPROBE_TEST_POSTGRES") {
        stores.push(("postgres", StoreUrl::Postgres(u)));
    }
    for (name, url) in stores {
        let (rate, size) = bench(&url, n)?;
        println!("{name}: {n} records ({size} bytes of JSON each) at {rate:.0} records/s");
    }
    Ok(())
}

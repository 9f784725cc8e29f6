//! The `--config` TOML file: the TOML itself, then every value as `scan --config FILE` checks
//! it (`ScanConfig::from_args`).
#![no_main]

use std::io::Write as _;
use std::sync::LazyLock;

use blockprobe::cli::{Cli, Command};
use blockprobe::config::{FileConfig, ScanConfig};
use clap::Parser as _;
use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
    let d = std::env::temp_dir().join(format!("blockprobe-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
});

fn is_path(spec: &str) -> bool {
    spec.ends_with(".toml") || spec.contains('/') || spec.contains('\\')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    // Suite files named in the config would be read from this machine's disk: not fuzzed.
    if file.suites.iter().flatten().any(|s| is_path(s)) {
        return;
    }
    let path = DIR.join("c.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(data)
        .unwrap();
    let cli = Cli::try_parse_from(["blockprobe", "scan", "--config", path.to_str().unwrap()])
        .expect("static arguments");
    let Command::Scan(args) = cli.command else {
        unreachable!()
    };
    let _ = ScanConfig::from_args(*args);
});

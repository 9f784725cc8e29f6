//! Mocknet scenario files: the TOML, then the checks and zones `Scenario::plan` builds from it.
#![no_main]

use blockprobe::mocknet::scenario::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut scenario) = toml::from_str::<Scenario>(text) else {
        return;
    };
    // Suite files would be read from this machine's disk: only bundled suites are fuzzed.
    scenario
        .suites
        .retain(|s| !(s.ends_with(".toml") || s.contains('/') || s.contains('\\')));
    let _ = scenario.plan();
});

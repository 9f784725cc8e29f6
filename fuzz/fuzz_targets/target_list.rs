//! Target lines (`Target::parse`) and target lists, plain or Citizen Lab test-list CSV, as
//! `-i FILE` reads them.
#![no_main]

use blockprobe::target::{Host, Target, normalize_domain};
use libfuzzer_sys::fuzz_target;

fn check(t: &Target) {
    // A parsed name is already normal: normalising it again changes nothing.
    if let Host::Name(n) = &t.host {
        assert_eq!(
            normalize_domain(n).as_deref(),
            Ok(n.as_str()),
            "{:?}",
            t.input
        );
    }
    // Reports show `input`; reading it back measures the same thing.
    let again = Target::parse(&t.input).expect("a parsed target's input parses");
    assert_eq!(
        (&again.host, again.port, again.scheme, &again.path),
        (&t.host, t.port, t.scheme, &t.path)
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data)
        && let Ok(t) = Target::parse(line)
    {
        check(&t);
    }
    for t in blockprobe::fuzzing::read_list(data).iter().flatten() {
        check(t);
    }
});

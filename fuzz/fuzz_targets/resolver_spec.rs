//! Resolver specs (`--resolver NAME=SPEC`, config `[resolvers]`): parsing, and the promise that
//! a printed spec parses back to the same resolver.
#![no_main]

use blockprobe::resolver_spec::{ResolverSpec, Vantage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = s.parse::<ResolverSpec>() {
        let printed = spec.to_string();
        let back = printed
            .parse::<ResolverSpec>()
            .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?} does not parse: {e}"));
        assert_eq!(back, spec, "{s:?} printed as {printed:?}");
    }
    let _ = s.parse::<Vantage>();
});

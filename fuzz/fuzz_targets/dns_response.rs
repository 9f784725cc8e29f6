//! DNS responses as the probe decodes them (UDP, TCP, DoT and DoH answers all go through
//! `parse_response`), then serialised as the report does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, wire)) = data.split_first() else {
        return;
    };
    // The response's own id, so the fuzzer need not guess it (or, for one input in two, the
    // next one: a response to another query).
    let id = match wire {
        [a, b, ..] => u16::from_be_bytes([*a, *b]).wrapping_add(u16::from(flags & 2 != 0)),
        _ => 0,
    };
    if let Some(resp) = blockprobe::fuzzing::dns_response(wire, id, flags & 1 != 0) {
        serde_json::to_string(&resp).expect("a response serialises");
    }
});

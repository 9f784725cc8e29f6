//! SOCKS5 proxy replies (`--control-proxy`): the client's exchange over an in-memory connection
//! whose proxy answers with the fuzz input, the UDP relay header, and proxy URLs.
#![no_main]

use blockprobe::probe::socks::{parse_proxy, parse_udp_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, reply)) = data.split_first() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let host = ["example.com", "192.0.2.1", "[2001:db8::1]"][usize::from(flags >> 1) % 3];
    let mut stream = tokio::io::join(std::io::Cursor::new(reply.to_vec()), tokio::io::sink());
    let _ = rt.block_on(blockprobe::fuzzing::socks_exchange(
        &mut stream,
        "127.0.0.1".parse().unwrap(),
        flags & 1 != 0,
        host,
        443,
    ));

    if let Some((_, _, len)) = parse_udp_header(data) {
        assert!(len <= data.len());
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_proxy(s);
    }
});

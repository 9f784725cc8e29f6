//! HTTP responses as the probe reads them: the head and body through `probe::http::get` over
//! an in-memory connection, the title, the block-page fingerprints and the report's JSON.
#![no_main]

use std::time::Duration;

use blockprobe::blockpage::Fingerprints;
use blockprobe::probe::http::{HttpOptions, extract_title, get};
use blockprobe::target::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, response)) = data.split_first() else {
        return;
    };
    // Paused time: a response that would hang the probe ends at its timeouts at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let stream = tokio::io::join(std::io::Cursor::new(response.to_vec()), tokio::io::sink());
    let opts = HttpOptions {
        timeout: Duration::from_secs(10),
        stall_timeout: Duration::from_secs(3),
        max_body: if flags & 1 != 0 { 100 } else { 1 << 20 },
    };
    let method = if flags & 2 != 0 {
        Method::Post
    } else {
        Method::Get
    };
    let obs = rt.block_on(get(
        stream,
        "http://example.com/",
        "example.com",
        "/",
        method,
        opts,
    ));
    serde_json::to_string(&obs).expect("an observation serialises");
    let fp = Fingerprints::builtin();
    let _ = fp.match_http(&obs);
    let _ = fp.match_address("10.10.34.35".parse().unwrap());

    // The body extractors on the raw bytes too (most fuzz inputs are not valid responses).
    let body = String::from_utf8_lossy(response);
    if let Some(t) = extract_title(&body) {
        assert!(t.len() <= 200 && !t.is_empty());
    }
    let mut page = obs;
    page.head = response.to_vec();
    page.title = extract_title(&body);
    let _ = fp.match_http(&page);
    // A raw response as `blockprobe blockpage FILE` reads it (status line, headers, body).
    let _ = fp.match_http(&blockprobe::blockpage::observation_from_bytes(
        response,
        "http://example.com/",
    ));
});

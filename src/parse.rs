//! Value parsers shared by the flags, the config file and the suites: one spelling of a
//! duration, a rate, a size and a reference URL everywhere.

use std::time::Duration;

/// Parses a duration like `4s`, `500ms`, `1m 30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}` ({e}); use e.g. 4s or 500ms"))?;
    Ok(d)
}

/// Parses a rate like `2M`, `500k`, `2000000` (bits per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .trim_end_matches("bit/s")
        .trim_end_matches("bps")
        .trim_end_matches("bit");
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1e3),
        Some('m') => (&t[..t.len() - 1], 1e6),
        Some('g') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && v.is_finite())
        .map(|v| v * mult)
        .ok_or_else(|| format!("invalid rate `{s}` (use bits/s, e.g. 2M or 500k)"))
}

/// Parses a size like `1MiB`, `64k`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .and_then(|v| v.checked_mul(mult))
        .ok_or_else(|| format!("invalid size `{s}` (use bytes, e.g. 1MiB or 64k)"))
}

/// A `--reference`: an http(s) URL, best a large object (>= 64 KiB) on a domestic server.
pub fn check_reference(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(
            "expected an http:// or https:// URL of a large object on a domestic server".into(),
        );
    }
    crate::target::Target::parse(url).map(|_| ())
}

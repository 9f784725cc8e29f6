//! The HTTP and transfer steps: one GET over an established connection (plain or TLS), the
//! response's status, selected headers, title, body length and SHA-256, and the transfer
//! sampled as it arrives — time to first byte, throughput, and where a stall began.
//!
//! hyper's HTTP/1.1 client is used directly over our own connection, so each phase (connect,
//! handshake, request, body) stays observable and nothing is pooled across targets.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use serde::Serialize;
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::probe::ser_ms;

fn ser_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}
use crate::probe::failure::{Failure, FailureKind};

/// Bytes of the body kept for titles and block-page fingerprints (the rest is only counted
/// and hashed).
pub const HEAD_KEEP: usize = 64 * 1024;

const USER_AGENT: &str = concat!(
    "Mozilla/5.0 (X11; Linux x86_64) blockprobe/",
    env!("CARGO_PKG_VERSION")
);

/// Headers kept for fingerprints (a response with more is unusual; the rest are dropped).
pub const MAX_RAW_HEADERS: usize = 100;

/// `content-type` -> `Content-Type` (HTTP/1 names are case-insensitive; hyper lowercases them).
fn wire_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Response headers worth keeping as evidence (block-page fingerprints look at some of them).
const KEPT_HEADERS: &[&str] = &[
    "server",
    "location",
    "content-type",
    "content-length",
    "via",
    "x-cache",
    "cf-ray",
    "set-cookie",
    "x-powered-by",
    "refresh",
    "x-squid-error",
];

#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Limit for the response head, and separately for the body transfer.
    pub timeout: Duration,
    /// No progress for this long after some bytes arrived = a stall.
    pub stall_timeout: Duration,
    /// Bytes of body read at most.
    pub max_body: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Transfer {
    /// Time from sending the request to the response head (`null`: no head arrived).
    #[serde(rename = "ttfb_ms", serialize_with = "ser_opt_ms")]
    pub ttfb: Option<Duration>,
    pub bytes: u64,
    /// Time spent reading the body.
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// Body bits per second over the body's duration (None for an empty body).
    pub throughput_bps: Option<f64>,
    /// Body bytes received before the flow froze (no progress for the stall timeout, or no
    /// response at all within the timeout on an open connection: 0), if it did.
    pub stalled_at: Option<u64>,
    /// The body ended normally.
    pub complete: bool,
    /// Reading stopped at `--max-body`.
    pub capped: bool,
    /// The transfer was still progressing when the step's timeout ended it.
    pub timed_out: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpObservation {
    pub url: String,
    pub status: Option<u16>,
    pub headers: BTreeMap<String, String>,
    pub title: Option<String>,
    pub body_sha256: Option<String>,
    pub transfer: Transfer,
    pub failure: Option<Failure>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
    /// The first [`HEAD_KEEP`] bytes of the body, for fingerprints; not written to reports.
    #[serde(skip)]
    pub head: Vec<u8>,
    /// Every response header (at most [`MAX_RAW_HEADERS`]), for fingerprints; not written to
    /// reports (the evidence keeps [`KEPT_HEADERS`]).
    #[serde(skip)]
    pub raw_headers: Vec<(String, String)>,
}

impl HttpObservation {
    pub fn empty(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            status: None,
            headers: BTreeMap::new(),
            title: None,
            body_sha256: None,
            transfer: Transfer::default(),
            failure: None,
            elapsed: Duration::ZERO,
            head: Vec::new(),
            raw_headers: Vec::new(),
        }
    }

    /// No request was sent: the connection failed first.
    pub fn failed_before_request(url: &str, f: Failure) -> Self {
        Self {
            failure: Some(f),
            ..Self::empty(url)
        }
    }

    /// The status line as a fingerprint expects it (`HTTP/1.1 403 Forbidden`).
    pub fn status_line(&self) -> String {
        let code = self.status.unwrap_or(0);
        let reason = http::StatusCode::from_u16(code)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("");
        format!("HTTP/1.1 {code} {reason}")
    }

    /// Every header as a `Name: value` line, names in the usual wire capitalisation.
    pub fn header_lines(&self) -> Vec<String> {
        self.raw_headers
            .iter()
            .map(|(k, v)| format!("{}: {v}", wire_case(k)))
            .collect()
    }

    /// The values of one header (name in any case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.raw_headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .chain(
                self.raw_headers
                    .is_empty()
                    .then(|| self.headers.get(name).map(String::as_str))
                    .flatten(),
            )
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").map(String::as_str)
    }

    pub fn is_redirect(&self) -> bool {
        matches!(self.status, Some(301 | 302 | 303 | 307 | 308)) && self.location().is_some()
    }

    /// The kept body as text, decoded by its declared charset (`Content-Type`, then
    /// `<meta charset>` or `http-equiv`; UTF-8 otherwise): Russian ISP stubs are often
    /// KOI8-R or windows-1251.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        decode(
            &self.head,
            self.headers.get("content-type").map(String::as_str),
        )
    }
}

static META_CHARSET: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new(r#"(?i)<meta[^>]+charset\s*=\s*["']?\s*([a-z0-9_:.-]+)"#)
        .expect("static regex")
});

/// Decodes a body by the charset its headers or its own `<meta>` declare (a byte-order mark
/// wins, as in browsers); unknown or absent labels mean UTF-8, decoded lossily.
pub fn decode<'a>(body: &'a [u8], content_type: Option<&str>) -> std::borrow::Cow<'a, str> {
    let from_header = content_type.and_then(|ct| {
        ct.split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_owned())
    });
    let from_meta = || {
        let head = &body[..body.len().min(4096)];
        META_CHARSET
            .captures(head)
            .and_then(|c| std::str::from_utf8(&c[1]).ok().map(str::to_owned))
    };
    let encoding = from_header
        .or_else(from_meta)
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    encoding.decode(body).0
}

static TITLE: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?is)<title[^>]*>(.*?)</title>").expect("static regex"));

pub fn extract_title(body: &str) -> Option<String> {
    let t = TITLE.captures(body)?.get(1)?.as_str();
    let words: Vec<&str> = t.split_whitespace().collect();
    let mut title = words.join(" ");
    if title.len() > 200 {
        let mut cut = 200;
        while !title.is_char_boundary(cut) {
            cut -= 1;
        }
        title.truncate(cut);
    }
    (!title.is_empty()).then_some(title)
}

/// Sends `METHOD path` (GET, or POST with an empty body) with `Host: authority` over
/// `stream` and reads the response.
pub async fn get<S>(
    stream: S,
    url: &str,
    authority: &str,
    path: &str,
    method: crate::target::Method,
    opts: HttpOptions,
) -> HttpObservation
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let mut obs = HttpObservation::empty(url);
    let head_deadline = start + opts.timeout;
    let handshake = hyper::client::conn::http1::Builder::new()
        .max_buf_size(256 * 1024)
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(stream));
    let (mut sender, conn) = match tokio::time::timeout_at(head_deadline, handshake).await {
        Err(_) => return silent(obs, start),
        Ok(Err(e)) => return failed(obs, Failure::from_error(&e), start),
        Ok(Ok(pair)) => pair,
    };
    let driver = tokio::spawn(conn);
    let mut req = http::Request::builder().uri(path);
    if method == crate::target::Method::Post {
        req = req
            .method(http::Method::POST)
            .header(http::header::CONTENT_LENGTH, "0");
    }
    let req = req
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "text/html,*/*")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return failed(
                obs,
                Failure::new(FailureKind::Malformed, e.to_string()),
                start,
            );
        }
    };
    let resp = match tokio::time::timeout_at(head_deadline, sender.send_request(req)).await {
        Err(_) => {
            driver.abort();
            return silent(obs, start);
        }
        Ok(Err(e)) => {
            driver.abort();
            return failed(obs, Failure::from_error(&e), start);
        }
        Ok(Ok(r)) => r,
    };
    obs.transfer.ttfb = Some(start.elapsed());
    obs.status = Some(resp.status().as_u16());
    for name in KEPT_HEADERS {
        if let Some(v) = resp.headers().get(*name).and_then(|v| v.to_str().ok()) {
            obs.headers
                .insert((*name).to_owned(), v.chars().take(512).collect());
        }
    }
    obs.raw_headers = resp
        .headers()
        .iter()
        .take(MAX_RAW_HEADERS)
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes());
            (k.as_str().to_owned(), v.chars().take(1024).collect())
        })
        .collect();

    // The body, sampled as it arrives.
    let mut body = resp.into_body();
    let mut hasher = sha2::Sha256::new();
    let body_start = Instant::now();
    let body_deadline = body_start + opts.timeout;
    let mut last_progress = body_start;
    let mut first_byte: Option<Instant> = None;
    loop {
        let stall_deadline = last_progress + opts.stall_timeout;
        let until = if obs.transfer.bytes > 0 {
            stall_deadline.min(body_deadline)
        } else {
            body_deadline
        };
        match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => {
                if obs.transfer.bytes > 0 && Instant::now() >= stall_deadline {
                    obs.transfer.stalled_at = Some(obs.transfer.bytes);
                } else if obs.transfer.bytes > 0 {
                    obs.transfer.timed_out = true;
                } else {
                    obs.failure = Some(Failure::new(
                        FailureKind::Timeout,
                        "no body byte before the timeout",
                    ));
                    obs.transfer.stalled_at = Some(0);
                }
                break;
            }
            Ok(None) => {
                obs.transfer.complete = true;
                break;
            }
            Ok(Some(Err(e))) => {
                obs.failure = Some(Failure::from_error(&e));
                break;
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                let now = Instant::now();
                first_byte.get_or_insert(now);
                last_progress = now;
                let room = opts.max_body.saturating_sub(obs.transfer.bytes);
                let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                let chunk = &data[..take];
                hasher.update(chunk);
                if obs.head.len() < HEAD_KEEP {
                    let keep = chunk.len().min(HEAD_KEEP - obs.head.len());
                    obs.head.extend_from_slice(&chunk[..keep]);
                }
                obs.transfer.bytes += take as u64;
                if obs.transfer.bytes >= opts.max_body {
                    obs.transfer.capped = true;
                    break;
                }
            }
        }
    }
    driver.abort();
    let end = match obs.transfer.stalled_at {
        Some(_) => last_progress,
        None => Instant::now(),
    };
    obs.transfer.duration = end.saturating_duration_since(body_start);
    if first_byte.is_some() && obs.transfer.bytes > 0 {
        // Over the body's whole duration (a floor of 1 ms keeps one-read bodies finite).
        let secs = obs.transfer.duration.as_secs_f64().max(0.001);
        obs.transfer.throughput_bps = Some((obs.transfer.bytes as f64 * 8.0 / secs).round());
    }
    obs.body_sha256 = Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    );
    obs.title = extract_title(&obs.body_text());
    obs.elapsed = start.elapsed();
    obs
}

/// The connection stayed open and nothing came back within the timeout: a flow that froze
/// before the response head (also inside the first TLS record, which hides every byte).
fn silent(mut obs: HttpObservation, start: Instant) -> HttpObservation {
    obs.transfer.stalled_at = Some(0);
    failed(obs, Failure::timeout(), start)
}

fn failed(mut obs: HttpObservation, f: Failure, start: Instant) -> HttpObservation {
    obs.failure = Some(f);
    obs.elapsed = start.elapsed();
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(
            extract_title("<html><head><TITLE lang=ru>\n Доступ  ограничен </title>").as_deref(),
            Some("Доступ ограничен")
        );
        assert_eq!(extract_title("<title></title>"), None);
        assert_eq!(extract_title("no title"), None);
        let long = format!("<title>{}</title>", "я".repeat(300));
        assert!(extract_title(&long).unwrap().len() <= 200);
    }

    /// Issue 10: bodies are decoded by their declared charset before titles and fingerprints.
    #[test]
    fn bodies_decode_by_declared_charset() {
        let text = "<title>Доступ ограничен</title>";
        let (koi8, _, _) = encoding_rs::KOI8_R.encode(text);
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(text);
        assert_eq!(decode(&koi8, Some("text/html; charset=KOI8-R")), text);
        let meta = [b"<meta charset=\"windows-1251\">".as_slice(), &cp1251].concat();
        assert!(decode(&meta, Some("text/html")).ends_with(text));
        let equiv = [
            b"<META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=koi8-r\">".as_slice(),
            &koi8,
        ]
        .concat();
        assert!(decode(&equiv, None).ends_with(text));
        assert_eq!(decode(text.as_bytes(), None), text);
        assert_eq!(
            decode(text.as_bytes(), Some("text/html; charset=nonsense")),
            text
        );
    }
}

//! Where targets come from: arguments, files, stdin and suites, streamed in order with
//! duplicates removed, each malformed line reported with its place (FILE:LINE).

use std::collections::HashSet;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use crate::target::Target;

/// Where targets come from, in command-line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Arg(String),
    File(PathBuf),
    Stdin,
    /// A suite, loaded and checked when the configuration was read.
    Suite(Box<crate::suite::Suite>),
}

impl Source {
    pub fn from_input_flag(s: &str) -> Self {
        if s == "-" {
            Self::Stdin
        } else {
            Self::File(PathBuf::from(s))
        }
    }
}

/// About how many targets the sources hold, for the progress bar's total and ETA: arguments
/// and suite targets exactly, files by their lines that are neither blank nor comments (a
/// test-list CSV less its header). `None` with standard input (it cannot be read twice).
/// Reads each file once more, on the caller's thread: run it off the scan's path.
pub fn estimate(sources: &[Source]) -> Option<u64> {
    let mut n = 0u64;
    for s in sources {
        n += match s {
            Source::Arg(_) => 1,
            Source::Suite(suite) => suite.targets.len() as u64,
            Source::Stdin => return None,
            Source::File(p) => {
                let f = BufReader::new(File::open(p).ok()?);
                let mut lines = 0u64;
                for (i, line) in f.split(b'\n').enumerate() {
                    let line = line.ok()?;
                    let t = line.trim_ascii();
                    // A test list's header names its `url` column.
                    let header = i == 0
                        && t.contains(&b',')
                        && t.windows(3).any(|w| w.eq_ignore_ascii_case(b"url"));
                    if !header && !t.is_empty() && !t.starts_with(b"#") {
                        lines += 1;
                    }
                }
                lines
            }
        };
    }
    Some(n)
}

/// A malformed line: reported with its place and skipped (fatal with `--strict`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: {message}")]
pub struct InputError {
    pub origin: String,
    pub line: u64,
    pub message: String,
}

/// An opened source, ready to stream. Files are opened up front so an unreadable file stops
/// the run before any measurement starts.
pub struct OpenSource {
    origin: String,
    kind: Opened,
}

enum Opened {
    Arg(String),
    Reader(Box<dyn Read + Send>),
    Targets(Vec<Target>),
}

pub fn open(sources: &[Source]) -> io::Result<Vec<OpenSource>> {
    sources
        .iter()
        .map(|s| {
            Ok(match s {
                Source::Arg(a) => OpenSource {
                    origin: "argument".into(),
                    kind: Opened::Arg(a.clone()),
                },
                Source::Suite(suite) => OpenSource {
                    origin: suite.origin.clone(),
                    kind: Opened::Targets(suite.targets.iter().map(|t| t.target.clone()).collect()),
                },
                Source::Stdin => OpenSource {
                    origin: "<stdin>".into(),
                    kind: Opened::Reader(Box::new(io::stdin())),
                },
                Source::File(p) => OpenSource {
                    origin: p.display().to_string(),
                    kind: Opened::Reader(Box::new(File::open(p).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))
                    })?)),
                },
            })
        })
        .collect()
}

/// What the reader reports as it streams.
pub enum Item {
    Target(Target),
    Malformed(InputError),
    /// Reading failed part-way (I/O error); the rest of that source is lost.
    Failed(InputError),
}

/// Distinct targets remembered for de-duplication, per generation (two generations are kept).
pub const DEDUP_GENERATION: usize = 65_536;

/// Remembers recently seen targets in bounded memory: two generations of 64-bit hashes, the
/// older dropped when the newer fills. A duplicate is caught when fewer than
/// [`DEDUP_GENERATION`] distinct targets separate it from its first occurrence (always, for lists
/// up to that size); farther apart, it is measured again rather than letting memory grow with
/// the list.
struct Recent {
    hasher: std::collections::hash_map::RandomState,
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl Recent {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// True the first time a target is seen (within the window).
    fn insert(&mut self, t: &Target) -> bool {
        let h = self.hasher.hash_one(t.identity());
        if self.previous.contains(&h) || !self.current.insert(h) {
            return false;
        }
        if self.current.len() >= DEDUP_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        true
    }
}

/// Streams targets from opened sources in order, removing duplicates. `emit` returns false to
/// stop early (the scan was interrupted). Memory is bounded: see [`Recent`].
pub fn stream(sources: Vec<OpenSource>, emit: impl FnMut(Item) -> bool) {
    stream_with_twins(sources, false, emit);
}

/// [`stream`], and with `quic_twins` each HTTPS target followed by its `quic://` twin
/// (`--probes …,quic`), de-duplicated like any target: a twin also listed as a `quic://` target
/// is measured once.
pub fn stream_with_twins(
    sources: Vec<OpenSource>,
    quic_twins: bool,
    mut emit: impl FnMut(Item) -> bool,
) {
    let mut seen = Recent::new();
    let mut deliver = |item: Item| -> bool {
        let twin = match &item {
            Item::Target(t) if quic_twins => t.quic_twin(),
            _ => None,
        };
        let fresh = match &item {
            Item::Target(t) => seen.insert(t),
            _ => true,
        };
        if fresh && !emit(item) {
            return false;
        }
        match twin {
            Some(q) if seen.insert(&q) => emit(Item::Target(q)),
            _ => true,
        }
    };
    for src in sources {
        let keep_going = match src.kind {
            Opened::Arg(a) => deliver(match Target::parse(&a) {
                Ok(t) => Item::Target(t),
                Err(message) => Item::Malformed(InputError {
                    origin: src.origin,
                    line: 0,
                    message,
                }),
            }),
            Opened::Reader(r) => read_list(&src.origin, BufReader::new(r), &mut deliver),
            Opened::Targets(list) => list.into_iter().all(|t| deliver(Item::Target(t))),
        };
        if !keep_going {
            return;
        }
    }
}

fn looks_like_csv_header(line: &str) -> bool {
    line.split(',')
        .any(|f| f.trim().trim_matches('"').eq_ignore_ascii_case("url"))
        && line.contains(',')
}

/// Longest target line read; longer lines are skipped (a target list has no business with
/// them, and `-i /dev/zero` must not grow without bound).
pub const MAX_LINE: usize = 8 * 1024;

/// One line of a list as read: its bytes (without the newline), or how it went wrong.
enum Line {
    Text(String),
    TooLong,
    NotUtf8,
    /// A NUL byte, or a megabyte without a newline: the input is not a list.
    Binary,
}

/// A "line" this long is not a list with one bad line but a stream without newlines.
const MAX_SKIP: usize = 1024 * 1024;

/// Reads one line of at most [`MAX_LINE`] bytes into `buf` (the rest of a longer line is
/// consumed and dropped). `Ok(None)` at the end of input. Stops at once on a NUL byte, or after
/// [`MAX_SKIP`] bytes without a newline (`-i /dev/zero` never ends a line).
fn read_capped(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
    buf.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        if part.contains(&0) {
            return Ok(Some(Line::Binary));
        }
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&part[..part.len().min(room)]);
        len += part.len();
        let newline = done > part.len();
        r.consume(done);
        if newline {
            break;
        }
        if len > MAX_SKIP {
            return Ok(Some(Line::Binary));
        }
    }
    if !any {
        return Ok(None);
    }
    Ok(Some(if len > MAX_LINE {
        Line::TooLong
    } else {
        match std::str::from_utf8(buf) {
            Ok(s) => Line::Text(s.to_owned()),
            Err(_) => Line::NotUtf8,
        }
    }))
}

pub(crate) fn read_list(
    origin: &str,
    mut r: impl BufRead,
    emit: &mut impl FnMut(Item) -> bool,
) -> bool {
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    // Only the first line with content may be a CSV header; later commas are just bad targets.
    let mut first_content = true;
    let error = |line: u64, message: String| InputError {
        origin: origin.into(),
        line,
        message,
    };
    loop {
        let line = match read_capped(&mut r, &mut buf) {
            Ok(None) => return true,
            Ok(Some(l)) => l,
            Err(e) => return emit(Item::Failed(error(line_no + 1, format!("read error: {e}")))),
        };
        line_no += 1;
        let line = match line {
            Line::Text(t) => t,
            Line::Binary => {
                return emit(Item::Failed(error(
                    line_no,
                    "binary data (a NUL byte, or 1 MiB without a newline): not a list of targets"
                        .into(),
                )));
            }
            Line::TooLong => {
                let msg = format!("line longer than {MAX_LINE} bytes");
                if !emit(Item::Malformed(error(line_no, msg))) {
                    return false;
                }
                continue;
            }
            Line::NotUtf8 => {
                if !emit(Item::Malformed(error(line_no, "not UTF-8 text".into()))) {
                    return false;
                }
                continue;
            }
        };
        let text = line.trim().trim_start_matches('\u{feff}');
        // `;` comments open many OpenVPN configurations; a target never starts with one.
        if text.is_empty() || text.starts_with('#') || text.starts_with(';') {
            continue;
        }
        let first = std::mem::take(&mut first_content);
        if first && looks_like_csv_header(text) {
            let header = text.to_owned();
            return read_csv(origin, &header, line_no, r, emit);
        }
        // A wg-quick configuration (its peers are the targets) or an OpenVPN client
        // configuration (its remotes).
        if first
            && (text.eq_ignore_ascii_case("[interface]") || text.eq_ignore_ascii_case("[peer]"))
        {
            let parse = crate::probe::wireguard::wg_quick_targets;
            return read_config(origin, text, line_no, r, emit, parse);
        }
        if first && (openvpn_directive(text) || origin.to_ascii_lowercase().ends_with(".ovpn")) {
            let parse = crate::probe::openvpn::ovpn_targets;
            return read_config(origin, text, line_no, r, emit, parse);
        }
        let item = match Target::parse(text) {
            Ok(t) => Item::Target(t),
            Err(message) => Item::Malformed(error(line_no, message)),
        };
        if !emit(item) {
            return false;
        }
    }
}

/// Whether a line is an OpenVPN configuration directive (a `.conf` client configuration's first
/// line: its static key must never be read as a list of names to resolve).
fn openvpn_directive(line: &str) -> bool {
    const DIRECTIVES: [&str; 24] = [
        "client",
        "dev",
        "remote",
        "proto",
        "nobind",
        "persist-key",
        "persist-tun",
        "remote-cert-tls",
        "cipher",
        "data-ciphers",
        "auth",
        "auth-user-pass",
        "verb",
        "resolv-retry",
        "tls-client",
        "pull",
        "ca",
        "cert",
        "key",
        "tls-auth",
        "tls-crypt",
        "key-direction",
        "comp-lzo",
        "<connection>",
    ];
    let word = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    DIRECTIVES.contains(&word.as_str())
}

/// The rest of a VPN client configuration whose first content line (`head`, at line `first`)
/// says what it is: `parse` turns it into targets with their lines. Such files are small: read
/// whole (capped at 1 MiB).
fn read_config(
    origin: &str,
    head: &str,
    first: u64,
    r: impl BufRead,
    emit: &mut impl FnMut(Item) -> bool,
    parse: fn(&str, u64) -> Vec<crate::probe::ConfigTarget>,
) -> bool {
    const MAX: u64 = 1 << 20;
    let mut bytes = Vec::new();
    let failed = |message: String| {
        Item::Failed(InputError {
            origin: origin.into(),
            line: first,
            message,
        })
    };
    match r.take(MAX + 1).read_to_end(&mut bytes) {
        Err(e) => {
            return emit(failed(format!(
                "a VPN configuration that cannot be read: {e}"
            )));
        }
        Ok(n) if n as u64 > MAX => {
            return emit(failed(
                "a VPN configuration larger than 1 MiB: not read (is it one?)".into(),
            ));
        }
        Ok(_) => {}
    }
    // Comments in other encodings (cp1251 from Windows tools) must not reject the file.
    let text = format!("{head}\n{}", String::from_utf8_lossy(&bytes));
    for (line, target) in parse(&text, first) {
        let item = match target.and_then(|t| Target::parse(&t)) {
            Ok(t) => Item::Target(t),
            Err(message) => Item::Malformed(InputError {
                origin: origin.into(),
                line,
                message,
            }),
        };
        if !emit(item) {
            return false;
        }
    }
    true
}

/// Feeds the CSV parser line by line through [`read_capped`], so a CSV list is bounded like a
/// plain one: a line over [`MAX_LINE`] reaches the parser as an empty line (which it skips) and
/// its number is kept for the warning.
struct Capped<R> {
    inner: R,
    buf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    line: u64,
    too_long: Vec<u64>,
    binary: Option<u64>,
}

impl<R: BufRead> Read for Capped<R> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            self.out.clear();
            self.pos = 0;
            let Some(line) = read_capped(&mut self.inner, &mut self.buf)? else {
                return Ok(0);
            };
            self.line += 1;
            if matches!(line, Line::Binary) {
                // The rest is not text: the CSV ends here, and the reader says why.
                self.binary = Some(self.line);
                return Ok(0);
            }
            if matches!(line, Line::TooLong) {
                self.too_long.push(self.line);
            } else {
                self.out.extend_from_slice(&self.buf);
            }
            self.out.push(b'\n');
        }
        let n = dst.len().min(self.out.len() - self.pos);
        dst[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_csv(
    origin: &str,
    header: &str,
    header_line: u64,
    rest: impl BufRead,
    emit: &mut impl FnMut(Item) -> bool,
) -> bool {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(Capped {
            inner: io::Cursor::new(format!("{header}\n")).chain(rest),
            buf: Vec::new(),
            out: Vec::new(),
            pos: 0,
            line: header_line - 1,
            too_long: Vec::new(),
            binary: None,
        });
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return emit(Item::Failed(InputError {
                origin: origin.into(),
                line: header_line,
                message: format!("bad CSV header: {e}"),
            }));
        }
    };
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let Some(url_col) = col("url") else {
        return emit(Item::Failed(InputError {
            origin: origin.into(),
            line: header_line,
            message: "CSV header has no `url` column".into(),
        }));
    };
    let cat_col = col("category_code");
    let mut record = csv::StringRecord::new();
    loop {
        let line = header_line - 1 + rdr.position().line();
        let read = rdr.read_record(&mut record);
        for n in std::mem::take(&mut rdr.get_mut().too_long) {
            let msg = format!("line longer than {MAX_LINE} bytes");
            if !emit(Item::Malformed(InputError {
                origin: origin.into(),
                line: n,
                message: msg,
            })) {
                return false;
            }
        }
        match read {
            Ok(false) => {
                return match rdr.get_ref().binary {
                    Some(line) => emit(Item::Failed(InputError {
                        origin: origin.into(),
                        line,
                        message: "binary data (a NUL byte, or 1 MiB without a newline): not a list of targets".into(),
                    })),
                    None => true,
                };
            }
            Ok(true) => {}
            Err(e) => {
                let item = Item::Malformed(InputError {
                    origin: origin.into(),
                    line,
                    message: format!("bad CSV row: {e}"),
                });
                if !emit(item) {
                    return false;
                }
                continue;
            }
        }
        let line = header_line - 1 + record.position().map_or(line, |p| p.line());
        let url = record.get(url_col).unwrap_or("").trim();
        if url.is_empty() {
            continue;
        }
        let item = match Target::parse(url) {
            Ok(mut t) => {
                t.category = cat_col
                    .and_then(|c| record.get(c))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned);
                Item::Target(t)
            }
            Err(message) => Item::Malformed(InputError {
                origin: origin.into(),
                line,
                message,
            }),
        };
        if !emit(item) {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_memory_is_bounded_by_two_generations() {
        let mut seen = Recent::new();
        let t = |i: usize| Target::parse(&format!("n{i}.example")).unwrap();
        assert!(seen.insert(&t(0)));
        assert!(!seen.insert(&t(0)));
        for i in 1..DEDUP_GENERATION * 2 {
            assert!(seen.insert(&t(i)));
        }
        assert!(seen.current.len() + seen.previous.len() <= 2 * DEDUP_GENERATION);
        // Recent duplicates are still caught; the oldest generation has been forgotten.
        assert!(!seen.insert(&t(DEDUP_GENERATION * 2 - 1)));
        assert!(seen.insert(&t(0)));
    }

    fn read_endless(r: impl Read) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        read_list("list", BufReader::new(r), &mut |item| {
            out.push(match item {
                Item::Target(t) => Ok(t.input),
                Item::Malformed(e) | Item::Failed(e) => Err(e.to_string()),
            });
            true
        });
        out
    }

    fn read(bytes: &[u8]) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        read_list("list", io::Cursor::new(bytes.to_vec()), &mut |item| {
            out.push(match item {
                Item::Target(t) => Ok(t.input),
                Item::Malformed(e) => Err(format!("malformed {e}")),
                Item::Failed(e) => Err(format!("failed {e}")),
            });
            true
        });
        out
    }

    /// Issue 11, items 3 and 9: a bad line is skipped with its place, never fatal, and a line
    /// without end is read in bounded memory.
    #[test]
    fn issue_11_bad_bytes_and_endless_lines_are_skipped_not_fatal() {
        let mut input = b"a.example\n\xff\xfe.example\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 4));
        input.extend(b"\nb.example\n");
        let got = read(&input);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], Ok("a.example".into()));
        assert_eq!(got[1], Err("malformed list:2: not UTF-8 text".into()));
        let long = got[2].as_ref().unwrap_err();
        assert!(
            long.starts_with("malformed list:3: line longer than 8192"),
            "{long}"
        );
        assert!(long.len() < 100, "the line is not echoed: {long}");
        assert_eq!(got[3], Ok("b.example".into()));
        // A CSV list gets the same bound.
        let mut csv = b"url,category_code\nhttps://a.example/,NEWS\n".to_vec();
        csv.extend(std::iter::repeat_n(b'y', MAX_LINE * 2));
        csv.extend(b"\nhttps://b.example/,NEWS\n");
        let got = read(&csv);
        assert_eq!(got.len(), 3, "{got:?}");
        let mut bin = csv.clone();
        bin.extend(b"\0\0\n");
        let got = read(&bin);
        assert!(
            got[3]
                .as_ref()
                .unwrap_err()
                .starts_with("failed list:5: binary"),
            "{got:?}"
        );
        assert!(
            got[1].as_ref().unwrap_err().contains("list:3: line longer"),
            "{got:?}"
        );
        assert_eq!(got[2], Ok("https://b.example/".into()));
    }

    #[test]
    fn issue_11_binary_input_is_a_clear_error() {
        // An endless source (`-i /dev/zero`) ends at once.
        let got = read_endless(io::repeat(0));
        assert_eq!(got.len(), 1);
        let got = read_endless(io::repeat(b'a'));
        assert!(
            got[0]
                .as_ref()
                .unwrap_err()
                .contains("1 MiB without a newline"),
            "{got:?}"
        );
        let got = read(&[0u8; 100_000]);
        assert_eq!(
            got,
            vec![Err(
                "failed list:1: binary data (a NUL byte, or 1 MiB without a newline): not a list of targets".into()
            )]
        );
    }
}

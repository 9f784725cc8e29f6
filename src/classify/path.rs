//! The connection step of a fetch: TCP, TLS (with the decoy SNI), HTTP, redirects, block
//! pages, the transfer's rate and freezes — against the control path or in-run references.

use super::{
    BaselineUsed, Control, Decision, Evidence, FREEZE_WINDOW, Needs, Notes, PathEvidence, Rules,
    judge,
};
use crate::blockpage::Fingerprints;
use crate::probe::failure::FailureKind;
use crate::probe::http::HttpObservation;
use crate::probe::path::{Hop, PathObservation};
use crate::probe::tcp::AddrSource;
use crate::verdict::{Layer, Reason, Verdict};

/// The fingerprint one hop's response matches: its page, headers, URL or redirect target, or
/// the address it came from (a known block-page server).
pub fn blockpage_of(hop: &Hop) -> Option<&'static crate::blockpage::Fingerprint> {
    let http = hop.http.as_ref()?;
    let fp = Fingerprints::builtin();
    fp.match_http(http).or_else(|| {
        hop.tcp
            .iter()
            .find(|t| t.ok)
            .and_then(|t| fp.match_address(t.addr.ip()))
    })
}

/// The fingerprint a block-page verdict rests on: a vantage answer that is a block-page
/// address, else the first block-page hop of the direct fetch.
pub(super) fn blockpage_in(ev: &Evidence) -> Option<&'static crate::blockpage::Fingerprint> {
    let fp = Fingerprints::builtin();
    ev.dns
        .iter()
        .flat_map(|d| d.addresses())
        .find_map(|ip| fp.match_address(ip))
        .or_else(|| ev.direct().and_then(blockpage_hop).map(|(_, f)| f))
}

/// The first hop of a fetch that is a block page, with its fingerprint.
pub fn blockpage_hop(
    p: &PathObservation,
) -> Option<(&Hop, &'static crate::blockpage::Fingerprint)> {
    p.hops.iter().find_map(|h| blockpage_of(h).map(|f| (h, f)))
}

/// A page the control path also gets is the site's own page, never a block page (the
/// regulator's home page is titled "Роскомнадзор" on both paths): same status and title, and
/// the same body (hash) or a similar length.
pub(super) fn same_page_as_control(hop: Option<&Hop>, control: Option<&PathObservation>) -> bool {
    let Some(h) = hop.and_then(|h| h.http.as_ref()) else {
        return false;
    };
    control
        .into_iter()
        .flat_map(|c| c.hops.iter())
        .filter_map(|c| c.http.as_ref())
        .any(|c| {
            let same_body = h.body_sha256.is_some() && h.body_sha256 == c.body_sha256;
            let (a, b) = (h.transfer.bytes as f64, c.transfer.bytes as f64);
            let similar = a.max(b) > 0.0 && a.min(b) / a.max(b) >= 0.9;
            h.status == c.status && h.title == c.title && (same_body || similar)
        })
}

/// Where a fetch ended.
enum Outcome<'a> {
    /// A redirect's host did not resolve through the vantage resolver.
    NoAddress(&'a Hop),
    Tcp(FailureKind),
    Tls {
        kind: FailureKind,
        decoy_ok: Option<bool>,
    },
    /// The request or the response head failed (reset, EOF, timeout).
    Http(FailureKind),
    /// The body froze after this many bytes.
    Stall(u64),
    Response(&'a HttpObservation),
    /// Connected (and handshaken, on TLS ports) with nothing more to do: an endpoint.
    Connected,
    RedirectLoop,
}

fn outcome(p: &PathObservation) -> Outcome<'_> {
    let Some(hop) = p.hops.last() else {
        return Outcome::Tcp(FailureKind::Other);
    };
    if p.redirects_exhausted {
        return Outcome::RedirectLoop;
    }
    if hop.tcp.is_empty() {
        return Outcome::NoAddress(hop);
    }
    // Only addresses the route was meant to use count (control addresses are extra evidence).
    let ours = |t: &&crate::probe::tcp::TcpAttempt| {
        t.source == AddrSource::Vantage || hop.tcp.iter().all(|x| x.source == AddrSource::Control)
    };
    if !hop.tcp.iter().filter(ours).any(|t| t.ok) {
        // A censor's signature (timeout, refusal, reset) outranks a local "no route": a v4
        // address blackholed next to a v6 one this host cannot reach is still a block.
        let rank = |k: FailureKind| match k {
            FailureKind::Timeout | FailureKind::Refused | FailureKind::Reset => 0,
            FailureKind::Eof => 1,
            _ => 2,
        };
        let kind = hop
            .tcp
            .iter()
            .filter(ours)
            .filter_map(|t| t.failure.as_ref().map(|f| f.kind))
            .min_by_key(|k| rank(*k))
            .unwrap_or(FailureKind::Other);
        return Outcome::Tcp(kind);
    }
    if let Some(tls) = &hop.tls
        && !tls.ok
    {
        // Reset before a single byte came back, for the target's SNI and the decoy alike: the
        // connection itself is being killed, whatever it carries — a TCP-level block.
        let kind = tls.failure.as_ref().map(|f| f.kind);
        let decoy_kind = hop
            .decoy_tls
            .as_ref()
            .and_then(|d| d.failure.as_ref().map(|f| f.kind));
        let resets = |k: Option<FailureKind>| matches!(k, Some(FailureKind::Reset));
        if hop.wire_bytes_in == 0 && resets(kind) && resets(decoy_kind) {
            return Outcome::Tcp(FailureKind::Reset);
        }
        return Outcome::Tls {
            kind: tls.failure.as_ref().map_or(FailureKind::Other, |f| f.kind),
            decoy_ok: hop.decoy_tls.as_ref().map(|d| d.ok),
        };
    }
    match &hop.http {
        None => Outcome::Connected,
        Some(h) => match (&h.failure, h.transfer.stalled_at) {
            (_, Some(at)) => Outcome::Stall(at),
            // A flow that goes silent is a stall, also before the response head arrives
            // (a freeze inside the first TLS record hides every plaintext byte).
            (Some(f), _) if f.kind == FailureKind::Timeout => Outcome::Stall(h.transfer.bytes),
            (Some(f), _) if h.status.is_none() => Outcome::Http(f.kind),
            (Some(f), _) => Outcome::Http(f.kind),
            (None, None) => Outcome::Response(h),
        },
    }
}

/// A certificate somewhere on the path that did not verify for its name.
fn bad_cert(p: &PathObservation) -> Option<&Hop> {
    p.hops
        .iter()
        .find(|h| h.tls.as_ref().is_some_and(|t| t.verified == Some(false)))
}

fn uses_plain_http(p: &PathObservation) -> bool {
    p.hops
        .last()
        .is_some_and(|h| h.tls.is_none() && h.http.is_some())
}

/// A connect through the proxy the proxy itself answered with a failure (SOCKS5 reply
/// "connection refused", "host unreachable", "TTL expired"): the outside view of the origin.
fn proxy_reported(hop: &Hop) -> bool {
    hop.tcp.iter().any(|t| {
        t.failure
            .as_ref()
            .is_some_and(|f| f.message.contains("SOCKS5 proxy:"))
    })
}

fn control_state(c: Option<&PathObservation>) -> Control<'_> {
    let Some(c) = c else { return Control::Absent };
    let last = c.hops.last();
    match outcome(c) {
        Outcome::Response(h) => Control::Ok(Some(h)),
        Outcome::Connected => Control::Ok(None),
        Outcome::RedirectLoop => Control::Failed("keeps redirecting".into()),
        // Only the proxy's own report speaks for the origin: a proxy we cannot reach (refused,
        // unreachable) says nothing about the target.
        Outcome::Tcp(k) if last.is_some_and(proxy_reported) => {
            Control::Failed(format!("cannot connect (the proxy reports {})", k.as_str()))
        }
        Outcome::Tcp(k) => Control::Unavailable(format!("cannot connect ({})", k.as_str())),
        Outcome::Tls {
            kind: kind @ FailureKind::Tls,
            ..
        } => Control::Failed(format!("TLS fails ({})", kind.as_str())),
        // A tunnel the proxy accepted and then closed before a single byte: how `ssh -D` (which
        // answers the SOCKS request before it connects) reports an origin it cannot reach.
        Outcome::Tls {
            kind: FailureKind::Eof,
            ..
        }
        | Outcome::Http(FailureKind::Eof)
            if last.is_some_and(|h| h.wire_bytes_in == 0) =>
        {
            Control::Failed(
                "is closed by the proxy before any byte (it cannot reach the origin)".into(),
            )
        }
        Outcome::Tls { kind, .. } => Control::Unavailable(format!("TLS fails ({})", kind.as_str())),
        Outcome::Http(k @ (FailureKind::Http | FailureKind::Malformed)) => {
            Control::Failed(format!("HTTP fails ({})", k.as_str()))
        }
        Outcome::Http(k) => Control::Unavailable(format!("HTTP fails ({})", k.as_str())),
        Outcome::Stall(at) => Control::Unavailable(format!("stalls at byte {at}")),
        Outcome::NoAddress(_) => Control::Failed("a redirect's host does not resolve".into()),
    }
}

pub(super) fn tcp_reason(k: FailureKind) -> Option<Reason> {
    match k {
        FailureKind::Timeout => Some(Reason::TcpTimeout),
        FailureKind::Refused => Some(Reason::TcpRefused),
        FailureKind::Reset | FailureKind::Eof => Some(Reason::TcpReset),
        _ => None,
    }
}

fn tls_reason(k: FailureKind) -> Option<Reason> {
    match k {
        FailureKind::Reset => Some(Reason::TlsReset),
        FailureKind::Eof => Some(Reason::TlsEof),
        FailureKind::Timeout => Some(Reason::TlsTimeout),
        _ => None,
    }
}

/// A rate says something only about a body big enough, or one cut by the timeout.
fn measurable(h: &HttpObservation) -> bool {
    h.transfer.bytes >= RATE_MIN_BYTES || h.transfer.timed_out
}

fn rate(h: &HttpObservation) -> Option<f64> {
    h.transfer.throughput_bps
}

/// The registrable domain of a URL's host (Public Suffix List), or the host itself.
fn site_of(url: &str) -> Option<String> {
    let host = url::Url::parse(url).ok()?.host_str()?.to_ascii_lowercase();
    Some(psl::domain_str(&host).map(str::to_owned).unwrap_or(host))
}

/// A plain-HTTP fetch redirected to another site (registrable domain): without a control to
/// compare, an ISP's HTTPS stub looks like any verified page, so it is `inconclusive`; with a
/// control path that does not go there, `http.diff`.
fn offsite_redirect(
    direct: &PathObservation,
    control: Option<&PathObservation>,
) -> Option<Decision> {
    let first = direct.hops.first()?;
    if first.tls.is_some() || direct.hops.len() < 2 {
        return None;
    }
    let home = site_of(&first.url)?;
    let away = direct
        .hops
        .iter()
        .skip(1)
        .find(|h| site_of(&h.url).is_some_and(|s| s != home))?;
    let there = site_of(&away.url)?;
    let control_goes_there = control.is_some_and(|c| {
        c.hops
            .iter()
            .any(|h| site_of(&h.url).as_deref() == Some(there.as_str()))
    });
    let control_answered = control.is_some_and(|c| {
        c.hops
            .last()
            .and_then(|h| h.http.as_ref())
            .is_some_and(|h| h.status.is_some())
    });
    if control_goes_there {
        return None;
    }
    Some(if control_answered {
        (
            Verdict::Blocked,
            Some(Reason::HttpDiff),
            format!(
                "{}: plain HTTP redirected off-site to {}, which the control path does not",
                first.url, away.url
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            None,
            format!(
                "{}: plain HTTP redirected off-site to {} and no control path to compare (a known block page would have been named)",
                first.url, away.url
            ),
        )
    })
}

/// A verified (or plain-HTTP) response's rate, with no working control path, against the
/// run's own references: `None` when the body is too small to say or the rate is above the
/// floor (nothing to decide); otherwise throttled, comparable (reachable), or inconclusive for
/// want of a reference.
fn rate_vs_baseline(
    ev: &Evidence,
    h: &HttpObservation,
    rules: &Rules,
    layer: Layer,
    what: &str,
    notes: &mut Notes,
) -> Option<Decision> {
    let v = rate(h).filter(|v| measurable(h) && *v < rules.throttle_floor_bps)?;
    let url = &h.url;
    let best = ev
        .baseline
        .iter()
        .filter_map(|r| r.bps.map(|b| (r, b)))
        .max_by(|x, y| x.1.total_cmp(&y.1));
    let Some((r, b)) = best else {
        notes.needs = Some(Needs::Reference);
        return Some((
            Verdict::Inconclusive,
            None,
            format!(
                "{what}, but only {:.0} kbit/s, and neither a control path nor an in-run reference to compare (--reference URL of a large domestic object would decide)",
                v / 1000.0
            ),
        ));
    };
    notes.baseline = Some(BaselineUsed {
        source: r.source.clone(),
        bps: Some(b),
    });
    Some(if v < rules.throttle_ratio * b {
        (
            Verdict::Throttled,
            Some(Reason::TransferSlow(layer)),
            format!(
                "{url}: {:.0} kbit/s here against {:.0} kbit/s for {} from here in this run",
                v / 1000.0,
                b / 1000.0,
                r.source
            ),
        )
    } else {
        (
            Verdict::Reachable,
            None,
            format!(
                "{what}; {:.0} kbit/s, comparable to {:.0} kbit/s for {} from here",
                v / 1000.0,
                b / 1000.0,
                r.source
            ),
        )
    })
}

/// Bodies this small say nothing about throughput.
pub const RATE_MIN_BYTES: u64 = 64 * 1024;

pub(super) fn decide(
    ev: &Evidence,
    p: &PathEvidence,
    rules: &Rules,
    layer: Layer,
    notes: &mut Notes,
) -> Decision {
    use Verdict::*;
    let direct = &p.direct;
    let control = p.control_path.as_ref();
    let c = control_state(control);
    // A block page anywhere on the path (a redirect to a stub host counts even when the stub
    // itself cannot be fetched), unless the control path gets the same page.
    if let Some((hop, fp)) = blockpage_hop(direct)
        && !same_page_as_control(Some(hop), control)
        && bad_cert(direct).is_none()
    {
        return (
            Blocked,
            Some(Reason::HttpBlockpage),
            format!(
                "{}: {} is a block page ({})",
                direct.hops.first().map_or("", |h| h.url.as_str()),
                if std::ptr::eq(hop, &direct.hops[0]) {
                    "the response".to_owned()
                } else {
                    format!("the hop {}", hop.url)
                },
                fp.id
            ),
        );
    }
    if let Some(hop) = bad_cert(direct) {
        let err = hop
            .tls
            .as_ref()
            .and_then(|t| t.cert_error.clone())
            .unwrap_or_default();
        if let Some(name) = blockpage_of(hop).map(|f| &f.id) {
            return (
                Blocked,
                Some(Reason::TlsCertInvalid),
                format!(
                    "{}: certificate does not verify ({err}) and the page is a block page ({name})",
                    hop.url
                ),
            );
        }
        let control_cert = control.and_then(bad_cert);
        return match (&c, control_cert) {
            (Control::Ok(..), None) => (
                Blocked,
                Some(Reason::TlsCertInvalid),
                format!(
                    "{}: certificate does not verify ({err}); through the control path it does",
                    hop.url
                ),
            ),
            // The origin's own certificate, seen from outside too.
            (_, Some(_)) => (
                Down,
                None,
                format!(
                    "{}: the origin's certificate does not verify on either path ({err})",
                    hop.url
                ),
            ),
            _ => {
                notes.needs = Some(Needs::ControlPath);
                (
                    Inconclusive,
                    None,
                    format!(
                        "{}: certificate does not verify ({err}); no working control path to compare",
                        hop.url
                    ),
                )
            }
        };
    }
    let url = direct.hops.last().map_or("", |h| h.url.as_str());
    match outcome(direct) {
        Outcome::NoAddress(hop) => {
            let (reason, what) = hop
                .dns
                .as_ref()
                .map_or((None, "no answer".to_owned()), super::dns::no_address);
            judge(
                reason,
                format!("redirect to {url}: the vantage resolver gave {what}"),
                &c,
                notes,
            )
        }
        Outcome::Tcp(k) => judge(
            tcp_reason(k),
            format!("{url}: TCP fails on every vantage address ({})", k.as_str()),
            &c,
            notes,
        ),
        Outcome::Tls { kind, decoy_ok } => {
            let what = format!(
                "{url}: TLS handshake with the target's SNI fails ({})",
                kind.as_str()
            );
            if decoy_ok == Some(true) {
                let reason = tls_reason(kind).unwrap_or(Reason::TlsReset);
                return (
                    Blocked,
                    Some(reason),
                    format!(
                        "{what}, while a decoy SNI on the same address succeeds: the filter is keyed on the name"
                    ),
                );
            }
            let what = if decoy_ok == Some(false) {
                format!("{what}, and so does a decoy SNI (an IP-level problem)")
            } else {
                what
            };
            judge(tls_reason(kind), what, &c, notes)
        }
        Outcome::Http(k) => {
            let what = format!("{url}: the HTTP exchange fails ({})", k.as_str());
            // Reset before any byte: a GET with the decoy Host on the same address tells a
            // filter keyed on the name from one that resets every connection to the address.
            let decoy = direct.hops.last().and_then(|h| h.decoy_http.as_ref());
            match decoy {
                Some(d) if d.status.is_some() => (
                    Blocked,
                    Some(Reason::HttpReset),
                    format!(
                        "{what}, while the same request with a decoy Host on the same address gets an answer: the filter is keyed on the name"
                    ),
                ),
                Some(d)
                    if d.failure.as_ref().is_some_and(|f| {
                        matches!(f.kind, FailureKind::Reset | FailureKind::Eof)
                    }) =>
                {
                    judge(
                        Some(Reason::TcpReset),
                        format!(
                            "{what} before any byte, for the decoy Host too (an address-level reset)"
                        ),
                        &c,
                        notes,
                    )
                }
                _ => judge(Some(Reason::HttpReset), what, &c, notes),
            }
        }
        Outcome::Stall(at) => {
            let wire = direct.hops.last().map_or(0, |h| h.wire_bytes_in);
            let what = format!(
                "{url}: the transfer froze after {at} body bytes ({wire} bytes on the wire)"
            );
            if matches!(c, Control::Ok(..) | Control::Failed(_)) {
                return judge(Some(Reason::TransferStall(layer)), what, &c, notes);
            }
            // No working control path: a freeze inside the TSPU window, while a reference in
            // this run carried well past it from here, is the freeze.
            let past = ev
                .baseline
                .iter()
                .filter(|r| r.carried > *FREEZE_WINDOW.end())
                .max_by_key(|r| r.carried);
            match past {
                Some(r) if FREEZE_WINDOW.contains(&wire) => {
                    notes.baseline = Some(BaselineUsed {
                        source: r.source.clone(),
                        bps: r.bps,
                    });
                    (
                        Blocked,
                        Some(Reason::TransferStall(layer)),
                        format!(
                            "{what}, inside the freeze window ({}-{} KiB), while {} carried {} bytes from here in this run",
                            FREEZE_WINDOW.start() / 1024,
                            FREEZE_WINDOW.end() / 1024,
                            r.source,
                            r.carried
                        ),
                    )
                }
                _ if FREEZE_WINDOW.contains(&wire) => {
                    let d = judge(Some(Reason::TransferStall(layer)), what, &c, notes);
                    notes.needs = Some(Needs::Reference);
                    (
                        d.0,
                        d.1,
                        format!(
                            "{}; no transfer in this run carried past {} KiB from here (--reference URL of a large domestic object would decide)",
                            d.2,
                            FREEZE_WINDOW.end() / 1024
                        ),
                    )
                }
                _ => judge(Some(Reason::TransferStall(layer)), what, &c, notes),
            }
        }
        Outcome::RedirectLoop => match c {
            Control::Failed(_) => (
                Down,
                None,
                format!("{url}: redirects never end, on both paths"),
            ),
            Control::Ok(..) => (
                Blocked,
                Some(Reason::HttpDiff),
                format!("{url}: redirects never end here, but do through the control path"),
            ),
            Control::Unavailable(_) | Control::Absent => {
                notes.needs = Some(Needs::ControlPath);
                (
                    Inconclusive,
                    None,
                    format!("{url}: redirects never end; no working control path to compare"),
                )
            }
        },
        Outcome::Connected => (Reachable, None, format!("{url}: connected")),
        Outcome::Response(h) => {
            if let Some(d) = offsite_redirect(direct, control) {
                if d.0 == Inconclusive {
                    notes.needs = Some(Needs::ControlPath);
                }
                return d;
            }
            let status = h.status.unwrap_or(0);
            match &c {
                Control::Ok(Some(ch)) => {
                    // Lengths compare only when both bodies ended the same way (both complete or
                    // both capped); a slow transfer cut by the timeout is judged on its rate.
                    let (a, b) = (h.transfer.bytes as f64, ch.transfer.bytes as f64);
                    let comparable = (h.transfer.complete && ch.transfer.complete)
                        || (h.transfer.capped && ch.transfer.capped);
                    let ratio = if !comparable || a.max(b) == 0.0 {
                        1.0
                    } else {
                        a.min(b) / a.max(b)
                    };
                    let same_title = match (&h.title, &ch.title) {
                        (Some(x), Some(y)) => x == y,
                        _ => true,
                    };
                    if h.status != ch.status || !same_title || ratio < 0.7 {
                        return (
                            Blocked,
                            Some(Reason::HttpDiff),
                            format!(
                                "{url}: the answer differs from the control's (status {status} vs {}, title {:?} vs {:?}, body {} vs {} bytes)",
                                ch.status.unwrap_or(0),
                                h.title,
                                ch.title,
                                h.transfer.bytes,
                                ch.transfer.bytes
                            ),
                        );
                    }
                    if let (Some(v), Some(cr)) = (rate(h), rate(ch))
                        && measurable(h)
                    {
                        notes.baseline = Some(BaselineUsed {
                            source: "control_path".into(),
                            bps: Some(cr),
                        });
                        if v < rules.throttle_ratio * cr && v < rules.throttle_floor_bps {
                            return (
                                Throttled,
                                Some(Reason::TransferSlow(layer)),
                                format!(
                                    "{url}: {:.0} kbit/s here against {:.0} kbit/s through the control path",
                                    v / 1000.0,
                                    cr / 1000.0
                                ),
                            );
                        }
                    }
                    (
                        Reachable,
                        None,
                        format!(
                            "{url}: status {status}, the same answer as through the control path"
                        ),
                    )
                }
                _ if !uses_plain_http(direct) => {
                    let verified = format!("{url}: status {status} over a verified TLS connection");
                    rate_vs_baseline(ev, h, rules, layer, &verified, notes)
                        .unwrap_or((Reachable, None, verified))
                }
                // Plain HTTP is unauthenticated, but a slow transfer is slow whatever it
                // carries: the rate against an in-run reference still decides throttling.
                _ => {
                    let mut rated = Notes::default();
                    if let Some(d @ (Throttled, ..)) =
                        rate_vs_baseline(ev, h, rules, layer, url, &mut rated)
                    {
                        *notes = rated;
                        return d;
                    }
                    notes.needs = Some(Needs::ControlPath);
                    let why = match &c {
                        Control::Failed(w) | Control::Unavailable(w) => {
                            format!("; the control path {w}")
                        }
                        _ => ", with no control path to compare".to_owned(),
                    };
                    (
                        Inconclusive,
                        None,
                        format!("{url}: plain-HTTP status {status}, unauthenticated{why}"),
                    )
                }
            }
        }
    }
}

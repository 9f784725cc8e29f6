//! The one place that turns library errors into the failure kinds reports carry.
//!
//! The useful fact about a failure (a reset, a refused connect, an EOF, a certificate problem)
//! often sits several `source()` levels below the error a library returns, so this module walks
//! the chain once; every probe step calls it instead of matching on error text.

use std::error::Error as StdError;
use std::io;

/// Why a step failed, as a closed set of stable labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// No answer within the step's timeout.
    Timeout,
    /// The peer (or something on the path) refused the connection.
    Refused,
    /// Connection reset by peer (an RST).
    Reset,
    /// The peer closed the connection before the exchange was complete.
    Eof,
    /// No route, network unreachable and similar local failures.
    Unreachable,
    /// TLS failure other than a certificate problem (alert, protocol error).
    Tls,
    /// The certificate did not verify (unknown issuer, name mismatch, expired...).
    Certificate,
    /// An HTTP-level failure (bad status for DoH, protocol error).
    Http,
    /// The peer answered with something that does not parse.
    Malformed,
    /// Anything else; the message says what.
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Reset => "reset",
            Self::Eof => "eof",
            Self::Unreachable => "unreachable",
            Self::Tls => "tls",
            Self::Certificate => "certificate",
            Self::Http => "http",
            Self::Malformed => "malformed",
            Self::Other => "other",
        }
    }

    pub fn from_io(e: &io::Error) -> Self {
        use io::ErrorKind as K;
        match e.kind() {
            K::TimedOut | K::WouldBlock => Self::Timeout,
            K::ConnectionRefused => Self::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Self::Reset,
            K::UnexpectedEof => Self::Eof,
            K::NetworkUnreachable | K::HostUnreachable | K::AddrNotAvailable => Self::Unreachable,
            K::InvalidData => Self::Malformed,
            _ => Self::Other,
        }
    }

    fn from_rustls(e: &rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidCertificate(_) => Self::Certificate,
            _ => Self::Tls,
        }
    }

    /// Walks an error's source chain and returns the most specific kind found.
    pub fn of(err: &(dyn StdError + 'static)) -> Self {
        let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
        let mut found = Self::Other;
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                // rustls errors travel inside io::Error(InvalidData); look inside first.
                if let Some(inner) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return Self::from_rustls(inner);
                }
                let k = Self::from_io(io);
                if k != Self::Other {
                    return k;
                }
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Self::from_rustls(tls);
            }
            if e.downcast_ref::<tokio::time::error::Elapsed>().is_some() {
                return Self::Timeout;
            }
            if let Some(h) = e.downcast_ref::<hyper::Error>() {
                if h.is_timeout() {
                    return Self::Timeout;
                }
                if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                    found = Self::Eof;
                } else if found == Self::Other {
                    found = Self::Http;
                }
            }
            cur = e.source();
        }
        found
    }
}

/// A failure recorded as data: its kind and the library's own words.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn timeout() -> Self {
        Self::new(FailureKind::Timeout, "no response before the timeout")
    }

    pub fn from_error(err: &(dyn StdError + 'static)) -> Self {
        let mut message = err.to_string();
        let mut src = err.source();
        while let Some(s) = src {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            src = s.source();
        }
        Self::new(FailureKind::of(err), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn io_kinds() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, FailureKind::Refused),
            (io::ErrorKind::ConnectionReset, FailureKind::Reset),
            (io::ErrorKind::UnexpectedEof, FailureKind::Eof),
            (io::ErrorKind::TimedOut, FailureKind::Timeout),
            (io::ErrorKind::NetworkUnreachable, FailureKind::Unreachable),
            (io::ErrorKind::PermissionDenied, FailureKind::Other),
        ];
        for (io_kind, want) in cases {
            assert_eq!(
                FailureKind::of(&io::Error::from(io_kind)),
                want,
                "{io_kind:?}"
            );
        }
    }

    #[test]
    fn walks_the_source_chain() {
        let e = Outer(io::Error::from(io::ErrorKind::ConnectionReset));
        let f = Failure::from_error(&e);
        assert_eq!(f.kind, FailureKind::Reset);
        assert!(f.message.starts_with("outer: "), "{}", f.message);
    }

    #[test]
    fn rustls_inside_io() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, cert);
        assert_eq!(FailureKind::of(&Outer(io)), FailureKind::Certificate);
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(FailureKind::of(&alert), FailureKind::Tls);
    }

    #[test]
    fn elapsed_is_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let e = rt
            .block_on(async {
                tokio::time::timeout(
                    std::time::Duration::from_millis(1),
                    std::future::pending::<()>(),
                )
                .await
            })
            .unwrap_err();
        assert_eq!(FailureKind::of(&e), FailureKind::Timeout);
    }
}

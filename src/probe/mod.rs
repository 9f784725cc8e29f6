//! Probe steps. Each returns its observation; a failure is a value in it, never an `Err`.

pub mod dns;
pub mod echo;
pub mod failure;
pub mod http;
pub mod media;
pub mod obfs4;
pub mod openvpn;
pub mod path;
pub mod quic;
pub mod shadowsocks;
pub mod socks;
pub mod stun;
pub mod tcp;
pub mod tls;
pub mod tor;
pub mod wireguard;

/// A duration in the reports: milliseconds with microsecond precision.
pub(crate) fn ser_ms<S: serde::Serializer>(
    d: &std::time::Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0)
}

/// Where a VPN or circumvention protocol's handshake died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The TCP connection itself failed.
    Connect,
    /// The connection (or the first datagram) went out; the protocol's answer did not come.
    Handshake,
    /// The server answered as the protocol says.
    Answered,
}

/// A target read from a VPN client configuration (wg-quick, .ovpn): its line, and its text or
/// what is wrong there.
pub type ConfigTarget = (u64, Result<String, String>);

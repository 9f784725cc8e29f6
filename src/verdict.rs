//! The vocabulary of findings: five verdicts and a closed set of reasons whose prefix is the
//! layer, so a reason and its layer can never disagree.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Reachable,
    Blocked,
    Throttled,
    Down,
    Inconclusive,
}

impl Verdict {
    pub const ALL: [Self; 5] = [
        Self::Reachable,
        Self::Blocked,
        Self::Throttled,
        Self::Down,
        Self::Inconclusive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reachable => "reachable",
            Self::Blocked => "blocked",
            Self::Throttled => "throttled",
            Self::Down => "down",
            Self::Inconclusive => "inconclusive",
        }
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s.trim())
            .ok_or_else(|| {
                format!("unknown verdict `{s}` (expected reachable, blocked, throttled, down or inconclusive)")
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Dns,
    Tcp,
    Tls,
    Http,
    /// Datagram probes (STUN).
    Udp,
    /// QUIC and HTTP/3.
    Quic,
    /// VPN protocols' handshakes (OpenVPN).
    Vpn,
    /// A call's media stream (`media://`).
    Media,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Http => "http",
            Self::Udp => "udp",
            Self::Quic => "quic",
            Self::Vpn => "vpn",
            Self::Media => "media",
        }
    }
}

/// Why a target is blocked (or throttled). Closed: adding one is a schema change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    DnsNxdomain,
    DnsNodata,
    DnsServfail,
    DnsRefused,
    DnsTimeout,
    /// The resolver's connection (TCP, DoT, DoH) was reset or closed mid-query for this name
    /// while it answers canaries: DPI tearing down DNS-over-TCP by query name.
    DnsReset,
    DnsBogon,
    DnsInjected,
    DnsInconsistent,
    DnsBlockpage,
    TcpTimeout,
    TcpRefused,
    TcpReset,
    TlsReset,
    TlsEof,
    TlsTimeout,
    TlsCertInvalid,
    HttpBlockpage,
    HttpReset,
    HttpDiff,
    /// The transfer froze after some bytes; the layer is the connection's (tls or http).
    TransferStall(Layer),
    /// The transfer was far slower than the control's; the layer is the connection's.
    TransferSlow(Layer),
    /// No STUN Binding Response arrived from any address, while the control path gets one.
    UdpTimeout,
    /// Something answered the STUN request, but not with a valid Binding Response.
    UdpInvalid,
    /// Datagrams shaped like a protocol's first packet (WireGuard, OpenVPN, QUIC, STUN) die
    /// while size-matched random datagrams to the same echo server come back.
    UdpSignature,
    /// QUIC Initials with the target's SNI go unanswered while the same address answers a
    /// decoy SNI (or the control path reaches it): QUIC filtered by name.
    QuicTimeout,
    /// No QUIC v1 at all to the address (Initials with any SNI dropped) while the control path
    /// reaches it, or while the version-negotiation ping shows the UDP path is open.
    QuicBlockedAddress,
    /// The QUIC handshake's certificate does not verify here, and does through the control.
    QuicCertInvalid,
    /// The QUIC connection was reset (stateless reset) here, not through the control.
    QuicReset,
    /// A VPN handshake's first packet (OpenVPN's hard reset) gets no answer here while the
    /// control path gets one.
    VpnTimeout,
    /// The connection is torn down after a VPN handshake's first packet (OpenVPN over TCP).
    VpnReset,
    /// A VPN flow is cut after its handshake completed (WireGuard: a second handshake on the
    /// flow goes unanswered while a fresh flow's is answered).
    VpnCut,
    /// A call-shaped UDP stream (STUN, then RTP) gets nothing back from the start while a
    /// random stream of the same sizes and rate to the same echo server does.
    MediaBlocked,
    /// A call-shaped stream dies after some seconds while its random control keeps flowing.
    MediaCut,
    /// A call-shaped stream loses far more than its random control: calls throttled by loss.
    MediaLoss,
    /// A call-shaped stream is delivered far slower than its random control.
    MediaRate,
}

impl Reason {
    pub const ALL: [Self; 38] = [
        Self::DnsNxdomain,
        Self::DnsNodata,
        Self::DnsServfail,
        Self::DnsRefused,
        Self::DnsTimeout,
        Self::DnsReset,
        Self::DnsBogon,
        Self::DnsInjected,
        Self::DnsInconsistent,
        Self::DnsBlockpage,
        Self::TcpTimeout,
        Self::TcpRefused,
        Self::TcpReset,
        Self::TlsReset,
        Self::TlsEof,
        Self::TlsTimeout,
        Self::TlsCertInvalid,
        Self::HttpBlockpage,
        Self::HttpReset,
        Self::HttpDiff,
        Self::TransferStall(Layer::Tls),
        Self::TransferStall(Layer::Http),
        Self::TransferSlow(Layer::Tls),
        Self::TransferSlow(Layer::Http),
        Self::UdpTimeout,
        Self::UdpInvalid,
        Self::UdpSignature,
        Self::QuicTimeout,
        Self::QuicBlockedAddress,
        Self::QuicCertInvalid,
        Self::QuicReset,
        Self::VpnTimeout,
        Self::VpnReset,
        Self::VpnCut,
        Self::MediaBlocked,
        Self::MediaCut,
        Self::MediaLoss,
        Self::MediaRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DnsNxdomain => "dns.nxdomain",
            Self::DnsNodata => "dns.nodata",
            Self::DnsServfail => "dns.servfail",
            Self::DnsRefused => "dns.refused",
            Self::DnsTimeout => "dns.timeout",
            Self::DnsReset => "dns.reset",
            Self::DnsBogon => "dns.bogon",
            Self::DnsInjected => "dns.injected",
            Self::DnsInconsistent => "dns.inconsistent",
            Self::DnsBlockpage => "dns.blockpage",
            Self::TcpTimeout => "tcp.timeout",
            Self::TcpRefused => "tcp.refused",
            Self::TcpReset => "tcp.reset",
            Self::TlsReset => "tls.reset",
            Self::TlsEof => "tls.eof",
            Self::TlsTimeout => "tls.timeout",
            Self::TlsCertInvalid => "tls.cert_invalid",
            Self::HttpBlockpage => "http.blockpage",
            Self::HttpReset => "http.reset",
            Self::HttpDiff => "http.diff",
            Self::TransferStall(_) => "transfer.stall",
            Self::TransferSlow(_) => "transfer.slow",
            Self::UdpTimeout => "udp.timeout",
            Self::UdpInvalid => "udp.invalid",
            Self::UdpSignature => "udp.signature",
            Self::QuicTimeout => "quic.timeout",
            Self::QuicBlockedAddress => "quic.blocked_address",
            Self::QuicCertInvalid => "quic.cert_invalid",
            Self::QuicReset => "quic.reset",
            Self::VpnTimeout => "vpn.timeout",
            Self::VpnReset => "vpn.reset",
            Self::VpnCut => "vpn.cut",
            Self::MediaBlocked => "media.blocked",
            Self::MediaCut => "media.cut",
            Self::MediaLoss => "media.loss",
            Self::MediaRate => "media.rate",
        }
    }

    /// The reason written `s` (`dns.nxdomain`, `transfer.stall`, …). A transfer reason is
    /// read with the layer `transfer_layer` (its connection's).
    pub fn parse(s: &str, transfer_layer: Layer) -> Option<Self> {
        let r = Self::ALL.into_iter().find(|r| r.as_str() == s.trim())?;
        Some(match r {
            Self::TransferStall(_) => Self::TransferStall(transfer_layer),
            Self::TransferSlow(_) => Self::TransferSlow(transfer_layer),
            r => r,
        })
    }

    pub fn layer(self) -> Layer {
        match self {
            Self::DnsNxdomain
            | Self::DnsNodata
            | Self::DnsServfail
            | Self::DnsRefused
            | Self::DnsTimeout
            | Self::DnsReset
            | Self::DnsBogon
            | Self::DnsInjected
            | Self::DnsInconsistent
            | Self::DnsBlockpage => Layer::Dns,
            Self::TcpTimeout | Self::TcpRefused | Self::TcpReset => Layer::Tcp,
            Self::TlsReset | Self::TlsEof | Self::TlsTimeout | Self::TlsCertInvalid => Layer::Tls,
            Self::HttpBlockpage | Self::HttpReset | Self::HttpDiff => Layer::Http,
            Self::TransferStall(l) | Self::TransferSlow(l) => l,
            Self::UdpTimeout | Self::UdpInvalid | Self::UdpSignature => Layer::Udp,
            Self::QuicTimeout
            | Self::QuicBlockedAddress
            | Self::QuicCertInvalid
            | Self::QuicReset => Layer::Quic,
            Self::VpnTimeout | Self::VpnReset | Self::VpnCut => Layer::Vpn,
            Self::MediaBlocked | Self::MediaCut | Self::MediaLoss | Self::MediaRate => Layer::Media,
        }
    }

    /// The verdict this reason supports.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::TransferSlow(_) | Self::MediaLoss | Self::MediaRate => Verdict::Throttled,
            _ => Verdict::Blocked,
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_the_reason_prefix() {
        for r in Reason::ALL {
            let prefix = r.as_str().split('.').next().unwrap();
            if prefix == "transfer" {
                assert!(matches!(r.layer(), Layer::Tls | Layer::Http), "{r:?}");
            } else {
                assert_eq!(prefix, r.layer().as_str());
            }
        }
    }

    #[test]
    fn verdicts_parse() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
        }
        assert!("blockd".parse::<Verdict>().is_err());
    }
}

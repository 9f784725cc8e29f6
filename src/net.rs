//! Address facts decided in one place: is an address reserved (private, loopback, link-local,
//! documentation, …), and in which range.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// The reserved range an address falls in (`None` for a public address). Two addresses in the
/// same range are "the same kind of network": a target on loopback may redirect to loopback.
pub fn reserved_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(if v4.is_loopback() {
                "loopback"
            } else if v4.is_private() {
                "private"
            } else if v4.is_link_local() {
                "link-local"
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                "shared" // 100.64.0.0/10, carrier-grade NAT
            } else if v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF assignments
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
            // 198.18.0.0/15 benchmarking
            {
                "reserved"
            } else {
                return None;
            })
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reserved_range(IpAddr::V4(v4));
            }
            let s = v6.segments();
            Some(if v6.is_loopback() {
                "loopback"
            } else if (s[0] & 0xfe00) == 0xfc00 {
                "private" // unique local
            } else if (s[0] & 0xffc0) == 0xfe80 {
                "link-local"
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0)
            // discard prefix
            {
                "reserved"
            } else {
                return None;
            })
        }
    }
}

/// Whether an address is reserved (not routable on the public Internet).
pub fn is_reserved(ip: IpAddr) -> bool {
    reserved_range(ip).is_some()
}

/// Whether a resolver's answer is a reserved address that only a lie would give: reserved,
/// not among the control resolvers' answers, and not loopback on a loopback test network
/// (`loopback_net`, or controls that answer loopback themselves). The one rule for which
/// answers the classifier calls bogons and the probes refuse to connect to.
pub fn reserved_answer(ip: IpAddr, controls: &BTreeSet<IpAddr>, loopback_net: bool) -> bool {
    is_reserved(ip)
        && !controls.contains(&ip)
        && !(ip.is_loopback() && (loopback_net || controls.iter().any(IpAddr::is_loopback)))
}

/// The wildcard address of `addr`'s family, port 0: where a socket towards `addr` binds.
pub fn unspecified_for(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for (ip, range) in [
            ("127.0.0.1", Some("loopback")),
            ("::1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("192.168.0.1", Some("private")),
            ("fd00::1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("fe80::1", Some("link-local")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("shared")),
            ("0.0.0.0", Some("reserved")),
            ("198.18.0.1", Some("reserved")),
            ("2001:db8::1", Some("reserved")),
            ("1.1.1.1", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(reserved_range(ip.parse().unwrap()), range, "{ip}");
        }
    }
}

/// Percent-decoding as URIs mean it: `%XX` only (no `+` for space, no splitting on `&`);
/// invalid escapes stay as they are, invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(h * 16 + l).expect("two hex digits"));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod percent_tests {
    #[test]
    fn percent_decoding_is_uri_decoding() {
        assert_eq!(super::percent_decode("a%40b%3Ac+d&e%2"), "a@b:c+d&e%2");
    }
}

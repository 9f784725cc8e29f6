//! Entry points for the cargo-fuzz targets in `fuzz/` (see `docs/fuzzing.md`): thin wrappers
//! over parsers that are private to their modules. Not a stable API.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::input::InputError;
use crate::probe::dns::DnsResponse;
use crate::probe::socks::SocksError;
use crate::target::Target;

/// A target list (plain lines or Citizen Lab test-list CSV) as `-i FILE` reads it: every
/// target and every malformed line, in order.
pub fn read_list(data: &[u8]) -> Vec<Result<Target, InputError>> {
    let mut out = Vec::new();
    crate::input::read_list("fuzz", std::io::Cursor::new(data), &mut |item| {
        match item {
            crate::input::Item::Target(t) => out.push(Ok(t)),
            crate::input::Item::Malformed(e) | crate::input::Item::Failed(e) => out.push(Err(e)),
        }
        true
    });
    out
}

/// A DNS response as the probe decodes it for the query `id` of type A (or AAAA) for
/// `example.com` (a response must echo that question to count).
pub fn dns_response(wire: &[u8], id: u16, aaaa: bool) -> Option<DnsResponse> {
    let qtype = if aaaa {
        hickory_proto::rr::RecordType::AAAA
    } else {
        hickory_proto::rr::RecordType::A
    };
    crate::probe::dns::parse_response(wire, id, "example.com", qtype)
}

/// The SOCKS5 client's exchange (CONNECT, or UDP ASSOCIATE) over `stream`, which plays the
/// proxy at `proxy_ip`: the bound address of its reply.
pub async fn socks_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy_ip: IpAddr,
    udp_associate: bool,
    host: &str,
    port: u16,
) -> Result<SocketAddr, SocksError> {
    let cmd = if udp_associate {
        crate::probe::socks::CMD_UDP_ASSOCIATE
    } else {
        crate::probe::socks::CMD_CONNECT
    };
    crate::probe::socks::negotiate(stream, proxy_ip, cmd, host, port).await
}

//! QUIC in the mock network: a real HTTP/3 origin (quinn + h3), and the censor's reading of
//! the SNI of a client's Initial — decrypted with the keys derived from its Destination
//! Connection ID (RFC 9001 §5.2) — across datagrams (the censor itself is `udp`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

/// Flows whose ClientHello is being collected, at most (beyond, the table starts over).
const MAX_FLOWS: usize = 4096;
use tokio::task::JoinHandle;

/// An HTTP/3 origin answering every GET with 200 and a short page.
pub struct H3Origin {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for H3Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H3Origin {
    pub fn start(ip: std::net::IpAddr, tls: Arc<rustls::ServerConfig>) -> anyhow::Result<Self> {
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
        let cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
        let endpoint = quinn::Endpoint::server(cfg, SocketAddr::new(ip, 0))?;
        let addr = endpoint.local_addr()?;
        let task = tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(serve(incoming));
            }
        });
        Ok(Self { addr, task })
    }
}

async fn serve(incoming: quinn::Incoming) {
    let Ok(conn) = incoming.await else { return };
    let Ok(mut h3c) =
        h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await
    else {
        return;
    };
    while let Ok(Some(resolver)) = h3c.accept().await {
        tokio::spawn(async move {
            let Ok((req, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let body = format!(
                "<html><head><title>Home</title></head><body>HTTP/3 origin: {}</body></html>",
                req.uri().path()
            );
            let resp = http::Response::builder()
                .status(200)
                .header("content-type", "text/html")
                .body(())
                .expect("static response");
            if stream.send_response(resp).await.is_ok() {
                let _ = stream.send_data(Bytes::from(body)).await;
                let _ = stream.finish().await;
            }
        });
    }
}

fn varint(d: &[u8], at: &mut usize) -> Option<u64> {
    let first = *d.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = d.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    *at += len;
    Some(v)
}

/// The SNI of the ClientHello in a datagram's QUIC v1 Initial packets, when it is complete
/// there (see [`SniReader`] for ClientHellos that span datagrams).
pub fn initial_sni(datagram: &[u8]) -> Option<String> {
    client_hello_sni(&reassemble(&initial_crypto(datagram)?))
}

/// CRYPTO data collected at most per flow while its ClientHello is incomplete.
const MAX_HELLO: usize = 16 * 1024;

/// Reads the SNI of each flow's ClientHello across datagrams: browsers' post-quantum key shares
/// make a ClientHello of 1.5 KB or more, sent in two Initials, two datagrams. The first passes
/// (the server waits for the rest); the SNI is known when the ClientHello is complete.
#[derive(Default)]
pub struct SniReader {
    pending: HashMap<SocketAddr, Vec<(u64, Vec<u8>)>>,
}

/// What a flow's datagram says of its ClientHello.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// No Initial with CRYPTO data in it (a short header, an ACK), or not QUIC v1.
    Nothing,
    /// Part of a ClientHello; the rest is still to come.
    Partial,
    /// The ClientHello is complete: its SNI (`None` when it has none).
    Complete(Option<String>),
}

impl SniReader {
    pub fn read(&mut self, flow: SocketAddr, datagram: &[u8]) -> Hello {
        let Some(pieces) = initial_crypto(datagram).filter(|p| !p.is_empty()) else {
            return Hello::Nothing;
        };
        if self.pending.len() >= MAX_FLOWS && !self.pending.contains_key(&flow) {
            self.pending.clear();
        }
        let all = self.pending.entry(flow).or_default();
        all.extend(pieces);
        let stream = reassemble(all);
        let complete = stream.len() >= 4 && {
            let len = (usize::from(stream[1]) << 16)
                | (usize::from(stream[2]) << 8)
                | usize::from(stream[3]);
            stream.len() >= 4 + len
        };
        let size: usize = all.iter().map(|(_, d)| d.len()).sum();
        if complete || size > MAX_HELLO {
            self.pending.remove(&flow);
            return Hello::Complete(client_hello_sni(&stream));
        }
        Hello::Partial
    }
}

/// The CRYPTO frames, as (offset, data), of every QUIC v1 Initial packet in a datagram.
fn initial_crypto(datagram: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()?
        .quic_suite()?;
    let mut pieces = Vec::new();
    let mut rest = datagram;
    while rest.len() > 5 && rest[0] & 0x80 != 0 {
        let d = rest;
        let version = u32::from_be_bytes(d[1..5].try_into().ok()?);
        let mut at = 5;
        let dcid_len = usize::from(*d.get(at)?);
        if dcid_len > 20 {
            return None;
        }
        let dcid = d.get(at + 1..at + 1 + dcid_len)?.to_vec();
        at += 1 + dcid_len;
        let scid_len = usize::from(*d.get(at)?);
        at += 1 + scid_len;
        let ptype = (d[0] >> 4) & 0x03;
        if version != 1 || ptype == 3 {
            break;
        }
        if ptype == 0 {
            let token = usize::try_from(varint(d, &mut at)?).ok()?;
            at = at.checked_add(token)?;
        }
        let length = usize::try_from(varint(d, &mut at)?).ok()?;
        let pn_off = at;
        let end = pn_off.checked_add(length)?;
        if end > d.len() {
            return None;
        }
        rest = &d[end..];
        if ptype != 0 {
            continue;
        }
        let keys = rustls::quic::Keys::initial(
            rustls::quic::Version::V1,
            suite.suite,
            suite.quic,
            &dcid,
            rustls::Side::Server,
        );
        let mut pkt = d[..end].to_vec();
        let sample_len = keys.remote.header.sample_len();
        let sample = pkt.get(pn_off + 4..pn_off + 4 + sample_len)?.to_vec();
        {
            let (hdr, tail) = pkt.split_at_mut(pn_off);
            keys.remote
                .header
                .decrypt_in_place(&sample, &mut hdr[0], tail.get_mut(..4)?)
                .ok()?;
        }
        let pn_len = usize::from(pkt[0] & 0x03) + 1;
        let pn = pkt
            .get(pn_off..pn_off + pn_len)?
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b));
        let (header, payload) = pkt.split_at_mut(pn_off + pn_len);
        let plain = keys
            .remote
            .packet
            .decrypt_in_place(pn, header, payload)
            .ok()?;
        crypto_frames(plain, &mut pieces)?;
    }
    Some(pieces)
}

/// The CRYPTO frames of an Initial's payload, as (offset, data).
fn crypto_frames(p: &[u8], out: &mut Vec<(u64, Vec<u8>)>) -> Option<()> {
    let mut at = 0;
    while at < p.len() {
        let ty = varint(p, &mut at)?;
        match ty {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                varint(p, &mut at)?;
                varint(p, &mut at)?;
                let n = varint(p, &mut at)?;
                varint(p, &mut at)?;
                for _ in 0..n.min(1024) {
                    varint(p, &mut at)?;
                    varint(p, &mut at)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        varint(p, &mut at)?;
                    }
                }
            }
            0x06 => {
                let off = varint(p, &mut at)?;
                let len = usize::try_from(varint(p, &mut at)?).ok()?;
                out.push((off, p.get(at..at.checked_add(len)?)?.to_vec()));
                at += len;
            }
            0x1c => {
                varint(p, &mut at)?;
                varint(p, &mut at)?;
                let len = usize::try_from(varint(p, &mut at)?).ok()?;
                at = at.checked_add(len)?;
            }
            _ => return None,
        }
    }
    Some(())
}

/// The contiguous CRYPTO stream from offset 0.
fn reassemble(pieces: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let before = buf.len();
        for (off, data) in pieces {
            let Ok(off) = usize::try_from(*off) else {
                continue;
            };
            let end = off + data.len();
            if off <= buf.len() && end > buf.len() {
                buf.extend_from_slice(&data[buf.len() - off..]);
            }
        }
        if buf.len() == before {
            return buf;
        }
    }
}

/// The SNI of a complete ClientHello handshake message.
fn client_hello_sni(hs: &[u8]) -> Option<String> {
    if *hs.first()? != 1 {
        return None;
    }
    let len = (usize::from(*hs.get(1)?) << 16)
        | (usize::from(*hs.get(2)?) << 8)
        | usize::from(*hs.get(3)?);
    let ch = hs.get(4..4 + len)?;
    let mut at = 2 + 32;
    at += 1 + usize::from(*ch.get(at)?);
    at += 2 + usize::from(u16::from_be_bytes(ch.get(at..at + 2)?.try_into().ok()?));
    at += 1 + usize::from(*ch.get(at)?);
    let ext_len = usize::from(u16::from_be_bytes(ch.get(at..at + 2)?.try_into().ok()?));
    at += 2;
    let exts = ch.get(at..at + ext_len)?;
    let mut e = 0;
    while e + 4 <= exts.len() {
        let ty = u16::from_be_bytes([exts[e], exts[e + 1]]);
        let l = usize::from(u16::from_be_bytes([exts[e + 2], exts[e + 3]]));
        let body = exts.get(e + 4..e + 4 + l)?;
        if ty == 0 {
            let nl = usize::from(u16::from_be_bytes(body.get(3..5)?.try_into().ok()?));
            return String::from_utf8(body.get(5..5 + nl)?.to_vec()).ok();
        }
        e += 4 + l;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_has_no_sni() {
        assert_eq!(initial_sni(&[]), None);
        assert_eq!(initial_sni(&[0xc0, 0, 0, 0, 1, 30]), None);
        assert_eq!(initial_sni(&[0xff; 1200]), None);
        use crate::mocknet::udp::is_v1_long_header;
        assert!(is_v1_long_header(&[0xc0, 0, 0, 0, 1]));
        assert!(!is_v1_long_header(&[0xc0, 0x1a, 0x2a, 0x3a, 0x4a]));
    }
}

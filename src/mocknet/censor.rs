//! The censor: a middlebox in front of an origin. Each censor listener forwards to one
//! upstream and applies one behaviour: drop connects, reset or silence TLS handshakes whose SNI
//! matches, intercept TLS with another certificate, inject an HTTP block page, freeze a flow
//! after N bytes, or throttle it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::mocknet::origin;

#[derive(Clone)]
pub enum Behaviour {
    /// Forward untouched.
    Pass,
    /// Connects hang: the listener's accept queue is kept full.
    Drop,
    /// Accept, then reset (RST) every connection at once, whatever it carries.
    Reset,
    /// Reset (RST) the connection after a ClientHello whose SNI is listed.
    ResetSni(Vec<String>),
    /// Swallow the ClientHello of a listed SNI and never answer.
    SilenceSni(Vec<String>),
    /// Terminate TLS with this (untrusted or wrong-name) certificate and serve a block page.
    Intercept(Arc<rustls::ServerConfig>),
    /// Plain HTTP: answer every request with a block page instead of forwarding.
    InjectBlockPage,
    /// Plain HTTP: reset (RST) the connection when the request's Host is listed; forward
    /// other requests.
    ResetHost(Vec<String>),
    /// Forward, but stop forwarding towards the client after this many bytes (no RST).
    FreezeAfter(u64),
    /// Forward towards the client at this many bytes per second.
    Throttle(u64),
    /// Forward, but stop forwarding towards the server after this many bytes (an upload
    /// freeze); what the client sends after that is swallowed.
    FreezeUpload(u64),
    /// Read the client's first packet, then reset (RST): OpenVPN over TCP at the TSPU.
    ResetAfterFirst,
    /// Reset (RST) after a ClientHello whose SNI has the shape of Tor's (`www.<base32>.com`);
    /// other handshakes pass.
    ResetTorTls,
    /// A whitelist that checks the SNI: swallow a ClientHello whose SNI is not listed.
    AllowSni(Vec<String>),
}

/// How `splice` shapes the two directions.
#[derive(Clone, Copy, Default)]
struct Shape {
    freeze_down: Option<u64>,
    freeze_up: Option<u64>,
    rate_down: Option<u64>,
}

pub struct Censor {
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    _held: Vec<TcpStream>,
}

impl Drop for Censor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Censor {
    /// Listens on `bind` (port 0 picks one) and forwards to `upstream` under `behaviour`.
    pub async fn start(
        bind: SocketAddr,
        upstream: SocketAddr,
        behaviour: Behaviour,
    ) -> std::io::Result<Self> {
        let ip = bind.ip();
        if let Behaviour::Drop = behaviour {
            // A listener that never accepts, with its one-slot queue filled: further SYNs are
            // dropped by the kernel and connects hang until the client's timeout.
            let sock = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            sock.bind(bind)?;
            let l = sock.listen(0)?;
            let addr = l.local_addr()?;
            let filler = TcpStream::connect(addr).await?;
            return Ok(Self {
                addr,
                tasks: vec![tokio::spawn(async move {
                    let _keep = l;
                    std::future::pending::<()>().await;
                })],
                _held: vec![filler],
            });
        }
        let l = TcpListener::bind(bind).await?;
        let addr = l.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = l.accept().await else {
                    continue;
                };
                let b = behaviour.clone();
                tokio::spawn(async move {
                    let _ = client.set_nodelay(true);
                    let _ = handle(client, upstream, b).await;
                });
            }
        });
        Ok(Self {
            addr,
            tasks: vec![task],
            _held: Vec::new(),
        })
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, b: Behaviour) -> std::io::Result<()> {
    match b {
        Behaviour::Pass => splice(client, upstream, Vec::new(), Shape::default()).await,
        Behaviour::Reset => reset(client),
        Behaviour::ResetSni(names) => {
            let hello = read_client_hello(&mut client).await?;
            if listed(sni_of(&hello), &names) {
                return reset(client);
            }
            splice(client, upstream, hello, Shape::default()).await
        }
        Behaviour::AllowSni(names) => {
            let hello = read_client_hello(&mut client).await?;
            if !listed(sni_of(&hello), &names) {
                let mut sink = [0u8; 1024];
                while client.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            splice(client, upstream, hello, Shape::default()).await
        }
        Behaviour::ResetTorTls => {
            let hello = read_client_hello(&mut client).await?;
            if sni_of(&hello).is_some_and(|s| crate::probe::tor::looks_like_tor_sni(&s)) {
                return reset(client);
            }
            splice(client, upstream, hello, Shape::default()).await
        }
        Behaviour::SilenceSni(names) => {
            let hello = read_client_hello(&mut client).await?;
            if listed(sni_of(&hello), &names) {
                let mut sink = [0u8; 1024];
                while client.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            splice(client, upstream, hello, Shape::default()).await
        }
        Behaviour::Intercept(cfg) => {
            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(client).await {
                serve_block_page(s).await;
            }
            Ok(())
        }
        Behaviour::InjectBlockPage => {
            serve_block_page(client).await;
            Ok(())
        }
        Behaviour::ResetHost(names) => {
            let head = read_request_head(&mut client).await?;
            if listed(host_of(&head), &names) {
                return reset(client);
            }
            splice(client, upstream, head, Shape::default()).await
        }
        Behaviour::FreezeAfter(n) => {
            let shape = Shape {
                freeze_down: Some(n),
                ..Shape::default()
            };
            splice(client, upstream, Vec::new(), shape).await
        }
        Behaviour::FreezeUpload(n) => {
            let shape = Shape {
                freeze_up: Some(n),
                ..Shape::default()
            };
            splice(client, upstream, Vec::new(), shape).await
        }
        Behaviour::Throttle(rate) => {
            let shape = Shape {
                rate_down: Some(rate),
                ..Shape::default()
            };
            splice(client, upstream, Vec::new(), shape).await
        }
        Behaviour::Drop => Ok(()),
        Behaviour::ResetAfterFirst => {
            let mut first = [0u8; 2048];
            if client.read(&mut first).await? == 0 {
                return Ok(());
            }
            reset(client)
        }
    }
}

async fn serve_block_page<S>(mut s: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 8192];
    let _ = s.read(&mut buf).await;
    let body = *origin::BLOCK_PAGE;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Reads one TLS record (the ClientHello) whole.
async fn read_client_hello(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 5];
    c.read_exact(&mut head).await?;
    let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
    let mut rec = vec![0u8; 5 + len];
    rec[..5].copy_from_slice(&head);
    c.read_exact(&mut rec[5..]).await?;
    Ok(rec)
}

/// Whether the name a DPI box read (SNI, Host) is on its list.
fn listed(name: Option<String>, names: &[String]) -> bool {
    name.is_some_and(|s| names.iter().any(|n| n.eq_ignore_ascii_case(&s)))
}

/// Closes with an RST (zero linger), as a DPI box's injected reset looks to the client.
fn reset(client: TcpStream) -> std::io::Result<()> {
    client.set_zero_linger()?;
    drop(client);
    Ok(())
}

/// The bytes of an HTTP request up to the end of its head (at most 16 KiB).
async fn read_request_head(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = c.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The Host header of a request head, without the port, as a DPI box reads it.
pub fn host_of(head: &[u8]) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("host").then(|| {
            let v = v.trim();
            v.rsplit_once(':')
                .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
                .map_or(v, |(h, _)| h)
                .to_owned()
        })
    })
}

/// The server_name of a ClientHello record, as a DPI box reads it.
pub fn sni_of(rec: &[u8]) -> Option<String> {
    let mut p = 5usize; // record header
    if rec.first() != Some(&22) || rec.get(p) != Some(&1) {
        return None;
    }
    p += 4 + 2 + 32; // handshake header, version, random
    let sid = usize::from(*rec.get(p)?);
    p += 1 + sid;
    let suites = usize::from(u16::from_be_bytes([*rec.get(p)?, *rec.get(p + 1)?]));
    p += 2 + suites;
    let comp = usize::from(*rec.get(p)?);
    p += 1 + comp;
    let ext_end = p + 2 + usize::from(u16::from_be_bytes([*rec.get(p)?, *rec.get(p + 1)?]));
    p += 2;
    while p + 4 <= ext_end.min(rec.len()) {
        let typ = u16::from_be_bytes([rec[p], rec[p + 1]]);
        let len = usize::from(u16::from_be_bytes([rec[p + 2], rec[p + 3]]));
        p += 4;
        if typ == 0 {
            // server_name_list: len(2) type(1) name_len(2) name
            let name_len = usize::from(u16::from_be_bytes([*rec.get(p + 3)?, *rec.get(p + 4)?]));
            let name = rec.get(p + 5..p + 5 + name_len)?;
            return String::from_utf8(name.to_vec()).ok();
        }
        p += len;
    }
    None
}

/// Forwards both ways, shaped: either direction may freeze after some bytes (no FIN, no RST),
/// and the download may be paced.
async fn splice(
    client: TcpStream,
    upstream: SocketAddr,
    first: Vec<u8>,
    shape: Shape,
) -> std::io::Result<()> {
    let Shape {
        freeze_down: freeze,
        freeze_up,
        rate_down: rate,
    } = shape;
    let mut up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    up.write_all(&first).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let (gone_tx, mut gone_rx) = tokio::sync::watch::channel(false);
    let to_up = async {
        match freeze_up {
            None => {
                let _ = tokio::io::copy(&mut cr, &mut uw).await;
            }
            Some(limit) => {
                let mut sent = first.len() as u64;
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX);
                    let take = n.min(room);
                    if take > 0 && uw.write_all(&buf[..take]).await.is_err() {
                        break;
                    }
                    sent += take as u64;
                }
            }
        }
        let _ = uw.shutdown().await;
        let _ = gone_tx.send(true);
    };
    let to_client = async {
        let mut sent = 0u64;
        let mut buf = vec![0u8; 4096];
        let start = tokio::time::Instant::now();
        loop {
            let n = match ur.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut n = n;
            if let Some(limit) = freeze {
                let room = limit.saturating_sub(sent);
                if room < n as u64 {
                    n = room as usize;
                    let _ = cw.write_all(&buf[..n]).await;
                    // Freeze: hold the connection open and silent (no FIN, no RST) until the
                    // client gives up.
                    let _ = gone_rx.wait_for(|g| *g).await;
                    return;
                }
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent += n as u64;
            if let Some(r) = rate {
                let due = start + Duration::from_secs_f64(sent as f64 / r as f64);
                tokio::time::sleep_until(due).await;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(to_up, to_client);
    Ok(())
}

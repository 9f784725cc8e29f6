//! Origin servers: what the censored sites serve when nothing interferes. One server answers
//! every name (by Host) over HTTP or HTTPS, with routes for the transfers and the hostile
//! behaviours the probes must survive. Connections are counted.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Size of `/big`: large enough that a throttled or frozen transfer shows.
pub const BIG: usize = 256 * 1024;

/// The ISP stub page the mock censor serves: Rostelecom's warning.rt.ru page as captured in
/// public measurements (tests/fixtures/blockpages/README.md has its provenance), so the mock
/// is recognised by the same dataset fingerprints as the real thing.
pub static BLOCK_PAGE: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| {
    let raw =
        include_str!("../../tests/fixtures/blockpages/blocked/ru-rostelecom-warning-page.http");
    raw.split_once("\r\n\r\n").map_or(raw, |(_, body)| body)
});

type Body = http_body_util::Either<Full<Bytes>, StreamBody<Chunks>>;

/// A body that produces `chunk`-sized frames, `every` apart, forever or `limit` times.
pub struct Chunks {
    chunk: Bytes,
    every: Duration,
    left: Option<u64>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl futures::Stream for Chunks {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == Some(0) {
            return Poll::Ready(None);
        }
        if !self.every.is_zero() {
            let every = self.every;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if let Some(n) = self.left.as_mut() {
            *n -= 1;
        }
        Poll::Ready(Some(Ok(Frame::data(self.chunk.clone()))))
    }
}

fn page(host: &str) -> String {
    format!(
        "<html><head><title>{host}</title></head><body><p>Welcome to {host}.</p>{}</body></html>",
        "<p>filler</p>".repeat(50)
    )
}

fn respond(req: &http::Request<hyper::body::Incoming>) -> http::Response<Body> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("origin")
        .split(':')
        .next()
        .unwrap_or("origin")
        .to_owned();
    let full = |status: u16, body: String| {
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Body::Left(Full::new(Bytes::from(body))))
            .expect("static response")
    };
    let stream = |chunk: usize, every_ms: u64, limit: Option<u64>| {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::Right(StreamBody::new(Chunks {
                chunk: Bytes::from(vec![b'x'; chunk]),
                every: Duration::from_millis(every_ms),
                left: limit,
                sleep: None,
            })))
            .expect("static response")
    };
    let path = req.uri().path();
    match path {
        "/big" => full(200, "x".repeat(BIG)),
        "/endless" => stream(16 * 1024, 0, None),
        "/slowloris" => stream(1, 200, None),
        "/blockpage" => full(200, (*BLOCK_PAGE).to_owned()),
        "/challenge" => full(
            503,
            "<html><head><title>Just a moment</title></head></html>".into(),
        ),
        "/loop" => http::Response::builder()
            .status(302)
            .header(http::header::LOCATION, "/loop")
            .body(Body::Left(Full::new(Bytes::new())))
            .expect("static response"),
        "/giant-header" => http::Response::builder()
            .header("x-giant", "g".repeat(512 * 1024))
            .body(Body::Left(Full::new(Bytes::new())))
            .expect("static response"),
        p if p.starts_with("/redirect/") || p.starts_with("/redirect-http/") => {
            // /redirect/HOST:PORT/PATH -> https://HOST:PORT/PATH (-http: a downgrade to http://)
            let (scheme, rest) = match p.strip_prefix("/redirect-http/") {
                Some(rest) => ("http", rest),
                None => ("https", &p["/redirect/".len()..]),
            };
            http::Response::builder()
                .status(302)
                .header(http::header::LOCATION, format!("{scheme}://{rest}"))
                .body(Body::Left(Full::new(Bytes::new())))
                .expect("static response")
        }
        // Says which method it saw, so a test can tell a POST (Telegram data centres) arrived.
        _ if req.method() == http::Method::POST => full(200, page(&format!("POST {host}"))),
        _ => full(200, page(&host)),
    }
}

/// A running origin. Dropping it stops it.
pub struct Origin {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts on `ip:0`; HTTPS when `tls` is given, plain HTTP otherwise.
    pub async fn start(
        ip: std::net::IpAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let l = TcpListener::bind((ip, 0)).await?;
        let addr = l.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        Some(cfg) => {
                            if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                serve(s).await;
                            }
                        }
                        None => serve(tcp).await,
                    }
                });
            }
        });
        Ok(Self {
            addr,
            connections,
            task,
        })
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

pub async fn serve<S>(s: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        Ok::<_, Infallible>(respond(&req))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
        .await;
}

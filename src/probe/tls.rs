//! The TLS step: a rustls handshake with a given SNI that records everything a censor can
//! falsify — version, ALPN, the certificate chain, whether it verifies for the name — and, on
//! failure, how far the handshake got. A certificate that does not verify is recorded and the
//! handshake goes on, so that an interception box's block page can still be fetched.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::probe::failure::{Failure, FailureKind};
use crate::probe::ser_ms;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub sha256: String,
}

/// How far a failed handshake got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsPhase {
    /// No certificate arrived: the connection died after the ClientHello, where SNI filters act.
    BeforeCertificate,
    /// The server's certificate arrived; the handshake failed later.
    AfterCertificate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsObservation {
    pub sni: String,
    pub ok: bool,
    pub version: Option<String>,
    pub alpn: Option<String>,
    pub certs: Vec<CertInfo>,
    /// Whether the chain verifies for the SNI (webpki roots + `--ca-file`); None if no
    /// certificate arrived.
    pub verified: Option<bool>,
    pub cert_error: Option<String>,
    pub failure: Option<Failure>,
    pub phase: Option<TlsPhase>,
    #[serde(rename = "elapsed_ms", serialize_with = "ser_ms")]
    pub elapsed: Duration,
}

impl TlsObservation {
    /// Nothing observed yet.
    pub fn new(sni: &str) -> Self {
        Self {
            sni: sni.to_owned(),
            ok: false,
            version: None,
            alpn: None,
            certs: Vec::new(),
            verified: None,
            cert_error: None,
            failure: None,
            phase: None,
            elapsed: Duration::ZERO,
        }
    }
}

/// Roots and provider, built once per run; each handshake gets its own recording verifier.
#[derive(Clone)]
pub struct TlsClient {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    verified: Arc<VerifiedChains>,
}

/// Chains already verified in this run: (chain, 10-minute time bucket) → what webpki said of
/// the chain (path to a root, signatures, validity, usage) and the chain as recorded. A CDN or a
/// hosting provider serves one chain (often a wildcard) to thousands of targets; path building
/// and the chain's signature checks then run once, not per handshake. The name is checked on
/// every handshake, and so is the handshake's own signature (CertificateVerify). The same
/// checks as rustls's `WebPkiServerVerifier` (no CRLs are configured).
pub struct VerifiedChains {
    roots: Arc<rustls::RootCertStore>,
    algs: &'static [&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
    cache: Mutex<lru::LruCache<[u8; 32], Arc<ChainVerdict>>>,
}

/// What is known of a chain whatever the name: its recorded form and webpki's verdict.
struct ChainVerdict {
    chain: Vec<CertInfo>,
    error: Option<String>,
}

/// Entries kept: chains, not targets (a few KiB each).
const VERIFIED_CHAINS: usize = 4_096;
/// A verdict is reused at most this long (the chain's validity is judged against the time).
const VERIFIED_FOR_SECS: u64 = 600;

impl VerifiedChains {
    fn new(roots: Arc<rustls::RootCertStore>, provider: &rustls::crypto::CryptoProvider) -> Self {
        Self {
            roots,
            algs: provider.signature_verification_algorithms.all,
            cache: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(VERIFIED_CHAINS).expect("nonzero"),
            )),
        }
    }

    fn key(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update((now.as_secs() / VERIFIED_FOR_SECS).to_be_bytes());
        for c in std::iter::once(end_entity).chain(intermediates) {
            h.update((c.len() as u64).to_be_bytes());
            h.update(c.as_ref());
        }
        h.finalize().into()
    }

    /// The chain's verdict, from the cache or verified now.
    fn chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Arc<ChainVerdict> {
        let key = Self::key(end_entity, intermediates, now);
        if let Some(v) = self.cache.lock().expect("verified chains lock").get(&key) {
            return v.clone();
        }
        let error = rustls::server::ParsedCertificate::try_from(end_entity)
            .and_then(|cert| {
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    &self.roots,
                    intermediates,
                    now,
                    self.algs,
                )
            })
            .err()
            .map(|e| e.to_string());
        let v = Arc::new(ChainVerdict {
            chain: std::iter::once(end_entity)
                .chain(intermediates)
                .map(cert_info)
                .collect(),
            error,
        });
        self.cache
            .lock()
            .expect("verified chains lock")
            .put(key, v.clone());
        v
    }
}

impl TlsClient {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let verified = Arc::new(VerifiedChains::new(roots, &provider));
        Ok(Self {
            webpki,
            provider,
            verified,
        })
    }

    /// Handshakes over `stream` with `sni`. Returns the observation and, on success, the stream.
    pub async fn handshake<S>(
        &self,
        stream: S,
        sni: &str,
        alpn: &[&[u8]],
        timeout: Duration,
    ) -> (TlsObservation, Option<tokio_rustls::client::TlsStream<S>>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let start = Instant::now();
        let recorder = Arc::new(Recorder {
            inner: self.webpki.clone(),
            verified: self.verified.clone(),
            seen: Mutex::default(),
        });
        let mut obs = TlsObservation::new(sni);
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                let mut c = b
                    .dangerous()
                    .with_custom_certificate_verifier(recorder.clone())
                    .with_no_client_auth();
                c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
                c
            });
        let server_name = ServerName::try_from(sni.to_owned());
        let result = match (config, server_name) {
            (Ok(config), Ok(name)) => {
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                    Err(_) => Err(Failure::timeout()),
                    Ok(Err(e)) => Err(Failure::from_error(&e)),
                    Ok(Ok(s)) => Ok(s),
                }
            }
            (Err(e), _) => Err(Failure::new(FailureKind::Tls, e.to_string())),
            (_, Err(e)) => Err(Failure::new(
                FailureKind::Malformed,
                format!("bad SNI `{sni}`: {e}"),
            )),
        };
        obs.elapsed = start.elapsed();
        if let Some(seen) = recorder.seen.lock().expect("recorder lock").take() {
            obs.certs = seen.chain;
            obs.verified = Some(seen.error.is_none());
            obs.cert_error = seen.error;
        }
        match result {
            Ok(s) => {
                let (_, conn) = s.get_ref();
                obs.ok = true;
                obs.version = conn.protocol_version().map(|v| format!("{v:?}"));
                obs.alpn = conn
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                (obs, Some(s))
            }
            Err(f) => {
                obs.phase = Some(if obs.verified.is_some() {
                    TlsPhase::AfterCertificate
                } else {
                    TlsPhase::BeforeCertificate
                });
                obs.failure = Some(f);
                (obs, None)
            }
        }
    }
}

#[derive(Debug)]
struct Seen {
    chain: Vec<CertInfo>,
    error: Option<String>,
}

/// Verifies like webpki, records the outcome and the chain, and lets the handshake continue.
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    verified: Arc<VerifiedChains>,
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

fn cert_info(der: &CertificateDer<'_>) -> CertInfo {
    let sha256 = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sha256,
        },
        Err(_) => CertInfo {
            subject: "<unparsable>".into(),
            issuer: String::new(),
            sha256,
        },
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain once per run (cached); the name on every handshake.
        let _ = ocsp_response; // not checked without revocation configured, as in rustls
        let chain = self.verified.chain(end_entity, intermediates, now);
        let error = chain.error.clone().or_else(|| {
            rustls::server::ParsedCertificate::try_from(end_entity)
                .and_then(|cert| rustls::client::verify_server_name(&cert, server_name))
                .err()
                .map(|e| e.to_string())
        });
        let seen = Seen {
            chain: chain.chain.clone(),
            error,
        };
        *self.seen.lock().expect("recorder lock") = Some(seen);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a verified chain is reused across handshakes, but the name is checked on each:
    /// the same chain presented for another name does not verify (and a later time bucket
    /// verifies the chain again).
    #[tokio::test]
    async fn issue_14_verified_chains_are_reused_per_name_only() {
        let pki = crate::mocknet::pki::Pki::generate("cache test CA").unwrap();
        let server = pki.server_config(&["a.example"], &[b"http/1.1"]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        for c in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let client = TlsClient::new(Arc::new(roots)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(s).await;
                });
            }
        });
        let mut verdicts = Vec::new();
        for sni in ["a.example", "b.example", "a.example", "b.example"] {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (obs, _) = client
                .handshake(s, sni, &[b"http/1.1"], Duration::from_secs(5))
                .await;
            assert_eq!(obs.certs.len(), 2, "{obs:?}");
            verdicts.push(obs.verified);
        }
        assert_eq!(verdicts, [Some(true), Some(false), Some(true), Some(false)]);
        // One chain, verified once; the name checked on each handshake.
        assert_eq!(client.verified.cache.lock().unwrap().len(), 1);

        let c = CertificateDer::from(vec![1u8, 2, 3]);
        let t = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        assert_eq!(
            VerifiedChains::key(&c, &[], t(1_200)),
            VerifiedChains::key(&c, &[], t(1_799))
        );
        assert_ne!(
            VerifiedChains::key(&c, &[], t(1_799)),
            VerifiedChains::key(&c, &[], t(1_800))
        );
    }
}

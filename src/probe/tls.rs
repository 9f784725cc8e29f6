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

use crate::probe::dns::ser_ms;
use crate::probe::failure::{Failure, FailureKind};

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
}

impl TlsClient {
    pub fn new(roots: Arc<rustls::RootCertStore>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki =
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build()?;
        Ok(Self { webpki, provider })
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
#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
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
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(cert_info)
            .collect();
        *self.seen.lock().expect("recorder lock") = Some(Seen {
            chain,
            error: verdict.err().map(|e| e.to_string()),
        });
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

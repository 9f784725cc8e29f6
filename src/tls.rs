//! TLS client configuration shared by every TLS user (DoT, DoH, the TLS probe): the webpki
//! roots plus the certificates of `--ca-file`, on the ring provider. Read once per run.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::probe::tls::TlsClient;

fn roots(ca_file: Option<&Path>) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read CA file {}", path.display()))?
        {
            let cert = cert.with_context(|| format!("bad PEM in CA file {}", path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("unusable certificate in CA file {}", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "CA file {} holds no certificate", path.display());
    }
    Ok(Arc::new(roots))
}

fn client_config(
    roots: &Arc<RootCertStore>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS provider")?
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// For the PostgreSQL store. `verify`: the server's certificate must chain to the webpki
/// roots or `ca_file` (libpq's `verify-full`); otherwise the connection is encrypted but the
/// certificate is not checked (libpq's `prefer` and `require`).
pub fn store_config(ca_file: Option<&Path>, verify: bool) -> anyhow::Result<rustls::ClientConfig> {
    let roots = roots(ca_file)?;
    let config = Arc::unwrap_or_clone(client_config(&roots, &[])?);
    if verify {
        return Ok(config);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
        .build()
        .context("TLS verifier")?;
    let mut config = config;
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(EncryptOnly(inner)));
    Ok(config)
}

/// Accepts any certificate (signatures are still checked): encryption without authentication.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The TLS configurations a scan needs, built once per run.
#[derive(Clone)]
pub struct TlsConfigs {
    pub dot: Arc<rustls::ClientConfig>,
    pub doh: Arc<rustls::ClientConfig>,
    /// Verifies nothing (signatures aside): the QUIC decoy's handshake.
    pub any_cert: Arc<rustls::ClientConfig>,
    /// For the TLS probe: verifies like the others, but records instead of refusing.
    pub probe: TlsClient,
}

impl TlsConfigs {
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let roots = roots(ca_file)?;
        Ok(Self {
            dot: client_config(&roots, &[b"dot"])?,
            doh: client_config(&roots, &[b"h2", b"http/1.1"])?,
            any_cert: Arc::new(store_config(ca_file, false)?),
            probe: TlsClient::new(roots)?,
        })
    }
}

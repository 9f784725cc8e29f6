//! TLS client configuration shared by every TLS user (DoT, DoH, later the TLS probe): the
//! webpki roots plus the certificates of `--ca-file`, on the ring provider.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// Builds a client config trusting the webpki roots and, if given, the PEM certificates in
/// `ca_file`. `alpn` is set per use (DoT: `dot`, DoH over HTTP/1.1: `http/1.1`).
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The TLS configurations a scan needs, built once per run.
#[derive(Clone)]
pub struct TlsConfigs {
    pub dot: Arc<rustls::ClientConfig>,
    pub doh: Arc<rustls::ClientConfig>,
}

impl TlsConfigs {
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            dot: client_config(ca_file, &[b"dot"])?,
            doh: client_config(ca_file, &[b"http/1.1"])?,
        })
    }
}

//! A certificate authority generated at start-up, and server certificates it signs. The CA
//! certificate is written to a PEM file that a scan trusts with `--ca-file`.

use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by the CA, and its key.
    fn sign(&self, names: &[&str]) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
        let owned: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(owned).context("certificate names")?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("mocknet"),
        );
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key.
    pub fn issue(
        &self,
        names: &[&str],
    ) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let (cert, key) = self.sign(names)?;
        Ok((
            vec![cert.der().clone(), self.ca_der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    /// The same as PEM text, the chain (certificate, then CA) and the key, for servers that
    /// read files, such as a real resolver started by the tests.
    pub fn issue_pem(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let (cert, key) = self.sign(names)?;
        Ok((cert.pem() + &self.ca_pem, key.serialize_pem()))
    }

    /// A rustls server configuration presenting a certificate for `names`.
    pub fn server_config(
        &self,
        names: &[&str],
        alpn: &[&[u8]],
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let (chain, key) = self.issue(names)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

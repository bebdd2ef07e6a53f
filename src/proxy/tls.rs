//! TLS on both sides: the listener's server certificate (hot-reloaded) and a
//! client configuration per trunk (CA, SNI name, optional client certificate).
//! Always the ring provider.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, anyhow};
use arc_swap::ArcSwapOption;
use rustls::{
    ClientConfig, RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio_rustls::TlsAcceptor;

use crate::config::{ListenConfig, TlsMaterial};

/// TLS settings for dialing a trunk (or the upstream): the client configuration
/// and the name the certificate must carry (SNI).
#[derive(Clone)]
pub struct DialTls {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: String,
}

impl std::fmt::Debug for DialTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DialTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn certs_from_pem(pem: &[u8], what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    let certs = certs.map_err(|e| anyhow!("{what}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(anyhow!("{what}: no certificate found"));
    }
    Ok(certs)
}

fn key_from_pem(pem: &[u8], what: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| anyhow!("{what}: no usable private key: {e}"))
}

fn roots_from_pem(pem: &[u8], what: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem, what)? {
        roots
            .add(cert)
            .map_err(|e| anyhow!("{what}: bad CA certificate: {e}"))?;
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        let _ = roots.add(cert);
    }
    roots
}

/// Either inline PEM or a file; inline wins.
fn material(
    pem: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> anyhow::Result<Option<Vec<u8>>> {
    match (pem, file) {
        (Some(p), _) => Ok(Some(p.as_bytes().to_vec())),
        (None, Some(f)) => Ok(Some(read(f)?)),
        (None, None) => Ok(None),
    }
}

/// Client configuration used to dial one trunk's SBC.
pub fn client_config(tls: Option<&TlsMaterial>) -> anyhow::Result<Arc<ClientConfig>> {
    let empty = TlsMaterial::default();
    let tls = tls.unwrap_or(&empty);
    let roots = match material(&tls.ca_pem, &tls.ca_file)? {
        Some(pem) => roots_from_pem(&pem, "trunk CA")?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let cert = material(&tls.client_cert_pem, &tls.client_cert_file)?;
    let key = material(&tls.client_key_pem, &tls.client_key_file)?;
    let config = match (cert, key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(
                certs_from_pem(&c, "client certificate")?,
                key_from_pem(&k, "client key")?,
            )
            .map_err(|e| anyhow!("client certificate and key do not match: {e}"))?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(anyhow!("client certificate and key must be given together")),
    };
    Ok(Arc::new(config))
}

/// Builds the listener's server configuration from files.
pub fn server_config(listen: &ListenConfig) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    let Some(files) = &listen.tls_certificate else {
        return Ok(None);
    };
    let certs = certs_from_pem(&read(&files.cert_file)?, "listener certificate")?;
    let key = key_from_pem(&read(&files.key_file)?, "listener key")?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?;
    let builder = match &listen.client_ca_file {
        Some(ca) => {
            let roots = roots_from_pem(&read(ca)?, "client CA")?;
            // Trunks may present a certificate (mTLS identification); carriers may not.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| anyhow!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("listener certificate and key do not match: {e}"))?;
    Ok(Some(Arc::new(config)))
}

/// The TLS acceptor in use; swapped when the certificate files change.
pub struct ListenerTls {
    acceptor: ArcSwapOption<TlsAcceptor>,
}

impl ListenerTls {
    pub fn new(listen: &ListenConfig) -> anyhow::Result<Self> {
        let acceptor = server_config(listen)?.map(|c| Arc::new(TlsAcceptor::from(c)));
        Ok(Self {
            acceptor: ArcSwapOption::new(acceptor),
        })
    }

    pub fn acceptor(&self) -> Option<Arc<TlsAcceptor>> {
        self.acceptor.load_full()
    }

    pub fn reload(&self, listen: &ListenConfig) -> anyhow::Result<()> {
        if let Some(c) = server_config(listen)? {
            self.acceptor.store(Some(Arc::new(TlsAcceptor::from(c))));
        }
        Ok(())
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Fingerprint of the files the listener certificate comes from.
pub fn files_stamp(listen: &ListenConfig) -> Vec<Option<SystemTime>> {
    let mut v = Vec::new();
    if let Some(f) = &listen.tls_certificate {
        v.push(mtime(&f.cert_file));
        v.push(mtime(&f.key_file));
    }
    if let Some(ca) = &listen.client_ca_file {
        v.push(mtime(ca));
    }
    v
}

pub const CERT_POLL: Duration = Duration::from_millis(500);

/// DNS names (SAN dNSName, else CN) in a peer's leaf certificate.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in parsed.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    names
}

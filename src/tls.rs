//! TLS for the HTTP listener: the rustls server configuration built from `--tls-cert` and
//! `--tls-key` (PEM), with the ring provider and ALPN `h2`, `http/1.1`. Read at start, before any
//! side effect: a missing or malformed file refuses the start, naming the flag and the file.
//! The Aether gateway's configuration (`--aether-tls-*`, optionally requiring client
//! certificates) is built here too.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// ALPN protocols offered, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why the TLS configuration could not be built. Startup errors: the file is named (on stderr),
/// never in an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {message}")]
    Cert { path: String, message: String },
    #[error("--tls-key {path}: {message}")]
    Key { path: String, message: String },
    #[error("--tls-cert {cert} with --tls-key {key}: {message}")]
    Pair { cert: String, key: String, message: String },
    /// The gateway's files (`--aether-tls-*`): the flag is named in `flag`.
    #[error("{flag} {path}: {message}")]
    Gateway { flag: &'static str, path: String, message: String },
}

/// A server configuration for the HTTP listener.
#[derive(Clone, Debug)]
pub struct TlsConfig(Arc<ServerConfig>);

impl TlsConfig {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, SEC1 or RSA).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let cert_name = cert.display().to_string();
        let key_name = key.display().to_string();
        let chain = read_chain(cert).map_err(|message| TlsError::Cert { path: cert_name.clone(), message })?;
        let private = read_key(key).map_err(|message| TlsError::Key { path: key_name.clone(), message })?;
        let pair = |message: String| TlsError::Pair { cert: cert_name.clone(), key: key_name.clone(), message };
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| pair(e.to_string()))?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(TlsConfig(Arc::new(config)))
    }

    /// The Aether gateway's configuration (`--aether-tls-cert`, `--aether-tls-key`, ALPN `h2`
    /// only: gRPC). With `client_ca` (`--aether-tls-client-ca`), every client must present a
    /// certificate chained to one of that file's certificates, else the handshake is refused.
    pub fn gateway(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsConfig, TlsError> {
        let err = |flag: &'static str, path: &Path| {
            let path = path.display().to_string();
            move |message: String| TlsError::Gateway { flag, path, message }
        };
        let chain = read_chain(cert).map_err(err("--aether-tls-cert", cert))?;
        let private = read_key(key).map_err(err("--aether-tls-key", key))?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("--aether-tls-cert", cert)(e.to_string()))?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in read_chain(ca).map_err(err("--aether-tls-client-ca", ca))? {
                    roots.add(c).map_err(|e| err("--aether-tls-client-ca", ca)(e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| err("--aether-tls-client-ca", ca)(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, private)
            .map_err(|e| err("--aether-tls-key", key)(format!("does not match --aether-tls-cert: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(TlsConfig(Arc::new(config)))
    }

    /// The configuration for serving.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.0.clone()
    }

    /// The same keys offering only HTTP/1.1: used to answer a connection the node refuses with
    /// a plain HTTP/1.1 status line.
    pub fn http1_only(&self) -> Arc<ServerConfig> {
        let mut config = (*self.0).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// A PEM file's certificates (at least one).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_message(e, "CERTIFICATE"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE section found".into());
    }
    Ok(chain)
}

/// A PEM file's private key (PKCS#8, SEC1 or RSA).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| pem_message(e, "PRIVATE KEY (PKCS#8), EC PRIVATE KEY or RSA PRIVATE KEY"))
}

fn pem_message(e: tokio_rustls::rustls::pki_types::pem::Error, wanted: &str) -> String {
    use tokio_rustls::rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("cannot read: {io}"),
        Error::NoItemsFound => format!("no {wanted} section found"),
        other => format!("not valid PEM: {other}"),
    }
}

//! The listener's certificate and key: read from PEM files into a rustls acceptor, at start
//! and on SIGHUP, and held where the accept loop takes one per connection. Both are read
//! like the config file: regular files of at most 1 MiB, so a FIFO or a device in their
//! place is refused at once instead of hanging the start or a reload.

use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::config::TlsFiles;

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read the TLS key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the TLS certificate {cert} and key {key} do not make a server identity: {message}")]
    Identity {
        cert: String,
        key: String,
        message: String,
    },
}

/// The HTTPS side of the listener, shared with the daemon, which swaps it on SIGHUP.
#[derive(Default)]
pub struct Tls(RwLock<Option<tokio_rustls::TlsAcceptor>>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.get().is_some() {
            "Tls(on)"
        } else {
            "Tls(off)"
        })
    }
}

impl Tls {
    pub fn new(acceptor: Option<tokio_rustls::TlsAcceptor>) -> Tls {
        Tls(RwLock::new(acceptor))
    }

    /// The acceptor for the next connection, if TLS is on.
    pub fn get(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the acceptor; connections already open keep theirs.
    pub fn set(&self, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
    }
}

/// Reads a PEM certificate chain and private key into an acceptor.
pub fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = |p: &Path| p.display().to_string();
    let cert_pem = crate::config::read_regular_file(&files.cert).map_err(|e| TlsError::Cert {
        path: shown(&files.cert),
        message: e.to_string(),
    })?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert {
            path: shown(&files.cert),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: shown(&files.cert),
            message: "no CERTIFICATE block in it".into(),
        });
    }
    let key_pem = crate::config::read_regular_file(&files.key).map_err(|e| TlsError::Key {
        path: shown(&files.key),
        message: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: shown(&files.key),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| TlsError::Identity {
            cert: shown(&files.cert),
            key: shown(&files.key),
            message: e.to_string(),
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

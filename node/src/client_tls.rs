//! TLS for CQL clients (`client_encryption`): the rustls server configuration of the CQL listener.
//!
//! The node shows `cert` (a chain, PEM) with `key`; with `require_client_auth` a client must show
//! a certificate chaining to `ca`. TLS 1.2 and 1.3 are offered (cqlsh and the drivers use
//! Python's `ssl`, which may ask for either), with the `ring` provider like the internode
//! transport. With `optional`, the listener also takes plain connections: a TLS connection opens
//! with a handshake record (first byte 0x16), a CQL one with a protocol version byte.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::config::ClientEncryption;

/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the CQL listener does with TLS.
#[derive(Clone)]
pub struct ClientTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Plain connections are accepted too.
    pub optional: bool,
}

/// Why the client TLS files cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("client_encryption: {path}: {reason}")]
pub struct ClientTlsError {
    pub path: String,
    pub reason: String,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> ClientTlsError {
    ClientTlsError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, format!("cannot parse PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// Builds the listener's TLS from the configuration; `None` when it is off.
pub fn load(config: &ClientEncryption) -> Result<Option<ClientTls>, ClientTlsError> {
    if !config.enabled {
        return Ok(None);
    }
    let missing = |what: &str| ClientTlsError {
        path: what.to_string(),
        reason: "not set".to_string(),
    };
    let cert_path = config.cert.as_deref().ok_or_else(|| missing("cert"))?;
    let key_path = config.key.as_deref().ok_or_else(|| missing("key"))?;
    let chain = certificates(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| err(key_path, format!("cannot read a private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| err(cert_path, e))?;
    let builder = if config.require_client_auth {
        let ca_path = config.ca.as_deref().ok_or_else(|| missing("ca"))?;
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca_path)? {
            roots
                .add(cert)
                .map_err(|e| err(ca_path, format!("not a usable CA certificate: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| err(ca_path, e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| err(key_path, format!("does not match the certificate: {e}")))?;
    Ok(Some(ClientTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        optional: config.optional,
    }))
}

//! TLS for CQL clients (`client_encryption`): the rustls server configuration of the CQL listener.
//!
//! The node shows `cert` (a chain, PEM) with `key`; with `require_client_auth` a client must show
//! a certificate chaining to `ca`. TLS 1.2 and 1.3 are offered (cqlsh and the drivers use
//! Python's `ssl`, which may ask for either), with the `ring` provider like the internode
//! transport. With `optional`, the listener also takes plain connections: a TLS connection opens
//! with a handshake record (first byte 0x16), a CQL one with a protocol version byte.
//!
//! The files can be replaced and reloaded while the node runs ([`crate::cert_reload`]): a reload
//! builds a whole new configuration with [`prepare`] — which checks that the key matches the
//! certificate, that the certificate is valid now and that the CA file is usable — and only then
//! swaps it in with [`ClientTls::install`]. Connections already open keep their session; new
//! handshakes use the new files.

use std::path::Path;
use std::sync::{Arc, RwLock};

use ringdb_gossip::certs::CertInfo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::config::ClientEncryption;

/// The first byte of a TLS handshake record.
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What the CQL listener does with TLS. Clones share the configuration in use, so an
/// [`install`](ClientTls::install) reaches every one.
#[derive(Clone)]
pub struct ClientTls {
    active: Arc<RwLock<PreparedClientTls>>,
    /// Plain connections are accepted too.
    pub optional: bool,
}

/// A client TLS configuration built from the files and checked, not yet in use.
#[derive(Clone)]
pub struct PreparedClientTls {
    acceptor: tokio_rustls::TlsAcceptor,
    info: CertInfo,
}

impl PreparedClientTls {
    /// The server certificate this configuration shows clients.
    pub fn certificate(&self) -> &CertInfo {
        &self.info
    }
}

impl ClientTls {
    /// The acceptor for a new connection: the configuration in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.read().acceptor.clone()
    }

    /// The server certificate new handshakes show.
    pub fn certificate(&self) -> CertInfo {
        self.read().info.clone()
    }

    /// Makes new handshakes use `prepared`; returns its certificate.
    pub fn install(&self, prepared: PreparedClientTls) -> CertInfo {
        let info = prepared.info.clone();
        *self
            .active
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = prepared;
        info
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PreparedClientTls> {
        // Every writer leaves a whole configuration behind: a poisoned lock is still consistent.
        self.active
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
    Ok(Some(ClientTls {
        active: Arc::new(RwLock::new(prepare(config)?)),
        optional: config.optional,
    }))
}

/// Reads and checks the files of an enabled `client_encryption` and builds the configuration,
/// installing nothing: the key must match the certificate, the certificate must be valid now,
/// and with `require_client_auth` the CA file must hold usable CA certificates.
pub fn prepare(config: &ClientEncryption) -> Result<PreparedClientTls, ClientTlsError> {
    let missing = |what: &str| ClientTlsError {
        path: what.to_string(),
        reason: "not set".to_string(),
    };
    let cert_path = config.cert.as_deref().ok_or_else(|| missing("cert"))?;
    let key_path = config.key.as_deref().ok_or_else(|| missing("key"))?;
    let chain = certificates(cert_path)?;
    let end_entity = chain
        .first()
        .ok_or_else(|| err(cert_path, "no CERTIFICATE in the file"))?;
    let info = CertInfo::from_der(end_entity).map_err(|e| err(cert_path, e))?;
    info.check_valid_at(ringdb_gossip::certs::unix_now())
        .map_err(|e| err(cert_path, e))?;
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
    Ok(PreparedClientTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        info,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use ringdb_gossip::certs;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A CA and a server certificate issued by it, in a temp dir; `issue` again replaces them.
    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().expect("temp dir");
            certs::create_ca(&dir.path().join("ca"), "client CA").expect("CA");
            let files = Files { dir };
            files.issue();
            files
        }

        fn issue(&self) {
            certs::issue(
                &self.dir.path().join("ca"),
                "server",
                &[std::net::IpAddr::from([127, 0, 0, 1])],
                &[],
                self.dir.path(),
            )
            .expect("issue");
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn config(&self) -> ClientEncryption {
            ClientEncryption {
                enabled: true,
                cert: Some(self.path("server.crt")),
                key: Some(self.path("server.key")),
                ..ClientEncryption::default()
            }
        }
    }

    /// Serves one TLS handshake with `tls` and returns the certificate a client saw.
    async fn handshake(tls: &ClientTls, ca: &Path) -> CertInfo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tls.acceptor();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut stream = acceptor.accept(socket).await.expect("server handshake");
            let mut byte = [0u8; 1];
            let _ = stream.read_exact(&mut byte).await;
        });
        let mut roots = RootCertStore::empty();
        for cert in certificates(ca).expect("CA") {
            roots.add(cert).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut stream =
            tokio::time::timeout(Duration::from_secs(10), connector.connect(name, socket))
                .await
                .expect("handshake in time")
                .expect("client handshake");
        let seen = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|der| CertInfo::from_der(der).expect("parse"))
            .expect("a server certificate");
        stream.write_all(b"x").await.expect("write");
        server.await.expect("server task");
        seen
    }

    #[tokio::test]
    async fn a_reload_swaps_the_certificate_for_new_handshakes() {
        let files = Files::new();
        let config = files.config();
        let tls = load(&config).expect("load").expect("enabled");
        let ca = files.path("ca.crt");
        let old = tls.certificate();
        assert_eq!(handshake(&tls, &ca).await, old);

        files.issue();
        let prepared = prepare(&config).expect("prepare");
        assert_ne!(prepared.certificate().sha256, old.sha256);
        assert_eq!(tls.certificate(), old, "preparing changes nothing");
        let clone = tls.clone();
        let new = tls.install(prepared);
        assert_eq!(clone.certificate(), new, "every clone sees the swap");
        assert_eq!(handshake(&clone, &ca).await, new);
    }

    #[tokio::test]
    async fn broken_files_are_refused_naming_the_file() {
        let files = Files::new();
        let config = files.config();
        let tls = load(&config).expect("load").expect("enabled");
        let old = tls.certificate();
        let key = files.path("server.key");
        let original_key = std::fs::read(&key).expect("key");

        let other = Files::new();
        std::fs::copy(other.path("server.key"), &key).expect("copy");
        let e = prepare(&config).err().expect("mismatched key refused");
        assert!(e.path.ends_with("server.key"), "{e}");
        assert!(e.reason.contains("does not match"), "{e}");

        std::fs::write(&key, b"garbage").expect("write");
        let e = prepare(&config).err().expect("garbage key refused");
        assert!(e.path.ends_with("server.key"), "{e}");

        std::fs::write(&key, &original_key).expect("restore");
        std::fs::remove_file(files.path("server.crt")).expect("remove");
        let e = prepare(&config).err().expect("missing certificate refused");
        assert!(e.path.ends_with("server.crt"), "{e}");

        assert_eq!(tls.certificate(), old);
        assert_eq!(handshake(&tls, &files.path("ca.crt")).await, old);
    }

    #[test]
    fn validity_dates_are_checked() {
        let files = Files::new();
        let info = CertInfo::from_pem_file(&files.path("server.crt")).expect("info");
        assert!(info.check_valid_at(certs::unix_now()).is_ok());
        let e = info.check_valid_at(info.not_after + 1).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        let e = info.check_valid_at(info.not_before - 1).unwrap_err();
        assert!(e.contains("not valid yet"), "{e}");
    }
}

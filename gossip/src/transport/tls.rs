//! Mutual TLS for the internode transport: loading the node's files, checking them, and building
//! the rustls/quinn configurations for both sides of a connection.
//!
//! Both sides trust the cluster CA — the certificates of the CA file, normally one, two while the
//! CA is being rotated (a bundle of the old and the new) — and both present a certificate issued
//! by it (`ringdb certs issue` gives node certificates both the server and the client usage).
//!
//! Loading is split in two so that it can be tested without files or a clock:
//! [`load_identity`] reads the three files, [`identity_from_pem`] checks their contents at a
//! given time. The same checks run at start and on every reload
//! ([`super::Transport::reload_tls`]), so a reload can never install what a start would refuse.
//!
//! Names are deliberately **not** checked: a node verifies that the peer's chain leads to the
//! cluster CA, and nothing else. Nodes in containers or Kubernetes are dialed at IP addresses
//! that did not exist when their certificates were issued, and the CA is private to the cluster,
//! so possession of a certificate from it *is* the credential. Clients therefore dial every node
//! with the fixed server name [`SERVER_NAME`]. Only TLS 1.3 is offered (QUIC requires it) and
//! only the `ring` crypto provider is used.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsFiles, TransportError};
use crate::certs::CertInfo;

/// The ALPN protocol of the internode transport; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"ringdb/1";

/// The server name every node dials: certificate names are not checked (see the module docs).
pub const SERVER_NAME: &str = "ringdb-node";

/// The crypto provider used everywhere: `ring`, set explicitly so that no process-wide default
/// (and no aws-lc) is ever needed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node's TLS material, loaded and checked.
pub(crate) struct Identity {
    /// The cluster CA as the only trust anchor (several during a CA rotation: a bundle).
    pub roots: Arc<RootCertStore>,
    /// The node's certificate chain, end entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
    /// What the node certificate is, for logs and operators.
    pub info: CertInfo,
}

fn tls_error(path: &Path, reason: impl Into<String>) -> TransportError {
    TransportError::Tls {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a whole TLS file.
fn read_file(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|e| tls_error(path, format!("cannot read the file: {e}")))
}

/// Every certificate in PEM text; at least one must be there. `path` names the source in errors.
fn parse_certificates(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("cannot parse PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no CERTIFICATE found in the file"));
    }
    Ok(certs)
}

/// Reads every certificate in a PEM file; at least one must be there.
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    parse_certificates(path, &read_file(path)?)
}

/// The first private key (PKCS#8, SEC1 or PKCS#1) in PEM text.
fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| tls_error(path, format!("cannot read a private key: {e}")))
}

/// A root store holding exactly the certificates of the CA file.
pub(crate) fn root_store(
    ca_path: &Path,
    ca_certs: Vec<CertificateDer<'static>>,
) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in ca_certs {
        roots
            .add(cert)
            .map_err(|e| tls_error(ca_path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Checks that `chain` (end entity first) leads to one of `roots` and may be used both to accept
/// connections (server auth) and to dial them (client auth), as a node's certificate must.
pub(crate) fn check_node_chain(
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
) -> Result<(), rustls::Error> {
    check_node_chain_at(roots, chain, UnixTime::now())
}

/// [`check_node_chain`] at a given time (validity periods are checked against `now`).
fn check_node_chain_at(
    roots: &Arc<RootCertStore>,
    chain: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let provider = provider();
    let (end_entity, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        now,
        provider.signature_verification_algorithms.all,
    )?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    client_verifier.verify_client_cert(end_entity, intermediates, now)?;
    Ok(())
}

/// Loads the CA, the node certificate and its key, and checks that they belong together (see
/// [`identity_from_pem`]). Every error names the file at fault.
pub(crate) fn load_identity(files: &TlsFiles) -> Result<Identity, TransportError> {
    let ca = read_file(&files.ca)?;
    let cert = read_file(&files.cert)?;
    let key = read_file(&files.key)?;
    identity_from_pem(files, &ca, &cert, &key, UnixTime::now())
}

/// The checks of a node identity, on the files' contents (no I/O, time given): the CA file holds
/// usable CA certificates, the key matches the certificate, and the certificate chains to the
/// CA for both usages and is valid at `now`. `files` only names the files in errors.
pub(crate) fn identity_from_pem(
    files: &TlsFiles,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    now: UnixTime,
) -> Result<Identity, TransportError> {
    let roots = Arc::new(root_store(
        &files.ca,
        parse_certificates(&files.ca, ca_pem)?,
    )?);
    let chain = parse_certificates(&files.cert, cert_pem)?;
    let key = parse_private_key(&files.key, key_pem)?;
    let end_entity = chain
        .first()
        .ok_or_else(|| tls_error(&files.cert, "no CERTIFICATE found in the file"))?;
    let info = CertInfo::from_der(end_entity).map_err(|e| tls_error(&files.cert, e))?;
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(
        |e| {
            tls_error(
                &files.key,
                format!(
                    "this key cannot be used with the certificate in {}: {e}",
                    files.cert.display()
                ),
            )
        },
    )?;
    check_node_chain_at(&roots, &chain, now).map_err(|e| {
        tls_error(
            &files.cert,
            format!(
                "not a valid node certificate of the cluster CA in {}: {e}",
                files.ca.display()
            ),
        )
    })?;
    Ok(Identity {
        roots,
        chain,
        key,
        info,
    })
}

fn config_error(files: &TlsFiles, e: impl std::fmt::Display) -> TransportError {
    tls_error(
        &files.cert,
        format!("cannot build a TLS configuration: {e}"),
    )
}

/// The rustls server side: TLS 1.3, client certificate REQUIRED and verified against the CA.
pub(crate) fn server_crypto(
    files: &TlsFiles,
    identity: &Identity,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TransportError> {
    let provider = provider();
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(identity.roots.clone(), provider.clone())
            .build()
            .map_err(|e| config_error(files, e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_error(files, e))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_error(files, e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| config_error(files, e))
}

/// The rustls client side: TLS 1.3, presents the node certificate, verifies the server's chain
/// (not its name) against the CA.
pub(crate) fn client_crypto(
    files: &TlsFiles,
    identity: &Identity,
) -> Result<quinn::crypto::rustls::QuicClientConfig, TransportError> {
    let provider = provider();
    let verifier = Arc::new(ClusterCaVerifier {
        roots: identity.roots.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_error(files, e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| config_error(files, e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| config_error(files, e))
}

/// Verifies a server's certificate chain against the cluster CA and ignores the server name.
///
/// The chain check is the very function `rustls`' `WebPkiServerVerifier` runs before its name
/// check (`verify_server_cert_signed_by_trust_anchor`: signatures, validity period, CA
/// constraints and the server-auth usage); only the name check is left out, for the reasons in
/// the module docs. Handshake signatures are verified exactly as `WebPkiServerVerifier` does.
#[derive(Debug)]
pub(crate) struct ClusterCaVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ClusterCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::certs;

    /// A CA in a temp dir and the PEM bytes of what it issues.
    struct Pki {
        dir: tempfile::TempDir,
    }

    /// One node's files, read back.
    struct Pem {
        files: TlsFiles,
        ca: Vec<u8>,
        cert: Vec<u8>,
        key: Vec<u8>,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().expect("temp dir");
            certs::create_ca(&dir.path().join("ca"), "test CA").expect("CA");
            Pki { dir }
        }

        fn issue(&self, name: &str) -> Pem {
            let files = certs::issue(
                &self.dir.path().join("ca"),
                name,
                &[std::net::IpAddr::from([127, 0, 0, 1])],
                &[],
                &self.dir.path().join(name),
            )
            .expect("issue");
            let read = |p: &PathBuf| std::fs::read(p).expect("read");
            Pem {
                ca: read(&files.ca),
                cert: read(&files.cert),
                key: read(&files.key),
                files: TlsFiles::from(files),
            }
        }
    }

    fn check(pem: &Pem, ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Identity, TransportError> {
        identity_from_pem(&pem.files, ca, cert, key, UnixTime::now())
    }

    fn reason_about(result: Result<Identity, TransportError>, path: &Path) -> String {
        match result {
            Err(TransportError::Tls { path: at, reason }) => {
                assert_eq!(at, path, "{reason}");
                reason
            }
            Err(other) => panic!("expected a TLS error naming {}: {other}", path.display()),
            Ok(_) => panic!("expected a TLS error naming {}", path.display()),
        }
    }

    #[test]
    fn a_good_identity_is_described() {
        let pki = Pki::new();
        let node = pki.issue("node1");
        let identity = check(&node, &node.ca, &node.cert, &node.key).expect("valid");
        assert!(
            identity.info.subject.contains("CN=node1"),
            "{:?}",
            identity.info
        );
        assert!(
            identity.info.issuer.contains("CN=test CA"),
            "{:?}",
            identity.info
        );
        assert_eq!(identity.info.sha256.len(), 64);
        assert!(identity.info.not_before < identity.info.not_after);
        let again = pki.issue("node1");
        let other = check(&again, &again.ca, &again.cert, &again.key).expect("valid");
        assert_ne!(identity.info.sha256, other.info.sha256);
        assert_ne!(identity.info.serial, other.info.serial);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_key() {
        let pki = Pki::new();
        let node = pki.issue("node1");
        let other = pki.issue("node2");
        let reason = reason_about(
            check(&node, &node.ca, &node.cert, &other.key),
            &node.files.key,
        );
        assert!(
            reason.contains("cannot be used with the certificate"),
            "{reason}"
        );
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused_naming_the_certificate() {
        let node = Pki::new().issue("node1");
        let stranger = Pki::new().issue("node1");
        let reason = reason_about(
            check(&node, &node.ca, &stranger.cert, &stranger.key),
            &node.files.cert,
        );
        assert!(reason.contains("not a valid node certificate"), "{reason}");
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_refused() {
        let pki = Pki::new();
        let node = pki.issue("node1");
        let in_eleven_years = UnixTime::since_unix_epoch(Duration::from_secs(
            UnixTime::now().as_secs() + 11 * 365 * 24 * 3600,
        ));
        let reason = reason_about(
            identity_from_pem(
                &node.files,
                &node.ca,
                &node.cert,
                &node.key,
                in_eleven_years,
            ),
            &node.files.cert,
        );
        assert!(reason.to_lowercase().contains("expired"), "{reason}");
        let long_ago = UnixTime::since_unix_epoch(Duration::from_secs(1_000_000));
        let reason = reason_about(
            identity_from_pem(&node.files, &node.ca, &node.cert, &node.key, long_ago),
            &node.files.cert,
        );
        assert!(reason.to_lowercase().contains("not valid yet"), "{reason}");
    }

    #[test]
    fn garbage_and_empty_files_are_refused_naming_the_file() {
        let pki = Pki::new();
        let node = pki.issue("node1");
        let reason = reason_about(check(&node, b"", &node.cert, &node.key), &node.files.ca);
        assert!(reason.contains("no CERTIFICATE"), "{reason}");
        let reason = reason_about(
            check(
                &node,
                &node.ca,
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n",
                &node.key,
            ),
            &node.files.cert,
        );
        assert!(reason.contains("cannot parse"), "{reason}");
        let reason = reason_about(
            check(&node, &node.ca, &node.cert, b"hello"),
            &node.files.key,
        );
        assert!(reason.contains("private key"), "{reason}");
        // The key file given where the certificate belongs, and the other way round.
        reason_about(
            check(&node, &node.ca, &node.key, &node.key),
            &node.files.cert,
        );
        reason_about(
            check(&node, &node.ca, &node.cert, &node.cert),
            &node.files.key,
        );
    }

    #[test]
    fn a_ca_bundle_accepts_certificates_of_each_of_its_cas() {
        let old = Pki::new().issue("node1");
        let new = Pki::new().issue("node1");
        let bundle = [old.ca.clone(), new.ca.clone()].concat();
        check(&old, &bundle, &old.cert, &old.key).expect("old CA's certificate");
        check(&old, &bundle, &new.cert, &new.key).expect("new CA's certificate");
        assert_eq!(
            check(&old, &bundle, &old.cert, &old.key)
                .expect("valid")
                .roots
                .len(),
            2
        );
    }
}

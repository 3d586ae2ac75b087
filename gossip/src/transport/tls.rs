//! Mutual TLS for the internode transport: loading the node's files, checking them, and building
//! the rustls/quinn configurations for both sides of a connection.
//!
//! Both sides trust exactly one root, the cluster CA, and both present a certificate issued by it
//! (`ringdb certs issue` gives node certificates both the server and the client usage).
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
    /// The cluster CA as the only trust anchor.
    pub roots: Arc<RootCertStore>,
    /// The node's certificate chain, end entity first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's private key.
    pub key: PrivateKeyDer<'static>,
}

fn tls_error(path: &Path, reason: impl Into<String>) -> TransportError {
    TransportError::Tls {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads every certificate in a PEM file; at least one must be there.
pub(crate) fn read_certificates(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format!("cannot parse PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no CERTIFICATE found in the file"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, SEC1 or PKCS#1) from a PEM file.
pub(crate) fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_file(path)
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
    let provider = provider();
    let (end_entity, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    let now = UnixTime::now();
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

/// Loads the CA, the node certificate and its key, and checks that they belong together: the key
/// matches the certificate, and the certificate chains to the CA for both usages. Every error
/// names the file at fault.
pub(crate) fn load_identity(files: &TlsFiles) -> Result<Identity, TransportError> {
    let roots = Arc::new(root_store(&files.ca, read_certificates(&files.ca)?)?);
    let chain = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
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
    check_node_chain(&roots, &chain).map_err(|e| {
        tls_error(
            &files.cert,
            format!(
                "not a valid node certificate of the cluster CA in {}: {e}",
                files.ca.display()
            ),
        )
    })?;
    Ok(Identity { roots, chain, key })
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

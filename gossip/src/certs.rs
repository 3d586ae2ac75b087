//! The cluster CA and node certificates, as made by `ringdb certs`.
//!
//! A ringdb cluster trusts one private certificate authority. `ringdb certs create-ca` makes it
//! ([`create_ca`]); `ringdb certs issue` makes each node's certificate ([`issue`]), and the
//! internode transport accepts exactly the peers whose certificate chains to that CA (mutual TLS,
//! see [`crate::transport`]). Possession of a node certificate is the credential: the transport
//! checks the chain, not the names, so that nodes can be dialed at addresses unknown when their
//! certificates were issued (containers, Kubernetes). The subject alternative names are still
//! filled in (the node's IPs and DNS names) for operators and for tools that do check names.
//!
//! Choices, all made here once:
//! - keys are ECDSA P-256 (fast handshakes, small certificates, supported by `ring`);
//! - the CA is valid for 20 years and may sign only end-entity certificates (path length 0);
//! - node certificates are valid for 10 years and carry both the server-auth and the client-auth
//!   extended key usage, since every node both accepts and dials connections;
//! - validity starts one hour in the past, so that a node whose clock is slightly behind the
//!   issuer's accepts a fresh certificate;
//! - files are PEM; private keys are written with mode 0600 on Unix; a CA key is never
//!   overwritten, since replacing it silently would cut every existing node off the cluster.
//!
//! Node files are replaced when re-issued (that is how IPs are added), atomically: a concurrent
//! reader sees the old file or the new one, never half of one. A running node picks up replaced
//! files when told to reload them ([`crate::transport::Transport::reload_tls`]); [`CertInfo`]
//! is how a certificate is named to the operator then (subject, serial, SHA-256 fingerprint,
//! validity).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::transport::TransportError;

/// File name of the CA certificate, in the CA directory and next to every node's files.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key in the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Validity of the CA certificate.
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Validity of node certificates.
const NODE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far in the past validity starts, to tolerate clock skew between issuer and nodes.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// The organization named in every certificate's subject.
const ORGANIZATION: &str = "ringdb";

/// The files of a cluster CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (`ca.crt`), to be given to every node.
    pub cert: PathBuf,
    /// The CA private key (`ca.key`), to be kept secret and off the nodes.
    pub key: PathBuf,
}

/// The files a node needs for internode TLS (see [`crate::transport::TlsFiles`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFiles {
    /// A copy of the cluster CA certificate (`ca.crt`).
    pub ca: PathBuf,
    /// The node certificate (`NAME.crt`).
    pub cert: PathBuf,
    /// The node private key (`NAME.key`, mode 0600).
    pub key: PathBuf,
}

/// Why a certificate operation failed; every variant names the file or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The CA key already exists: a new CA would cut off every node issued by the old one.
    #[error(
        "{} already exists: refusing to overwrite the cluster CA key (every node certificate issued by it would stop working); remove it first if you really mean to start a new CA",
        path.display()
    )]
    AlreadyExists {
        /// The existing key file.
        path: PathBuf,
    },
    /// A file does not hold what it should (PEM certificate or key).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The node name cannot be used (it becomes a file name and a certificate subject).
    #[error("invalid node name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A DNS name for the certificate is not a valid DNS name.
    #[error("invalid DNS name {name:?} for a certificate")]
    InvalidDnsName {
        /// The name given.
        name: String,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// What tells one certificate from another, for operators: logs, `ringdb reload-certs`, the admin
/// API's `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject, as `CN=node1, O=ringdb`.
    pub subject: String,
    /// The issuer, in the same form.
    pub issuer: String,
    /// The serial number, hex bytes separated by `:`.
    pub serial: String,
    /// SHA-256 of the DER encoding, lowercase hex without separators (what `openssl x509
    /// -fingerprint -sha256` prints, without the colons).
    pub sha256: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

impl CertInfo {
    /// Reads the details of a DER certificate; the error says what could not be parsed.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let validity = cert.validity();
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sha256: sha256_hex(der),
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// The first certificate of a PEM file (the end entity of a chain).
    pub fn from_pem_file(path: &Path) -> Result<CertInfo, CertError> {
        use rustls_pki_types::pem::PemObject;
        let invalid = |reason: String| CertError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let der = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| invalid(format!("cannot read certificates: {e}")))?
            .next()
            .ok_or_else(|| invalid("no CERTIFICATE found in the file".into()))?
            .map_err(|e| invalid(format!("cannot parse PEM certificates: {e}")))?;
        CertInfo::from_der(&der).map_err(invalid)
    }

    /// Whether the certificate is valid at `now` (seconds since the Unix epoch); otherwise why
    /// not, with the dates.
    pub fn check_valid_at(&self, now: i64) -> Result<(), String> {
        if now < self.not_before {
            return Err(format!(
                "the certificate is not valid yet: valid from {}",
                utc_rfc3339(self.not_before)
            ));
        }
        if now > self.not_after {
            return Err(format!(
                "the certificate expired on {}",
                utc_rfc3339(self.not_after)
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for CertInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "subject \"{}\", serial {}, SHA-256 {}, valid until {}",
            self.subject,
            self.serial,
            self.sha256,
            utc_rfc3339(self.not_after)
        )
    }
}

/// SHA-256 of `bytes` in lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Seconds since the Unix epoch as UTC in RFC 3339, `2024-01-02T03:04:05Z`.
pub fn utc_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch now (0 if the clock is before it).
pub fn unix_now() -> i64 {
    since_epoch().as_secs() as i64
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a new cluster CA in `dir` (created if needed): `dir/ca.crt` and `dir/ca.key` (mode
/// 0600). Refuses, with [`CertError::AlreadyExists`], if `dir/ca.key` exists.
pub fn create_ca(dir: &Path, common_name: &str) -> Result<CaFiles, CertError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let files = CaFiles {
        cert: dir.join(CA_CERT_FILE),
        key: dir.join(CA_KEY_FILE),
    };
    if files.key.exists() {
        return Err(CertError::AlreadyExists { path: files.key });
    }
    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        what: "the CA key",
        source,
    })?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = since_epoch();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + (now + CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .map_err(|source| CertError::Generate {
            what: "the CA certificate",
            source,
        })?;
    // The key is created exclusively: if another process made one meanwhile, we fail rather
    // than overwrite it. The certificate goes first so that a key never exists without it.
    write_replacing(&files.cert, cert.pem().as_bytes(), false)?;
    write_new_private(&files.key, key.serialize_pem().as_bytes())?;
    Ok(files)
}

/// Issues a node certificate signed by the CA in `ca_dir` and writes `out_dir/NAME.crt`,
/// `out_dir/NAME.key` (mode 0600) and a copy of the CA certificate as `out_dir/ca.crt`.
///
/// Subject alternative names: every IP in `ips`, every name in `dns_names`, and `name` itself
/// when it is a valid DNS name. The certificate may be used as both server and client. Node
/// files already in `out_dir` are replaced (re-issuing is how addresses are added).
pub fn issue(
    ca_dir: &Path,
    name: &str,
    ips: &[IpAddr],
    dns_names: &[String],
    out_dir: &Path,
) -> Result<NodeFiles, CertError> {
    check_node_name(name)?;
    let ca_cert_path = ca_dir.join(CA_CERT_FILE);
    let ca_key_path = ca_dir.join(CA_KEY_FILE);
    let ca_cert_pem = fs::read_to_string(&ca_cert_path).map_err(io_error(&ca_cert_path))?;
    let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io_error(&ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| CertError::Invalid {
        path: ca_key_path.clone(),
        reason: format!("not a usable PEM private key: {e}"),
    })?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|e| CertError::Invalid {
            path: ca_cert_path.clone(),
            reason: format!("not a usable PEM CA certificate: {e}"),
        })?;

    let mut subject_alt_names: Vec<SanType> =
        ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    let mut dns: Vec<&str> = dns_names.iter().map(String::as_str).collect();
    if is_dns_name(name) && !dns.contains(&name) {
        dns.push(name);
    }
    for dns_name in dns {
        if !is_dns_name(dns_name) {
            return Err(CertError::InvalidDnsName {
                name: dns_name.into(),
            });
        }
        let ia5 = dns_name
            .to_string()
            .try_into()
            .map_err(|_| CertError::InvalidDnsName {
                name: dns_name.into(),
            })?;
        subject_alt_names.push(SanType::DnsName(ia5));
    }

    let key = KeyPair::generate().map_err(|source| CertError::Generate {
        what: "the node key",
        source,
    })?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = since_epoch();
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(name);
    params.subject_alt_names = subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + (now + NODE_VALIDITY);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|source| CertError::Generate {
            what: "the node certificate",
            source,
        })?;

    // Prove the result before writing it: the new certificate must chain to ca.crt for both
    // usages. This catches a ca.key that does not belong to ca.crt.
    let roots = crate::transport::tls_root_store(&ca_cert_path).map_err(invalid_from_transport)?;
    crate::transport::check_node_chain(&Arc::new(roots), &[cert.der().clone()]).map_err(|e| CertError::Invalid {
        path: ca_key_path.clone(),
        reason: format!("the issued certificate does not verify against {}: {e} (does this key belong to that certificate?)", ca_cert_path.display()),
    })?;

    fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let files = NodeFiles {
        ca: out_dir.join(CA_CERT_FILE),
        cert: out_dir.join(format!("{name}.crt")),
        key: out_dir.join(format!("{name}.key")),
    };
    write_replacing(&files.key, key.serialize_pem().as_bytes(), true)?;
    write_replacing(&files.cert, cert.pem().as_bytes(), false)?;
    if !same_file(&ca_cert_path, &files.ca) {
        write_replacing(&files.ca, ca_cert_pem.as_bytes(), false)?;
    }
    Ok(files)
}

/// A throw-away identity in `dir`: a CA of its own (created on first use, reused afterwards)
/// and a node certificate from it (re-issued on every call).
///
/// For a standalone node with no internode certificates configured: it can then talk only to
/// nodes sharing that CA, i.e. none, which is the safe default.
pub fn create_dev_identity(dir: &Path, name: &str, ips: &[IpAddr]) -> Result<NodeFiles, CertError> {
    check_node_name(name)?;
    let ca_key = dir.join(CA_KEY_FILE);
    if !(ca_key.exists() && dir.join(CA_CERT_FILE).exists()) {
        if ca_key.exists() {
            // A key without its certificate is useless; a dev CA may be replaced.
            fs::remove_file(&ca_key).map_err(io_error(&ca_key))?;
        }
        create_ca(dir, &format!("ringdb development CA for {name}"))?;
    }
    issue(dir, name, ips, &[], dir)
}

fn invalid_from_transport(e: TransportError) -> CertError {
    match e {
        TransportError::Tls { path, reason } => CertError::Invalid { path, reason },
        other => CertError::Invalid {
            path: PathBuf::new(),
            reason: other.to_string(),
        },
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, ORGANIZATION);
    name
}

/// Time since the Unix epoch; certificate dates are `rcgen::date_time_ymd(1970, 1, 1)` plus a
/// duration, so that this crate needs no date library of its own.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A node name becomes a file name (`NAME.crt`) and a certificate subject: letters, digits,
/// `.`, `-` and `_`, not starting with `.`, and not `ca` (whose files are the CA's).
fn check_node_name(name: &str) -> Result<(), CertError> {
    let refuse = |reason| {
        Err(CertError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return refuse("must be 1 to 64 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return refuse("may contain only letters, digits, '.', '-' and '_'");
    }
    if name.starts_with('.') {
        return refuse("must not start with '.'");
    }
    if name.eq_ignore_ascii_case("ca") {
        return refuse("\"ca\" is the name of the CA's own files");
    }
    Ok(())
}

fn is_dns_name(name: &str) -> bool {
    name.parse::<IpAddr>().is_err() && rustls_pki_types::DnsName::try_from(name).is_ok()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Creates `path` exclusively with mode 0600 and writes `contents`; refuses if it exists.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            CertError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    file.write_all(contents).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file, then rename), with mode 0600 when
/// `private`.
fn write_replacing(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&temporary).map_err(io_error(&temporary))?;
    file.write_all(contents).map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error(path))?;
    Ok(())
}

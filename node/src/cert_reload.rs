//! Replacing a running node's certificates: `ringdb reload-certs`, the admin API's
//! `POST /reload-certs`, and SIGHUP all end in [`CertReloader::reload`].
//!
//! A reload reads every TLS file again — the internode identity (`internode_ca`,
//! `internode_cert`, `internode_key`) and, when `client_encryption` is on, the CQL listener's
//! `cert`, `key` and `ca` — and checks all of them **before** it changes anything: the key
//! matches the certificate, the certificate is valid now, and an internode certificate chains to
//! the CA file. If any file fails, nothing is swapped (not even the parts that were fine), the
//! error names the file and the problem, and the node goes on with the certificates it had. If
//! all pass, both are swapped at once. The result is logged loudly either way: `info` with the
//! new certificates' SHA-256 fingerprints and expiry, `error` with the reason.
//!
//! Connections already established keep the certificates they were made with; new handshakes
//! (a peer restarting, a connection re-dialed, a new client) use the new ones. See
//! [`ringdb_gossip::transport`] for the CA rotation procedure.
//!
//! Reloads are serialized: a SIGHUP and an API call at the same moment run one after the other.

use std::sync::{Arc, Mutex};

use ringdb_gossip::certs::{utc_rfc3339, CertInfo};
use ringdb_gossip::transport::{Transport, TransportError};
use serde::Serialize;

use crate::client_tls::{ClientTls, ClientTlsError};
use crate::config::ClientEncryption;

/// A certificate as reported to operators (the admin API, `ringdb reload-certs`, `/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Subject, as `CN=node1, O=ringdb`.
    pub subject: String,
    /// Issuer, in the same form.
    pub issuer: String,
    /// Serial number, hex bytes separated by `:`.
    pub serial: String,
    /// SHA-256 fingerprint of the DER certificate, lowercase hex.
    pub sha256: String,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
}

impl From<&CertInfo> for CertSummary {
    fn from(info: &CertInfo) -> CertSummary {
        CertSummary {
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            serial: info.serial.clone(),
            sha256: info.sha256.clone(),
            not_before: utc_rfc3339(info.not_before),
            not_after: utc_rfc3339(info.not_after),
        }
    }
}

/// The certificates a node presents: after a reload, or now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveCerts {
    /// The internode certificate (mutual TLS between nodes).
    pub internode: CertSummary,
    /// The CQL listener's certificate; `None` when `client_encryption` is off.
    pub client: Option<CertSummary>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// An internode TLS file is missing, unreadable or does not fit with the others.
    #[error("internode TLS: {0}")]
    Internode(#[source] TransportError),
    /// A `client_encryption` file is missing, unreadable or unusable.
    #[error("{0}")]
    Client(#[source] ClientTlsError),
}

/// Reloads a node's certificates; one per node, shared by the signal handler and the admin API.
pub struct CertReloader {
    transport: Transport,
    /// The CQL listener's TLS and the configuration its files come from, when it is on.
    client: Option<(ClientEncryption, ClientTls)>,
    /// Serializes reloads, so that an older read is never installed after a newer one.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertReloader")
            .field("active", &self.active())
            .finish()
    }
}

impl CertReloader {
    /// The reloader of a node's internode transport and, when on, its CQL listener's TLS.
    pub fn new(transport: Transport, client: Option<(ClientEncryption, ClientTls)>) -> Self {
        CertReloader {
            transport,
            client,
            reloading: Mutex::new(()),
        }
    }

    /// The certificates new handshakes present now.
    pub fn active(&self) -> ActiveCerts {
        ActiveCerts {
            internode: CertSummary::from(&self.transport.tls_certificate()),
            client: self
                .client
                .as_ref()
                .map(|(_, tls)| CertSummary::from(&tls.certificate())),
        }
    }

    /// Reads and checks every TLS file, then swaps them all in, or none (see the module docs).
    /// Logs the outcome. Blocking file I/O: call it off the async threads.
    pub fn reload(&self) -> Result<ActiveCerts, ReloadError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = self.prepare_and_install();
        match &result {
            Ok(active) => {
                tracing::info!(
                    internode_sha256 = %active.internode.sha256,
                    internode_subject = %active.internode.subject,
                    internode_not_after = %active.internode.not_after,
                    client_sha256 = active.client.as_ref().map(|c| c.sha256.as_str()),
                    client_not_after = active.client.as_ref().map(|c| c.not_after.as_str()),
                    "certificates reloaded: new handshakes use them (established connections keep theirs)"
                );
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "certificate reload FAILED: nothing changed, the node keeps the certificates it had"
                );
            }
        }
        result
    }

    fn prepare_and_install(&self) -> Result<ActiveCerts, ReloadError> {
        let internode = self
            .transport
            .prepare_tls()
            .map_err(ReloadError::Internode)?;
        let client = match &self.client {
            Some((config, tls)) => Some((
                tls,
                crate::client_tls::prepare(config).map_err(ReloadError::Client)?,
            )),
            None => None,
        };
        let internode = self.transport.install_tls(internode);
        let client = client.map(|(tls, prepared)| tls.install(prepared));
        Ok(ActiveCerts {
            internode: CertSummary::from(&internode),
            client: client.as_ref().map(CertSummary::from),
        })
    }

    /// [`CertReloader::reload`] on a blocking thread, for async callers.
    pub async fn reload_async(self: &Arc<Self>) -> Result<ActiveCerts, ReloadError> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.reload()).await {
            Ok(result) => result,
            // The reload panicked or the runtime is shutting down: run it here instead.
            Err(_) => self.reload(),
        }
    }
}

/// SIGHUP, caught from the moment [`Hangups::catch`] is called: the daemon catches it before it
/// starts the node, so that a SIGHUP during a long start (a bootstrap) waits for the node
/// instead of ending the process (the default action). Catching SIGHUP is process-wide: only
/// the daemon does it, not in-process nodes (tests, the demo), which share their process.
pub struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts catching SIGHUP (logs an error if it cannot: reloads then need `ringdb
    /// reload-certs`). Must be called within a tokio runtime.
    #[cfg(unix)]
    pub fn catch() -> Hangups {
        use tokio::signal::unix::{signal, SignalKind};
        let signal = signal(SignalKind::hangup())
            .map_err(|e| {
                tracing::error!(
                    error = %e,
                    "cannot catch SIGHUP: certificates reload only through `ringdb reload-certs`"
                );
            })
            .ok();
        Hangups { signal }
    }

    /// There is no SIGHUP here: reloads go through `ringdb reload-certs`.
    #[cfg(not(unix))]
    pub fn catch() -> Hangups {
        Hangups {}
    }

    /// The next SIGHUP; never resolves when SIGHUP is not caught.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// Reloads on every SIGHUP until `shutdown` turns true.
pub async fn reload_on_sighup(
    reloader: Arc<CertReloader>,
    mut hangups: Hangups,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = hangups.next() => {
                tracing::info!("SIGHUP: reloading certificates");
                // The outcome is logged by the reload itself.
                let _ = reloader.reload_async().await;
            }
            _ = crate::server::stopping(&mut shutdown) => return,
        }
    }
}

/// `ringdb reload-certs`: asks the node at `host` (its admin API) to reload its certificates and
/// prints what it presents now.
pub async fn cli(host: &str, json: bool) -> anyhow::Result<()> {
    use crate::admin::client;
    let addr = client::resolve(host).await?;
    let answer = client::json_request(addr, hyper::Method::POST, "/reload-certs")
        .await
        .map_err(|e| {
            e.context(format!(
                "the node at {addr} did not reload its certificates"
            ))
        })?;
    if json {
        println!("{answer}");
        return Ok(());
    }
    let active: ActiveCertsView = serde_json::from_value(answer.clone())
        .map_err(|e| anyhow::anyhow!("unexpected answer from {addr} ({e}): {answer}"))?;
    println!("node at {addr} reloaded its certificates; new handshakes present:");
    print_cert("internode", &active.internode);
    match &active.client {
        Some(c) => print_cert("client (CQL)", c),
        None => println!("  client (CQL): TLS off"),
    }
    Ok(())
}

/// [`ActiveCerts`] as read back by the CLI.
#[derive(serde::Deserialize)]
struct ActiveCertsView {
    internode: CertView,
    client: Option<CertView>,
}

#[derive(serde::Deserialize)]
struct CertView {
    subject: String,
    serial: String,
    sha256: String,
    not_after: String,
}

fn print_cert(what: &str, c: &CertView) {
    println!("  {what}: {}", c.subject);
    println!("    SHA-256   {}", c.sha256);
    println!("    serial    {}", c.serial);
    println!("    not after {}", c.not_after);
}

//! Authentication and authorization (`authenticator: password`).
//!
//! **Authentication.** With `authenticator: password` the CQL server answers STARTUP with
//! AUTHENTICATE (`org.apache.cassandra.auth.PasswordAuthenticator`); the client sends one
//! AUTH_RESPONSE with a SASL PLAIN token (`[authzid] \0 user \0 password`, what cqlsh `-u/-p`, the
//! drivers' `PlainTextAuthProvider` and the `scylla` driver send) and gets AUTH_SUCCESS or
//! error 0x0100. Nothing else but OPTIONS is served before that. [`Auth::login`] checks the
//! password against the role's Argon2id hash ([`password`]) on a blocking thread, refuses roles
//! without `LOGIN`, logs failures (never the password) and locks an address out after repeated
//! failures ([`limiter`]).
//!
//! **Roles** live in the replicated keyspace `system_auth` ([`store`]): `roles` (name, login,
//! superuser, salted hash) and `role_permissions` (role, resource, permissions). Every node
//! writes the superuser of its configuration at start with timestamp 0 ([`Auth::create_superuser`]):
//! all nodes converge on it, and any later ALTER or DROP wins over it.
//!
//! **Authorization.** Every statement of an authenticated session is checked before it runs:
//! [`permissions::requirements`] says what it needs, the role's grants (cached for
//! `auth_cache_validity_ms`) say whether it has it; superusers have everything. Reads of the
//! system keyspaces drivers read on connect are always allowed. Role statements
//! ([`statements`]) are run here too.
//!
//! With `authenticator: allow_all` (the default) none of this runs: no executor has an [`Auth`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringdb_cql::ast::Statement;

use crate::executor::{ExecError, Executor};

pub mod limiter;
pub mod password;
pub mod permissions;
pub(crate) mod statements;
mod store;

use permissions::Grants;

/// The keyspace holding roles and permissions.
pub const AUTH_KEYSPACE: &str = "system_auth";
/// The authenticator class named in AUTHENTICATE (drivers check it to pick their SASL mechanism).
pub const PASSWORD_AUTHENTICATOR: &str = "org.apache.cassandra.auth.PasswordAuthenticator";

/// What [`Auth`] is configured with.
#[derive(Clone)]
pub struct AuthSettings {
    /// The superuser created at start.
    pub superuser_name: String,
    /// Its password (from the configuration; hashed before it is stored).
    pub superuser_password: String,
    /// How long role records and grants are reused.
    pub cache_validity: Duration,
    /// Failed logins from one address before it is locked out (0: no limit).
    pub max_failed_logins: u32,
    /// How long an address is locked out (and the window its failures are counted in).
    pub failed_login_lockout: Duration,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("superuser_name", &self.superuser_name)
            .field("cache_validity", &self.cache_validity)
            .finish_non_exhaustive()
    }
}

/// A row of `system_auth.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub name: String,
    pub can_login: bool,
    pub is_superuser: bool,
    /// Argon2id PHC string; `None` for a role without a password (it cannot log in).
    pub salted_hash: Option<String>,
}

/// What authorization needs to know about a role.
#[derive(Debug, Clone)]
pub struct RoleState {
    /// `None` if the role does not exist (any more).
    pub record: Option<RoleRecord>,
    pub grants: Grants,
}

impl RoleState {
    pub fn is_superuser(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.is_superuser)
    }
}

/// Why a login failed. Every variant is answered with error 0x0100 (bad credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("Provided username {user} and/or password are incorrect")]
    BadCredentials { user: String },
    #[error("Too many failed login attempts from {address}: refused for {seconds} more seconds")]
    LockedOut { address: IpAddr, seconds: u64 },
    #[error("Unable to perform authentication: {0}")]
    Unavailable(String),
}

/// Authentication and authorization state of a node. Share one per node.
pub struct Auth {
    settings: AuthSettings,
    cache: Mutex<HashMap<String, (Instant, Arc<RoleState>)>>,
    limiter: Mutex<limiter::LoginLimiter>,
}

/// Roles whose state is cached at most; past it the cache is emptied (it refills on demand).
const MAX_CACHED_ROLES: usize = 10_000;

/// A PHC string checked when a login names an unknown role, so that the answer takes as long as
/// for a known one (a timing probe cannot tell which roles exist). Its password is unknowable.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        password::hash(&format!("{random:?}")).unwrap_or_default()
    })
}

impl Auth {
    pub fn new(settings: AuthSettings) -> Arc<Auth> {
        let limiter =
            limiter::LoginLimiter::new(settings.max_failed_logins, settings.failed_login_lockout);
        Arc::new(Auth {
            settings,
            cache: Mutex::new(HashMap::new()),
            limiter: Mutex::new(limiter),
        })
    }

    /// The configured superuser's name.
    pub fn superuser_name(&self) -> &str {
        &self.settings.superuser_name
    }

    /// Checks `user`'s password; `from` is the client's address (for the failure limit and the
    /// log). Slow on purpose (Argon2id on a blocking thread).
    pub async fn login(
        &self,
        exec: &Executor,
        user: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(), LoginError> {
        let locked = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(from, Instant::now());
        if let Err(wait) = locked {
            tracing::warn!(%from, user, "login refused: address locked out after failed logins");
            return Err(LoginError::LockedOut {
                address: from,
                seconds: wait.as_secs().max(1),
            });
        }
        let record = store::read_role(exec, user).await.map_err(|e| {
            tracing::warn!(%from, user, error = %e, "login failed: cannot read system_auth.roles");
            LoginError::Unavailable(e.to_string())
        })?;
        let hash = record
            .as_ref()
            .filter(|r| r.can_login)
            .and_then(|r| r.salted_hash.clone());
        let known = hash.is_some();
        let stored = hash.unwrap_or_else(|| decoy_hash().to_string());
        let candidate = password.to_string();
        let matches = tokio::task::spawn_blocking(move || password::verify(&candidate, &stored))
            .await
            .unwrap_or(false);
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        if known && matches {
            limiter.success(from);
            return Ok(());
        }
        let now_locked = limiter.failure(from, Instant::now());
        drop(limiter);
        let reason = match &record {
            None => "no such role",
            Some(r) if !r.can_login => "role may not log in",
            Some(_) => "wrong password",
        };
        metrics::counter!(crate::metrics::AUTH_FAILURES).increment(1);
        tracing::warn!(%from, user, reason, locked_out = now_locked, "failed login");
        Err(LoginError::BadCredentials {
            user: user.to_string(),
        })
    }

    /// The role's record and grants, from the cache while fresh.
    pub async fn role_state(
        &self,
        exec: &Executor,
        role: &str,
    ) -> Result<Arc<RoleState>, ExecError> {
        if let Some((at, state)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(role)
        {
            if at.elapsed() < self.settings.cache_validity {
                return Ok(state.clone());
            }
        }
        let record = store::read_role(exec, role).await?;
        let grants = if record.as_ref().is_some_and(|r| !r.is_superuser) {
            store::read_grants(exec, role).await?
        } else {
            Grants::new()
        };
        let state = Arc::new(RoleState { record, grants });
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_ROLES {
            cache.clear();
        }
        cache.insert(role.to_string(), (Instant::now(), state.clone()));
        Ok(state)
    }

    /// Forgets cached roles and grants (after a change made through this node).
    pub fn invalidate(&self) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Fails with Unauthorized unless `role` may run `stmt`.
    pub async fn authorize(
        &self,
        exec: &Executor,
        role: &str,
        stmt: &Statement,
        session_keyspace: Option<&str>,
    ) -> Result<(), ExecError> {
        let requirements = permissions::requirements(stmt, session_keyspace).map_err(|_| {
            ExecError::Invalid(
                "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"
                    .into(),
            )
        })?;
        if requirements.is_empty() {
            return Ok(());
        }
        let state = self.role_state(exec, role).await?;
        if state.record.is_none() {
            return Err(ExecError::Unauthorized(format!(
                "Role {role} does not exist any more"
            )));
        }
        for r in &requirements {
            if !permissions::meets(state.is_superuser(), &state.grants, r) {
                return Err(ExecError::Unauthorized(match r {
                    permissions::Requirement::Superuser => {
                        "Only superusers are allowed to perform CREATE ROLE or DROP ROLE queries"
                            .to_string()
                    }
                    permissions::Requirement::Permission {
                        permission,
                        resource,
                    } => format!(
                        "User {role} has no {} permission on {} or any of its parents",
                        permission.name(),
                        permissions::display_resource(resource)
                    ),
                }));
            }
        }
        Ok(())
    }

    /// Writes the configured superuser with timestamp 0 (idempotent; every node does it, and a
    /// later ALTER or DROP wins).
    pub async fn create_superuser(&self, exec: &Executor) -> Result<(), ExecError> {
        let pw = self.settings.superuser_password.clone();
        let hash = tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .map_err(|e| ExecError::Server(e.to_string()))?
            .map_err(|e| ExecError::Server(e.to_string()))?;
        let record = RoleRecord {
            name: self.settings.superuser_name.clone(),
            can_login: true,
            is_superuser: true,
            salted_hash: Some(hash),
        };
        store::write_role(exec, &record, Some(0)).await
    }

    /// Runs [`Auth::create_superuser`] until it succeeds (the cluster may not be reachable yet),
    /// then twice more a while later: a node that wrote while alone may not be a replica of the
    /// role once the ring has formed. Stops when `shutdown` turns true.
    pub async fn keep_superuser(
        self: Arc<Self>,
        exec: Executor,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut written = 0;
        let mut delay = Duration::from_millis(200);
        while written < 3 {
            match self.create_superuser(&exec).await {
                Ok(()) => {
                    if written == 0 {
                        tracing::info!(role = %self.settings.superuser_name, "superuser role written");
                    }
                    written += 1;
                    delay = Duration::from_secs(if written == 1 { 15 } else { 60 });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the superuser role yet; retrying");
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::server::stopping(&mut shutdown) => return,
            }
        }
    }
}

//! The node's configuration.
//!
//! One struct, [`Config`], with a doc comment per key and every default in [`Config::default`].
//! A node's configuration is built in layers, each overriding the one before:
//!
//! 1. the defaults;
//! 2. the YAML file given with `--config` (Cassandra's key names where one exists);
//! 3. environment variables `RINGDB_<KEY>` (the key in upper case, e.g. `RINGDB_NUM_TOKENS=8`);
//! 4. `--set key=value` arguments, in order.
//!
//! Values from the environment and from `--set` are read as YAML scalars, so `8`, `true` and
//! `127.0.0.1` mean what they look like; `seeds` also accepts a comma-separated list.
//!
//! Unknown keys in the file or in `--set`, and bad values anywhere, are rejected with an error that
//! names the key. Environment variables with the `RINGDB_` prefix that are not configuration keys
//! are ignored (the environment is shared with other tools, e.g. `RINGDB_BIN` in tests) but
//! reported at start so that a misspelled variable does not go unnoticed.
//!
//! `deploy/ringdb.yaml` is the commented example; a test parses it so it cannot drift.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// How the node makes writes durable (see [`crate::commitlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitlogSync {
    /// Acknowledge a write only once it is on disk (group commit).
    Batch,
    /// Acknowledge at once; flush to disk every `commitlog_sync_period_ms`.
    Periodic,
}

/// Who may use the CQL listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Authenticator {
    /// No authentication: every connection is ready after STARTUP (Cassandra's default,
    /// `AllowAllAuthenticator`). Permissions are not checked either.
    #[serde(rename = "allow_all", alias = "AllowAllAuthenticator")]
    AllowAll,
    /// Roles with passwords (SASL PLAIN, Cassandra's `PasswordAuthenticator`), and permissions
    /// checked on every statement (Cassandra's `CassandraAuthorizer`).
    #[serde(rename = "password", alias = "PasswordAuthenticator")]
    Password,
}

/// A secret from the configuration: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// TLS for CQL clients (Cassandra's `client_encryption_options`). Off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientEncryption {
    /// Serve CQL over TLS.
    pub enabled: bool,
    /// Accept plain connections too on the same port (told apart by their first byte); off, a
    /// client that does not start with a TLS handshake is disconnected.
    pub optional: bool,
    /// PEM file of the server certificate (chain) shown to clients.
    pub cert: Option<PathBuf>,
    /// PEM file of the server certificate's private key.
    pub key: Option<PathBuf>,
    /// Require a client certificate that chains to `ca`.
    pub require_client_auth: bool,
    /// PEM file of the CA client certificates must chain to (with `require_client_auth`).
    pub ca: Option<PathBuf>,
}

/// Everything a node can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of the cluster; nodes refuse to talk to nodes of another cluster.
    pub cluster_name: String,
    /// Address for internode traffic (gossip and data verbs, QUIC over UDP).
    pub listen_address: IpAddr,
    /// Port for internode traffic (UDP).
    pub storage_port: u16,
    /// Address the CQL native protocol listens on (Cassandra's `rpc_address`).
    pub native_transport_address: IpAddr,
    /// Port of the CQL native protocol (TCP).
    pub native_transport_port: u16,
    /// Largest native-protocol frame accepted, e.g. `256MiB` or a number of bytes. A larger frame
    /// gets a protocol error and the connection is closed.
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub native_transport_max_frame_size: u64,
    /// Requests processed at once on one connection. Past it the node stops reading from that
    /// connection until one finishes (back-pressure, nothing is dropped) — unless the client
    /// sent the STARTUP option `THROW_ON_OVERLOAD=1` or `native_transport_throw_on_overload` is
    /// on, in which case the request is answered at once with Overloaded (0x1001).
    pub native_transport_max_requests_per_connection: u32,
    /// Answer requests past `native_transport_max_requests_per_connection` with Overloaded
    /// (0x1001) on every connection, as if each client had sent `THROW_ON_OVERLOAD=1`, instead
    /// of pausing the connection (back-pressure, the default).
    pub native_transport_throw_on_overload: bool,
    /// Requests in flight at once over all client connections of this node. A request past it
    /// is answered at once with Overloaded (0x1001), naming this key; the connection stays
    /// open. STARTUP, OPTIONS and REGISTER are not counted.
    pub native_transport_max_concurrent_requests: u32,
    /// Bytes of request frames in flight at once over all client connections, e.g. `256MiB`;
    /// past it requests are answered with Overloaded (0x1001) like past
    /// `native_transport_max_concurrent_requests`. A single frame larger than this is still
    /// admitted when nothing else is in flight (`native_transport_max_frame_size` bounds it).
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub native_transport_max_concurrent_requests_in_bytes: u64,
    /// Client connections accepted at once; further connections are closed at once.
    pub native_transport_max_connections: u32,
    /// A connection that has not finished STARTUP (and authentication, when it is on) this
    /// long after it was accepted is closed, milliseconds; it bounds what idle or half-open
    /// clients can hold.
    pub native_transport_idle_startup_timeout_ms: u64,
    /// `allow_all` (the default: no authentication, no permission checks) or `password`
    /// (roles with passwords, permissions enforced; see `auth_superuser_*`).
    pub authenticator: Authenticator,
    /// Name of the superuser role every node creates at start when `authenticator: password`
    /// (written with timestamp 0, so a later `ALTER ROLE` or `DROP ROLE` wins).
    pub auth_superuser_name: String,
    /// Password of that superuser; required with `authenticator: password` (there is no default
    /// password). Better given as the environment variable `RINGDB_AUTH_SUPERUSER_PASSWORD`
    /// than written in a file.
    pub auth_superuser_password: Option<Secret>,
    /// How long a node reuses a role's record and permissions read from `system_auth`,
    /// milliseconds (Cassandra's `roles_validity` / `permissions_validity`): a GRANT, REVOKE or
    /// ALTER made on another node takes up to this long to apply here.
    pub auth_cache_validity_ms: u64,
    /// Failed logins from one client address after which that address is refused without a
    /// password check for `auth_failed_login_lockout_ms` (0: no limit).
    pub auth_max_failed_logins: u32,
    /// How long a client address is refused after too many failed logins, and the window its
    /// failures are counted in, milliseconds.
    pub auth_failed_login_lockout_ms: u64,
    /// TLS for CQL clients: `enabled`, `optional`, `cert`, `key`, `require_client_auth`, `ca`.
    pub client_encryption: ClientEncryption,
    /// Seed nodes, `host[:port]`, contacted first to join the cluster. A list, or a
    /// comma-separated string.
    #[serde(deserialize_with = "deserialize_seeds")]
    pub seeds: Vec<String>,
    /// Directory holding the node's data (sled database, host id, schema).
    pub data_dir: PathBuf,
    /// PEM file of the cluster CA: internode connections are accepted only from nodes whose
    /// certificate chains to it. Set all three `internode_*` keys (`ringdb certs` makes them), or
    /// none: a node without them makes a throw-away CA in its data dir and so can form a cluster
    /// with nobody (safe for a single node, and said loudly when seeds are set).
    pub internode_ca: Option<PathBuf>,
    /// PEM file of this node's internode certificate (issued by `internode_ca`).
    pub internode_cert: Option<PathBuf>,
    /// PEM file of this node's internode private key.
    pub internode_key: Option<PathBuf>,
    /// Gossip round interval, milliseconds: every round the node bumps its heartbeat and
    /// exchanges digests with a random peer.
    pub gossip_interval_ms: u64,
    /// Suspicion level (phi) past which the failure detector marks a peer down. Higher: fewer
    /// false downs on a jittery network, slower detection of real ones.
    pub phi_convict_threshold: f64,
    /// The replication factor a joining node balances its tokens for (Cassandra's
    /// `allocate_tokens_for_local_replication_factor`).
    pub allocate_tokens_for_local_replication_factor: u32,
    /// Datacenter of this node.
    pub dc: String,
    /// Rack of this node within its datacenter.
    pub rack: String,
    /// Number of virtual-node tokens this node owns on the ring (1..=1024).
    pub num_tokens: u32,
    /// A node starting with an empty data directory in a cluster that already has nodes
    /// streams the data of the ranges it takes over before it serves them (`JOINING`, then
    /// `NORMAL`). Off: it takes its ranges at once, empty, and repair has to fill them.
    pub auto_bootstrap: bool,
    /// `batch`: acknowledge writes once durable; `periodic`: flush every
    /// `commitlog_sync_period_ms` (a crash, even of the process alone, can lose the acknowledged
    /// writes of about that window).
    pub commitlog_sync: CommitlogSync,
    /// Flush period for `commitlog_sync: periodic`, milliseconds.
    pub commitlog_sync_period_ms: u64,
    /// Memory the storage engine may use as cache, MiB.
    pub storage_cache_size_mb: u64,
    /// Free space the file system holding `data_dir` must keep, e.g. `64MiB`: below it the node
    /// refuses writes (clients get a write failure, the log says why) but keeps serving reads,
    /// and takes writes again once space returns. The storage engine never runs into a full
    /// disk, which it does not survive without a restart. 0 turns the check off.
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub min_free_disk_space: u64,
    /// Port of the Prometheus `/metrics` endpoint on `native_transport_address`; 0 disables it.
    pub prometheus_port: u16,
    /// Address of the admin HTTP API (`ringdb repair` talks to it). It has no authentication:
    /// keep it on loopback, or on an address only operators reach.
    pub admin_address: IpAddr,
    /// Port of the admin HTTP API on `admin_address` (7199, Cassandra's JMX port); 0 disables it.
    pub admin_port: u16,
    /// Log filter when `RUST_LOG` is not set (`error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` filter directive such as `info,ringdb_node=debug`).
    pub log_level: String,
    /// How long a coordinator waits for the acknowledgements a write's consistency level needs,
    /// milliseconds; past it the client gets WriteTimeout (the write may still be applied).
    pub write_request_timeout_ms: u64,
    /// How long a coordinator waits for a read's replicas, milliseconds (ReadTimeout past it).
    pub read_request_timeout_ms: u64,
    /// Whether a coordinator keeps hints for replicas that are down or miss a write, and
    /// replays them when they return (hints already stored are replayed either way).
    pub hinted_handoff_enabled: bool,
    /// Hints are written for a replica only this long after it went down, milliseconds (3 h);
    /// past it the replica has to be repaired.
    pub max_hint_window_ms: u64,
    /// Most disk all hints of this node may take, e.g. `1GiB`; past it new hints are refused.
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub max_hints_size: u64,
    /// Most bytes per second a node streams ranges at while it joins or leaves the ring, e.g.
    /// `50MiB`; 0 (the default) is unthrottled.
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub stream_throughput_outbound: u64,
    /// Most bytes per second of hints replayed to one target, e.g. `1MiB`.
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub hinted_handoff_throttle: u64,
    /// Most bytes per second the purge of expired data and old tombstones reads, e.g. `64MiB`
    /// (Cassandra's `compaction_throughput`, whose default is 64 MiB/s of compaction); 0 is
    /// unthrottled. 16 MiB/s by default: unthrottled, a pass over 1 GB under load peaks
    /// 120 MB higher in resident memory (BENCHMARKS.md, `bench/run` purge part).
    #[serde(
        deserialize_with = "deserialize_byte_size",
        serialize_with = "serialize_byte_size"
    )]
    pub compaction_throughput: u64,
    /// Test clusters only: a file of injected faults (slow links, cut links, a deliberate bug)
    /// that `ringdb cluster` writes and the node polls; unset (the default) in production.
    pub fault_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            cluster_name: "ringdb".to_string(),
            listen_address: loopback,
            storage_port: 7000,
            native_transport_address: loopback,
            native_transport_port: 9042,
            native_transport_max_frame_size: 256 * 1024 * 1024,
            native_transport_max_requests_per_connection: 1024,
            native_transport_throw_on_overload: false,
            native_transport_max_concurrent_requests: 8192,
            native_transport_max_concurrent_requests_in_bytes: 256 << 20,
            native_transport_max_connections: 4096,
            native_transport_idle_startup_timeout_ms: 10_000,
            authenticator: Authenticator::AllowAll,
            auth_superuser_name: "cassandra".to_string(),
            auth_superuser_password: None,
            auth_cache_validity_ms: 2000,
            auth_max_failed_logins: 5,
            auth_failed_login_lockout_ms: 60_000,
            client_encryption: ClientEncryption::default(),
            seeds: Vec::new(),
            data_dir: PathBuf::from("ringdb-data"),
            internode_ca: None,
            internode_cert: None,
            internode_key: None,
            gossip_interval_ms: 150,
            phi_convict_threshold: 8.0,
            allocate_tokens_for_local_replication_factor: 3,
            dc: "dc1".to_string(),
            rack: "rack1".to_string(),
            num_tokens: 16,
            auto_bootstrap: true,
            commitlog_sync: CommitlogSync::Periodic,
            commitlog_sync_period_ms: 1000,
            storage_cache_size_mb: 256,
            min_free_disk_space: 64 << 20,
            prometheus_port: 9500,
            admin_address: loopback,
            admin_port: 7199,
            log_level: "info".to_string(),
            write_request_timeout_ms: 2000,
            read_request_timeout_ms: 5000,
            hinted_handoff_enabled: true,
            max_hint_window_ms: 3 * 60 * 60 * 1000,
            max_hints_size: 1 << 30,
            hinted_handoff_throttle: 1 << 20,
            stream_throughput_outbound: 0,
            compaction_throughput: 16 << 20,
            fault_file: None,
        }
    }
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("unknown config key `{key}` (from {source_name}); known keys: {known}")]
    UnknownKey {
        key: String,
        source_name: String,
        known: String,
    },
    #[error("bad value for config key `{key}` (from {source_name}): {message}")]
    BadValue {
        key: String,
        source_name: String,
        message: String,
    },
    #[error("--set takes key=value, got `{0}`")]
    BadSet(String),
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Env(String),
    Set,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Set => f.write_str("--set"),
        }
    }
}

/// The result of loading: the configuration, and warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Names of every configuration key, in declaration order.
    pub fn keys() -> Vec<String> {
        match serde_yaml::to_value(Config::default()) {
            Ok(serde_yaml::Value::Mapping(m)) => m
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Builds the configuration from the defaults, an optional YAML file, the given environment
    /// (`RINGDB_*` variables) and `--set key=value` overrides.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Loaded, ConfigError> {
        let keys = Config::keys();
        let mut warnings = Vec::new();
        // Each value with where it came from; later layers replace earlier ones.
        let mut layered: BTreeMap<String, (serde_yaml::Value, Source)> = BTreeMap::new();

        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            let value: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
            match value {
                serde_yaml::Value::Null => {}
                serde_yaml::Value::Mapping(map) => {
                    for (k, v) in map {
                        let Some(key) = k.as_str() else {
                            return Err(ConfigError::File {
                                path: path.to_path_buf(),
                                message: format!("keys must be strings, got {k:?}"),
                            });
                        };
                        layered.insert(key.to_string(), (v, Source::File(path.to_path_buf())));
                    }
                }
                _ => {
                    return Err(ConfigError::File {
                        path: path.to_path_buf(),
                        message: "expected a mapping of key: value".to_string(),
                    })
                }
            }
        }

        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RINGDB_"))
            .collect();
        env.sort();
        for (var, raw) in env {
            let key = var["RINGDB_".len()..].to_ascii_lowercase();
            if keys.contains(&key) {
                layered.insert(key, (scalar(&raw), Source::Env(var)));
            } else if !NON_CONFIG_ENV.contains(&var.as_str()) {
                warnings.push(format!(
                    "ignoring environment variable {var}: not a config key"
                ));
            }
        }

        for set in sets {
            let (key, raw) = set
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSet(set.clone()))?;
            layered.insert(key.trim().to_string(), (scalar(raw.trim()), Source::Set));
        }

        // Check every key and value on its own first, so that errors name the key and the
        // layer it came from; then build the whole struct.
        let mut map = serde_yaml::Mapping::new();
        for (key, (value, source)) in &layered {
            if !keys.contains(key) {
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    source_name: source.to_string(),
                    known: keys.join(", "),
                });
            }
            let mut single = serde_yaml::Mapping::new();
            single.insert(serde_yaml::Value::String(key.clone()), value.clone());
            if let Err(e) = serde_yaml::from_value::<Config>(serde_yaml::Value::Mapping(single)) {
                return Err(ConfigError::BadValue {
                    key: key.clone(),
                    source_name: source.to_string(),
                    message: strip_serde_location(&e.to_string()),
                });
            }
            map.insert(serde_yaml::Value::String(key.clone()), value.clone());
        }
        let config: Config =
            serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(|e| {
                ConfigError::BadValue {
                    key: "?".to_string(),
                    source_name: "combined configuration".to_string(),
                    message: e.to_string(),
                }
            })?;
        config.validate(&layered)?;
        Ok(Loaded { config, warnings })
    }

    /// Checks relations and ranges serde cannot express.
    fn validate(
        &self,
        sources: &BTreeMap<String, (serde_yaml::Value, Source)>,
    ) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            key: key.to_string(),
            source_name: sources
                .get(key)
                .map(|(_, s)| s.to_string())
                .unwrap_or_else(|| "defaults".to_string()),
            message,
        };
        if self.cluster_name.trim().is_empty() {
            return Err(bad("cluster_name", "must not be empty".into()));
        }
        if !(1..=1024).contains(&self.num_tokens) {
            return Err(bad(
                "num_tokens",
                format!("{} is not in 1..=1024", self.num_tokens),
            ));
        }
        if self.commitlog_sync_period_ms == 0 {
            return Err(bad("commitlog_sync_period_ms", "must be at least 1".into()));
        }
        if self.native_transport_max_frame_size < 1024 {
            return Err(bad(
                "native_transport_max_frame_size",
                format!(
                    "{} bytes is too small (at least 1KiB)",
                    self.native_transport_max_frame_size
                ),
            ));
        }
        if self.native_transport_max_frame_size > (1 << 31) {
            return Err(bad(
                "native_transport_max_frame_size",
                "at most 2GiB (the protocol's length field is a signed 32-bit int)".into(),
            ));
        }
        if self.native_transport_max_requests_per_connection == 0 {
            return Err(bad(
                "native_transport_max_requests_per_connection",
                "must be at least 1".into(),
            ));
        }
        if self.native_transport_max_concurrent_requests == 0 {
            return Err(bad(
                "native_transport_max_concurrent_requests",
                "must be at least 1".into(),
            ));
        }
        if self.native_transport_max_concurrent_requests_in_bytes < 1024 {
            return Err(bad(
                "native_transport_max_concurrent_requests_in_bytes",
                format!(
                    "{} bytes is too small (at least 1KiB)",
                    self.native_transport_max_concurrent_requests_in_bytes
                ),
            ));
        }
        if self.native_transport_max_connections == 0 {
            return Err(bad(
                "native_transport_max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty".into()));
        }
        for (key, value) in [("dc", &self.dc), ("rack", &self.rack)] {
            if value.trim().is_empty() {
                return Err(bad(key, "must not be empty".into()));
            }
        }
        for (key, value) in [
            ("write_request_timeout_ms", self.write_request_timeout_ms),
            ("read_request_timeout_ms", self.read_request_timeout_ms),
            ("hinted_handoff_throttle", self.hinted_handoff_throttle),
        ] {
            if value == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        for seed in &self.seeds {
            if seed.trim().is_empty() {
                return Err(bad("seeds", "empty seed address".into()));
            }
            split_host_port(seed, self.storage_port).map_err(|m| bad("seeds", m))?;
        }
        let tls = [
            ("internode_ca", &self.internode_ca),
            ("internode_cert", &self.internode_cert),
            ("internode_key", &self.internode_key),
        ];
        let set = tls.iter().filter(|(_, v)| v.is_some()).count();
        if set != 0 && set != 3 {
            let (missing, _) = tls.iter().find(|(_, v)| v.is_none()).expect("one is unset");
            return Err(bad(
                missing,
                "internode_ca, internode_cert and internode_key go together: set all three or none"
                    .into(),
            ));
        }
        if self.native_transport_idle_startup_timeout_ms == 0 {
            return Err(bad(
                "native_transport_idle_startup_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        if self.auth_superuser_name.trim().is_empty() {
            return Err(bad("auth_superuser_name", "must not be empty".into()));
        }
        if self.authenticator == Authenticator::Password {
            let missing = self
                .auth_superuser_password
                .as_ref()
                .is_none_or(|p| p.0.is_empty());
            if missing {
                return Err(bad(
                    "auth_superuser_password",
                    "authenticator: password needs a password for the superuser role \
                     (there is no default password): set auth_superuser_password or the \
                     environment variable RINGDB_AUTH_SUPERUSER_PASSWORD"
                        .into(),
                ));
            }
        }
        let tls = &self.client_encryption;
        if tls.enabled {
            for (field, value) in [("cert", &tls.cert), ("key", &tls.key)] {
                if value.is_none() {
                    return Err(bad(
                        "client_encryption",
                        format!("enabled: true needs `{field}` (a PEM file)"),
                    ));
                }
            }
            if tls.require_client_auth && tls.ca.is_none() {
                return Err(bad(
                    "client_encryption",
                    "require_client_auth: true needs `ca` (the PEM file of the CA client \
                     certificates chain to)"
                        .into(),
                ));
            }
        }
        if !(10..=60_000).contains(&self.gossip_interval_ms) {
            return Err(bad(
                "gossip_interval_ms",
                format!("{} is not in 10..=60000", self.gossip_interval_ms),
            ));
        }
        if !(self.phi_convict_threshold >= 1.0 && self.phi_convict_threshold <= 64.0) {
            return Err(bad(
                "phi_convict_threshold",
                format!("{} is not in 1..=64", self.phi_convict_threshold),
            ));
        }
        if !(1..=32).contains(&self.allocate_tokens_for_local_replication_factor) {
            return Err(bad(
                "allocate_tokens_for_local_replication_factor",
                format!(
                    "{} is not in 1..=32",
                    self.allocate_tokens_for_local_replication_factor
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The seeds as `(host, port)`, the port defaulting to `storage_port`. Hosts may be names
    /// (resolved when the node starts) or IP addresses (`[v6]:port` for IPv6 with a port).
    pub fn seed_hosts(&self) -> Vec<(String, u16)> {
        self.seeds
            .iter()
            .filter_map(|s| split_host_port(s, self.storage_port).ok())
            .collect()
    }
}

/// Splits `host[:port]`, `[v6]:port` or a bare IPv6 address.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let t = text.trim();
    if let Ok(addr) = t.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    let (host, port) = match t.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("bad port in seed `{t}`"))?,
        ),
        None => (t, default_port),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !valid {
        return Err(format!("`{t}` is not host[:port]"));
    }
    Ok((host.to_string(), port))
}

/// `RINGDB_*` variables that are not configuration keys but are known to the project's tools.
const NON_CONFIG_ENV: &[&str] = &["RINGDB_BIN", "RINGDB_LOG", "RINGDB_HOME"];

/// Reads a value given as text (environment, `--set`) as a YAML scalar.
fn scalar(raw: &str) -> serde_yaml::Value {
    if raw.is_empty() {
        return serde_yaml::Value::String(String::new());
    }
    match serde_yaml::from_str::<serde_yaml::Value>(raw) {
        Ok(v @ (serde_yaml::Value::Bool(_) | serde_yaml::Value::Number(_))) => v,
        // Anything else (including YAML that happens to parse as a list or a map) is a string:
        // the struct's own deserializers decide what strings mean.
        _ => serde_yaml::Value::String(raw.to_string()),
    }
}

/// serde_yaml errors about a one-key mapping carry a location that means nothing to the user.
fn strip_serde_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn deserialize_seeds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seeds {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Seeds::deserialize(d)? {
        Seeds::List(list) => list,
        Seeds::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// Parses `256MiB`, `64KiB`, `1GiB`, `1000000` (bytes) and the same with `MB`/`KB`/`GB`/`B`.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 256MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

fn deserialize_byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(n) => Ok(n),
        Size::Text(t) => parse_byte_size(&t).map_err(serde::de::Error::custom),
    }
}

fn serialize_byte_size<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(*v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        yaml: Option<&str>,
        env: &[(&str, &str)],
        sets: &[&str],
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringdb.yaml");
        if let Some(y) = yaml {
            std::fs::write(&path, y).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(yaml.map(|_| path.as_path()), env, &sets).map(|l| l.config)
    }

    #[test]
    fn defaults_without_any_source() {
        assert_eq!(load(None, &[], &[]).unwrap(), Config::default());
    }

    #[test]
    fn layers_override_in_order() {
        let c = load(
            Some("num_tokens: 4\ndc: east\ncluster_name: prod\n"),
            &[("RINGDB_NUM_TOKENS", "8"), ("RINGDB_RACK", "r9")],
            &["num_tokens=12", "seeds=10.0.0.1:7000, 10.0.0.2"],
        )
        .unwrap();
        assert_eq!(c.num_tokens, 12);
        assert_eq!(c.dc, "east");
        assert_eq!(c.rack, "r9");
        assert_eq!(c.cluster_name, "prod");
        assert_eq!(c.seeds, vec!["10.0.0.1:7000", "10.0.0.2"]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = load(Some("num_tokenz: 4\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_tokenz"), "{e}");
        let e = load(None, &[], &["bogus=1"]).unwrap_err().to_string();
        assert!(e.contains("bogus") && e.contains("--set"), "{e}");
    }

    #[test]
    fn unknown_env_vars_are_warnings_not_errors() {
        let loaded =
            Config::load(None, [("RINGDB_NOPE".to_string(), "1".to_string())], &[]).unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("RINGDB_NOPE"));
    }

    #[test]
    fn bad_values_name_the_key_and_source() {
        let e = load(Some("native_transport_port: lots\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("native_transport_port") && e.contains("config file"),
            "{e}"
        );
        let e = load(None, &[("RINGDB_COMMITLOG_SYNC", "sometimes")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("commitlog_sync") && e.contains("RINGDB_COMMITLOG_SYNC"),
            "{e}"
        );
        let e = load(None, &[], &["num_tokens=0"]).unwrap_err().to_string();
        assert!(e.contains("num_tokens"), "{e}");
        let e = load(None, &[], &["listen_address=not-an-ip"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_address"), "{e}");
        let e = load(None, &[], &["native_transport_max_frame_size=12XB"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("native_transport_max_frame_size"), "{e}");
        let e = load(None, &[], &["novalue"]).unwrap_err().to_string();
        assert!(e.contains("key=value"), "{e}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_byte_size("1024").unwrap(), 1024);
        assert_eq!(parse_byte_size("2 GiB").unwrap(), 2 << 30);
        assert!(parse_byte_size("many").is_err());
        let c = load(None, &[], &["native_transport_max_frame_size=16MiB"]).unwrap();
        assert_eq!(c.native_transport_max_frame_size, 16 << 20);
    }

    #[test]
    fn overload_bounds_parse_and_are_validated() {
        let c = load(
            Some("native_transport_max_concurrent_requests: 500\n"),
            &[("RINGDB_NATIVE_TRANSPORT_THROW_ON_OVERLOAD", "true")],
            &["native_transport_max_concurrent_requests_in_bytes=8MiB"],
        )
        .unwrap();
        assert_eq!(c.native_transport_max_concurrent_requests, 500);
        assert_eq!(c.native_transport_max_concurrent_requests_in_bytes, 8 << 20);
        assert!(c.native_transport_throw_on_overload);
        let d = Config::default();
        assert!(!d.native_transport_throw_on_overload);
        assert!(
            d.native_transport_max_concurrent_requests as u64
                >= d.native_transport_max_requests_per_connection as u64,
            "one busy connection alone must not hit the node bound"
        );
        for (set, key) in [
            (
                "native_transport_max_concurrent_requests=0",
                "native_transport_max_concurrent_requests",
            ),
            (
                "native_transport_max_concurrent_requests_in_bytes=100",
                "native_transport_max_concurrent_requests_in_bytes",
            ),
            (
                "native_transport_throw_on_overload=sometimes",
                "native_transport_throw_on_overload",
            ),
        ] {
            let e = load(None, &[], &[set]).unwrap_err().to_string();
            assert!(e.contains(key), "{set}: {e}");
        }
    }

    #[test]
    fn the_example_config_in_deploy_parses_and_documents_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/ringdb.yaml");
        let text = std::fs::read_to_string(&path).expect("deploy/ringdb.yaml exists");
        let loaded = Config::load(Some(&path), std::iter::empty(), &[]).expect("example parses");
        assert!(loaded.warnings.is_empty());
        for key in Config::keys() {
            assert!(
                text.contains(&format!("{key}:")),
                "deploy/ringdb.yaml does not mention `{key}` (commented or not)"
            );
        }
    }

    #[test]
    fn internode_tls_keys_go_together_and_seeds_parse() {
        let err = Config::load(None, std::iter::empty(), &["internode_ca=/x/ca.crt".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("internode_cert"), "{err}");
        let all = [
            "internode_ca=/x/ca.crt".to_string(),
            "internode_cert=/x/n.crt".to_string(),
            "internode_key=/x/n.key".to_string(),
            "seeds=10.0.0.1, 10.0.0.2:7001, node3, [::1]:7002".to_string(),
        ];
        let c = Config::load(None, std::iter::empty(), &all).unwrap().config;
        assert_eq!(
            c.seed_hosts(),
            vec![
                ("10.0.0.1".to_string(), 7000),
                ("10.0.0.2".to_string(), 7001),
                ("node3".to_string(), 7000),
                ("::1".to_string(), 7002),
            ]
        );
        let err = Config::load(None, std::iter::empty(), &["seeds=bad host".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("seeds"), "{err}");
        let err = Config::load(
            None,
            std::iter::empty(),
            &["phi_convict_threshold=0.5".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("phi_convict_threshold"), "{err}");
    }

    #[test]
    fn password_auth_needs_a_superuser_password_and_tls_needs_its_files() {
        let err = load(None, &[], &["authenticator=password"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth_superuser_password")
                && err.contains("RINGDB_AUTH_SUPERUSER_PASSWORD"),
            "{err}"
        );
        let c = load(
            None,
            &[("RINGDB_AUTH_SUPERUSER_PASSWORD", "pw")],
            &["authenticator=PasswordAuthenticator"],
        )
        .unwrap();
        assert_eq!(c.authenticator, Authenticator::Password);
        assert_eq!(c.auth_superuser_name, "cassandra");
        assert_eq!(c.auth_superuser_password, Some(Secret("pw".into())));
        assert!(!format!("{c:?}").contains("\"pw\""));
        let err = load(Some("client_encryption:\n  enabled: true\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("client_encryption") && err.contains("cert"),
            "{err}"
        );
        let c = load(
            Some("client_encryption:\n  enabled: true\n  cert: /c.pem\n  key: /k.pem\n"),
            &[],
            &[],
        )
        .unwrap();
        assert!(c.client_encryption.enabled && !c.client_encryption.optional);
        let err = load(Some("client_encryption:\n  enabeld: true\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("enabeld"), "{err}");
    }
}

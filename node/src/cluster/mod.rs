//! The local cluster manager: several `ringdb node` processes on one machine, like Cassandra's
//! `ccm`, built into the binary (`ringdb cluster`, see [`cli`]) and used by the end-to-end tests,
//! so the tests exercise the tool users run.
//!
//! # Layout
//!
//! A cluster lives in one folder (`--dir`, by default `$RINGDB_HOME/clusters/NAME` with
//! `RINGDB_HOME` defaulting to `~/.ringdb`):
//!
//! ```text
//! DIR/cluster.yaml            the manifest: nodes, addresses, dc/rack, seeds, pids (manifest.rs)
//! DIR/cluster.lock            flock serializing manifest updates between processes
//! DIR/ca/ca.crt, ca.key       the cluster's certificate authority
//! DIR/nodeK/ringdb.yaml       nodeK's configuration (`ringdb node --config` reads only this)
//! DIR/nodeK/certs/            nodeK.crt, nodeK.key (issued for its address), ca.crt
//! DIR/nodeK/data/             its data_dir
//! DIR/nodeK/node.log          its stdout and stderr, appended across starts
//! DIR/gone/nodeK-<secs>/      the folder of a node that left the ring (decommission, removenode)
//! DIR/faults.yaml             partitions and slow links in force (faults.rs), absent when none
//! DIR/nodeK/faults.json       the node's fault file, which it polls (`fault_file`)
//! ```
//!
//! Every node listens on an address of its own (`nodeK` on `base_ip + K - 1`, 127.0.0.1 upward by
//! default) with the standard ports, so clients and drivers reach each node as they would in a
//! real cluster. Seeds are the first node of each datacenter (at most three).
//!
//! # Processes
//!
//! Nodes are separate processes in their own process groups ([`process`]); the manifest records
//! each pid, so any later `ringdb cluster` process (or a test) can stop, kill, pause or inspect
//! them. A pid recorded without a graceful stop whose process is gone is a `dead` node.
//!
//! # Waiting
//!
//! Everything that waits is bounded. "Up" means converged ([`probe::check_converged`]): every
//! running node answers CQL, lists every other running node in `system.peers`, and its
//! `system_views.cluster_status` shows every running node up and `NORMAL`. When a wait runs out
//! the error names the node most likely at fault and shows the tail of its log.
//!
//! # Files
//!
//! - [`spec`]: the layout rules (names, addresses, racks, seeds), pure and unit-tested;
//! - [`manifest`]: `cluster.yaml`, read-modify-written under a lock;
//! - [`process`]: spawning detached node processes, their state from `/proc`, signals;
//! - [`probe`]: a node's view over CQL and the convergence rule;
//! - `lifecycle`: start, stop, kill, pause, resume and the bounded waits;
//! - `shrink`: decommission and removenode through the nodes' admin API;
//! - [`faults`]: partitions (nftables, or the nodes' transport hook) and slow links;
//! - [`cli`]: `ringdb cluster …`.

pub mod cli;
pub mod faults;
mod lifecycle;
pub mod manifest;
pub mod probe;
pub mod process;
mod shrink;
pub mod spec;

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use manifest::{Manifest, NodeEntry};
use probe::NodeView;
pub use process::ProcessState;
use ringdb_gossip::certs;
pub use spec::{parse_dcs, ClusterSpec};

/// The CQL port of every node (on its own address), unless the extra config says otherwise.
pub const NATIVE_TRANSPORT_PORT: u16 = 9042;
/// The internode port of every node (on its own address), unless the extra config says otherwise.
pub const STORAGE_PORT: u16 = 7000;
/// The Prometheus port of every node (on its own address).
pub const PROMETHEUS_PORT: u16 = 9500;
/// The admin API port of every node (on its own address), unless the extra config says
/// otherwise.
pub const ADMIN_PORT: u16 = 7199;
/// How long a graceful stop (SIGTERM) may take before the node is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to disappear after SIGKILL, or to change state after SIGSTOP/SIGCONT.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often convergence is polled.
pub const CONVERGE_POLL: Duration = Duration::from_millis(200);
/// How often [`Cluster::wait_seen`] polls the observers.
pub const SEEN_POLL: Duration = Duration::from_millis(50);
/// Log lines shown when a node does not come up.
pub const LOG_TAIL_LINES: usize = 40;

/// Everything that can go wrong managing a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A bad name, node count, address or option.
    #[error("{0}")]
    Spec(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// There is no cluster in the folder.
    #[error("no cluster in {dir} (no cluster.yaml there; `ringdb cluster list` shows clusters)")]
    NotFound { dir: PathBuf },
    /// `create` found a cluster where it was to make one.
    #[error("a cluster already exists in {dir} (`ringdb cluster remove` deletes it)")]
    AlreadyExists { dir: PathBuf },
    /// `create` found other files where it was to make a cluster.
    #[error("{dir} exists and is not empty; choose another --dir or remove it")]
    DirNotEmpty { dir: PathBuf },
    /// The manifest cannot be parsed or written.
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    /// The certificates could not be made.
    #[error("certificates: {0}")]
    Certs(String),
    /// No node of that name.
    #[error("cluster {cluster} has no node {node} (nodes: {known})")]
    UnknownNode {
        cluster: String,
        node: String,
        known: String,
    },
    /// `add` of a name or address already used.
    #[error("cluster {cluster} already has {what}")]
    NodeExists { cluster: String, what: String },
    /// The node's process is not in a state the operation applies to.
    #[error("{node} is {state}: {hint}")]
    BadState {
        node: String,
        state: ProcessState,
        hint: String,
    },
    /// The node's process could not be started.
    #[error("cannot start {node} ({binary}): {source}")]
    Spawn {
        node: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    /// A signal could not be sent.
    #[error("cannot send {signal} to {node} (pid {pid}): {source}")]
    Signal {
        node: String,
        signal: &'static str,
        pid: u32,
        source: std::io::Error,
    },
    /// A node process exited while it was expected to run.
    #[error("{node} exited {during}\n--- last lines of {log} ---\n{tail}\n---")]
    Exited {
        node: String,
        during: String,
        log: PathBuf,
        tail: String,
    },
    /// A wait ran out; `node` is the node most likely at fault.
    #[error("{summary}\n--- last {LOG_TAIL_LINES} lines of {node}'s log {log} ---\n{tail}\n---")]
    NotUp {
        node: String,
        summary: String,
        log: PathBuf,
        tail: String,
    },
    /// A node did not change state in time after a signal.
    #[error("{node}: {what}")]
    Stuck { node: String, what: String },
}

impl ClusterError {
    fn io(path: &Path, source: std::io::Error) -> ClusterError {
        ClusterError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the clusters live: `$RINGDB_HOME`, else `~/.ringdb`.
pub fn ringdb_home() -> PathBuf {
    match std::env::var_os("RINGDB_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".ringdb"),
    }
}

/// The default folder of cluster `name`: `$RINGDB_HOME/clusters/NAME`.
pub fn default_cluster_dir(name: &str) -> PathBuf {
    ringdb_home().join("clusters").join(name)
}

/// One cluster found by [`list_clusters`].
#[derive(Debug, Clone)]
pub struct ClusterSummary {
    pub name: String,
    pub dir: PathBuf,
    pub nodes: usize,
    /// Nodes whose process is running or paused.
    pub alive: usize,
    /// Set when the manifest could not be read.
    pub error: Option<String>,
}

/// The clusters under `home/clusters` (each folder holding a `cluster.yaml`), sorted by name.
pub fn list_clusters(home: &Path) -> Result<Vec<ClusterSummary>, ClusterError> {
    let root = home.join("clusters");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ClusterError::io(&root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !manifest::manifest_path(&dir).is_file() {
            continue;
        }
        let fallback = entry.file_name().to_string_lossy().into_owned();
        out.push(match manifest::load(&dir) {
            Ok(m) => ClusterSummary {
                name: m.name.clone(),
                nodes: m.nodes.len(),
                alive: m.nodes.iter().filter(|n| entry_state(n).is_alive()).count(),
                dir,
                error: None,
            },
            Err(e) => ClusterSummary {
                name: fallback,
                dir,
                nodes: 0,
                alive: 0,
                error: Some(e.to_string()),
            },
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The state of a manifest entry's process as seen from any process (no child handles).
fn entry_state(node: &NodeEntry) -> ProcessState {
    match node.pid {
        None => ProcessState::Stopped,
        Some(pid) => process::state_of_pid(pid, node.pid_start),
    }
}

/// Where a node is and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHandle {
    /// `node1`, `node2`, …
    pub name: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Where it serves CQL.
    pub cql_addr: SocketAddr,
    /// Where it listens for internode traffic (QUIC, UDP).
    pub storage_addr: SocketAddr,
    /// Where its admin API listens (`ringdb repair --host`).
    pub admin_addr: SocketAddr,
    pub dc: String,
    pub rack: String,
    /// True for a seed.
    pub seed: bool,
    /// Its folder, `DIR/nodeK`.
    pub dir: PathBuf,
    /// Its configuration file.
    pub config_path: PathBuf,
    /// Its log (stdout and stderr, appended).
    pub log_path: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The superuser's credentials when the cluster runs with `authenticator: password` (from
    /// `--set`): the cluster manager logs in with them to watch the nodes.
    pub credentials: Option<ringdb_cql::client::Credentials>,
    /// Its certificate, key and CA copy.
    pub certs_dir: PathBuf,
}

/// One node in [`Cluster::status`].
#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub node: NodeHandle,
    pub process: ProcessState,
    /// The pid while the process exists.
    pub pid: Option<u32>,
    /// What the node says about the cluster; `None` when it is not running (a paused node is not
    /// asked), `Err` when it does not answer CQL.
    pub view: Option<Result<NodeView, String>>,
}

/// Whether [`Cluster::wait_seen`] waits for a node to be seen up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Up and `NORMAL` in every other running node's `cluster_status`.
    Up,
    /// Down (`up = false`) in every other running node's `cluster_status`.
    Down,
}

/// A callback told what a long operation is doing (the CLI prints it).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// A local cluster: its folder, its manifest, and the node processes this process started.
pub struct Cluster {
    dir: PathBuf,
    manifest: Mutex<Manifest>,
    /// Node processes spawned by this process, kept to reap them: a dead child is a zombie until
    /// waited for.
    children: Mutex<HashMap<String, Child>>,
    progress: Option<Progress>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("name", &self.name())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Creates the cluster's folder: manifest, CA, and for each node its folder, certificate and
    /// configuration. Starts nothing.
    pub fn create(spec: ClusterSpec) -> Result<Cluster, ClusterError> {
        spec.validate()?;
        let planned = spec.layout()?;
        let dir = std::path::absolute(&spec.dir).map_err(|e| ClusterError::io(&spec.dir, e))?;
        if manifest::manifest_path(&dir).exists() {
            return Err(ClusterError::AlreadyExists { dir });
        }
        let existed = dir.exists();
        if existed {
            let mut entries = std::fs::read_dir(&dir).map_err(|e| ClusterError::io(&dir, e))?;
            if entries.next().is_some() {
                return Err(ClusterError::DirNotEmpty { dir });
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| ClusterError::io(&dir, e))?;
        let seeds = spec::choose_seeds(&planned);
        let manifest = Manifest {
            name: spec.name.clone(),
            binary: spec.binary.clone(),
            base_ip: spec.base_ip,
            num_tokens: spec.num_tokens,
            racks_per_dc: spec.racks_per_dc,
            seeds: seeds.clone(),
            extra_config: spec.extra_config.clone(),
            nodes: planned
                .iter()
                .map(|p| NodeEntry {
                    name: p.name.clone(),
                    ip: p.ip,
                    dc: p.dc.clone(),
                    rack: p.rack.clone(),
                    seed: seeds.contains(&IpAddr::V4(p.ip)),
                    pid: None,
                    pid_start: None,
                })
                .collect(),
        };
        let build = || -> Result<(), ClusterError> {
            let ca_dir = dir.join("ca");
            std::fs::create_dir_all(&ca_dir).map_err(|e| ClusterError::io(&ca_dir, e))?;
            certs::create_ca(&ca_dir, &format!("ringdb cluster {} CA", spec.name))
                .map_err(|e| ClusterError::Certs(e.to_string()))?;
            for node in &manifest.nodes {
                prepare_node_dir(&dir, &manifest, node)?;
            }
            manifest::store(&dir, &manifest)
        };
        if let Err(e) = build() {
            // Leave nothing half-made behind: the folder was absent or empty before.
            if existed {
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for entry in entries.flatten() {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
        Ok(Cluster {
            dir,
            manifest: Mutex::new(manifest),
            children: Mutex::new(HashMap::new()),
            progress: None,
        })
    }

    /// Opens the cluster in `dir` (made earlier by [`Cluster::create`], in any process).
    pub fn open(dir: &Path) -> Result<Cluster, ClusterError> {
        let dir = std::path::absolute(dir).map_err(|e| ClusterError::io(dir, e))?;
        let manifest = manifest::load(&dir)?;
        Ok(Cluster {
            dir,
            manifest: Mutex::new(manifest),
            children: Mutex::new(HashMap::new()),
            progress: None,
        })
    }

    /// Reports progress of long operations to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Cluster {
        self.progress = Some(progress);
        self
    }

    fn say(&self, message: &str) {
        tracing::info!(cluster = %self.name(), "{message}");
        if let Some(p) = &self.progress {
            p(message);
        }
    }

    /// Runs nodes with `binary` from now on (recorded in the manifest when it changes).
    pub fn set_binary(&self, binary: &Path) -> Result<(), ClusterError> {
        if self.current().binary == binary {
            return Ok(());
        }
        self.update(|m| {
            m.binary = binary.to_path_buf();
            Ok(())
        })
    }

    /// The binary that runs the nodes.
    pub fn binary(&self) -> PathBuf {
        self.current().binary.clone()
    }

    /// The cluster's name.
    pub fn name(&self) -> String {
        self.current().name.clone()
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The seed addresses in every node's configuration.
    pub fn seeds(&self) -> Vec<IpAddr> {
        self.current().seeds.clone()
    }

    /// The CA folder (`ca.crt`, `ca.key`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// A copy of the manifest as it is on disk now.
    pub fn manifest(&self) -> Manifest {
        self.current().clone()
    }

    /// The manifest, read again from disk: it is the truth, and other processes (the CLI, another
    /// terminal) change pids and nodes. When it cannot be read (the cluster was removed) the last
    /// copy read stands.
    fn current(&self) -> MutexGuard<'_, Manifest> {
        let mut guard = lock(&self.manifest);
        if let Ok(fresh) = manifest::load(&self.dir) {
            *guard = fresh;
        }
        guard
    }

    fn update<T>(
        &self,
        change: impl FnOnce(&mut Manifest) -> Result<T, ClusterError>,
    ) -> Result<T, ClusterError> {
        let (fresh, result) = manifest::update(&self.dir, change)?;
        *lock(&self.manifest) = fresh;
        Ok(result)
    }

    /// Every node, in order.
    pub fn nodes(&self) -> Vec<NodeHandle> {
        let m = self.current();
        m.nodes.iter().map(|n| handle(&self.dir, &m, n)).collect()
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Result<NodeHandle, ClusterError> {
        let m = self.current();
        match m.node(name) {
            Some(n) => Ok(handle(&self.dir, &m, n)),
            None => Err(ClusterError::UnknownNode {
                cluster: m.name.clone(),
                node: name.to_string(),
                known: m.node_names(),
            }),
        }
    }

    fn entry(&self, name: &str) -> Result<NodeEntry, ClusterError> {
        let m = self.current();
        m.node(name)
            .cloned()
            .ok_or_else(|| ClusterError::UnknownNode {
                cluster: m.name.clone(),
                node: name.to_string(),
                known: m.node_names(),
            })
    }

    fn names(&self) -> Vec<String> {
        self.current()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// The state of a node's process. Reaps the process if this process started it and it died.
    pub fn process_state(&self, name: &str) -> Result<ProcessState, ClusterError> {
        let entry = self.entry(name)?;
        Ok(self.state_of(&entry))
    }

    fn state_of(&self, entry: &NodeEntry) -> ProcessState {
        let Some(pid) = entry.pid else {
            return ProcessState::Stopped;
        };
        let mut children = lock(&self.children);
        if let Some(child) = children.get_mut(&entry.name) {
            if child.id() == pid {
                match child.try_wait() {
                    Ok(Some(_)) => {
                        children.remove(&entry.name);
                        return ProcessState::Dead;
                    }
                    Ok(None) => {}
                    Err(_) => {}
                }
            }
        }
        process::state_of_pid(pid, entry.pid_start)
    }

    /// The last `lines` lines of a node's log.
    pub fn log_tail(&self, name: &str, lines: usize) -> Result<String, ClusterError> {
        let node = self.node(name)?;
        read_tail(&node.log_path, lines)
    }

    fn log_tail_or_note(&self, node: &NodeHandle) -> String {
        read_tail(&node.log_path, LOG_TAIL_LINES).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    // ---- growing ------------------------------------------------------------------------------

    /// Adds a node (stopped): its address, certificate and configuration. `nodeK` gets
    /// `base_ip + K - 1`; other names get the next free address. The datacenter defaults to
    /// node1's, the rack to the next one round-robin in that datacenter. Start it with
    /// [`Cluster::start_node`]; it joins through the seeds.
    pub fn add_node(
        &self,
        name: &str,
        dc: Option<&str>,
        rack: Option<&str>,
    ) -> Result<NodeHandle, ClusterError> {
        spec::validate_name(name)?;
        for (what, value) in [("dc", dc), ("rack", rack)] {
            if let Some(v) = value {
                spec::validate_name(v)
                    .map_err(|_| ClusterError::Spec(format!("`{v}` is not a valid {what} name")))?;
            }
        }
        let dir = self.dir.clone();
        let entry = self.update(|m| {
            if m.node(name).is_some() {
                return Err(ClusterError::NodeExists {
                    cluster: m.name.clone(),
                    what: format!("a node named {name}"),
                });
            }
            let used: Vec<Ipv4Addr> = m.nodes.iter().map(|n| n.ip).collect();
            let ip = match spec::node_number(name) {
                Some(k) => spec::node_ip(m.base_ip, k)?,
                None => {
                    let mut k = m.nodes.len() + 1;
                    loop {
                        let ip = spec::node_ip(m.base_ip, k)?;
                        if !used.contains(&ip) {
                            break ip;
                        }
                        k += 1;
                    }
                }
            };
            if let Some(other) = m.nodes.iter().find(|n| n.ip == ip) {
                return Err(ClusterError::NodeExists {
                    cluster: m.name.clone(),
                    what: format!("{ip} (used by {})", other.name),
                });
            }
            let dc = dc
                .map(str::to_string)
                .or_else(|| m.nodes.first().map(|n| n.dc.clone()))
                .unwrap_or_else(|| spec::dc_name(0));
            let in_dc = m.nodes.iter().filter(|n| n.dc == dc).count();
            let rack = rack
                .map(str::to_string)
                .unwrap_or_else(|| spec::rack_name(in_dc, m.racks_per_dc));
            let entry = NodeEntry {
                name: name.to_string(),
                ip,
                dc,
                rack,
                seed: false,
                pid: None,
                pid_start: None,
            };
            prepare_node_dir(&dir, m, &entry)?;
            m.nodes.push(entry.clone());
            Ok(entry)
        })?;
        self.say(&format!(
            "{}: added on {} in {}/{}",
            entry.name, entry.ip, entry.dc, entry.rack
        ));
        self.node(name)
    }
}

/// Builds a node's handle from its manifest entry.
fn handle(dir: &Path, m: &Manifest, n: &NodeEntry) -> NodeHandle {
    let node_dir = dir.join(&n.name);
    let port = |key: &str, default: u16| {
        m.extra_config
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(default)
    };
    NodeHandle {
        name: n.name.clone(),
        ip: n.ip,
        cql_addr: SocketAddr::new(
            IpAddr::V4(n.ip),
            port("native_transport_port", NATIVE_TRANSPORT_PORT),
        ),
        storage_addr: SocketAddr::new(IpAddr::V4(n.ip), port("storage_port", STORAGE_PORT)),
        admin_addr: SocketAddr::new(IpAddr::V4(n.ip), port("admin_port", ADMIN_PORT)),
        dc: n.dc.clone(),
        rack: n.rack.clone(),
        seed: n.seed,
        config_path: node_dir.join("ringdb.yaml"),
        log_path: node_dir.join("node.log"),
        data_dir: node_dir.join("data"),
        certs_dir: node_dir.join("certs"),
        dir: node_dir,
        credentials: superuser_credentials(&m.extra_config),
    }
}

/// The superuser's name and password from a cluster's extra configuration, when it turns
/// password authentication on.
fn superuser_credentials(extra: &[(String, String)]) -> Option<ringdb_cql::client::Credentials> {
    let get = |key: &str| {
        extra
            .iter()
            .rev()
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    };
    let authenticator = get("authenticator")?;
    if !matches!(authenticator.as_str(), "password" | "PasswordAuthenticator") {
        return None;
    }
    Some(ringdb_cql::client::Credentials {
        username: get("auth_superuser_name").unwrap_or_else(|| "cassandra".to_string()),
        password: get("auth_superuser_password")?,
    })
}

/// Makes a node's folder: data dir, certificate issued by the cluster CA for its address, and
/// its configuration file.
fn prepare_node_dir(dir: &Path, m: &Manifest, node: &NodeEntry) -> Result<(), ClusterError> {
    let h = handle(dir, m, node);
    for d in [&h.dir, &h.data_dir, &h.certs_dir] {
        std::fs::create_dir_all(d).map_err(|e| ClusterError::io(d, e))?;
    }
    certs::issue(
        &dir.join("ca"),
        &node.name,
        &[IpAddr::V4(node.ip)],
        // `issue` names the certificate after the node already; the transport checks the chain.
        &[],
        &h.certs_dir,
    )
    .map_err(|e| ClusterError::Certs(format!("issuing {}'s certificate: {e}", node.name)))?;
    let yaml = node_config_yaml(m, &h)?;
    std::fs::write(&h.config_path, yaml).map_err(|e| ClusterError::io(&h.config_path, e))
}

/// A node's `ringdb.yaml`.
fn node_config_yaml(m: &Manifest, h: &NodeHandle) -> Result<String, ClusterError> {
    use serde_yaml::Value;
    let s = |v: &str| Value::String(v.to_string());
    let path = |p: PathBuf| Value::String(p.to_string_lossy().into_owned());
    let mut map = serde_yaml::Mapping::new();
    let mut put = |k: &str, v: Value| {
        map.insert(s(k), v);
    };
    put("cluster_name", s(&m.name));
    put("listen_address", s(&h.ip.to_string()));
    put("storage_port", Value::from(h.storage_addr.port()));
    put("native_transport_address", s(&h.ip.to_string()));
    put("native_transport_port", Value::from(h.cql_addr.port()));
    put("prometheus_port", Value::from(PROMETHEUS_PORT));
    put("admin_address", s(&h.ip.to_string()));
    put("admin_port", Value::from(h.admin_addr.port()));
    put(
        "seeds",
        Value::Sequence(m.seeds.iter().map(|ip| s(&ip.to_string())).collect()),
    );
    put("dc", s(&h.dc));
    put("rack", s(&h.rack));
    put("num_tokens", Value::from(m.num_tokens));
    put("data_dir", path(h.data_dir.clone()));
    put("internode_ca", path(h.certs_dir.join("ca.crt")));
    put(
        "internode_cert",
        path(h.certs_dir.join(format!("{}.crt", h.name))),
    );
    put(
        "internode_key",
        path(h.certs_dir.join(format!("{}.key", h.name))),
    );
    put("fault_file", path(h.dir.join(faults::NODE_FAULT_FILE)));
    for (key, raw) in &m.extra_config {
        put(key.trim(), yaml_scalar(raw));
    }
    let body = serde_yaml::to_string(&Value::Mapping(map)).map_err(|e| ClusterError::Manifest {
        path: h.config_path.clone(),
        message: e.to_string(),
    })?;
    Ok(format!(
        "# {} of the local ringdb cluster {}, written by `ringdb cluster`.\n\
         # Keys and defaults: deploy/ringdb.yaml.\n{body}",
        h.name, m.name
    ))
}

/// A `--set` value read as YAML (`8`, `true`, `[a, b]`), or kept as a string when it is not
/// valid YAML.
fn yaml_scalar(raw: &str) -> serde_yaml::Value {
    match serde_yaml::from_str::<serde_yaml::Value>(raw.trim()) {
        Ok(serde_yaml::Value::Null) if !raw.trim().is_empty() && raw.trim() != "null" => {
            serde_yaml::Value::String(raw.to_string())
        }
        Ok(v) => v,
        Err(_) => serde_yaml::Value::String(raw.to_string()),
    }
}

/// The last `lines` lines of a file, reading at most its last 256 KiB.
fn read_tail(path: &Path, lines: usize) -> Result<String, ClusterError> {
    const WINDOW: u64 = 256 * 1024;
    let mut f = std::fs::File::open(path).map_err(|e| ClusterError::io(path, e))?;
    let len = f.metadata().map_err(|e| ClusterError::io(path, e))?.len();
    let from = len.saturating_sub(WINDOW);
    f.seek(SeekFrom::Start(from))
        .map_err(|e| ClusterError::io(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)
        .map_err(|e| ClusterError::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    // A window that starts mid-file starts mid-line: drop that partial line.
    let skip = usize::from(from > 0 && all.len() > lines);
    let start = all.len().saturating_sub(lines).max(skip);
    Ok(all[start..].join("\n"))
}

/// The current UTC time as `2024-01-02T03:04:05Z`.
fn utc_now() -> String {
    certs::utc_rfc3339(certs::unix_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").unwrap();
        assert_eq!(read_tail(&p, 2).unwrap(), "b\nc");
        assert_eq!(read_tail(&p, 10).unwrap(), "a\nb\nc");
        let big: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, big).unwrap();
        assert_eq!(read_tail(&p, 2).unwrap(), "line 99998\nline 99999");
        assert!(read_tail(&dir.path().join("none"), 2).is_err());
    }

    #[test]
    fn set_values_are_yaml() {
        assert_eq!(yaml_scalar("8"), serde_yaml::Value::from(8));
        assert_eq!(yaml_scalar("true"), serde_yaml::Value::from(true));
        assert_eq!(yaml_scalar("info"), serde_yaml::Value::from("info"));
        assert_eq!(yaml_scalar("~x"), serde_yaml::Value::from("~x"));
        assert!(yaml_scalar("[a, b]").is_sequence());
    }

    #[test]
    fn utc_timestamps_look_right() {
        let t = utc_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}

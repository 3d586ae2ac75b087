//! The cluster manifest, `DIR/cluster.yaml`: what a fresh `ringdb cluster` process needs to know
//! about a cluster made by an earlier one — its nodes, their addresses, datacenters and racks, and
//! the process id of each running node.
//!
//! Several processes may act on one cluster (a test and the CLI it runs, two terminals), so every
//! change is a read-modify-write under an exclusive `flock` on `DIR/cluster.lock`, and the file is
//! replaced atomically (written to a temporary file, then renamed): a reader never sees half a
//! manifest.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ClusterError;

/// File name of the manifest inside the cluster's folder.
pub const MANIFEST_FILE: &str = "cluster.yaml";
/// File name of the lock that serializes manifest updates.
const LOCK_FILE: &str = "cluster.lock";

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The cluster's name (`cluster_name` of its nodes).
    pub name: String,
    /// The `ringdb` binary that runs the nodes (the CLI replaces it with itself).
    pub binary: PathBuf,
    /// Address of `node1`.
    pub base_ip: Ipv4Addr,
    /// Vnode tokens per node.
    pub num_tokens: u32,
    /// Racks per datacenter for round-robin assignment (also for added nodes).
    pub racks_per_dc: usize,
    /// The seed addresses every node's config lists (fixed when the cluster is created).
    pub seeds: Vec<IpAddr>,
    /// Extra node configuration given at creation, as `(key, YAML value)`.
    #[serde(default)]
    pub extra_config: Vec<(String, String)>,
    /// The nodes, in creation order.
    pub nodes: Vec<NodeEntry>,
}

/// One node of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// `node1`, `node2`, …
    pub name: String,
    /// Its loopback address (listen, CQL and metrics).
    pub ip: Ipv4Addr,
    pub dc: String,
    pub rack: String,
    /// True for the seeds.
    #[serde(default)]
    pub seed: bool,
    /// Process id of the last start; cleared by a graceful stop. A recorded pid whose process is
    /// gone is a node that died (or was killed).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Start time of that process (`/proc/PID/stat` field 22, clock ticks since boot), to tell
    /// our process from a later one that reused its pid.
    #[serde(default)]
    pub pid_start: Option<u64>,
}

impl Manifest {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node named `name`, mutably.
    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeEntry> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }

    /// Names of all nodes, for error messages.
    pub fn node_names(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The manifest's path in a cluster folder.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// Reads the manifest of the cluster in `dir`.
pub fn load(dir: &Path) -> Result<Manifest, ClusterError> {
    let path = manifest_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClusterError::NotFound {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(ClusterError::io(&path, e)),
    };
    serde_yaml::from_str(&text).map_err(|e| ClusterError::Manifest {
        path,
        message: e.to_string(),
    })
}

/// Writes the manifest atomically (temporary file + rename).
pub fn store(dir: &Path, manifest: &Manifest) -> Result<(), ClusterError> {
    let path = manifest_path(dir);
    let body = serde_yaml::to_string(manifest).map_err(|e| ClusterError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let text = format!(
        "# The manifest of a local ringdb cluster, kept by `ringdb cluster`.\n\
         # pid is the running process of a node (cleared by a graceful stop).\n{body}"
    );
    let tmp = dir.join(format!(".{MANIFEST_FILE}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ClusterError::io(&path, e)
    })
}

/// Reads the manifest, applies `change` and writes it back, holding the cluster's lock so that
/// concurrent updates from other processes are not lost. Returns the manifest as written.
pub fn update<T>(
    dir: &Path,
    change: impl FnOnce(&mut Manifest) -> Result<T, ClusterError>,
) -> Result<(Manifest, T), ClusterError> {
    let _lock = Lock::acquire(dir)?;
    let mut manifest = load(dir)?;
    let result = change(&mut manifest)?;
    store(dir, &manifest)?;
    Ok((manifest, result))
}

/// An exclusive `flock` on `DIR/cluster.lock`, released on drop (or when the process dies).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the lock is ours. Updates hold it for a few milliseconds only.
    pub fn acquire(dir: &Path) -> Result<Lock, ClusterError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ClusterError::io(&path, e))?;
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(ClusterError::io(&path, err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            name: "c".into(),
            binary: PathBuf::from("/usr/bin/ringdb"),
            base_ip: Ipv4Addr::new(127, 0, 0, 1),
            num_tokens: 16,
            racks_per_dc: 3,
            seeds: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))],
            extra_config: vec![("gossip_interval_ms".into(), "100".into())],
            nodes: vec![NodeEntry {
                name: "node1".into(),
                ip: Ipv4Addr::new(127, 0, 0, 1),
                dc: "dc1".into(),
                rack: "rack1".into(),
                seed: true,
                pid: None,
                pid_start: None,
            }],
        }
    }

    #[test]
    fn round_trip_and_update() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(ClusterError::NotFound { .. })
        ));
        store(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), sample());
        let (m, ()) = update(dir.path(), |m| {
            m.node_mut("node1").unwrap().pid = Some(42);
            Ok(())
        })
        .unwrap();
        assert_eq!(m.node("node1").unwrap().pid, Some(42));
        assert_eq!(load(dir.path()).unwrap(), m);
    }

    #[test]
    fn a_broken_manifest_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(manifest_path(dir.path()), "name: [").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cluster.yaml"), "{e}");
    }
}

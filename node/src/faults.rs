//! Test-only fault injection, driven by a file.
//!
//! A node started by `ringdb cluster` has `fault_file: DIR/nodeK/faults.json` in its
//! configuration; production configurations leave the key unset and this module does nothing.
//! The cluster manager writes the file (atomically, by rename) and the node polls it every
//! [`POLL`], applying what it says to its internode transport:
//!
//! ```json
//! {"blocked": ["127.0.0.3"], "delays_ms": {"127.0.0.4": 200}, "lose_every_nth_write": 0}
//! ```
//!
//! - `blocked`: peers whose internode traffic is cut both ways, when the machine's packet filter
//!   cannot do it (see `cluster::faults`); otherwise the filter cuts real packets and this list
//!   stays empty;
//! - `delays_ms`: extra latency on everything that arrives from each peer (WAN emulation; the
//!   cluster manager sets it on both sides of a link);
//! - `lose_every_nth_write`: **a deliberate bug** for proving that `ringdb chaos` can fail: the
//!   coordinator acknowledges every n-th write without sending it to any replica.
//!
//! A missing file means no faults; a file that cannot be parsed is logged and ignored (the last
//! good state stays), never fatal.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringdb_gossip::transport::Transport;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// How often the file is checked.
pub const POLL: Duration = Duration::from_millis(100);

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// Peers to cut off (transport hook).
    #[serde(default)]
    pub blocked: Vec<IpAddr>,
    /// Extra latency on arrival from each peer, milliseconds.
    #[serde(default)]
    pub delays_ms: BTreeMap<IpAddr, u64>,
    /// Acknowledge every n-th write without writing it (0: never). A deliberate bug.
    #[serde(default)]
    pub lose_every_nth_write: u32,
}

impl FaultFile {
    /// Reads `path`; a missing file is no faults.
    pub fn read(path: &Path) -> Result<FaultFile, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FaultFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes `path` atomically (temporary file + rename), so a poller never reads half a file.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }

    /// True when the file asks for nothing.
    pub fn is_empty(&self) -> bool {
        *self == FaultFile::default()
    }
}

/// The deliberate write-losing bug, shared with the coordinator.
#[derive(Debug, Default)]
pub struct LoseWrites {
    every: AtomicU32,
    seen: AtomicU64,
}

impl LoseWrites {
    /// True when this write is to be acknowledged without being written.
    pub fn lose_this_one(&self) -> bool {
        let every = self.every.load(Ordering::Relaxed);
        if every == 0 {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        n % u64::from(every) == 0
    }

    fn set(&self, every: u32) {
        self.every.store(every, Ordering::Relaxed);
    }
}

/// Polls `path` until shutdown and applies it to `transport` and `lose`.
pub async fn watch_file(
    path: PathBuf,
    transport: Transport,
    lose: Arc<LoseWrites>,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::warn!(file = %path.display(), "test fault injection enabled (fault_file)");
    let mut applied = FaultFile::default();
    let mut last_error: Option<String> = None;
    loop {
        match FaultFile::read(&path) {
            Ok(wanted) => {
                last_error = None;
                if wanted != applied {
                    apply(&transport, &lose, &applied, &wanted);
                    applied = wanted;
                }
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!("fault file ignored: {e}");
                    last_error = Some(e);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn apply(transport: &Transport, lose: &LoseWrites, old: &FaultFile, new: &FaultFile) {
    let was: HashSet<IpAddr> = old.blocked.iter().copied().collect();
    let now: HashSet<IpAddr> = new.blocked.iter().copied().collect();
    for ip in now.difference(&was) {
        transport.block_peer(*ip);
    }
    for ip in was.difference(&now) {
        transport.unblock_peer(*ip);
    }
    for ip in old.delays_ms.keys() {
        if !new.delays_ms.contains_key(ip) {
            transport.set_peer_delay(*ip, None);
        }
    }
    for (ip, ms) in &new.delays_ms {
        transport.set_peer_delay(*ip, Some(Duration::from_millis(*ms)));
    }
    if new.lose_every_nth_write != old.lose_every_nth_write {
        if new.lose_every_nth_write > 0 {
            tracing::error!(
                every = new.lose_every_nth_write,
                "DELIBERATE BUG ON: acknowledging writes without writing them (fault file)"
            );
        }
        lose.set(new.lose_every_nth_write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trips_and_missing_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.json");
        assert_eq!(FaultFile::read(&path).unwrap(), FaultFile::default());
        let mut f = FaultFile::default();
        f.blocked.push("127.0.0.3".parse().unwrap());
        f.delays_ms.insert("127.0.0.4".parse().unwrap(), 200);
        f.write(&path).unwrap();
        assert_eq!(FaultFile::read(&path).unwrap(), f);
        std::fs::write(&path, b"{\"nope\": 1}").unwrap();
        assert!(FaultFile::read(&path).is_err());
    }

    #[test]
    fn lose_writes_counts_every_nth() {
        let lose = LoseWrites::default();
        assert!(!(0..10).any(|_| lose.lose_this_one()));
        lose.set(3);
        let lost: Vec<bool> = (0..6).map(|_| lose.lose_this_one()).collect();
        assert_eq!(lost.iter().filter(|l| **l).count(), 2);
    }
}

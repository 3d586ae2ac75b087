//! Network faults between the nodes of a local cluster: partitions and slow links.
//!
//! # Partitions: real packets where the machine allows
//!
//! `partition A / B` cuts the internode traffic (QUIC over UDP, between the nodes' storage
//! ports) between every node of group A and every node of group B, both ways. Two mechanisms:
//!
//! - **packet filter** (preferred): an nftables table of the cluster's own
//!   (`inet ringdb_<name>_<hash>`) whose input chain drops the UDP datagrams between the two
//!   groups' internode sockets. Real packets are lost: handshakes time out, connections hit
//!   their idle timeout, exactly as across a broken network. Needs `nft` and the right to use
//!   it (root or CAP_NET_ADMIN). Only internode datagrams are dropped: clients' CQL (TCP) and
//!   the admin API still reach every node.
//! - **transport hook** (fallback): each node started by `ringdb cluster` polls a fault file
//!   (`DIR/nodeK/faults.json`, see [`crate::faults`]); the cluster manager lists there the
//!   peers to cut, and the node's transport drops their connections, handshakes and messages.
//!
//! The mechanism is chosen at the first cut and printed; `RINGDB_PARTITION_MECHANISM=hook`
//! forces the hook (`=nftables` refuses to fall back).
//!
//! # Slow links
//!
//! `delay A / B --ms N` makes every internode message between the groups arrive N ms late in
//! each direction (a round trip takes 2·N more). It always uses the transport hook: the
//! kernel's `netem` queueing discipline, the packet-level way, is often missing from container
//! and VM kernels (it is on this project's CI machine).
//!
//! # State
//!
//! `DIR/faults.yaml` holds the cuts, delays and the mechanism in use, updated under the
//! manifest's lock; `heal` clears cuts and delays and deletes the nftables table. Removing the
//! cluster heals it first, so no filter rule outlives its cluster.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::manifest::{self, NodeEntry};
use super::{Cluster, ClusterError};
use crate::faults::FaultFile;

/// File name of the fault state in the cluster's folder.
pub const FAULTS_FILE: &str = "faults.yaml";
/// File name of each node's fault file in its folder.
pub const NODE_FAULT_FILE: &str = "faults.json";
/// Environment variable that forces a partition mechanism (`hook` or `nftables`).
pub const MECHANISM_ENV: &str = "RINGDB_PARTITION_MECHANISM";

/// How partitions are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// nftables rules drop the datagrams.
    PacketFilter,
    /// The nodes' transports drop the traffic (fault file).
    TransportHook,
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mechanism::PacketFilter => "packet filter (nftables drops the internode datagrams)",
            Mechanism::TransportHook => "transport hook (the nodes drop the internode traffic)",
        })
    }
}

/// A slow link between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delay {
    pub a: String,
    pub b: String,
    pub ms: u64,
}

/// The faults in force, `DIR/faults.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Node pairs (by name, each pair sorted) whose internode traffic is cut.
    #[serde(default)]
    pub cuts: Vec<(String, String)>,
    /// How the cuts are made (set at the first cut).
    #[serde(default)]
    pub mechanism: Option<Mechanism>,
    /// Slow links.
    #[serde(default)]
    pub delays: Vec<Delay>,
    /// The deliberate write-losing bug (see [`crate::faults`]); 0 is off.
    #[serde(default)]
    pub lose_every_nth_write: u32,
}

impl Faults {
    /// True when no fault is in force.
    pub fn is_empty(&self) -> bool {
        self.cuts.is_empty() && self.delays.is_empty() && self.lose_every_nth_write == 0
    }

    /// One line per fault, for `ringdb cluster status`.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.cuts.is_empty() {
            let pairs: Vec<String> = self.cuts.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            lines.push(format!(
                "cut links: {} — {}",
                pairs.join(" "),
                self.mechanism.unwrap_or(Mechanism::TransportHook)
            ));
        }
        for d in &self.delays {
            lines.push(format!("slow link: {}-{} +{} ms each way", d.a, d.b, d.ms));
        }
        if self.lose_every_nth_write > 0 {
            lines.push(format!(
                "DELIBERATE BUG: every {}th write acknowledged without being written",
                self.lose_every_nth_write
            ));
        }
        lines
    }
}

fn faults_path(dir: &Path) -> PathBuf {
    dir.join(FAULTS_FILE)
}

/// Reads `DIR/faults.yaml` (none when missing).
pub fn load(dir: &Path) -> Result<Faults, ClusterError> {
    let path = faults_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_yaml::from_str(&text).map_err(|e| ClusterError::Manifest {
            path,
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Faults::default()),
        Err(e) => Err(ClusterError::io(&path, e)),
    }
}

fn store(dir: &Path, faults: &Faults) -> Result<(), ClusterError> {
    let path = faults_path(dir);
    if faults.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ClusterError::io(&path, e)),
            _ => Ok(()),
        };
    }
    let text = serde_yaml::to_string(faults).map_err(|e| ClusterError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let tmp = dir.join(format!(".{FAULTS_FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| ClusterError::io(&path, e))
}

/// The nftables table of the cluster in `dir`: its name plus a hash of its folder, so two
/// clusters of the same name never share one.
pub fn table_name(cluster: &str, dir: &Path) -> String {
    // FNV-1a: stable across builds, so a later `ringdb` finds the table an earlier one made.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let clean: String = cluster
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(24)
        .collect();
    format!("ringdb_{clean}_{:08x}", h as u32)
}

/// The nft script that makes the table hold exactly `drops` (pairs of internode sockets, each
/// cut both ways), or deletes it when there are none.
pub fn nft_script(table: &str, drops: &[(IpAddr, u16, IpAddr, u16)]) -> String {
    // Creating then deleting makes the delete succeed whether or not the table existed.
    let mut s = format!("table inet {table}\ndelete table inet {table}\n");
    if drops.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
    ));
    for &(a, pa, b, pb) in drops {
        for (x, px, y, py) in [(a, pa, b, pb), (b, pb, a, pa)] {
            let family = if x.is_ipv4() { "ip" } else { "ip6" };
            s.push_str(&format!(
                "    {family} saddr {x} {family} daddr {y} udp sport {px} udp dport {py} drop\n"
            ));
        }
    }
    s.push_str("  }\n}\n");
    s
}

/// Runs `nft -f -` with `script`; the error says why it cannot be used.
fn run_nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Cluster {
    /// The nodes a group names: a comma-separated list of node names and datacenter names.
    pub fn resolve_group(&self, group: &str) -> Result<Vec<String>, ClusterError> {
        let m = self.manifest();
        let mut names = Vec::new();
        for item in group.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let matched: Vec<&NodeEntry> = match m.node(item) {
                Some(n) => vec![n],
                None => m.nodes.iter().filter(|n| n.dc == item).collect(),
            };
            if matched.is_empty() {
                return Err(ClusterError::Spec(format!(
                    "`{item}` is neither a node nor a datacenter of cluster {} (nodes: {})",
                    m.name,
                    m.node_names()
                )));
            }
            for n in matched {
                if !names.contains(&n.name) {
                    names.push(n.name.clone());
                }
            }
        }
        if names.is_empty() {
            return Err(ClusterError::Spec(format!("empty group `{group}`")));
        }
        Ok(names)
    }

    /// The faults in force.
    pub fn faults(&self) -> Result<Faults, ClusterError> {
        load(&self.dir)
    }

    /// Cuts the internode traffic between every node of `a` and every node of `b` (on top of
    /// the cuts already made). Returns the mechanism used.
    pub fn partition(&self, a: &[String], b: &[String]) -> Result<Mechanism, ClusterError> {
        if let Some(both) = a.iter().find(|n| b.contains(n)) {
            return Err(ClusterError::Spec(format!(
                "{both} is on both sides of the partition"
            )));
        }
        let faults = self.change_faults(|f| {
            for x in a {
                for y in b {
                    let pair = ordered(x, y);
                    if !f.cuts.contains(&pair) {
                        f.cuts.push(pair);
                    }
                }
            }
            Ok(())
        })?;
        let mechanism = faults.mechanism.unwrap_or(Mechanism::TransportHook);
        self.say(&format!(
            "partition {} / {}: {mechanism}",
            a.join(","),
            b.join(",")
        ));
        Ok(mechanism)
    }

    /// Makes every internode message between a node of `a` and one of `b` arrive `ms` later
    /// (each way); 0 removes the delay.
    pub fn delay(&self, a: &[String], b: &[String], ms: u64) -> Result<(), ClusterError> {
        self.change_faults(|f| {
            for x in a {
                for y in b {
                    let (p, q) = ordered(x, y);
                    f.delays.retain(|d| !(d.a == p && d.b == q));
                    if ms > 0 {
                        f.delays.push(Delay {
                            a: p.clone(),
                            b: q,
                            ms,
                        });
                    }
                }
            }
            Ok(())
        })?;
        self.say(&format!(
            "delay {} / {}: +{ms} ms each way (transport hook)",
            a.join(","),
            b.join(",")
        ));
        Ok(())
    }

    /// Removes every cut and delay (the deliberate bug stays as it is).
    pub fn heal(&self) -> Result<(), ClusterError> {
        self.change_faults(|f| {
            f.cuts.clear();
            f.delays.clear();
            f.mechanism = None;
            Ok(())
        })?;
        self.say("healed: no cut or slow link left");
        Ok(())
    }

    /// Turns the deliberate write-losing bug on (every n-th write acknowledged without being
    /// written) or off (0), on every node.
    pub fn set_lose_writes(&self, every: u32) -> Result<(), ClusterError> {
        self.change_faults(|f| {
            f.lose_every_nth_write = every;
            Ok(())
        })
        .map(|_| ())
    }

    /// Read-modify-writes the fault state under the manifest lock and applies it: nftables
    /// table and every node's fault file. Waits until the nodes have polled their files.
    fn change_faults(
        &self,
        change: impl FnOnce(&mut Faults) -> Result<(), ClusterError>,
    ) -> Result<Faults, ClusterError> {
        let _lock = manifest::Lock::acquire(&self.dir)?;
        let mut faults = load(&self.dir)?;
        change(&mut faults)?;
        self.apply_faults(&mut faults)?;
        store(&self.dir, &faults)?;
        // Each node polls its file every `faults::POLL`; two periods and a margin.
        std::thread::sleep(crate::faults::POLL * 3);
        Ok(faults)
    }

    fn apply_faults(&self, faults: &mut Faults) -> Result<(), ClusterError> {
        let m = self.manifest();
        let handles: BTreeMap<String, super::NodeHandle> = self
            .nodes()
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect();
        let known = |name: &str| handles.get(name);
        // A node no longer in the cluster (it left) has no link to cut.
        faults
            .cuts
            .retain(|(a, b)| known(a).is_some() && known(b).is_some());
        faults
            .delays
            .retain(|d| known(&d.a).is_some() && known(&d.b).is_some());

        let table = table_name(&m.name, &self.dir);
        if faults.cuts.is_empty() {
            faults.mechanism = None;
            // Deleting a table that was never made is fine; nft missing is too.
            let _ = run_nft(&nft_script(&table, &[]));
        } else {
            let drops: Vec<(IpAddr, u16, IpAddr, u16)> = faults
                .cuts
                .iter()
                .map(|(a, b)| {
                    let (a, b) = (&handles[a], &handles[b]);
                    (
                        a.storage_addr.ip(),
                        a.storage_addr.port(),
                        b.storage_addr.ip(),
                        b.storage_addr.port(),
                    )
                })
                .collect();
            let forced = std::env::var(MECHANISM_ENV).unwrap_or_default();
            let wanted = faults.mechanism.unwrap_or(match forced.as_str() {
                "hook" => Mechanism::TransportHook,
                _ => Mechanism::PacketFilter,
            });
            faults.mechanism = Some(match wanted {
                Mechanism::TransportHook => Mechanism::TransportHook,
                Mechanism::PacketFilter => match run_nft(&nft_script(&table, &drops)) {
                    Ok(()) => Mechanism::PacketFilter,
                    Err(why) if forced != "nftables" => {
                        self.say(&format!(
                            "packet filter unavailable ({why}): using the transport hook"
                        ));
                        Mechanism::TransportHook
                    }
                    Err(why) => {
                        return Err(ClusterError::Spec(format!(
                            "{MECHANISM_ENV}=nftables but {why}"
                        )))
                    }
                },
            });
        }

        let hook = faults.mechanism == Some(Mechanism::TransportHook);
        for (name, h) in &handles {
            let ip_of = |other: &str| handles[other].storage_addr.ip();
            let mut file = FaultFile {
                lose_every_nth_write: faults.lose_every_nth_write,
                ..FaultFile::default()
            };
            if hook {
                for (a, b) in &faults.cuts {
                    if a == name {
                        file.blocked.push(ip_of(b));
                    } else if b == name {
                        file.blocked.push(ip_of(a));
                    }
                }
            }
            for d in &faults.delays {
                if &d.a == name {
                    file.delays_ms.insert(ip_of(&d.b), d.ms);
                } else if &d.b == name {
                    file.delays_ms.insert(ip_of(&d.a), d.ms);
                }
            }
            let path = h.dir.join(NODE_FAULT_FILE);
            if h.dir.is_dir() {
                file.write(&path).map_err(|e| ClusterError::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Deletes the nftables table, if any (for `remove`); errors are ignored.
    pub(super) fn drop_packet_filter(&self) {
        if load(&self.dir).map(|f| !f.cuts.is_empty()).unwrap_or(true) {
            let _ = run_nft(&nft_script(&table_name(&self.name(), &self.dir), &[]));
        }
    }
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_script_cuts_both_ways_and_deletes_when_empty() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s = nft_script("ringdb_t_1", &[(a, 7000, b, 7000)]);
        assert!(s.starts_with("table inet ringdb_t_1\ndelete table inet ringdb_t_1\n"));
        assert!(
            s.contains("ip saddr 127.0.0.1 ip daddr 127.0.0.3 udp sport 7000 udp dport 7000 drop")
        );
        assert!(
            s.contains("ip saddr 127.0.0.3 ip daddr 127.0.0.1 udp sport 7000 udp dport 7000 drop")
        );
        let empty = nft_script("ringdb_t_1", &[]);
        assert_eq!(empty.lines().count(), 2);
    }

    #[test]
    fn table_names_are_safe_and_distinct_per_folder() {
        let x = table_name("my-cluster.1", Path::new("/a"));
        let y = table_name("my-cluster.1", Path::new("/b"));
        assert!(x.starts_with("ringdb_my_cluster_1_"), "{x}");
        assert!(x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_ne!(x, y);
    }

    #[test]
    fn faults_describe_and_empty() {
        let mut f = Faults::default();
        assert!(f.is_empty() && f.describe().is_empty());
        f.cuts.push(ordered("node3", "node1"));
        f.mechanism = Some(Mechanism::PacketFilter);
        f.delays.push(Delay {
            a: "node1".into(),
            b: "node4".into(),
            ms: 200,
        });
        let lines = f.describe();
        assert!(
            lines[0].starts_with("cut links: node1-node3 — packet filter"),
            "{lines:?}"
        );
        assert_eq!(lines[1], "slow link: node1-node4 +200 ms each way");
    }
}

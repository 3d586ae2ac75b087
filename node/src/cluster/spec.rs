//! What a cluster looks like before any process runs: its datacenters, node names, addresses,
//! racks and seeds. Pure functions of a [`ClusterSpec`], so the layout rules are unit-tested
//! without touching the disk.
//!
//! - Node names are `node1`…`nodeN`, numbered across datacenters in order (`-n 3:3` gives
//!   `node1`…`node3` in `dc1` and `node4`…`node6` in `dc2`).
//! - Node `nodeK` listens on `base_ip + K - 1`, with the default ports on its own address.
//! - Racks go round-robin within a datacenter: `rack1`, `rack2`, … up to `racks_per_dc`, then
//!   `rack1` again.
//! - Seeds are the first node of each datacenter, at most [`MAX_SEEDS`] in all.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::ClusterError;

/// At most this many seeds, however many datacenters there are.
pub const MAX_SEEDS: usize = 3;
/// Racks per datacenter unless the spec says otherwise.
pub const DEFAULT_RACKS_PER_DC: usize = 3;
/// Most nodes one cluster may have (a cluster lives in one /24-ish stretch of loopback space).
pub const MAX_NODES: usize = 250;

/// Everything needed to create a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The cluster's name (also its `cluster_name` in every node's config).
    pub name: String,
    /// The cluster's folder: manifest, CA, and one folder per node.
    pub dir: PathBuf,
    /// Nodes per datacenter: `[3]` is one DC of three, `[3, 3]` two DCs (`dc1`, `dc2`) of three.
    pub dcs: Vec<usize>,
    /// Racks per datacenter, assigned round-robin.
    pub racks_per_dc: usize,
    /// Vnode tokens per node (`num_tokens`).
    pub num_tokens: u32,
    /// Address of `node1`; `nodeK` gets `base_ip + K - 1`. Must be a loopback address.
    pub base_ip: Ipv4Addr,
    /// The `ringdb` binary that runs the nodes.
    pub binary: PathBuf,
    /// Extra node configuration, `(key, value)` with the value read as a YAML scalar; it overrides
    /// what the cluster manager writes (e.g. `("gossip_interval_ms", "100")`).
    pub extra_config: Vec<(String, String)>,
}

impl ClusterSpec {
    /// A spec with the defaults: 16 tokens, 3 racks per DC, `node1` on 127.0.0.1.
    pub fn new(name: &str, dir: PathBuf, dcs: Vec<usize>, binary: PathBuf) -> ClusterSpec {
        ClusterSpec {
            name: name.to_string(),
            dir,
            dcs,
            racks_per_dc: DEFAULT_RACKS_PER_DC,
            num_tokens: 16,
            base_ip: Ipv4Addr::LOCALHOST,
            binary,
            extra_config: Vec::new(),
        }
    }

    /// Checks the spec: a usable name, at least one node, not too many, loopback addresses.
    pub fn validate(&self) -> Result<(), ClusterError> {
        validate_name(&self.name)?;
        let total: usize = self.dcs.iter().sum();
        if self.dcs.is_empty() || self.dcs.contains(&0) {
            return Err(ClusterError::Spec(
                "every datacenter needs at least one node (e.g. -n 3 or -n 3:3)".into(),
            ));
        }
        if total > MAX_NODES {
            return Err(ClusterError::Spec(format!(
                "{total} nodes is more than the {MAX_NODES} a local cluster may have"
            )));
        }
        if self.racks_per_dc == 0 {
            return Err(ClusterError::Spec(
                "racks per datacenter must be at least 1".into(),
            ));
        }
        if !(1..=1024).contains(&self.num_tokens) {
            return Err(ClusterError::Spec(format!(
                "num_tokens {} is not in 1..=1024",
                self.num_tokens
            )));
        }
        node_ip(self.base_ip, total)?;
        for (key, _) in &self.extra_config {
            if key.trim().is_empty() {
                return Err(ClusterError::Spec(
                    "empty config key in extra config".into(),
                ));
            }
        }
        Ok(())
    }

    /// The nodes this spec creates, in order.
    pub fn layout(&self) -> Result<Vec<PlannedNode>, ClusterError> {
        let mut nodes = Vec::new();
        let mut index = 0;
        for (dc_index, &count) in self.dcs.iter().enumerate() {
            for in_dc in 0..count {
                index += 1;
                nodes.push(PlannedNode {
                    name: format!("node{index}"),
                    ip: node_ip(self.base_ip, index)?,
                    dc: dc_name(dc_index),
                    rack: rack_name(in_dc, self.racks_per_dc),
                });
            }
        }
        Ok(nodes)
    }
}

/// One node of a [`ClusterSpec`]'s layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedNode {
    pub name: String,
    pub ip: Ipv4Addr,
    pub dc: String,
    pub rack: String,
}

/// `dc1`, `dc2`, … for datacenter index 0, 1, ….
pub fn dc_name(index: usize) -> String {
    format!("dc{}", index + 1)
}

/// The rack of the `index_in_dc`-th node (from 0) of a datacenter.
pub fn rack_name(index_in_dc: usize, racks_per_dc: usize) -> String {
    format!("rack{}", index_in_dc % racks_per_dc.max(1) + 1)
}

/// The address of node number `index` (from 1): `base + index - 1`, checked to stay loopback.
pub fn node_ip(base: Ipv4Addr, index: usize) -> Result<Ipv4Addr, ClusterError> {
    let offset = u32::try_from(index.saturating_sub(1))
        .map_err(|_| ClusterError::Spec(format!("node index {index} is too large")))?;
    let ip = u32::from(base)
        .checked_add(offset)
        .map(Ipv4Addr::from)
        .ok_or_else(|| ClusterError::Spec(format!("{base} + {offset} overflows")))?;
    if !base.is_loopback() || !ip.is_loopback() {
        return Err(ClusterError::Spec(format!(
            "node {index} would get {ip}: a local cluster binds only loopback addresses (127.x.y.z); \
             pick another --base-ip"
        )));
    }
    Ok(ip)
}

/// The number in `nodeK`, if the name has that form.
pub fn node_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("node")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Seeds: the first node of each datacenter, at most [`MAX_SEEDS`], in datacenter order.
pub fn choose_seeds(nodes: &[PlannedNode]) -> Vec<IpAddr> {
    let mut seen_dcs: Vec<&str> = Vec::new();
    let mut seeds = Vec::new();
    for n in nodes {
        if !seen_dcs.contains(&n.dc.as_str()) {
            seen_dcs.push(&n.dc);
            if seeds.len() < MAX_SEEDS {
                seeds.push(IpAddr::V4(n.ip));
            }
        }
    }
    seeds
}

/// Parses `-n`: `5` (one datacenter of five) or `3:3` (two of three), `2:2:1`, ….
pub fn parse_dcs(text: &str) -> Result<Vec<usize>, ClusterError> {
    let bad = || {
        ClusterError::Spec(format!(
            "`{text}` is not a node count: use N for one datacenter or N:M:… for several (e.g. 3:3)"
        ))
    };
    let dcs = text
        .split(':')
        .map(|part| part.trim().parse::<usize>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    if dcs.is_empty() || dcs.contains(&0) {
        return Err(bad());
    }
    Ok(dcs)
}

/// Cluster and node names: letters, digits, `-` and `_` (they name folders).
pub fn validate_name(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Spec(format!(
            "`{name}` is not a valid name: use up to 64 letters, digits, `-` and `_`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dcs: Vec<usize>) -> ClusterSpec {
        ClusterSpec::new("t", PathBuf::from("/tmp/t"), dcs, PathBuf::from("ringdb"))
    }

    #[test]
    fn dc_counts_parse() {
        assert_eq!(parse_dcs("5").unwrap(), vec![5]);
        assert_eq!(parse_dcs("3:3").unwrap(), vec![3, 3]);
        assert_eq!(parse_dcs("2:2:1").unwrap(), vec![2, 2, 1]);
        for bad in ["", "0", "3:", ":3", "a", "3:0", "-1"] {
            assert!(parse_dcs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn two_dcs_get_names_addresses_racks_and_one_seed_each() {
        let nodes = spec(vec![3, 3]).layout().unwrap();
        let rows: Vec<(String, String, String, String)> = nodes
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    n.ip.to_string(),
                    n.dc.clone(),
                    n.rack.clone(),
                )
            })
            .collect();
        let expect = [
            ("node1", "127.0.0.1", "dc1", "rack1"),
            ("node2", "127.0.0.2", "dc1", "rack2"),
            ("node3", "127.0.0.3", "dc1", "rack3"),
            ("node4", "127.0.0.4", "dc2", "rack1"),
            ("node5", "127.0.0.5", "dc2", "rack2"),
            ("node6", "127.0.0.6", "dc2", "rack3"),
        ];
        let expect: Vec<(String, String, String, String)> = expect
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect();
        assert_eq!(rows, expect);
        let seeds: Vec<String> = choose_seeds(&nodes).iter().map(|s| s.to_string()).collect();
        assert_eq!(seeds, vec!["127.0.0.1", "127.0.0.4"]);
    }

    #[test]
    fn racks_wrap_and_seeds_stop_at_three() {
        let mut s = spec(vec![5, 1, 1, 1]);
        s.racks_per_dc = 2;
        s.base_ip = Ipv4Addr::new(127, 1, 2, 250);
        let nodes = s.layout().unwrap();
        let racks: Vec<&str> = nodes[..5].iter().map(|n| n.rack.as_str()).collect();
        assert_eq!(racks, ["rack1", "rack2", "rack1", "rack2", "rack1"]);
        // Addresses carry over the last octet.
        assert_eq!(nodes[6].ip, Ipv4Addr::new(127, 1, 3, 0));
        let seeds = choose_seeds(&nodes);
        assert_eq!(seeds.len(), MAX_SEEDS);
        assert_eq!(seeds[1], IpAddr::V4(nodes[5].ip));
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(node_ip(Ipv4Addr::new(10, 0, 0, 1), 1).is_err());
        assert!(node_ip(Ipv4Addr::new(127, 255, 255, 254), 3).is_err());
        assert_eq!(
            node_ip(Ipv4Addr::new(127, 0, 0, 1), 3).unwrap(),
            Ipv4Addr::new(127, 0, 0, 3)
        );
        let mut s = spec(vec![3]);
        s.base_ip = Ipv4Addr::new(192, 168, 0, 1);
        assert!(s.validate().is_err());
    }

    #[test]
    fn names() {
        assert_eq!(node_number("node12"), Some(12));
        assert_eq!(node_number("node"), None);
        assert_eq!(node_number("node01"), None);
        assert_eq!(node_number("n1"), None);
        assert!(validate_name("my-cluster_1").is_ok());
        for bad in ["", "a/b", "..", "-x", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(spec(vec![0]).validate().is_err());
        assert!(spec(vec![3]).validate().is_ok());
    }
}

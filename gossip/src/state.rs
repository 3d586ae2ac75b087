//! What gossip spreads: one [`EndpointState`] per node, made of a heartbeat and application states.
//!
//! Every node owns exactly one endpoint state, its own, and is the only one that changes it. The
//! state is versioned so that peers can tell old from new without clocks in agreement:
//!
//! - the **generation** is chosen when the process starts and rises on every restart (the node
//!   persists the last one it used), so a restarted node's state replaces its old state wherever it
//!   is known, even though its version counter started again from zero;
//! - the **version** is one counter per node per generation; the heartbeat takes a new version
//!   every gossip round and every application state takes a new version when it changes, so
//!   "the highest version I hold of endpoint E" (a [`Digest`]) summarizes all of E's state.
//!
//! Values are strings, as in Cassandra's `VersionedValue`: easy to inspect, to extend and to
//! keep compatible across releases. Helpers below encode and parse the structured ones.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use bincode::{Decode, Encode};

/// A node's internode address (`listen_address:storage_port`): how gossip names a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub struct Endpoint(pub SocketAddr);

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Chosen at process start, higher than any generation the node used before.
pub type Generation = u64;
/// A per-node, per-generation counter.
pub type Version = u64;

/// A node's liveness counter: rises every gossip round the node is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct HeartbeatState {
    /// The process incarnation.
    pub generation: Generation,
    /// The latest heartbeat version within that generation.
    pub version: Version,
}

/// The application states a node publishes about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
pub enum AppStateKey {
    /// [`NodeStatus`], with its tokens when it has them: see [`NodeStatus`].
    Status,
    /// The node's permanent id, a uuid persisted in its data dir (text form).
    HostId,
    /// The node's vnode tokens: see [`encode_tokens`].
    Tokens,
    /// Datacenter name.
    Dc,
    /// Rack name.
    Rack,
    /// The uuid digest of the node's schema (text form).
    SchemaVersion,
    /// Bytes on disk, decimal.
    Load,
    /// Where clients reach the node: `ip:port` of the CQL listener.
    NativeAddress,
    /// The release version clients see, e.g. `4.1.0`.
    ReleaseVersion,
}

impl AppStateKey {
    /// Every key, in order.
    pub const ALL: [AppStateKey; 9] = [
        AppStateKey::Status,
        AppStateKey::HostId,
        AppStateKey::Tokens,
        AppStateKey::Dc,
        AppStateKey::Rack,
        AppStateKey::SchemaVersion,
        AppStateKey::Load,
        AppStateKey::NativeAddress,
        AppStateKey::ReleaseVersion,
    ];

    /// Upper-case name, as shown by `ringdb status --json` and logs.
    pub fn name(self) -> &'static str {
        match self {
            AppStateKey::Status => "STATUS",
            AppStateKey::HostId => "HOST_ID",
            AppStateKey::Tokens => "TOKENS",
            AppStateKey::Dc => "DC",
            AppStateKey::Rack => "RACK",
            AppStateKey::SchemaVersion => "SCHEMA",
            AppStateKey::Load => "LOAD",
            AppStateKey::NativeAddress => "NATIVE_ADDRESS",
            AppStateKey::ReleaseVersion => "RELEASE_VERSION",
        }
    }
}

/// A value with the version it was set at.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct VersionedValue {
    /// The value, as text.
    pub value: String,
    /// The owner's version counter when the value was set.
    pub version: Version,
}

/// Everything known about one node.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EndpointState {
    /// Incarnation and liveness counter.
    pub heartbeat: HeartbeatState,
    /// Application states by key.
    pub app_states: BTreeMap<AppStateKey, VersionedValue>,
}

impl EndpointState {
    /// A state with a heartbeat and nothing else.
    pub fn new(generation: Generation) -> Self {
        EndpointState {
            heartbeat: HeartbeatState {
                generation,
                version: 0,
            },
            app_states: BTreeMap::new(),
        }
    }

    /// The highest version anywhere in this state (heartbeat or application state).
    pub fn max_version(&self) -> Version {
        self.app_states
            .values()
            .map(|v| v.version)
            .fold(self.heartbeat.version, Version::max)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: AppStateKey) -> Option<&str> {
        self.app_states.get(&key).map(|v| v.value.as_str())
    }

    /// The node's status, if it published a valid one.
    pub fn status(&self) -> Option<NodeStatus> {
        self.get(AppStateKey::Status)?.parse().ok()
    }

    /// The node's tokens (empty when absent or malformed).
    pub fn tokens(&self) -> Vec<i64> {
        self.get(AppStateKey::Tokens)
            .and_then(|s| parse_tokens(s).ok())
            .unwrap_or_default()
    }

    /// The part of this state newer than `version`: the heartbeat always, application states
    /// only when set after `version`. What an ACK or ACK2 carries for a peer that has `version`.
    pub fn newer_than(&self, version: Version) -> EndpointState {
        EndpointState {
            heartbeat: self.heartbeat,
            app_states: self
                .app_states
                .iter()
                .filter(|(_, v)| v.version > version)
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
        }
    }
}

/// "I hold endpoint E at generation G up to version V": the unit of a SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct Digest {
    /// The node described.
    pub endpoint: Endpoint,
    /// Its generation as known by the sender.
    pub generation: Generation,
    /// The highest version of its state the sender holds.
    pub max_version: Version,
}

/// A node's life cycle, as published in [`AppStateKey::Status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Started, not yet part of the ring.
    Boot,
    /// Taking ownership of its tokens (streaming data in).
    Joining,
    /// Owns its tokens and serves them.
    Normal,
    /// Handing its ranges to others before leaving.
    Leaving,
    /// Gone from the ring for good.
    Left,
    /// Stopped gracefully; expected back. Peers mark it down at once.
    Shutdown,
}

impl NodeStatus {
    /// Upper-case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Boot => "BOOT",
            NodeStatus::Joining => "JOINING",
            NodeStatus::Normal => "NORMAL",
            NodeStatus::Leaving => "LEAVING",
            NodeStatus::Left => "LEFT",
            NodeStatus::Shutdown => "SHUTDOWN",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of [`NodeStatus`]'s names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for NodeStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "BOOT" => NodeStatus::Boot,
            "JOINING" => NodeStatus::Joining,
            "NORMAL" => NodeStatus::Normal,
            "LEAVING" => NodeStatus::Leaving,
            "LEFT" => NodeStatus::Left,
            "SHUTDOWN" => NodeStatus::Shutdown,
            other => return Err(UnknownStatus(other.to_string())),
        })
    }
}

/// One node's view of the cluster at an instant: every endpoint it knows, with liveness.
/// Published by the membership task as an immutable snapshot; readers never lock.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    /// The node holding this view.
    pub local: Endpoint,
    /// Every known endpoint, the local one included.
    pub endpoints: BTreeMap<Endpoint, EndpointView>,
}

impl ClusterView {
    /// The other endpoints (everything but [`ClusterView::local`]).
    pub fn peers(&self) -> impl Iterator<Item = (&Endpoint, &EndpointView)> {
        let local = self.local;
        self.endpoints.iter().filter(move |(e, _)| **e != local)
    }
}

/// What a view says about one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointView {
    /// Its latest known state.
    pub state: EndpointState,
    /// Whether the failure detector holds it alive (always true for the local node).
    pub alive: bool,
}

/// Tokens as published: decimal, comma separated.
pub fn encode_tokens(tokens: &[i64]) -> String {
    let mut out = String::with_capacity(tokens.len() * 21);
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&t.to_string());
    }
    out
}

/// Parses [`encode_tokens`]'s output.
pub fn parse_tokens(s: &str) -> Result<Vec<i64>, std::num::ParseIntError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|t| t.trim().parse()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let tokens = vec![i64::MIN + 1, -5, 0, 42, i64::MAX];
        assert_eq!(parse_tokens(&encode_tokens(&tokens)).unwrap(), tokens);
        assert_eq!(parse_tokens("").unwrap(), Vec::<i64>::new());
        assert!(parse_tokens("1,x").is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for s in [
            NodeStatus::Boot,
            NodeStatus::Joining,
            NodeStatus::Normal,
            NodeStatus::Leaving,
            NodeStatus::Left,
            NodeStatus::Shutdown,
        ] {
            assert_eq!(s.as_str().parse::<NodeStatus>().unwrap(), s);
        }
        assert!("normal".parse::<NodeStatus>().is_err());
    }

    #[test]
    fn max_version_and_newer_than() {
        let mut st = EndpointState::new(7);
        st.heartbeat.version = 3;
        st.app_states.insert(
            AppStateKey::Dc,
            VersionedValue {
                value: "dc1".into(),
                version: 1,
            },
        );
        st.app_states.insert(
            AppStateKey::Load,
            VersionedValue {
                value: "10".into(),
                version: 5,
            },
        );
        assert_eq!(st.max_version(), 5);
        let delta = st.newer_than(2);
        assert_eq!(delta.heartbeat, st.heartbeat);
        assert_eq!(delta.app_states.len(), 1);
        assert!(delta.app_states.contains_key(&AppStateKey::Load));
    }
}

//! Keyspace replication options: validation and normalization.
//!
//! `CREATE KEYSPACE ... WITH replication = {...}` is parsed by `ringdb_ring`'s [`Replication`]
//! (the same code placement uses, so whatever is accepted here can be placed). It is stored in its
//! normalized form — `class` first and fully qualified, then the other options sorted, a bare
//! `replication_factor` of NetworkTopologyStrategy expanded to the known datacenters — because
//! that is what `system_schema.keyspaces.replication` shows and what drivers parse to compute
//! replicas.
//!
//! Mistakes get Cassandra's messages (ConfigurationException, an Invalid error to the client):
//! a missing or unknown strategy class, SimpleStrategy without `replication_factor`, a factor
//! that is not a number or is negative, an option the strategy does not know.
//!
//! A NetworkTopologyStrategy datacenter that no known node is in is accepted, as Cassandra 3
//! did (Cassandra 4 refuses it): in a cluster being built, a datacenter's nodes may join after
//! its keyspaces are created. It is logged as a warning; Cassandra would also send the warning to
//! the client in the response, but the CQL response warning channel is not plumbed through the
//! executor yet, so only the node's log shows it.

use ringdb_ring::{Replication, ReplicationError};

use super::SchemaError;

/// Fully qualified class name of SimpleStrategy.
pub const SIMPLE_STRATEGY: &str = "org.apache.cassandra.locator.SimpleStrategy";
/// Fully qualified class name of NetworkTopologyStrategy.
pub const NETWORK_TOPOLOGY_STRATEGY: &str = "org.apache.cassandra.locator.NetworkTopologyStrategy";
/// Fully qualified class name of LocalStrategy (system keyspaces only).
pub const LOCAL_STRATEGY: &str = "org.apache.cassandra.locator.LocalStrategy";

/// Java package of Cassandra's replication strategies; a class given without a package is
/// looked up in it.
const LOCATOR_PACKAGE: &str = "org.apache.cassandra.locator.";

/// Validates the replication map of keyspace `keyspace` as written by the user and returns its
/// normalized form. `known_dcs`: the datacenters of the known nodes; a bare NetworkTopologyStrategy
/// `replication_factor` expands to them, and a datacenter outside them draws a warning.
pub fn normalize(
    keyspace: &str,
    options: &[(String, String)],
    known_dcs: &[String],
) -> Result<Vec<(String, String)>, SchemaError> {
    let replication = Replication::from_options(
        options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        known_dcs,
    )
    .map_err(|e| SchemaError::Invalid(message(keyspace, &e)))?;
    if let Replication::NetworkTopology(nts) = &replication {
        for dc in nts.rf_per_dc.keys() {
            if !known_dcs.contains(dc) {
                tracing::warn!(
                    keyspace,
                    datacenter = %dc,
                    known = ?known_dcs,
                    "keyspace {keyspace} replicates to datacenter '{dc}', where no node is known yet; \
                     its replicas there will exist once nodes of '{dc}' join"
                );
            }
        }
    }
    let map = replication.to_options();
    let mut out = Vec::with_capacity(map.len());
    if let Some(class) = map.get("class") {
        out.push(("class".to_string(), class.clone()));
    }
    out.extend(map.into_iter().filter(|(k, _)| k != "class"));
    Ok(out)
}

/// Cassandra's message for a refused replication map.
fn message(keyspace: &str, e: &ReplicationError) -> String {
    match e {
        ReplicationError::MissingClass => "Missing replication strategy class".to_string(),
        ReplicationError::UnknownClass(class) => {
            let short = class.strip_prefix(LOCATOR_PACKAGE).unwrap_or(class);
            if short == "LocalStrategy" {
                "Unable to use given strategy class: LocalStrategy is reserved for internal use."
                    .to_string()
            } else if class.contains('.') {
                format!("Unable to find replication strategy class '{class}'")
            } else {
                format!("Unable to find replication strategy class '{LOCATOR_PACKAGE}{class}'")
            }
        }
        ReplicationError::MissingReplicationFactor { class } if *class == "SimpleStrategy" => {
            "SimpleStrategy requires a replication_factor strategy option.".to_string()
        }
        ReplicationError::MissingReplicationFactor { .. } => {
            "Configuration for at least one datacenter must be present".to_string()
        }
        ReplicationError::InvalidReplicationFactor { value, .. } => {
            if value.contains('/') {
                // Cassandra's message when transient replication is off (its default).
                "Transient replication is not enabled on this node".to_string()
            } else if value.trim().parse::<i64>().is_ok_and(|n| n < 0) {
                format!(
                    "Replication factor must be non-negative, found {}",
                    value.trim()
                )
            } else {
                format!("Replication factor must be numeric; found {value}")
            }
        }
        ReplicationError::UnknownOption { class, option } => format!(
            "Unrecognized strategy option {{{option}}} passed to {class} for keyspace {keyspace}"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match normalize("ks", &opts(pairs), &["dc1".to_string()]) {
            Err(e) => e.to_string(),
            Ok(n) => panic!("accepted: {n:?}"),
        }
    }

    #[test]
    fn simple_strategy() {
        let n = normalize(
            "ks",
            &opts(&[("class", "SimpleStrategy"), ("replication_factor", "3")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            n,
            opts(&[("class", SIMPLE_STRATEGY), ("replication_factor", "3")])
        );
    }

    #[test]
    fn network_topology_strategy() {
        let n = normalize(
            "ks",
            &opts(&[
                (
                    "class",
                    "org.apache.cassandra.locator.NetworkTopologyStrategy",
                ),
                ("dc2", "1"),
                ("aa", "3"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(
            n,
            opts(&[
                ("class", NETWORK_TOPOLOGY_STRATEGY),
                ("aa", "3"),
                ("dc2", "1")
            ])
        );
        let n = normalize(
            "ks",
            &opts(&[
                ("class", "NetworkTopologyStrategy"),
                ("replication_factor", "2"),
            ]),
            &["dc1".to_string()],
        )
        .unwrap();
        assert_eq!(
            n,
            opts(&[("class", NETWORK_TOPOLOGY_STRATEGY), ("dc1", "2")])
        );
    }

    #[test]
    fn datacenter_without_nodes_is_accepted() {
        let n = normalize(
            "ks",
            &opts(&[("class", "NetworkTopologyStrategy"), ("nowhere", "3")]),
            &["dc1".to_string()],
        )
        .unwrap();
        assert_eq!(
            n,
            opts(&[("class", NETWORK_TOPOLOGY_STRATEGY), ("nowhere", "3")])
        );
    }

    #[test]
    fn cassandra_messages() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "Missing replication strategy class"),
            (
                &[("replication_factor", "1")],
                "Missing replication strategy class",
            ),
            (
                &[("class", "Foo")],
                "Unable to find replication strategy class 'org.apache.cassandra.locator.Foo'",
            ),
            (
                &[("class", "com.example.Foo"), ("replication_factor", "1")],
                "Unable to find replication strategy class 'com.example.Foo'",
            ),
            (
                &[("class", "LocalStrategy")],
                "Unable to use given strategy class: LocalStrategy is reserved for internal use.",
            ),
            (
                &[("class", "SimpleStrategy")],
                "SimpleStrategy requires a replication_factor strategy option.",
            ),
            (
                &[("class", "SimpleStrategy"), ("replication_factor", "x")],
                "Replication factor must be numeric; found x",
            ),
            (
                &[("class", "SimpleStrategy"), ("replication_factor", "")],
                "Replication factor must be numeric; found ",
            ),
            (
                &[("class", "SimpleStrategy"), ("replication_factor", "-1")],
                "Replication factor must be non-negative, found -1",
            ),
            (
                &[("class", "SimpleStrategy"), ("replication_factor", "3/1")],
                "Transient replication is not enabled on this node",
            ),
            (
                &[("class", "NetworkTopologyStrategy"), ("dc1", "two")],
                "Replication factor must be numeric; found two",
            ),
            (
                &[("class", "NetworkTopologyStrategy"), ("dc1", "-2")],
                "Replication factor must be non-negative, found -2",
            ),
            (
                &[("class", "NetworkTopologyStrategy")],
                "Configuration for at least one datacenter must be present",
            ),
            (
                &[
                    ("class", "SimpleStrategy"),
                    ("replication_factor", "1"),
                    ("dc1", "1"),
                ],
                "Unrecognized strategy option {dc1} passed to SimpleStrategy for keyspace ks",
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(error(pairs), *expected, "{pairs:?}");
        }
    }
}

//! Keyspace replication options: validation and normalization.
//!
//! `CREATE KEYSPACE ... WITH replication = {...}` is parsed by `ringdb_ring`'s [`Replication`]
//! (the same code placement uses, so whatever is accepted here can be placed). It is stored in its
//! normalized form — `class` first and fully qualified, then the other options sorted, a bare
//! `replication_factor` of NetworkTopologyStrategy expanded to the known datacenters — because
//! that is what `system_schema.keyspaces.replication` shows and what drivers parse to compute
//! replicas.

use ringdb_ring::Replication;

use super::SchemaError;

/// Fully qualified class name of SimpleStrategy.
pub const SIMPLE_STRATEGY: &str = "org.apache.cassandra.locator.SimpleStrategy";
/// Fully qualified class name of NetworkTopologyStrategy.
pub const NETWORK_TOPOLOGY_STRATEGY: &str = "org.apache.cassandra.locator.NetworkTopologyStrategy";
/// Fully qualified class name of LocalStrategy (system keyspaces only).
pub const LOCAL_STRATEGY: &str = "org.apache.cassandra.locator.LocalStrategy";

/// Validates a replication map as written by the user and returns its normalized form.
/// `known_dcs`: the datacenters a bare NetworkTopologyStrategy `replication_factor` expands to.
pub fn normalize(
    options: &[(String, String)],
    known_dcs: &[String],
) -> Result<Vec<(String, String)>, SchemaError> {
    let replication = Replication::from_options(
        options.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        known_dcs,
    )
    .map_err(|e| SchemaError::Invalid(e.to_string()))?;
    let map = replication.to_options();
    let mut out = Vec::with_capacity(map.len());
    if let Some(class) = map.get("class") {
        out.push(("class".to_string(), class.clone()));
    }
    out.extend(map.into_iter().filter(|(k, _)| k != "class"));
    Ok(out)
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

    #[test]
    fn simple_strategy() {
        let n = normalize(
            &opts(&[("class", "SimpleStrategy"), ("replication_factor", "3")]),
            &[],
        )
        .unwrap();
        assert_eq!(
            n,
            opts(&[("class", SIMPLE_STRATEGY), ("replication_factor", "3")])
        );
        assert!(normalize(&opts(&[("class", "SimpleStrategy")]), &[]).is_err());
        assert!(normalize(
            &opts(&[("class", "SimpleStrategy"), ("replication_factor", "x")]),
            &[]
        )
        .is_err());
    }

    #[test]
    fn network_topology_strategy() {
        let n = normalize(
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
    fn unknown_class() {
        let e = normalize(&opts(&[("class", "Foo")]), &[]).unwrap_err();
        assert!(e
            .to_string()
            .contains("Unable to find replication strategy class"));
        assert!(normalize(&[], &[]).is_err());
    }
}

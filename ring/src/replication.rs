//! A keyspace's replication settings: parsing the options map of `CREATE KEYSPACE ... WITH
//! replication = {...}` into a [`Replication`], and printing it back.
//!
//! Accepted forms, as in Cassandra 4:
//!
//! * `{'class': 'SimpleStrategy', 'replication_factor': '3'}`
//! * `{'class': 'NetworkTopologyStrategy', 'dc1': '3', 'dc2': '2'}`
//! * `{'class': 'NetworkTopologyStrategy', 'replication_factor': '3'}`: 3 in every datacenter
//!   known when the options are parsed; explicit datacenter entries override it. The expansion
//!   happens once, at parse time, and [`Replication::to_options`] writes the expanded form, so a
//!   datacenter added later does not silently start receiving replicas.
//!
//! Class names may be short or fully qualified (`org.apache.cassandra.locator.SimpleStrategy`).
//! Factors are non-negative decimal integers; transient replication (`'3/1'`) is not supported.
//! Everything here comes from a user, so every malformed input is a [`ReplicationError`], never a
//! panic.

use std::collections::BTreeMap;
use std::fmt;

use crate::strategy::{NetworkTopologyStrategy, ReplicationStrategy, SimpleStrategy};
use crate::token::Token;
use crate::topology::{HostId, TokenRing};

const PACKAGE: &str = "org.apache.cassandra.locator.";
const SIMPLE: &str = "SimpleStrategy";
const NETWORK_TOPOLOGY: &str = "NetworkTopologyStrategy";
const CLASS: &str = "class";
const REPLICATION_FACTOR: &str = "replication_factor";

/// A keyspace's replication: which strategy, with which factors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Replication {
    /// `SimpleStrategy`: one factor for the whole cluster.
    Simple(SimpleStrategy),
    /// `NetworkTopologyStrategy`: a factor per datacenter.
    NetworkTopology(NetworkTopologyStrategy),
}

/// Why a replication options map was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationError {
    /// There is no `'class'` option.
    MissingClass,
    /// The class is not a strategy we implement.
    UnknownClass(String),
    /// The strategy needs a factor and none was given.
    MissingReplicationFactor {
        /// The strategy's short class name.
        class: &'static str,
    },
    /// A factor is not a non-negative integer.
    InvalidReplicationFactor {
        /// The option that carried it (`replication_factor` or a datacenter name).
        option: String,
        /// The text given.
        value: String,
    },
    /// An option the strategy does not understand.
    UnknownOption {
        /// The strategy's short class name.
        class: &'static str,
        /// The option given.
        option: String,
    },
    /// The same option appears twice.
    DuplicateOption(String),
    /// `NetworkTopologyStrategy` with only `replication_factor`, while no datacenter is known to
    /// apply it to.
    NoKnownDatacenters,
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationError::MissingClass => {
                write!(f, "Missing replication strategy class")
            }
            ReplicationError::UnknownClass(class) => {
                write!(f, "Unable to find replication strategy class '{class}'")
            }
            ReplicationError::MissingReplicationFactor { class } => {
                write!(f, "{class} requires a replication factor")
            }
            ReplicationError::InvalidReplicationFactor { option, value } => write!(
                f,
                "Replication factor must be a non-negative integer; found '{value}' for '{option}'"
            ),
            ReplicationError::UnknownOption { class, option } => {
                write!(
                    f,
                    "Unrecognized strategy option {{{option}}} passed to {class}"
                )
            }
            ReplicationError::DuplicateOption(option) => {
                write!(f, "Multiple definition for replication option '{option}'")
            }
            ReplicationError::NoKnownDatacenters => write!(
                f,
                "NetworkTopologyStrategy: replication_factor given but no datacenter is known"
            ),
        }
    }
}

impl std::error::Error for ReplicationError {}

impl Replication {
    /// Parses a keyspace's replication options. `known_dcs` are the datacenters a bare
    /// `replication_factor` of `NetworkTopologyStrategy` expands to.
    pub fn from_options<K, V>(
        options: impl IntoIterator<Item = (K, V)>,
        known_dcs: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Replication, ReplicationError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in options {
            let key = key.as_ref().to_string();
            if map.contains_key(&key) {
                return Err(ReplicationError::DuplicateOption(key));
            }
            map.insert(key, value.as_ref().to_string());
        }
        let class = map.remove(CLASS).ok_or(ReplicationError::MissingClass)?;
        let short = class.strip_prefix(PACKAGE).unwrap_or(&class);
        match short {
            SIMPLE => {
                let value = map
                    .remove(REPLICATION_FACTOR)
                    .ok_or(ReplicationError::MissingReplicationFactor { class: SIMPLE })?;
                if let Some(option) = map.into_keys().next() {
                    return Err(ReplicationError::UnknownOption {
                        class: SIMPLE,
                        option,
                    });
                }
                Ok(Replication::Simple(SimpleStrategy {
                    rf: parse_factor(REPLICATION_FACTOR, &value)?,
                }))
            }
            NETWORK_TOPOLOGY => {
                let default = match map.remove(REPLICATION_FACTOR) {
                    Some(value) => Some(parse_factor(REPLICATION_FACTOR, &value)?),
                    None => None,
                };
                let mut rf_per_dc = BTreeMap::new();
                for (dc, value) in map {
                    let rf = parse_factor(&dc, &value)?;
                    rf_per_dc.insert(dc, rf);
                }
                match default {
                    Some(rf) => {
                        for dc in known_dcs {
                            rf_per_dc.entry(dc.as_ref().to_string()).or_insert(rf);
                        }
                        if rf_per_dc.is_empty() {
                            return Err(ReplicationError::NoKnownDatacenters);
                        }
                    }
                    None if rf_per_dc.is_empty() => {
                        return Err(ReplicationError::MissingReplicationFactor {
                            class: NETWORK_TOPOLOGY,
                        })
                    }
                    None => {}
                }
                Ok(Replication::NetworkTopology(NetworkTopologyStrategy {
                    rf_per_dc,
                }))
            }
            _ => Err(ReplicationError::UnknownClass(class)),
        }
    }

    /// The options map in the form `system_schema.keyspaces.replication` shows: fully qualified
    /// class name and every factor as text.
    pub fn to_options(&self) -> BTreeMap<String, String> {
        let mut options = BTreeMap::new();
        options.insert(CLASS.to_string(), self.class_name().to_string());
        match self {
            Replication::Simple(s) => {
                options.insert(REPLICATION_FACTOR.to_string(), s.rf.to_string());
            }
            Replication::NetworkTopology(n) => {
                for (dc, rf) in &n.rf_per_dc {
                    options.insert(dc.clone(), rf.to_string());
                }
            }
        }
        options
    }

    /// The fully qualified Java class name of the strategy.
    pub fn class_name(&self) -> &'static str {
        match self {
            Replication::Simple(_) => "org.apache.cassandra.locator.SimpleStrategy",
            Replication::NetworkTopology(_) => {
                "org.apache.cassandra.locator.NetworkTopologyStrategy"
            }
        }
    }

    /// The total number of replicas of each token: the factor of `SimpleStrategy`, the sum of all
    /// datacenters' factors for `NetworkTopologyStrategy`.
    pub fn total_rf(&self) -> usize {
        match self {
            Replication::Simple(s) => s.rf,
            Replication::NetworkTopology(n) => n.total_rf(),
        }
    }

    /// The factor of one datacenter under `NetworkTopologyStrategy` (0 when not listed); `None`
    /// under `SimpleStrategy`, which does not place replicas by datacenter.
    pub fn rf_in_dc(&self, dc: &str) -> Option<usize> {
        match self {
            Replication::Simple(_) => None,
            Replication::NetworkTopology(n) => Some(n.rf_per_dc.get(dc).copied().unwrap_or(0)),
        }
    }
}

impl ReplicationStrategy for Replication {
    fn replicas(&self, ring: &TokenRing, token: Token) -> Vec<HostId> {
        match self {
            Replication::Simple(s) => s.replicas(ring, token),
            Replication::NetworkTopology(n) => n.replicas(ring, token),
        }
    }
}

fn parse_factor(option: &str, value: &str) -> Result<usize, ReplicationError> {
    // `usize::from_str` accepts a leading '+'; Cassandra does not, and neither do we.
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    value
        .parse::<usize>()
        .ok()
        .filter(|_| digits_only)
        .ok_or_else(|| ReplicationError::InvalidReplicationFactor {
            option: option.to_string(),
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_DCS: [&str; 0] = [];

    fn parse(pairs: &[(&str, &str)], dcs: &[&str]) -> Result<Replication, ReplicationError> {
        Replication::from_options(pairs.iter().copied(), dcs.iter())
    }

    fn nts(pairs: &[(&str, usize)]) -> Replication {
        Replication::NetworkTopology(NetworkTopologyStrategy {
            rf_per_dc: pairs.iter().map(|&(d, r)| (d.to_string(), r)).collect(),
        })
    }

    #[test]
    fn valid_options() {
        let cases: Vec<(Vec<(&str, &str)>, Replication)> = vec![
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "3")],
                Replication::Simple(SimpleStrategy { rf: 3 }),
            ),
            (
                vec![
                    ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                    ("replication_factor", "0"),
                ],
                Replication::Simple(SimpleStrategy { rf: 0 }),
            ),
            (
                vec![
                    ("class", "NetworkTopologyStrategy"),
                    ("dc1", "3"),
                    ("dc2", "2"),
                ],
                nts(&[("dc1", 3), ("dc2", 2)]),
            ),
            (
                vec![
                    (
                        "class",
                        "org.apache.cassandra.locator.NetworkTopologyStrategy",
                    ),
                    ("dc9", "1"),
                ],
                nts(&[("dc9", 1)]),
            ),
            // replication_factor expands to every known dc; explicit entries win.
            (
                vec![
                    ("class", "NetworkTopologyStrategy"),
                    ("replication_factor", "3"),
                    ("dc2", "1"),
                ],
                nts(&[("dc1", 3), ("dc2", 1), ("dc3", 3)]),
            ),
        ];
        for (options, expected) in cases {
            assert_eq!(
                parse(&options, &["dc1", "dc2", "dc3"]).as_ref(),
                Ok(&expected),
                "{options:?}"
            );
        }
    }

    #[test]
    fn invalid_options() {
        use ReplicationError::*;
        let invalid = |option: &str, value: &str| InvalidReplicationFactor {
            option: option.into(),
            value: value.into(),
        };
        let cases: Vec<(Vec<(&str, &str)>, ReplicationError)> = vec![
            (vec![("replication_factor", "3")], MissingClass),
            (
                vec![("class", "EverywhereStrategy"), ("replication_factor", "3")],
                UnknownClass("EverywhereStrategy".into()),
            ),
            (
                vec![("class", "simplestrategy"), ("replication_factor", "3")],
                UnknownClass("simplestrategy".into()),
            ),
            (
                vec![("class", "SimpleStrategy")],
                MissingReplicationFactor {
                    class: "SimpleStrategy",
                },
            ),
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "three")],
                invalid("replication_factor", "three"),
            ),
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "-1")],
                invalid("replication_factor", "-1"),
            ),
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "+3")],
                invalid("replication_factor", "+3"),
            ),
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "3/1")],
                invalid("replication_factor", "3/1"),
            ),
            (
                vec![("class", "SimpleStrategy"), ("replication_factor", "")],
                invalid("replication_factor", ""),
            ),
            (
                vec![
                    ("class", "SimpleStrategy"),
                    ("replication_factor", "99999999999999999999999"),
                ],
                invalid("replication_factor", "99999999999999999999999"),
            ),
            (
                vec![
                    ("class", "SimpleStrategy"),
                    ("replication_factor", "3"),
                    ("dc1", "3"),
                ],
                UnknownOption {
                    class: "SimpleStrategy",
                    option: "dc1".into(),
                },
            ),
            (
                vec![("class", "NetworkTopologyStrategy")],
                MissingReplicationFactor {
                    class: "NetworkTopologyStrategy",
                },
            ),
            (
                vec![("class", "NetworkTopologyStrategy"), ("dc1", " 3")],
                invalid("dc1", " 3"),
            ),
            (
                vec![("class", "SimpleStrategy"), ("class", "SimpleStrategy")],
                DuplicateOption("class".into()),
            ),
        ];
        for (options, expected) in cases {
            assert_eq!(parse(&options, &["dc1"]), Err(expected), "{options:?}");
        }
        assert_eq!(
            Replication::from_options(
                [
                    ("class", "NetworkTopologyStrategy"),
                    ("replication_factor", "2")
                ],
                NO_DCS
            ),
            Err(NoKnownDatacenters)
        );
    }

    #[test]
    fn errors_read_well() {
        let err = parse(&[("class", "Nope")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to find replication strategy class 'Nope'"
        );
        let err = parse(
            &[("class", "SimpleStrategy"), ("replication_factor", "x")],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Replication factor must be a non-negative integer; found 'x' for 'replication_factor'"
        );
    }

    #[test]
    fn options_round_trip() {
        for replication in [
            Replication::Simple(SimpleStrategy { rf: 2 }),
            nts(&[("a", 1), ("b", 0)]),
        ] {
            let options = replication.to_options();
            assert_eq!(
                Replication::from_options(&options, NO_DCS),
                Ok(replication.clone())
            );
        }
        assert_eq!(
            nts(&[("dc1", 3)]).to_options(),
            BTreeMap::from([
                (
                    "class".to_string(),
                    "org.apache.cassandra.locator.NetworkTopologyStrategy".to_string()
                ),
                ("dc1".to_string(), "3".to_string()),
            ])
        );
    }

    #[test]
    fn factors() {
        let r = nts(&[("dc1", 3), ("dc2", 2)]);
        assert_eq!(r.total_rf(), 5);
        assert_eq!(r.rf_in_dc("dc2"), Some(2));
        assert_eq!(r.rf_in_dc("dc3"), Some(0));
        let s = Replication::Simple(SimpleStrategy { rf: 3 });
        assert_eq!(s.total_rf(), 3);
        assert_eq!(s.rf_in_dc("dc1"), None);
    }
}

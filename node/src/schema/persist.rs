//! The persisted form of definitions: a format version byte, then bincode 2 (serde) of the
//! definition. `CqlType` lives in the codec crate without serde support, so it is persisted
//! as its CQL text ([`cql_type`]).
//!
//! Tombstones, pending purges and the [`SchemaSnapshot`] exchanged between nodes use the same
//! format.

use serde::{Deserialize, Serialize};

use super::merge::{KeyspaceTombstone, SchemaSnapshot, TableTombstone};
use super::{KeyspaceDef, SchemaError, TableDef, TableId};

/// Version of the persisted definition format; bumped on incompatible changes.
const FORMAT_VERSION: u8 = 1;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    // Encoding plain data structures into a Vec cannot fail; an empty payload would be caught as
    // corrupt when read back.
    if let Ok(bytes) = bincode::serde::encode_to_vec(value, config()) {
        out.extend(bytes);
    }
    out
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, SchemaError> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => bincode::serde::decode_from_slice(rest, config())
            .map(|(v, _)| v)
            .map_err(|e| SchemaError::Corrupt(format!("{what}: {e}"))),
        Some((v, _)) => Err(SchemaError::Corrupt(format!(
            "{what}: unknown format version {v}"
        ))),
        None => Err(SchemaError::Corrupt(format!("{what}: empty value"))),
    }
}

pub(crate) fn encode_keyspace(ks: &KeyspaceDef) -> Vec<u8> {
    encode(ks)
}

pub(crate) fn decode_keyspace(bytes: &[u8]) -> Result<KeyspaceDef, SchemaError> {
    decode(bytes, "keyspace")
}

pub(crate) fn encode_table(t: &TableDef) -> Vec<u8> {
    encode(t)
}

pub(crate) fn decode_table(bytes: &[u8]) -> Result<TableDef, SchemaError> {
    decode(bytes, "table")
}

pub(crate) fn encode_keyspace_tombstone(t: &KeyspaceTombstone) -> Vec<u8> {
    encode(t)
}

pub(crate) fn decode_keyspace_tombstone(bytes: &[u8]) -> Result<KeyspaceTombstone, SchemaError> {
    decode(bytes, "keyspace tombstone")
}

pub(crate) fn encode_table_tombstone(t: &TableTombstone) -> Vec<u8> {
    encode(t)
}

pub(crate) fn decode_table_tombstone(bytes: &[u8]) -> Result<TableTombstone, SchemaError> {
    decode(bytes, "table tombstone")
}

pub(crate) fn encode_snapshot(s: &SchemaSnapshot) -> Vec<u8> {
    encode(s)
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<SchemaSnapshot, SchemaError> {
    decode(bytes, "schema snapshot")
}

/// A dropped table whose local data has not been deleted yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPurge {
    /// The keyspace it was in (for logs).
    pub keyspace: String,
    /// Its name (for logs).
    pub name: String,
    /// The id whose data is to be deleted.
    pub id: TableId,
}

pub(crate) fn encode_pending_purge(p: &PendingPurge) -> Vec<u8> {
    encode(p)
}

pub(crate) fn decode_pending_purge(bytes: &[u8]) -> Result<PendingPurge, SchemaError> {
    decode(bytes, "pending purge")
}

/// serde `with` module for `CqlType`: a type is stored as its CQL text (`frozen<map<text, int>>`),
/// which is readable, stable across changes to the Rust enum, and parsed back by the one CQL
/// type parser.
pub(crate) mod cql_type {
    use ringdb_cql::types::CqlType;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &CqlType, s: S) -> Result<S::Ok, S::Error> {
        t.to_string().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CqlType, D::Error> {
        let text = String::deserialize(d)?;
        ringdb_cql::parser::parse_type(&text)
            .map_err(|e| serde::de::Error::custom(format!("stored type `{text}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ClusteringOrder, ColumnDef, ColumnKind, TableOptions};
    use ringdb_cql::types::CqlType;

    #[test]
    fn table_round_trip() {
        let t = TableDef {
            id: uuid::Uuid::new_v4(),
            keyspace: "ks".into(),
            name: "t".into(),
            columns: vec![
                ColumnDef {
                    id: 0,
                    name: "k".into(),
                    ty: CqlType::Int,
                    kind: ColumnKind::PartitionKey(0),
                },
                ColumnDef {
                    id: 1,
                    name: "c".into(),
                    ty: CqlType::Frozen(Box::new(CqlType::Map(
                        Box::new(CqlType::Text),
                        Box::new(CqlType::Tuple(vec![CqlType::Int, CqlType::Blob])),
                    ))),
                    kind: ColumnKind::Clustering(0, ClusteringOrder::Desc),
                },
            ],
            next_column_id: 2,
            options: TableOptions::default(),
            dropped_columns: vec![],
            timestamp: 42,
            is_virtual: false,
        };
        let bytes = encode_table(&t);
        assert_eq!(decode_table(&bytes).unwrap(), t);
        assert!(decode_table(&[9, 1, 2]).is_err());
        assert!(decode_table(&[]).is_err());
        assert!(decode_table(&bytes[..bytes.len() / 2]).is_err());
    }
}

//! The persisted form of definitions: a format version byte, then bincode 2 (serde) of the
//! definition. `CqlType` lives in the codec crate without serde support, so it is persisted
//! through a mirror enum here ([`cql_type`]).

use serde::{Deserialize, Serialize};

use super::{KeyspaceDef, SchemaError, TableDef};

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

/// serde `with` module for `CqlType`.
pub(crate) mod cql_type {
    use ringdb_cql::types::CqlType;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum T {
        Ascii,
        Text,
        Boolean,
        TinyInt,
        SmallInt,
        Int,
        BigInt,
        Varint,
        Float,
        Double,
        Decimal,
        Uuid,
        Timeuuid,
        Timestamp,
        Date,
        Time,
        Blob,
        Inet,
        Counter,
        Duration,
        List(Box<T>),
        Set(Box<T>),
        Map(Box<T>, Box<T>),
        Tuple(Vec<T>),
        Frozen(Box<T>),
        Custom(String),
    }

    fn to_mirror(t: &CqlType) -> T {
        match t {
            CqlType::Ascii => T::Ascii,
            CqlType::Text => T::Text,
            CqlType::Boolean => T::Boolean,
            CqlType::TinyInt => T::TinyInt,
            CqlType::SmallInt => T::SmallInt,
            CqlType::Int => T::Int,
            CqlType::BigInt => T::BigInt,
            CqlType::Varint => T::Varint,
            CqlType::Float => T::Float,
            CqlType::Double => T::Double,
            CqlType::Decimal => T::Decimal,
            CqlType::Uuid => T::Uuid,
            CqlType::Timeuuid => T::Timeuuid,
            CqlType::Timestamp => T::Timestamp,
            CqlType::Date => T::Date,
            CqlType::Time => T::Time,
            CqlType::Blob => T::Blob,
            CqlType::Inet => T::Inet,
            CqlType::Counter => T::Counter,
            CqlType::Duration => T::Duration,
            CqlType::List(e) => T::List(Box::new(to_mirror(e))),
            CqlType::Set(e) => T::Set(Box::new(to_mirror(e))),
            CqlType::Map(k, v) => T::Map(Box::new(to_mirror(k)), Box::new(to_mirror(v))),
            CqlType::Tuple(ts) => T::Tuple(ts.iter().map(to_mirror).collect()),
            CqlType::Frozen(e) => T::Frozen(Box::new(to_mirror(e))),
            CqlType::Custom(s) => T::Custom(s.clone()),
        }
    }

    fn from_mirror(t: T) -> CqlType {
        match t {
            T::Ascii => CqlType::Ascii,
            T::Text => CqlType::Text,
            T::Boolean => CqlType::Boolean,
            T::TinyInt => CqlType::TinyInt,
            T::SmallInt => CqlType::SmallInt,
            T::Int => CqlType::Int,
            T::BigInt => CqlType::BigInt,
            T::Varint => CqlType::Varint,
            T::Float => CqlType::Float,
            T::Double => CqlType::Double,
            T::Decimal => CqlType::Decimal,
            T::Uuid => CqlType::Uuid,
            T::Timeuuid => CqlType::Timeuuid,
            T::Timestamp => CqlType::Timestamp,
            T::Date => CqlType::Date,
            T::Time => CqlType::Time,
            T::Blob => CqlType::Blob,
            T::Inet => CqlType::Inet,
            T::Counter => CqlType::Counter,
            T::Duration => CqlType::Duration,
            T::List(e) => CqlType::List(Box::new(from_mirror(*e))),
            T::Set(e) => CqlType::Set(Box::new(from_mirror(*e))),
            T::Map(k, v) => CqlType::Map(Box::new(from_mirror(*k)), Box::new(from_mirror(*v))),
            T::Tuple(ts) => CqlType::Tuple(ts.into_iter().map(from_mirror).collect()),
            T::Frozen(e) => CqlType::Frozen(Box::new(from_mirror(*e))),
            T::Custom(s) => CqlType::Custom(s),
        }
    }

    pub fn serialize<S: Serializer>(t: &CqlType, s: S) -> Result<S::Ok, S::Error> {
        to_mirror(t).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CqlType, D::Error> {
        T::deserialize(d).map(from_mirror)
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

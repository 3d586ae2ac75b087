//! Schema: keyspaces and tables.
//!
//! A [`Schema`] is an immutable snapshot of every keyspace and table the node knows, including
//! the built-in system keyspaces (`system`, `system_schema`, …) whose tables are read-only views
//! computed on read (see [`system`]). Readers take an `Arc<Schema>` and keep using it for the
//! whole statement, so a concurrent DDL never changes a definition under their feet; DDL builds a
//! new snapshot and swaps it whole ([`SchemaStore`]).
//!
//! Definitions are data with a write timestamp ([`KeyspaceDef::timestamp`],
//! [`TableDef::timestamp`]), and drops leave tombstones, so that nodes can change the schema
//! independently and converge by exchanging it: the user schema is a set of last-write-wins
//! registers whose merge is commutative, associative and idempotent ([`merge`]), exchanged as a
//! [`SchemaSnapshot`] by the sync driver ([`sync`]). Every snapshot carries a *schema version*:
//! a name-based UUID of a digest of the live user definitions, so equal schemas have equal
//! versions on every node (drivers wait for all nodes to report the same version after a DDL)
//! and the version is never null. Tombstones do not enter the version.
//!
//! Identity is by id, not by name. A table gets a random [`TableId`] when created, so a table
//! dropped and re-created under the same name does not see the old data. Within a table each
//! column gets the next [`ColumnId`], never reused, so a column dropped and re-added starts empty:
//! the storage layer keys cells by column id, and a dropped column's cells simply never match a
//! live column again. Dropped columns are remembered (with the drop time) for
//! `system_schema.dropped_columns` and for purging. The data of a dropped table is deleted by
//! each node on its own once it learns of the drop ([`sync::purge_dropped_tables`]).
//!
//! - [`ddl`]: turns CREATE/ALTER/DROP statements into new definitions, with Cassandra's
//!   validation rules and error messages.
//! - [`store`]: the current snapshot, persisted in the engine's meta space and reloaded on start.
//! - [`merge`]: the mergeable form of the schema, tombstones, and the rules of the merge.
//! - [`sync`]: propagation between nodes, and deletion of dropped tables' local data.
//! - [`system`]: the definitions of the system keyspaces and tables.
//! - [`replication`]: validation and normalization of keyspace replication options.
//! - [`digest`]: the stable hash behind schema versions and prepared statement ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ringdb_cql::types::CqlType;
use serde::{Deserialize, Serialize};

pub use crate::storage::{ColumnId, TableId};

pub mod ddl;
pub mod digest;
pub mod merge;
mod persist;
pub mod replication;
pub mod store;
pub mod sync;
pub mod system;

pub use merge::{KeyspaceTombstone, MergeOutcome, SchemaChange, SchemaSnapshot, TableTombstone};
pub use persist::PendingPurge;
pub use store::SchemaStore;

/// Why a schema change was refused.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The request is invalid (Cassandra's InvalidRequest / ConfigurationException).
    #[error("{0}")]
    Invalid(String),
    /// The keyspace or table already exists. `table` is empty for a keyspace.
    #[error("{message}")]
    AlreadyExists {
        keyspace: String,
        table: String,
        message: String,
    },
    /// The object is not user-modifiable (system keyspaces).
    #[error("{0}")]
    Unauthorized(String),
    /// Persisting or loading the schema failed.
    #[error("schema storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// A persisted definition could not be decoded.
    #[error("corrupt schema definition: {0}")]
    Corrupt(String),
}

/// A keyspace definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceDef {
    pub name: String,
    /// Normalized replication options: `class` first, fully qualified
    /// (`org.apache.cassandra.locator.SimpleStrategy`), then the other options sorted by name.
    pub replication: Vec<(String, String)>,
    pub durable_writes: bool,
    /// Write timestamp of this definition (microseconds).
    pub timestamp: i64,
}

impl KeyspaceDef {
    /// The value of the `class` replication option.
    pub fn replication_class(&self) -> &str {
        self.replication
            .iter()
            .find(|(k, _)| k == "class")
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// Clustering order of a clustering column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClusteringOrder {
    Asc,
    Desc,
}

/// What role a column plays in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnKind {
    /// Part of the partition key, at this position.
    PartitionKey(u16),
    /// A clustering column, at this position, with its order.
    Clustering(u16, ClusteringOrder),
    Regular,
    /// A static column: one value per partition, shared by its rows.
    Static,
}

impl ColumnKind {
    /// True for partition key and clustering columns.
    pub fn is_primary_key(&self) -> bool {
        matches!(
            self,
            ColumnKind::PartitionKey(_) | ColumnKind::Clustering(..)
        )
    }

    /// The name `system_schema.columns.kind` uses.
    pub fn schema_name(&self) -> &'static str {
        match self {
            ColumnKind::PartitionKey(_) => "partition_key",
            ColumnKind::Clustering(..) => "clustering",
            ColumnKind::Regular => "regular",
            ColumnKind::Static => "static",
        }
    }
}

/// A column definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub id: ColumnId,
    pub name: String,
    #[serde(with = "persist::cql_type")]
    pub ty: CqlType,
    pub kind: ColumnKind,
}

impl ColumnDef {
    /// True for a non-frozen collection, stored as one cell per element.
    pub fn is_multi_cell(&self) -> bool {
        self.ty.is_multi_cell()
    }

    /// The clustering order, for a clustering column.
    pub fn clustering_order(&self) -> Option<ClusteringOrder> {
        match self.kind {
            ColumnKind::Clustering(_, o) => Some(o),
            _ => None,
        }
    }
}

/// A column that was dropped, remembered so that its data is never shown again and can be
/// purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedColumn {
    pub id: ColumnId,
    pub name: String,
    #[serde(with = "persist::cql_type")]
    pub ty: CqlType,
    pub kind: ColumnKind,
    /// When it was dropped (microseconds, the ALTER's timestamp).
    pub dropped_at: i64,
}

/// Table options (`WITH ...`). Most are accepted and reported for compatibility only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableOptions {
    pub comment: String,
    /// Default TTL (seconds) of writes that do not say `USING TTL`; 0 for none.
    pub default_time_to_live: i32,
    /// How long tombstones are kept before purge (seconds).
    pub gc_grace_seconds: i32,
    pub bloom_filter_fp_chance: f64,
    pub caching: Vec<(String, String)>,
    pub compaction: Vec<(String, String)>,
    pub compression: Vec<(String, String)>,
    pub crc_check_chance: f64,
    pub speculative_retry: String,
    pub additional_write_policy: String,
    pub memtable_flush_period_in_ms: i32,
    pub min_index_interval: i32,
    pub max_index_interval: i32,
    pub read_repair: String,
    pub cdc: bool,
    pub extensions: Vec<(String, Vec<u8>)>,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            comment: String::new(),
            default_time_to_live: 0,
            gc_grace_seconds: 864_000,
            bloom_filter_fp_chance: 0.01,
            caching: vec![
                ("keys".into(), "ALL".into()),
                ("rows_per_partition".into(), "NONE".into()),
            ],
            compaction: vec![
                (
                    "class".into(),
                    "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy".into(),
                ),
                ("max_threshold".into(), "32".into()),
                ("min_threshold".into(), "4".into()),
            ],
            compression: vec![
                ("chunk_length_in_kb".into(), "16".into()),
                (
                    "class".into(),
                    "org.apache.cassandra.io.compress.LZ4Compressor".into(),
                ),
            ],
            crc_check_chance: 1.0,
            speculative_retry: "99p".into(),
            additional_write_policy: "99p".into(),
            memtable_flush_period_in_ms: 0,
            min_index_interval: 128,
            max_index_interval: 2048,
            read_repair: "BLOCKING".into(),
            cdc: false,
            extensions: Vec::new(),
        }
    }
}

/// A table definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub keyspace: String,
    pub name: String,
    /// Live columns, in definition order (partition key, clustering, then the others as declared
    /// or added).
    pub columns: Vec<ColumnDef>,
    /// The id the next added column gets.
    pub next_column_id: ColumnId,
    pub options: TableOptions,
    pub dropped_columns: Vec<DroppedColumn>,
    /// Write timestamp of this definition (microseconds).
    pub timestamp: i64,
    /// A read-only view computed on read (system tables).
    pub is_virtual: bool,
}

impl TableDef {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Index of the column called `name` in [`TableDef::columns`].
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Partition key columns in key order.
    pub fn partition_key(&self) -> Vec<&ColumnDef> {
        let mut v: Vec<&ColumnDef> = self
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::PartitionKey(_)))
            .collect();
        v.sort_by_key(|c| match c.kind {
            ColumnKind::PartitionKey(p) => p,
            _ => 0,
        });
        v
    }

    /// Clustering columns in clustering order.
    pub fn clustering(&self) -> Vec<&ColumnDef> {
        let mut v: Vec<&ColumnDef> = self
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Clustering(..)))
            .collect();
        v.sort_by_key(|c| match c.kind {
            ColumnKind::Clustering(p, _) => p,
            _ => 0,
        });
        v
    }

    /// True when the table has static columns.
    pub fn has_statics(&self) -> bool {
        self.columns.iter().any(|c| c.kind == ColumnKind::Static)
    }

    /// Columns in the order `SELECT *` returns them: partition key, clustering, then static
    /// columns by name, then regular columns by name (as Cassandra does).
    pub fn select_star_order(&self) -> Vec<&ColumnDef> {
        let mut out = self.partition_key();
        out.extend(self.clustering());
        let mut statics: Vec<&ColumnDef> = self
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Static)
            .collect();
        statics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut regulars: Vec<&ColumnDef> = self
            .columns
            .iter()
            .filter(|c| c.kind == ColumnKind::Regular)
            .collect();
        regulars.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(statics);
        out.extend(regulars);
        out
    }
}

/// Keyspaces whose schema users may not change.
pub const SYSTEM_KEYSPACES: [&str; 6] = [
    "system",
    "system_schema",
    "system_views",
    "system_auth",
    "system_distributed",
    "system_traces",
];

/// True for a built-in system keyspace.
pub fn is_system_keyspace(name: &str) -> bool {
    SYSTEM_KEYSPACES.contains(&name)
}

/// An immutable snapshot of all keyspaces and tables, with its version.
#[derive(Debug, Clone)]
pub struct Schema {
    keyspaces: BTreeMap<String, Arc<KeyspaceDef>>,
    /// keyspace → table name → definition.
    tables: BTreeMap<String, BTreeMap<String, Arc<TableDef>>>,
    /// Table id → definition, for replicas that receive mutations by id.
    by_id: HashMap<TableId, Arc<TableDef>>,
    version: uuid::Uuid,
}

impl Schema {
    /// A snapshot holding the system keyspaces and the given user definitions. Tables whose
    /// keyspace is not among `keyspaces` are left out.
    pub fn new(keyspaces: Vec<KeyspaceDef>, tables: Vec<TableDef>) -> Schema {
        let mut ks_map: BTreeMap<String, Arc<KeyspaceDef>> = BTreeMap::new();
        let mut tables_map: BTreeMap<String, BTreeMap<String, Arc<TableDef>>> = BTreeMap::new();
        for (ks, ts) in system::definitions() {
            tables_map
                .entry(ks.name.clone())
                .or_default()
                .extend(ts.into_iter().map(|t| (t.name.clone(), Arc::new(t))));
            ks_map.insert(ks.name.clone(), Arc::new(ks));
        }
        for ks in keyspaces {
            if is_system_keyspace(&ks.name) {
                continue;
            }
            tables_map.entry(ks.name.clone()).or_default();
            ks_map.insert(ks.name.clone(), Arc::new(ks));
        }
        for t in tables {
            if is_system_keyspace(&t.keyspace) || !ks_map.contains_key(&t.keyspace) {
                continue;
            }
            tables_map
                .entry(t.keyspace.clone())
                .or_default()
                .insert(t.name.clone(), Arc::new(t));
        }
        let version = compute_version(&ks_map, &tables_map);
        let by_id = tables_map
            .values()
            .flat_map(|t| t.values())
            .map(|t| (t.id, t.clone()))
            .collect();
        Schema {
            keyspaces: ks_map,
            tables: tables_map,
            by_id,
            version,
        }
    }

    /// The schema version: equal for equal user schemas, never nil.
    pub fn version(&self) -> uuid::Uuid {
        self.version
    }

    /// The keyspace called `name`.
    pub fn keyspace(&self, name: &str) -> Option<&Arc<KeyspaceDef>> {
        self.keyspaces.get(name)
    }

    /// All keyspaces (system ones included), by name.
    pub fn keyspaces(&self) -> impl Iterator<Item = &Arc<KeyspaceDef>> {
        self.keyspaces.values()
    }

    /// The table `keyspace.name`.
    pub fn table(&self, keyspace: &str, name: &str) -> Option<&Arc<TableDef>> {
        self.tables.get(keyspace).and_then(|t| t.get(name))
    }

    /// The table with this id, if it is live.
    pub fn table_by_id(&self, id: TableId) -> Option<&Arc<TableDef>> {
        self.by_id.get(&id)
    }

    /// The tables of a keyspace, by name.
    pub fn tables(&self, keyspace: &str) -> impl Iterator<Item = &Arc<TableDef>> {
        self.tables
            .get(keyspace)
            .into_iter()
            .flat_map(|t| t.values())
    }

    /// User (non-system) keyspace definitions.
    pub fn user_keyspaces(&self) -> impl Iterator<Item = &Arc<KeyspaceDef>> {
        self.keyspaces
            .values()
            .filter(|k| !is_system_keyspace(&k.name))
    }

    /// The replicated (non-virtual) tables by id, of user keyspaces and of `system_auth`: what
    /// replayed hints and batches may still write (a mutation of any other table id is for a
    /// table dropped since).
    pub fn replicated_tables_by_id(&self) -> HashMap<TableId, &TableDef> {
        self.by_id
            .iter()
            .filter(|(_, t)| !t.is_virtual)
            .map(|(id, t)| (*id, &**t))
            .collect()
    }
}

/// Digest of the live user definitions in name order; the system definitions are the same on
/// every node of a release and are left out, and so are tombstones (a node that saw an object
/// dropped and one that never saw it have the same live schema, hence the same version).
fn compute_version(
    keyspaces: &BTreeMap<String, Arc<KeyspaceDef>>,
    tables: &BTreeMap<String, BTreeMap<String, Arc<TableDef>>>,
) -> uuid::Uuid {
    let mut d = digest::Digest128::new();
    d.update(b"ringdb-schema-v1");
    for (name, ks) in keyspaces {
        if is_system_keyspace(name) {
            continue;
        }
        d.update_framed(&persist::encode_keyspace(ks));
        for t in tables.get(name).into_iter().flat_map(|t| t.values()) {
            d.update_framed(&persist::encode_table(t));
        }
    }
    let mut b = d.finish();
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b)
}

//! Schema as mergeable data: how nodes that changed the schema independently converge.
//!
//! Every node may run DDL, and nodes exchange their whole schema ([`SchemaSnapshot`]) with each
//! other (see [`super::sync`]). For that to end with one schema everywhere, whatever the order
//! and number of exchanges, merging must be commutative, associative and idempotent. It is,
//! because the schema is kept as a set of *registers*, each holding the greatest value written
//! to it, and merging takes the greatest value of each register:
//!
//! - per keyspace name: the newest definition, and the newest drop (a [`KeyspaceTombstone`]);
//! - per table (keyspace, name): the newest definition, and the newest drop (a
//!   [`TableTombstone`]).
//!
//! "Newest" is by write timestamp, ties broken by comparing the encoded definitions (for
//! tombstones: the table id), so every node picks the same winner. That is how two concurrent
//! `CREATE TABLE ks.t` on different nodes, which pick different random table ids, end with the
//! same single table everywhere. Concurrent `ALTER TABLE`s of one table are last-write-wins on the
//! whole definition: the older ALTER is lost (e.g. of two concurrent `ADD` the newer one's column
//! survives). A keyspace definition is likewise LWW as a whole.
//!
//! What is live is then a function of the registers:
//!
//! - a keyspace is live when its definition is newer than its tombstone (a tombstone beats
//!   definitions whose timestamp is `<=` its own; a CREATE with a newer timestamp beats an older
//!   drop);
//! - a table is live when its definition is newer than its own tombstone *and* than its
//!   keyspace's tombstone (dropping a keyspace removes the tables it had, not the ones created
//!   after the drop), and its keyspace is live. A table whose keyspace is not live is kept (it
//!   would be live again if the keyspace were re-created with a newer timestamp, and dropping it
//!   would make the merge depend on the order of exchanges) but never shown.
//!
//! Normalization (`SchemaState::normalize`) forgets what can no longer matter to any future merge —
//! definitions older than a tombstone that beats them, table tombstones older than their
//! keyspace's tombstone or than a newer definition of the table — so that every node ends with
//! the same state, not just the same live schema. Tombstones themselves are kept forever: they
//! are a few bytes per dropped object, and forgetting one would let a node that missed the drop
//! bring the object back.
//!
//! The schema version ([`Schema::version`]) digests the live definitions only: a node holding a
//! tombstone and a node that never saw the dropped object report the same version, which is what
//! drivers comparing versions want (the live schemas are equal).
//!
//! Local DDL must take effect even when this node's clock is behind a timestamp it learned from a
//! peer: a local edit (`SchemaState::apply_edit`) raises a new definition's timestamp above any tombstone or
//! definition it must beat, and a drop's above the definitions it removes.
//!
//! Everything here is pure: no I/O, no clock. [`super::SchemaStore`] persists and publishes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::store::SchemaEdit;
use super::{
    ddl, is_system_keyspace, persist, KeyspaceDef, Schema, SchemaError, TableDef, TableId,
};

/// A dropped keyspace: definitions of the keyspace, and of its tables, with a timestamp `<=`
/// `dropped_at` are dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyspaceTombstone {
    /// The keyspace's name.
    pub name: String,
    /// When it was dropped (microseconds, the DROP's timestamp).
    pub dropped_at: i64,
}

/// A dropped table: definitions of `keyspace.name` with a timestamp `<=` `dropped_at` are dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableTombstone {
    /// The keyspace the table was in.
    pub keyspace: String,
    /// The table's name.
    pub name: String,
    /// The id of the definition that was dropped (whose data each node deletes).
    pub id: TableId,
    /// When it was dropped (microseconds, the DROP's timestamp).
    pub dropped_at: i64,
}

impl TableTombstone {
    /// Which of two tombstones of the same table wins: the later drop, then the greater id.
    fn beats(&self, other: &TableTombstone) -> bool {
        (self.dropped_at, self.id) > (other.dropped_at, other.id)
    }
}

/// A node's whole user schema as exchanged between nodes: every user keyspace and table
/// definition it holds and every tombstone. System keyspaces are never part of it.
///
/// Merging a snapshot into a store ([`super::SchemaStore::merge`]) is commutative, associative
/// and idempotent (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchemaSnapshot {
    /// Keyspace definitions.
    pub keyspaces: Vec<KeyspaceDef>,
    /// Table definitions (including, rarely, tables of a keyspace that is not live; see the
    /// module documentation).
    pub tables: Vec<TableDef>,
    /// Dropped keyspaces.
    pub dropped_keyspaces: Vec<KeyspaceTombstone>,
    /// Dropped tables.
    pub dropped_tables: Vec<TableTombstone>,
}

impl SchemaSnapshot {
    /// The version of the schema this snapshot makes live (what the node that sent it reports).
    pub fn version(&self) -> Result<uuid::Uuid, SchemaError> {
        Ok(SchemaState::from_snapshot(self.clone())?.schema().version())
    }

    /// The wire form: a format version byte, then bincode (the format definitions are persisted
    /// in).
    pub fn encode(&self) -> Vec<u8> {
        persist::encode_snapshot(self)
    }

    /// Decodes [`SchemaSnapshot::encode`]'s output; malformed input is
    /// [`SchemaError::Corrupt`].
    pub fn decode(bytes: &[u8]) -> Result<SchemaSnapshot, SchemaError> {
        persist::decode_snapshot(bytes)
    }
}

/// One visible difference between two schemas, as reported by a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// A keyspace appeared.
    KeyspaceCreated(String),
    /// A keyspace's definition changed.
    KeyspaceUpdated(String),
    /// A keyspace disappeared (with its tables, which are not listed).
    KeyspaceDropped(String),
    /// A table appeared (also when a table of the same name but another id was replaced: the
    /// old one is then reported dropped first).
    TableCreated { keyspace: String, name: String },
    /// A table's definition changed (same id).
    TableUpdated { keyspace: String, name: String },
    /// A table disappeared.
    TableDropped { keyspace: String, name: String },
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaChange::KeyspaceCreated(k) => write!(f, "created keyspace {k}"),
            SchemaChange::KeyspaceUpdated(k) => write!(f, "updated keyspace {k}"),
            SchemaChange::KeyspaceDropped(k) => write!(f, "dropped keyspace {k}"),
            SchemaChange::TableCreated { keyspace, name } => {
                write!(f, "created table {keyspace}.{name}")
            }
            SchemaChange::TableUpdated { keyspace, name } => {
                write!(f, "updated table {keyspace}.{name}")
            }
            SchemaChange::TableDropped { keyspace, name } => {
                write!(f, "dropped table {keyspace}.{name}")
            }
        }
    }
}

/// What [`super::SchemaStore::merge`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Whether anything new was stored (tombstones of objects this node never had included).
    pub changed: bool,
    /// The visible changes, in keyspace then table order (empty when only tombstones were
    /// learned).
    pub changes: Vec<SchemaChange>,
}

impl MergeOutcome {
    /// True when the live schema (hence the version) changed.
    pub fn schema_changed(&self) -> bool {
        !self.changes.is_empty()
    }
}

/// The visible differences between two schemas (user keyspaces and tables only).
pub fn diff(old: &Schema, new: &Schema) -> Vec<SchemaChange> {
    let mut out = Vec::new();
    for ks in old.user_keyspaces() {
        if new.keyspace(&ks.name).is_none() {
            out.push(SchemaChange::KeyspaceDropped(ks.name.clone()));
        }
    }
    for ks in new.user_keyspaces() {
        match old.keyspace(&ks.name) {
            None => out.push(SchemaChange::KeyspaceCreated(ks.name.clone())),
            Some(o) if **o != **ks => out.push(SchemaChange::KeyspaceUpdated(ks.name.clone())),
            Some(_) => {}
        }
    }
    for ks in old.user_keyspaces() {
        let keyspace_gone = new.keyspace(&ks.name).is_none();
        for t in old.tables(&ks.name) {
            let same_table = new.table(&ks.name, &t.name).is_some_and(|n| n.id == t.id);
            if !keyspace_gone && !same_table {
                out.push(SchemaChange::TableDropped {
                    keyspace: ks.name.clone(),
                    name: t.name.clone(),
                });
            }
        }
    }
    for ks in new.user_keyspaces() {
        for t in new.tables(&ks.name) {
            let key = || (ks.name.clone(), t.name.clone());
            match old.table(&ks.name, &t.name) {
                Some(o) if o.id == t.id => {
                    if **o != **t {
                        let (keyspace, name) = key();
                        out.push(SchemaChange::TableUpdated { keyspace, name });
                    }
                }
                _ => {
                    let (keyspace, name) = key();
                    out.push(SchemaChange::TableCreated { keyspace, name });
                }
            }
        }
    }
    out
}

type TableKey = (String, String);

/// The mergeable schema: the registers described in the module documentation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SchemaState {
    keyspaces: BTreeMap<String, KeyspaceDef>,
    tables: BTreeMap<TableKey, TableDef>,
    /// Keyspace name → drop timestamp.
    dropped_keyspaces: BTreeMap<String, i64>,
    dropped_tables: BTreeMap<TableKey, TableTombstone>,
}

/// Whether definition `a` beats `b` of the same object: the newer one, and on equal timestamps
/// the greater encoding, which every node computes alike.
fn newer<T>(a: &T, b: &T, ts: impl Fn(&T) -> i64, encode: impl Fn(&T) -> Vec<u8>) -> bool {
    match ts(a).cmp(&ts(b)) {
        std::cmp::Ordering::Equal => encode(a) > encode(b),
        o => o == std::cmp::Ordering::Greater,
    }
}

impl SchemaState {
    /// The state holding these definitions and tombstones (as loaded from storage).
    pub fn from_parts(
        keyspaces: Vec<KeyspaceDef>,
        tables: Vec<TableDef>,
        dropped_keyspaces: Vec<KeyspaceTombstone>,
        dropped_tables: Vec<TableTombstone>,
    ) -> SchemaState {
        let mut s = SchemaState::default();
        for k in keyspaces {
            s.join_keyspace(k);
        }
        for t in tables {
            s.join_table(t);
        }
        for d in dropped_keyspaces {
            s.join_keyspace_tombstone(&d.name, d.dropped_at);
        }
        for d in dropped_tables {
            s.join_table_tombstone(d);
        }
        s.normalize();
        s
    }

    /// The state a peer sent. Objects of system keyspaces are ignored; names that DDL could
    /// not have created, virtual tables, and tables whose `keyspace` field is not a valid name
    /// make the whole snapshot invalid (they would corrupt the storage keys).
    pub fn from_snapshot(snapshot: SchemaSnapshot) -> Result<SchemaState, SchemaError> {
        let corrupt = |what: &str, name: &str| {
            Err(SchemaError::Corrupt(format!(
                "remote schema: invalid {what} name {name:?}"
            )))
        };
        for k in &snapshot.keyspaces {
            if !ddl::valid_name(&k.name) {
                return corrupt("keyspace", &k.name);
            }
        }
        for k in &snapshot.dropped_keyspaces {
            if !ddl::valid_name(&k.name) {
                return corrupt("keyspace", &k.name);
            }
        }
        for t in &snapshot.tables {
            if !ddl::valid_name(&t.keyspace) {
                return corrupt("keyspace", &t.keyspace);
            }
            if !ddl::valid_name(&t.name) {
                return corrupt("table", &t.name);
            }
            if t.is_virtual && !is_system_keyspace(&t.keyspace) {
                return Err(SchemaError::Corrupt(format!(
                    "remote schema: user table {}.{} marked virtual",
                    t.keyspace, t.name
                )));
            }
        }
        for t in &snapshot.dropped_tables {
            if !ddl::valid_name(&t.keyspace) {
                return corrupt("keyspace", &t.keyspace);
            }
            if !ddl::valid_name(&t.name) {
                return corrupt("table", &t.name);
            }
        }
        let SchemaSnapshot {
            keyspaces,
            tables,
            dropped_keyspaces,
            dropped_tables,
        } = snapshot;
        Ok(SchemaState::from_parts(
            keyspaces
                .into_iter()
                .filter(|k| !is_system_keyspace(&k.name))
                .collect(),
            tables
                .into_iter()
                .filter(|t| !is_system_keyspace(&t.keyspace))
                .collect(),
            dropped_keyspaces
                .into_iter()
                .filter(|k| !is_system_keyspace(&k.name))
                .collect(),
            dropped_tables
                .into_iter()
                .filter(|t| !is_system_keyspace(&t.keyspace))
                .collect(),
        ))
    }

    /// Everything, as sent to peers.
    pub fn to_snapshot(&self) -> SchemaSnapshot {
        SchemaSnapshot {
            keyspaces: self.keyspaces.values().cloned().collect(),
            tables: self.tables.values().cloned().collect(),
            dropped_keyspaces: self
                .dropped_keyspaces
                .iter()
                .map(|(name, &dropped_at)| KeyspaceTombstone {
                    name: name.clone(),
                    dropped_at,
                })
                .collect(),
            dropped_tables: self.dropped_tables.values().cloned().collect(),
        }
    }

    /// The live schema.
    pub fn schema(&self) -> Schema {
        // `normalize` has removed every definition a tombstone beats; `Schema::new` leaves out
        // tables whose keyspace is not live.
        Schema::new(
            self.keyspaces.values().cloned().collect(),
            self.tables.values().cloned().collect(),
        )
    }

    /// Keyspace definitions, by name.
    pub fn keyspaces(&self) -> &BTreeMap<String, KeyspaceDef> {
        &self.keyspaces
    }

    /// Table definitions, by (keyspace, name).
    pub fn tables(&self) -> &BTreeMap<TableKey, TableDef> {
        &self.tables
    }

    /// Keyspace tombstones: name → drop timestamp.
    pub fn dropped_keyspaces(&self) -> &BTreeMap<String, i64> {
        &self.dropped_keyspaces
    }

    /// Table tombstones, by (keyspace, name).
    pub fn dropped_tables(&self) -> &BTreeMap<TableKey, TableTombstone> {
        &self.dropped_tables
    }

    /// Merges `other` in: the greatest value of every register.
    pub fn join(&mut self, other: SchemaState) {
        for (_, k) in other.keyspaces {
            self.join_keyspace(k);
        }
        for (_, t) in other.tables {
            self.join_table(t);
        }
        for (name, at) in other.dropped_keyspaces {
            self.join_keyspace_tombstone(&name, at);
        }
        for (_, d) in other.dropped_tables {
            self.join_table_tombstone(d);
        }
        self.normalize();
    }

    fn join_keyspace(&mut self, def: KeyspaceDef) {
        match self.keyspaces.get(&def.name) {
            Some(old) if !newer(&def, old, |k| k.timestamp, persist::encode_keyspace) => {}
            _ => {
                self.keyspaces.insert(def.name.clone(), def);
            }
        }
    }

    fn join_table(&mut self, def: TableDef) {
        let key = (def.keyspace.clone(), def.name.clone());
        match self.tables.get(&key) {
            Some(old) if !newer(&def, old, |t| t.timestamp, persist::encode_table) => {}
            _ => {
                self.tables.insert(key, def);
            }
        }
    }

    fn join_keyspace_tombstone(&mut self, name: &str, dropped_at: i64) {
        let at = self
            .dropped_keyspaces
            .entry(name.to_string())
            .or_insert(dropped_at);
        *at = (*at).max(dropped_at);
    }

    fn join_table_tombstone(&mut self, tomb: TableTombstone) {
        let key = (tomb.keyspace.clone(), tomb.name.clone());
        match self.dropped_tables.get(&key) {
            Some(old) if !tomb.beats(old) => {}
            _ => {
                self.dropped_tables.insert(key, tomb);
            }
        }
    }

    /// Forgets what no future merge can make matter (see the module documentation): the result
    /// has the same live schema now and after any merge.
    pub fn normalize(&mut self) {
        let dropped_keyspaces = &self.dropped_keyspaces;
        let keyspace_dropped_at = |ks: &str| dropped_keyspaces.get(ks).copied().unwrap_or(i64::MIN);
        self.keyspaces
            .retain(|name, def| def.timestamp > keyspace_dropped_at(name));
        let dropped_tables = &self.dropped_tables;
        self.tables.retain(|key, def| {
            def.timestamp > keyspace_dropped_at(&key.0)
                && dropped_tables
                    .get(key)
                    .is_none_or(|d| def.timestamp > d.dropped_at)
        });
        // A table tombstone is moot once its keyspace's tombstone is as new, or once a newer
        // definition (every definition left is newer than it) holds the name.
        let tables = &self.tables;
        self.dropped_tables.retain(|key, d| {
            d.dropped_at > keyspace_dropped_at(&key.0) && !tables.contains_key(key)
        });
    }

    /// Applies a local change. A local change supersedes whatever this node knows of the
    /// object, even from peers whose clocks are ahead: a definition's timestamp is raised above
    /// the tombstones and the definition it replaces, a drop's above the definitions it
    /// removes.
    pub fn apply_edit(&mut self, edit: SchemaEdit) {
        match edit {
            SchemaEdit::PutKeyspace(mut def) => {
                let mut floor = self.dropped_keyspaces.get(&def.name).copied();
                if let Some(old) = self.keyspaces.get(&def.name) {
                    floor = floor.max(Some(old.timestamp));
                }
                if let Some(f) = floor {
                    def.timestamp = def.timestamp.max(f.saturating_add(1));
                }
                self.keyspaces.insert(def.name.clone(), def);
            }
            SchemaEdit::DropKeyspace { name, timestamp } => {
                let mut at = timestamp;
                if let Some(def) = self.keyspaces.get(&name) {
                    at = at.max(def.timestamp);
                }
                for ((ks, _), t) in &self.tables {
                    if *ks == name {
                        at = at.max(t.timestamp);
                    }
                }
                self.join_keyspace_tombstone(&name, at);
            }
            SchemaEdit::PutTable(def) => {
                let mut def = *def;
                let key = (def.keyspace.clone(), def.name.clone());
                let floor = [
                    self.dropped_keyspaces.get(&def.keyspace).copied(),
                    self.dropped_tables.get(&key).map(|d| d.dropped_at),
                    self.tables.get(&key).map(|t| t.timestamp),
                ]
                .into_iter()
                .flatten()
                .max();
                if let Some(f) = floor {
                    def.timestamp = def.timestamp.max(f.saturating_add(1));
                }
                self.tables.insert(key, def);
            }
            SchemaEdit::DropTable {
                keyspace,
                name,
                timestamp,
            } => {
                let key = (keyspace, name);
                if let Some(def) = self.tables.get(&key) {
                    let tomb = TableTombstone {
                        keyspace: key.0.clone(),
                        name: key.1.clone(),
                        id: def.id,
                        dropped_at: timestamp.max(def.timestamp),
                    };
                    self.join_table_tombstone(tomb);
                }
            }
        }
        self.normalize();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::{ColumnDef, ColumnKind, TableOptions};
    use proptest::prelude::*;
    use ringdb_cql::types::CqlType;

    pub(crate) fn keyspace(name: &str, ts: i64, rf: &str) -> KeyspaceDef {
        KeyspaceDef {
            name: name.into(),
            replication: vec![
                (
                    "class".into(),
                    "org.apache.cassandra.locator.SimpleStrategy".into(),
                ),
                ("replication_factor".into(), rf.into()),
            ],
            durable_writes: true,
            timestamp: ts,
        }
    }

    pub(crate) fn table(ks: &str, name: &str, id: u128, ts: i64, extra: &[&str]) -> TableDef {
        let mut columns = vec![ColumnDef {
            id: 0,
            name: "k".into(),
            ty: CqlType::Int,
            kind: ColumnKind::PartitionKey(0),
        }];
        for (i, c) in extra.iter().enumerate() {
            columns.push(ColumnDef {
                id: i as u32 + 1,
                name: c.to_string(),
                ty: CqlType::Text,
                kind: ColumnKind::Regular,
            });
        }
        TableDef {
            id: uuid::Uuid::from_u128(id),
            keyspace: ks.into(),
            name: name.into(),
            next_column_id: columns.len() as u32,
            columns,
            options: TableOptions::default(),
            dropped_columns: vec![],
            timestamp: ts,
            is_virtual: false,
        }
    }

    fn state(edits: Vec<SchemaEdit>) -> SchemaState {
        let mut s = SchemaState::default();
        for e in edits {
            s.apply_edit(e);
        }
        s
    }

    fn joined(a: &SchemaState, b: &SchemaState) -> SchemaState {
        let mut out = a.clone();
        out.join(b.clone());
        out
    }

    fn live_tables(s: &SchemaState) -> Vec<(String, String, TableId)> {
        let schema = s.schema();
        schema
            .user_keyspaces()
            .flat_map(|k| {
                schema
                    .tables(&k.name)
                    .map(|t| (t.keyspace.clone(), t.name.clone(), t.id))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn concurrent_creates_of_one_table_pick_one_winner() {
        let base = state(vec![SchemaEdit::PutKeyspace(keyspace("ks", 10, "1"))]);
        let mut a = base.clone();
        a.apply_edit(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))));
        let mut b = base.clone();
        b.apply_edit(SchemaEdit::PutTable(Box::new(table(
            "ks",
            "t",
            2,
            20,
            &["v"],
        ))));
        let ab = joined(&a, &b);
        let ba = joined(&b, &a);
        assert_eq!(ab, ba);
        assert_eq!(ab.schema().version(), ba.schema().version());
        assert_eq!(live_tables(&ab).len(), 1);
        // Different timestamps: the newer wins whatever its id.
        let mut c = base.clone();
        c.apply_edit(SchemaEdit::PutTable(Box::new(table("ks", "t", 0, 21, &[]))));
        assert_eq!(live_tables(&joined(&ab, &c))[0].2, uuid::Uuid::from_u128(0));
        assert_eq!(live_tables(&joined(&c, &ab))[0].2, uuid::Uuid::from_u128(0));
    }

    #[test]
    fn tombstones_beat_older_definitions_and_lose_to_newer_ones() {
        let mut a = state(vec![
            SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")),
            SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))),
        ]);
        let b = a.clone();
        a.apply_edit(SchemaEdit::DropTable {
            keyspace: "ks".into(),
            name: "t".into(),
            timestamp: 30,
        });
        assert!(live_tables(&a).is_empty());
        // The peer that still has the table learns the drop; the drop is not undone by it.
        assert!(live_tables(&joined(&b, &a)).is_empty());
        assert!(live_tables(&joined(&a, &b)).is_empty());
        // A tie goes to the tombstone.
        let mut tie = b.clone();
        tie.join_table_tombstone(TableTombstone {
            keyspace: "ks".into(),
            name: "t".into(),
            id: uuid::Uuid::from_u128(1),
            dropped_at: 20,
        });
        tie.normalize();
        assert!(live_tables(&tie).is_empty());
        // A newer create beats the drop.
        let mut c = b.clone();
        c.apply_edit(SchemaEdit::PutTable(Box::new(table("ks", "t", 7, 40, &[]))));
        let ac = joined(&a, &c);
        assert_eq!(
            live_tables(&ac),
            vec![("ks".into(), "t".into(), uuid::Uuid::from_u128(7))]
        );
        // ... and the tombstone it superseded is forgotten.
        assert!(ac.dropped_tables.is_empty());
    }

    #[test]
    fn keyspace_drop_removes_older_tables_only() {
        let a = state(vec![
            SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")),
            SchemaEdit::PutTable(Box::new(table("ks", "old", 1, 20, &[]))),
        ]);
        let mut dropped = a.clone();
        dropped.apply_edit(SchemaEdit::DropKeyspace {
            name: "ks".into(),
            timestamp: 30,
        });
        dropped.apply_edit(SchemaEdit::PutKeyspace(keyspace("ks", 40, "2")));
        // Another node created a table after the drop, concurrently with the re-creation.
        let mut other = a.clone();
        other.apply_edit(SchemaEdit::PutTable(Box::new(table(
            "ks",
            "new",
            2,
            35,
            &[],
        ))));
        let m = joined(&dropped, &other);
        assert_eq!(
            live_tables(&m),
            vec![("ks".into(), "new".into(), uuid::Uuid::from_u128(2))]
        );
        assert_eq!(m.schema().keyspace("ks").map(|k| k.timestamp), Some(40));
        assert_eq!(m, joined(&other, &dropped));
    }

    #[test]
    fn local_edits_win_over_future_timestamps_learned_from_peers() {
        let mut a = state(vec![SchemaEdit::PutKeyspace(keyspace("ks", 1_000, "1"))]);
        a.apply_edit(SchemaEdit::DropKeyspace {
            name: "ks".into(),
            timestamp: 5,
        });
        assert!(a.schema().keyspace("ks").is_none());
        // The clock is still behind the tombstone: the create must still take effect.
        a.apply_edit(SchemaEdit::PutKeyspace(keyspace("ks", 6, "1")));
        assert_eq!(a.schema().keyspace("ks").map(|k| k.timestamp), Some(1_001));
        a.apply_edit(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 7, &[]))));
        assert_eq!(
            a.schema().table("ks", "t").map(|t| t.timestamp),
            Some(1_001)
        );
    }

    #[test]
    fn system_objects_and_bad_names_in_snapshots() {
        let snap = SchemaSnapshot {
            keyspaces: vec![keyspace("system", 1, "1"), keyspace("ks", 1, "1")],
            dropped_keyspaces: vec![KeyspaceTombstone {
                name: "system_schema".into(),
                dropped_at: 99,
            }],
            ..Default::default()
        };
        let s = SchemaState::from_snapshot(snap).unwrap();
        assert_eq!(s.keyspaces.len(), 1);
        assert!(s.dropped_keyspaces.is_empty());
        let bad = SchemaSnapshot {
            keyspaces: vec![keyspace("a/b", 1, "1")],
            ..Default::default()
        };
        assert!(SchemaState::from_snapshot(bad).is_err());
        let bad = SchemaSnapshot {
            tables: vec![table("ks", "", 1, 1, &[])],
            ..Default::default()
        };
        assert!(SchemaState::from_snapshot(bad).is_err());
    }

    #[test]
    fn snapshot_wire_round_trip() {
        let s = state(vec![
            SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")),
            SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &["v"]))),
            SchemaEdit::PutTable(Box::new(table("ks", "u", 2, 20, &[]))),
            SchemaEdit::DropTable {
                keyspace: "ks".into(),
                name: "u".into(),
                timestamp: 30,
            },
            SchemaEdit::PutKeyspace(keyspace("gone", 10, "1")),
            SchemaEdit::DropKeyspace {
                name: "gone".into(),
                timestamp: 30,
            },
        ]);
        let snap = s.to_snapshot();
        assert_eq!(snap.dropped_tables.len(), 1);
        assert_eq!(snap.dropped_keyspaces.len(), 1);
        let bytes = snap.encode();
        assert_eq!(SchemaSnapshot::decode(&bytes).unwrap(), snap);
        assert_eq!(snap.version().unwrap(), s.schema().version());
        assert!(SchemaSnapshot::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(SchemaSnapshot::decode(&[]).is_err());
    }

    /// A random edit over a small name space, so that edits collide.
    pub(crate) fn arb_edit() -> impl Strategy<Value = SchemaEdit> {
        let ks = prop::sample::select(vec!["ks1", "ks2"]);
        let tname = prop::sample::select(vec!["t1", "t2"]);
        let ts = 1i64..40;
        prop_oneof![
            (ks.clone(), ts.clone(), prop::sample::select(vec!["1", "2"]))
                .prop_map(|(k, ts, rf)| SchemaEdit::PutKeyspace(keyspace(k, ts, rf))),
            (ks.clone(), ts.clone()).prop_map(|(k, ts)| SchemaEdit::DropKeyspace {
                name: k.into(),
                timestamp: ts
            }),
            (
                ks.clone(),
                tname.clone(),
                0u128..4,
                ts.clone(),
                any::<bool>()
            )
                .prop_map(|(k, t, n, ts, extra)| {
                    let cols: &[&str] = if extra { &["v"] } else { &[] };
                    // Ids are random in real life: never shared by two tables.
                    let id = (u128::from(k.as_bytes()[2]) << 16)
                        | (u128::from(t.as_bytes()[1]) << 8)
                        | n;
                    SchemaEdit::PutTable(Box::new(table(k, t, id, ts, cols)))
                }),
            (ks, tname, ts).prop_map(|(k, t, ts)| SchemaEdit::DropTable {
                keyspace: k.into(),
                name: t.into(),
                timestamp: ts
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The join is a semilattice join up to normalization: commutative, associative,
        /// idempotent, on the whole state (not just the live schema).
        #[test]
        fn join_is_commutative_associative_idempotent(
            ea in prop::collection::vec(arb_edit(), 0..8),
            eb in prop::collection::vec(arb_edit(), 0..8),
            ec in prop::collection::vec(arb_edit(), 0..8),
        ) {
            let (a, b, c) = (state(ea), state(eb), state(ec));
            prop_assert_eq!(joined(&a, &b), joined(&b, &a));
            prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)));
            prop_assert_eq!(joined(&a, &a), a.clone());
            let ab = joined(&a, &b);
            prop_assert_eq!(joined(&ab, &b), ab.clone());
            // A snapshot carries the whole state.
            prop_assert_eq!(SchemaState::from_snapshot(a.to_snapshot()).unwrap(), a.clone());
        }
    }
}

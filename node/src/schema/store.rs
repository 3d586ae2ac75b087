//! The current schema: persisted, reloaded on start, changed by local DDL and by merges of
//! peers' schemas, swapped whole on change.
//!
//! The store owns the mergeable state (`SchemaState`, see [`super::merge`]) and publishes the
//! live [`Schema`] derived from it. Both kinds of change — a local edit ([`SchemaStore::update`])
//! and a peer's snapshot ([`SchemaStore::merge`]) — go through one lock and one commit path:
//! compute the next state, write what differs to the engine's meta space, flush, then publish.
//! So two concurrent changes never both build on the same old state, and what is published has
//! been made durable.
//!
//! The meta space holds one key per register (names are restricted to `[A-Za-z0-9_]`, so `/`
//! separates unambiguously); each value is a format version byte and the bincode encoding:
//!
//! - `schema/keyspace/<name>`: a keyspace definition;
//! - `schema/table/<keyspace>/<name>`: a table definition;
//! - `schema/dropped_keyspace/<name>`: a keyspace tombstone;
//! - `schema/dropped_table/<keyspace>/<name>`: a table tombstone;
//! - `schema/purge/<table id>`: a table that stopped being live (dropped here or by a peer)
//!   whose local data is still to be deleted (by [`super::sync::purge_dropped_tables`]).
//!
//! The meta space has no multi-key transaction, so writes are ordered to make every crash state
//! safe: purge records first (a record for a table still live is discarded on open), then
//! tombstones (a definition a persisted tombstone beats is dead on reload whether or not its
//! deletion made it), then definitions, and tombstones made moot last. A state that is only
//! partly written is still a valid state: a later merge with any peer completes it.
//!
//! Subscribers (gossip of the schema version, the purge task, the sync driver) watch the live
//! schema through a `tokio::sync::watch` channel; it fires only when the live schema changes, not
//! when only a tombstone was learned.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};

use super::merge::{self, MergeOutcome, SchemaChange, SchemaSnapshot, SchemaState, TableTombstone};
use super::persist::{self, PendingPurge};
use super::{KeyspaceDef, Schema, SchemaError, TableDef, TableId};
use crate::storage::Engine;

const KEYSPACE_PREFIX: &[u8] = b"schema/keyspace/";
const TABLE_PREFIX: &[u8] = b"schema/table/";
const DROPPED_KEYSPACE_PREFIX: &[u8] = b"schema/dropped_keyspace/";
const DROPPED_TABLE_PREFIX: &[u8] = b"schema/dropped_table/";
const PURGE_PREFIX: &[u8] = b"schema/purge/";

fn keyspace_key(name: &str) -> Vec<u8> {
    [KEYSPACE_PREFIX, name.as_bytes()].concat()
}

fn table_key(keyspace: &str, name: &str) -> Vec<u8> {
    [TABLE_PREFIX, keyspace.as_bytes(), b"/", name.as_bytes()].concat()
}

fn dropped_keyspace_key(name: &str) -> Vec<u8> {
    [DROPPED_KEYSPACE_PREFIX, name.as_bytes()].concat()
}

fn dropped_table_key(keyspace: &str, name: &str) -> Vec<u8> {
    [
        DROPPED_TABLE_PREFIX,
        keyspace.as_bytes(),
        b"/",
        name.as_bytes(),
    ]
    .concat()
}

fn purge_key(id: TableId) -> Vec<u8> {
    [PURGE_PREFIX, id.as_hyphenated().to_string().as_bytes()].concat()
}

/// One local change to the schema, as applied by [`SchemaStore::apply`] and
/// [`SchemaStore::update`].
#[derive(Debug, Clone)]
pub enum SchemaEdit {
    /// Create or replace a keyspace.
    PutKeyspace(KeyspaceDef),
    /// Drop a keyspace and all its tables, leaving a tombstone at `timestamp` (raised, if need
    /// be, above the definitions it removes).
    DropKeyspace { name: String, timestamp: i64 },
    /// Create or replace a table.
    PutTable(Box<TableDef>),
    /// Drop a table, leaving a tombstone at `timestamp` (raised, if need be, above the
    /// definition it removes).
    DropTable {
        keyspace: String,
        name: String,
        timestamp: i64,
    },
}

/// Owns the current schema.
pub struct SchemaStore {
    engine: Arc<dyn Engine>,
    current: watch::Sender<Arc<Schema>>,
    /// The mergeable state `current` is derived from. Its lock serializes changes: it is held
    /// across the plan-persist-publish sequence (no `.await` inside).
    state: Mutex<SchemaState>,
    /// What merges from peers changed (local DDL is reported by its own statement's answer).
    merged: broadcast::Sender<Vec<SchemaChange>>,
}

impl std::fmt::Debug for SchemaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaStore")
            .field("version", &self.current().version())
            .finish()
    }
}

impl SchemaStore {
    /// Loads the persisted schema from `engine`'s meta space. A definition that cannot be
    /// decoded is an error: starting with part of the schema missing would hide data.
    pub fn open(engine: Arc<dyn Engine>) -> Result<Arc<SchemaStore>, SchemaError> {
        let mut keyspaces = Vec::new();
        for (_, v) in engine.meta_scan_prefix(KEYSPACE_PREFIX)? {
            keyspaces.push(persist::decode_keyspace(&v)?);
        }
        let mut tables = Vec::new();
        for (_, v) in engine.meta_scan_prefix(TABLE_PREFIX)? {
            tables.push(persist::decode_table(&v)?);
        }
        let mut dropped_keyspaces = Vec::new();
        for (_, v) in engine.meta_scan_prefix(DROPPED_KEYSPACE_PREFIX)? {
            dropped_keyspaces.push(persist::decode_keyspace_tombstone(&v)?);
        }
        let mut dropped_tables = Vec::new();
        for (_, v) in engine.meta_scan_prefix(DROPPED_TABLE_PREFIX)? {
            dropped_tables.push(persist::decode_table_tombstone(&v)?);
        }
        // What is on disk, and what it means once normalized: a crash in the middle of a commit
        // may have left definitions that a tombstone beats. (Keyspace tombstones are never
        // made moot, so they need no clean-up.)
        let raw = RawState {
            keyspaces: keyspaces.clone(),
            tables: tables.clone(),
            dropped_tables: dropped_tables.clone(),
        };
        let state = SchemaState::from_parts(keyspaces, tables, dropped_keyspaces, dropped_tables);
        let schema = state.schema();
        let store = SchemaStore {
            engine,
            current: watch::channel(Arc::new(schema)).0,
            state: Mutex::new(SchemaState::default()),
            merged: broadcast::channel(64).0,
        };
        store.clean_up_after_crash(&raw, &state)?;
        *store.lock() = state;
        Ok(Arc::new(store))
    }

    /// Deletes what a normalized reload made moot and purge records of live tables (both can
    /// only be left by a crash in the middle of a commit).
    fn clean_up_after_crash(&self, raw: &RawState, state: &SchemaState) -> Result<(), SchemaError> {
        let mut dirty = false;
        for k in &raw.keyspaces {
            if state.keyspaces().get(&k.name) != Some(k) {
                self.engine.meta_delete(&keyspace_key(&k.name))?;
                dirty = true;
            }
        }
        for t in &raw.tables {
            if state.tables().get(&(t.keyspace.clone(), t.name.clone())) != Some(t) {
                self.engine.meta_delete(&table_key(&t.keyspace, &t.name))?;
                dirty = true;
            }
        }
        for d in &raw.dropped_tables {
            if state
                .dropped_tables()
                .get(&(d.keyspace.clone(), d.name.clone()))
                != Some(d)
            {
                self.engine
                    .meta_delete(&dropped_table_key(&d.keyspace, &d.name))?;
                dirty = true;
            }
        }
        let live = live_table_ids(&self.current());
        for p in self.pending_purges()? {
            if live.contains(&p.id) {
                self.engine.meta_delete(&purge_key(p.id))?;
                dirty = true;
            }
        }
        if dirty {
            self.engine.flush()?;
        }
        Ok(())
    }

    /// The current live schema.
    pub fn current(&self) -> Arc<Schema> {
        self.current.borrow().clone()
    }

    /// A receiver notified whenever the live schema changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Schema>> {
        self.current.subscribe()
    }

    /// Everything this node knows of the user schema, definitions and tombstones, as sent to
    /// peers.
    pub fn snapshot(&self) -> SchemaSnapshot {
        self.lock().to_snapshot()
    }

    fn lock(&self) -> MutexGuard<'_, SchemaState> {
        // The state is replaced only after everything that can fail, so a panic while holding
        // the lock cannot leave it half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds a change from the current snapshot with `plan` and applies it, atomically with
    /// respect to other changes. `plan` returns `None` for "nothing to do".
    pub fn update<T>(
        &self,
        plan: impl FnOnce(&Schema) -> Result<(Option<SchemaEdit>, T), SchemaError>,
    ) -> Result<T, SchemaError> {
        let mut state = self.lock();
        let schema = self.current();
        let (edit, out) = plan(&schema)?;
        if let Some(edit) = edit {
            let mut next = state.clone();
            next.apply_edit(edit);
            self.commit(&mut state, next)?;
        }
        Ok(out)
    }

    /// A receiver of the visible changes each merge from a peer made (for client
    /// `SCHEMA_CHANGE` events). A receiver that falls more than 64 merges behind loses the
    /// oldest.
    pub fn subscribe_merged(&self) -> broadcast::Receiver<Vec<SchemaChange>> {
        self.merged.subscribe()
    }

    /// Applies one change.
    pub fn apply(&self, edit: SchemaEdit) -> Result<(), SchemaError> {
        self.update(|_| Ok((Some(edit), ())))
    }

    /// Merges a peer's schema into ours (see [`super::merge`] for the rules), persists and
    /// publishes the result, and says what changed. An invalid snapshot (names DDL could not
    /// have created) is refused whole, changing nothing.
    pub fn merge(&self, remote: SchemaSnapshot) -> Result<MergeOutcome, SchemaError> {
        let remote = SchemaState::from_snapshot(remote)?;
        let mut state = self.lock();
        let old = self.current();
        let mut next = state.clone();
        next.join(remote);
        let changed = self.commit(&mut state, next)?;
        let changes = if changed {
            merge::diff(&old, &self.current())
        } else {
            Vec::new()
        };
        if !changes.is_empty() {
            // Nobody listening (no CQL server) is fine.
            let _ = self.merged.send(changes.clone());
        }
        Ok(MergeOutcome { changed, changes })
    }

    /// Makes `next` the state: writes the registers that differ, flushes, publishes the live
    /// schema if it changed. Returns whether anything differed.
    fn commit(&self, state: &mut SchemaState, mut next: SchemaState) -> Result<bool, SchemaError> {
        next.normalize();
        if next == *state {
            return Ok(false);
        }
        let old_schema = self.current();
        let new_schema = next.schema();

        // 1. Tables that stop being live: their data is to be deleted. (One that is live again
        //    — an ALTER newer than its drop won — keeps whatever data it still has.)
        let was_live = live_table_ids(&old_schema);
        let still_live = live_table_ids(&new_schema);
        for id in still_live.difference(&was_live) {
            self.engine.meta_delete(&purge_key(*id))?;
        }
        for ks in old_schema.user_keyspaces() {
            for t in old_schema.tables(&ks.name) {
                if !still_live.contains(&t.id) {
                    let record = PendingPurge {
                        keyspace: t.keyspace.clone(),
                        name: t.name.clone(),
                        id: t.id,
                    };
                    self.engine
                        .meta_put(&purge_key(t.id), &persist::encode_pending_purge(&record))?;
                }
            }
        }
        // 2. New tombstones.
        for (name, &at) in next.dropped_keyspaces() {
            if state.dropped_keyspaces().get(name) != Some(&at) {
                let tomb = merge::KeyspaceTombstone {
                    name: name.clone(),
                    dropped_at: at,
                };
                self.engine.meta_put(
                    &dropped_keyspace_key(name),
                    &persist::encode_keyspace_tombstone(&tomb),
                )?;
            }
        }
        for (key, tomb) in next.dropped_tables() {
            if state.dropped_tables().get(key) != Some(tomb) {
                self.engine.meta_put(
                    &dropped_table_key(&key.0, &key.1),
                    &persist::encode_table_tombstone(tomb),
                )?;
            }
        }
        // 3. Definitions: tables first, so that a crash leaves a keyspace with fewer tables
        //    rather than tables without their keyspace.
        for key in state.tables().keys() {
            if !next.tables().contains_key(key) {
                self.engine.meta_delete(&table_key(&key.0, &key.1))?;
            }
        }
        for name in state.keyspaces().keys() {
            if !next.keyspaces().contains_key(name) {
                self.engine.meta_delete(&keyspace_key(name))?;
            }
        }
        for (name, def) in next.keyspaces() {
            if state.keyspaces().get(name) != Some(def) {
                self.engine
                    .meta_put(&keyspace_key(name), &persist::encode_keyspace(def))?;
            }
        }
        for (key, def) in next.tables() {
            if state.tables().get(key) != Some(def) {
                self.engine
                    .meta_put(&table_key(&key.0, &key.1), &persist::encode_table(def))?;
            }
        }
        // 4. Tombstones made moot (keyspace tombstones never are).
        for key in state.dropped_tables().keys() {
            if !next.dropped_tables().contains_key(key) {
                self.engine
                    .meta_delete(&dropped_table_key(&key.0, &key.1))?;
            }
        }
        self.engine.flush()?;

        *state = next;
        if new_schema.version() != old_schema.version() {
            self.current.send_replace(Arc::new(new_schema));
        }
        Ok(true)
    }

    /// Dropped tables whose local data is still to be deleted.
    pub fn pending_purges(&self) -> Result<Vec<PendingPurge>, SchemaError> {
        self.engine
            .meta_scan_prefix(PURGE_PREFIX)?
            .into_iter()
            .map(|(_, v)| persist::decode_pending_purge(&v))
            .collect()
    }

    /// Records that the local data of table `id` has been deleted.
    pub fn purge_done(&self, id: TableId) -> Result<(), SchemaError> {
        self.engine.meta_delete(&purge_key(id))?;
        Ok(())
    }
}

/// What was read from the meta space, before normalization.
struct RawState {
    keyspaces: Vec<KeyspaceDef>,
    tables: Vec<TableDef>,
    dropped_tables: Vec<TableTombstone>,
}

/// Ids of the live user tables.
pub(crate) fn live_table_ids(schema: &Schema) -> HashSet<TableId> {
    schema
        .user_keyspaces()
        .flat_map(|k| schema.tables(&k.name).map(|t| t.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::merge::tests::{arb_edit, keyspace, table};
    use crate::storage::MemoryEngine;
    use proptest::prelude::*;

    fn open() -> (Arc<dyn Engine>, Arc<SchemaStore>) {
        let engine: Arc<dyn Engine> = Arc::new(MemoryEngine::new());
        let store = SchemaStore::open(engine.clone()).unwrap();
        (engine, store)
    }

    fn pending_ids(store: &SchemaStore) -> HashSet<TableId> {
        store
            .pending_purges()
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect()
    }

    #[test]
    fn tombstones_and_purge_records_survive_reopen() {
        let (engine, store) = open();
        store
            .apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
            .unwrap();
        store
            .apply(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))))
            .unwrap();
        store
            .apply(SchemaEdit::PutTable(Box::new(table("ks", "u", 2, 20, &[]))))
            .unwrap();
        store
            .apply(SchemaEdit::PutKeyspace(keyspace("gone", 10, "1")))
            .unwrap();
        store
            .apply(SchemaEdit::PutTable(Box::new(table(
                "gone",
                "g",
                3,
                20,
                &[],
            ))))
            .unwrap();
        let before = store.current().version();
        store
            .apply(SchemaEdit::DropTable {
                keyspace: "ks".into(),
                name: "u".into(),
                timestamp: 30,
            })
            .unwrap();
        store
            .apply(SchemaEdit::DropKeyspace {
                name: "gone".into(),
                timestamp: 30,
            })
            .unwrap();
        assert_ne!(store.current().version(), before);
        assert_eq!(
            pending_ids(&store),
            [uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3)].into()
        );
        let snapshot = store.snapshot();
        assert_eq!(snapshot.dropped_keyspaces.len(), 1);
        assert_eq!(snapshot.dropped_tables.len(), 1);
        assert_eq!(snapshot.tables.len(), 1);

        let reopened = SchemaStore::open(engine.clone()).unwrap();
        assert_eq!(reopened.snapshot(), snapshot);
        assert_eq!(reopened.current().version(), store.current().version());
        assert_eq!(pending_ids(&reopened).len(), 2);
        reopened.purge_done(uuid::Uuid::from_u128(2)).unwrap();
        assert_eq!(pending_ids(&reopened), [uuid::Uuid::from_u128(3)].into());
    }

    #[test]
    fn reopen_cleans_up_after_a_crash_mid_commit() {
        let (engine, store) = open();
        store
            .apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
            .unwrap();
        store
            .apply(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))))
            .unwrap();
        // As if a commit stopped after writing the tombstone, before deleting the definition,
        // and a purge record were left for a table that is live.
        let tomb = TableTombstone {
            keyspace: "ks".into(),
            name: "t".into(),
            id: uuid::Uuid::from_u128(1),
            dropped_at: 30,
        };
        engine
            .meta_put(
                &dropped_table_key("ks", "t"),
                &persist::encode_table_tombstone(&tomb),
            )
            .unwrap();
        let live = PendingPurge {
            keyspace: "ks".into(),
            name: "x".into(),
            id: uuid::Uuid::from_u128(9),
        };
        engine
            .meta_put(&purge_key(live.id), &persist::encode_pending_purge(&live))
            .unwrap();
        store
            .apply(SchemaEdit::PutTable(Box::new(table("ks", "x", 9, 20, &[]))))
            .unwrap();
        drop(store);
        let reopened = SchemaStore::open(engine.clone()).unwrap();
        assert!(reopened.current().table("ks", "t").is_none());
        assert!(engine.meta_get(&table_key("ks", "t")).unwrap().is_none());
        assert!(pending_ids(&reopened).is_empty());
    }

    #[test]
    fn merge_reports_changes_and_refuses_bad_snapshots() {
        let (_, a) = open();
        let (_, b) = open();
        a.apply(SchemaEdit::PutKeyspace(keyspace("ks", 10, "1")))
            .unwrap();
        a.apply(SchemaEdit::PutTable(Box::new(table("ks", "t", 1, 20, &[]))))
            .unwrap();
        let mut rx = b.subscribe();
        let outcome = b.merge(a.snapshot()).unwrap();
        assert!(outcome.changed);
        assert_eq!(
            outcome.changes,
            vec![
                merge::SchemaChange::KeyspaceCreated("ks".into()),
                merge::SchemaChange::TableCreated {
                    keyspace: "ks".into(),
                    name: "t".into()
                }
            ]
        );
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        assert_eq!(b.merge(a.snapshot()).unwrap(), MergeOutcome::default());
        assert!(!rx.has_changed().unwrap());
        // A tombstone of something never seen: stored, but nothing visible changes.
        let mut c = SchemaSnapshot::default();
        c.dropped_keyspaces.push(merge::KeyspaceTombstone {
            name: "other".into(),
            dropped_at: 5,
        });
        let outcome = b.merge(c).unwrap();
        assert!(outcome.changed && !outcome.schema_changed());
        assert!(!rx.has_changed().unwrap());
        let bad = SchemaSnapshot {
            keyspaces: vec![keyspace("../x", 1, "1")],
            ..Default::default()
        };
        assert!(b.merge(bad).is_err());
        assert_eq!(b.current().version(), a.current().version());
    }

    /// One step of the convergence test.
    #[derive(Debug, Clone)]
    enum Step {
        /// A local edit on a node.
        Edit(usize, SchemaEdit),
        /// Node `.1` merges node `.0`'s snapshot.
        Exchange(usize, usize),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..3, arb_edit()).prop_map(|(n, e)| Step::Edit(n, e)),
            (0usize..3, 0usize..3).prop_map(|(a, b)| Step::Exchange(a, b)),
        ]
    }

    fn live_ids_of(store: &SchemaStore) -> HashSet<TableId> {
        live_table_ids(&store.current())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Three nodes edit the schema with random timestamps and exchange snapshots in a random
        /// order; once everyone has merged everyone, all hold the same schema (and the same
        /// state), whatever the order. Along the way, every table that stopped being live on a
        /// node has a purge record there, and no live table has one.
        #[test]
        fn stores_converge_whatever_the_exchange_order(
            steps in prop::collection::vec(arb_step(), 0..40),
            final_order in Just([0usize, 1, 2]).prop_shuffle(),
        ) {
            let nodes: Vec<(Arc<dyn Engine>, Arc<SchemaStore>)> = (0..3).map(|_| open()).collect();
            let mut ever_live: Vec<HashSet<TableId>> = vec![HashSet::new(); 3];
            for step in steps {
                match step {
                    Step::Edit(n, e) => nodes[n].1.apply(e).unwrap(),
                    Step::Exchange(from, to) => {
                        let snapshot = nodes[from].1.snapshot();
                        nodes[to].1.merge(snapshot).unwrap();
                    }
                }
                for (n, (_, store)) in nodes.iter().enumerate() {
                    ever_live[n].extend(live_ids_of(store));
                }
            }
            // Everyone merges everyone, twice around, in a random order.
            for _ in 0..2 {
                for &from in &final_order {
                    for to in 0..3 {
                        let snapshot = nodes[from].1.snapshot();
                        nodes[to].1.merge(snapshot).unwrap();
                    }
                }
            }
            let version = nodes[0].1.current().version();
            let snapshot = nodes[0].1.snapshot();
            for (n, (engine, store)) in nodes.iter().enumerate() {
                prop_assert_eq!(store.current().version(), version);
                prop_assert_eq!(&store.snapshot(), &snapshot);
                let live = live_ids_of(store);
                let pending = pending_ids(store);
                prop_assert!(live.is_disjoint(&pending));
                let vanished: HashSet<TableId> = ever_live[n].difference(&live).copied().collect();
                prop_assert!(vanished.is_subset(&pending), "{:?} not in {:?}", vanished, pending);
                // What was persisted is what is held.
                let reopened = SchemaStore::open(engine.clone()).unwrap();
                prop_assert_eq!(&reopened.snapshot(), &snapshot);
                prop_assert_eq!(reopened.current().version(), version);
            }
        }
    }
}

//! The current schema: persisted, reloaded on start, swapped whole on change.
//!
//! Definitions are kept in the engine's meta space, one key per object:
//! `schema/keyspace/<name>` and `schema/table/<keyspace>/<name>` (names are restricted to
//! `[A-Za-z0-9_]`, so `/` separates unambiguously). Each value is a format version byte and the
//! bincode encoding of the definition. A change is written to the meta space first, then the new
//! snapshot is published; changes are serialized by a lock so two concurrent DDLs cannot both
//! build on the same old snapshot.
//!
//! Subscribers (gossip, later) watch the snapshot through a `tokio::sync::watch` channel.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{persist, KeyspaceDef, Schema, SchemaError, TableDef};
use crate::storage::Engine;

const KEYSPACE_PREFIX: &[u8] = b"schema/keyspace/";
const TABLE_PREFIX: &[u8] = b"schema/table/";

fn keyspace_key(name: &str) -> Vec<u8> {
    [KEYSPACE_PREFIX, name.as_bytes()].concat()
}

fn table_key(keyspace: &str, name: &str) -> Vec<u8> {
    [TABLE_PREFIX, keyspace.as_bytes(), b"/", name.as_bytes()].concat()
}

/// One change to the schema, as applied by [`SchemaStore::apply`].
#[derive(Debug, Clone)]
pub enum SchemaEdit {
    /// Create or replace a keyspace.
    PutKeyspace(KeyspaceDef),
    /// Remove a keyspace and all its tables.
    DropKeyspace(String),
    /// Create or replace a table.
    PutTable(Box<TableDef>),
    /// Remove a table.
    DropTable { keyspace: String, name: String },
}

/// Owns the current schema snapshot.
pub struct SchemaStore {
    engine: Arc<dyn Engine>,
    current: watch::Sender<Arc<Schema>>,
    /// Serializes changes (held across the persist-then-publish sequence; no `.await` inside).
    change_lock: Mutex<()>,
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
        let schema = Arc::new(Schema::new(keyspaces, tables));
        let (current, _) = watch::channel(schema);
        Ok(Arc::new(SchemaStore {
            engine,
            current,
            change_lock: Mutex::new(()),
        }))
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Schema> {
        self.current.borrow().clone()
    }

    /// A receiver notified whenever the snapshot changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Schema>> {
        self.current.subscribe()
    }

    /// Builds a change from the current snapshot with `plan` and applies it, atomically with
    /// respect to other changes. `plan` returns `None` for "nothing to do".
    pub fn update<T>(
        &self,
        plan: impl FnOnce(&Schema) -> Result<(Option<SchemaEdit>, T), SchemaError>,
    ) -> Result<T, SchemaError> {
        let _guard = self.change_lock.lock().unwrap_or_else(|e| e.into_inner());
        let schema = self.current();
        let (edit, out) = plan(&schema)?;
        if let Some(edit) = edit {
            let next = self.persist(&schema, edit)?;
            self.engine.flush()?;
            self.current.send_replace(Arc::new(next));
        }
        Ok(out)
    }

    /// Applies one change.
    pub fn apply(&self, edit: SchemaEdit) -> Result<(), SchemaError> {
        self.update(|_| Ok((Some(edit), ())))
    }

    fn persist(&self, schema: &Schema, edit: SchemaEdit) -> Result<Schema, SchemaError> {
        Ok(match edit {
            SchemaEdit::PutKeyspace(ks) => {
                self.engine
                    .meta_put(&keyspace_key(&ks.name), &persist::encode_keyspace(&ks))?;
                schema.with_keyspace(ks)
            }
            SchemaEdit::DropKeyspace(name) => {
                // Tables first: a crash in between leaves a keyspace with fewer tables, never
                // tables without their keyspace.
                for t in schema.tables(&name) {
                    self.engine.meta_delete(&table_key(&name, &t.name))?;
                }
                self.engine.meta_delete(&keyspace_key(&name))?;
                schema.without_keyspace(&name)
            }
            SchemaEdit::PutTable(t) => {
                self.engine
                    .meta_put(&table_key(&t.keyspace, &t.name), &persist::encode_table(&t))?;
                schema.with_table(*t)
            }
            SchemaEdit::DropTable { keyspace, name } => {
                self.engine.meta_delete(&table_key(&keyspace, &name))?;
                schema.without_table(&keyspace, &name)
            }
        })
    }
}

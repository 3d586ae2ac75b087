//! `MemoryEngine`: the storage engine for tests, everything in `BTreeMap`s behind one lock.
//!
//! It stores exactly what the sled engine stores (one reconciled version per slot, shadowed data
//! kept until a purge) and reads through the same code, so the two
//! engines answer alike and one conformance suite covers both. Partitions are kept per table in a
//! `BTreeMap<PartitionKey, _>`, whose order (token, then key bytes) is ring order. A single
//! `RwLock` makes every mutation atomic and isolated; nothing here awaits.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::partition::{mutation_atoms, PartitionState};
use super::{
    Engine, MetaEntry, Mutation, PartitionData, PartitionKey, PurgePage, ScanRange, Seconds, Slice,
    StorageError, TableId,
};

#[derive(Debug, Default)]
struct Inner {
    tables: BTreeMap<TableId, BTreeMap<PartitionKey, PartitionState>>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// An in-memory engine with the same semantics as [`super::SledEngine`]; nothing survives the
/// process.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    inner: RwLock<Inner>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> MemoryEngine {
        MemoryEngine::default()
    }

    // A panic while holding the lock cannot leave a half-applied mutation behind (state is only
    // modified after everything that can fail), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Engine for MemoryEngine {
    fn apply(&self, mutation: &Mutation) -> Result<(), StorageError> {
        let atoms = mutation_atoms(mutation);
        if atoms.is_empty() {
            return Ok(());
        }
        let mut inner = self.write();
        let state = inner
            .tables
            .entry(mutation.table)
            .or_default()
            .entry(mutation.partition.clone())
            .or_default();
        for (key, value) in atoms {
            // Atoms built from a mutation always have matching kinds.
            let _ = state.merge_atom(key, value);
        }
        Ok(())
    }

    fn read_partition(
        &self,
        table: TableId,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, StorageError> {
        let inner = self.read();
        Ok(inner
            .tables
            .get(&table)
            .and_then(|t| t.get(partition))
            .map(|state| state.read(partition, slice, now)))
    }

    fn scan(
        &self,
        table: TableId,
        range: &ScanRange,
        slice: &Slice,
        max_partitions: usize,
        now: Seconds,
    ) -> Result<Vec<PartitionData>, StorageError> {
        let inner = self.read();
        let Some(partitions) = inner.tables.get(&table) else {
            return Ok(Vec::new());
        };
        let lower = match &range.after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        Ok(partitions
            .range::<PartitionKey, _>((lower, Bound::Unbounded))
            .take_while(|(pk, _)| range.end_token.is_none_or(|end| pk.token <= end))
            .take(max_partitions)
            .map(|(pk, state)| state.read(pk, slice, now))
            .collect())
    }

    fn truncate(&self, table: TableId) -> Result<(), StorageError> {
        self.write().tables.remove(&table);
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn purge_page(
        &self,
        table: TableId,
        after: Option<&PartitionKey>,
        max_partitions: usize,
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<PurgePage, StorageError> {
        let max_partitions = max_partitions.max(1);
        let mut inner = self.write();
        let mut page = PurgePage::default();
        let Some(partitions) = inner.tables.get_mut(&table) else {
            return Ok(page);
        };
        let from = match after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        let keys: Vec<PartitionKey> = partitions
            .range((from, Bound::Unbounded))
            .take(max_partitions)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            let Some(state) = partitions.get_mut(key) else {
                continue;
            };
            let (stats, removed) = state.plan_purge(now, gc_grace);
            for atom in &removed {
                state.remove(atom);
            }
            page.stats.add(stats);
            if state.is_empty() {
                partitions.remove(key);
            }
        }
        if partitions.is_empty() {
            inner.tables.remove(&table);
        }
        if keys.len() == max_partitions {
            page.resume_after = keys.last().cloned();
        }
        Ok(page)
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.write().meta.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().meta.get(key).cloned())
    }

    fn meta_delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.write().meta.remove(key);
        Ok(())
    }

    fn meta_scan_prefix(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StorageError> {
        Ok(self
            .read()
            .meta
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn meta_scan_prefix_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<MetaEntry>, StorageError> {
        Ok(self
            .read()
            .meta
            .range((super::meta_page_start(prefix, after), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn disk_size(&self) -> u64 {
        0
    }
}

//! Which tables the purge worker (`server::purge_worker`) has to walk.
//!
//! A purge pass reads every partition of a table, so walking tables that hold nothing to purge
//! costs a full read of the data set every [`crate::server::PURGE_INTERVAL`] for nothing (and,
//! on a large table, a step in resident memory). Only deletions and values with a TTL ever leave
//! something to purge (plain writes replace their slot's previous version), so the replica marks
//! a table when it applies such a mutation ([`crate::storage::Mutation::may_need_purge`]), and a
//! pass keeps a table queued while it still holds deletions or expiring cells that are not old
//! enough yet ([`crate::storage::PurgeStats::waiting`]). The worker queues every table the node
//! has when it starts: it cannot know what the data it opened holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::storage::TableId;

/// The tables a purge pass has to walk.
#[derive(Debug, Default)]
pub struct PurgeQueue {
    /// Queued tables, each with the number of passes in a row that did not find it in the
    /// schema.
    tables: Mutex<HashMap<TableId, u8>>,
}

/// Passes in a row a queued table may be missing from the schema before it is forgotten: a
/// table is queued only once the replica knows it, so a queued table missing from the schema
/// was dropped (its data goes with `schema::sync::purge_dropped_tables`), or the pass read a
/// schema older than the write that queued it, which the next pass cannot.
const MISSING_PASSES: u8 = 2;

impl PurgeQueue {
    /// An empty queue.
    pub fn new() -> PurgeQueue {
        PurgeQueue::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TableId, u8>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `table`: it took a write that may leave something to purge, or its last pass
    /// failed or kept data a later pass has to remove, or the node just started.
    pub fn mark(&self, table: TableId) {
        self.lock().insert(table, 0);
    }

    /// Takes the tables among `candidates` (the tables that exist now) that a pass has to walk,
    /// and unqueues them: a write during the pass queues its table again. A queued table that
    /// is not a candidate stays queued, unless it was missing from the schema
    /// [`MISSING_PASSES`] times in a row (dropped): the queue never outgrows the schema.
    pub fn take(&self, candidates: &[TableId]) -> Vec<TableId> {
        let mut tables = self.lock();
        let due: Vec<TableId> = candidates
            .iter()
            .filter(|t| tables.remove(t).is_some())
            .copied()
            .collect();
        tables.retain(|_, missing| {
            *missing += 1;
            *missing < MISSING_PASSES
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: u128) -> TableId {
        uuid::Uuid::from_u128(n)
    }

    #[test]
    fn only_marked_tables_are_due_and_each_once() {
        let queue = PurgeQueue::new();
        let (a, b, c) = (table(1), table(2), table(3));
        assert!(queue.take(&[a, b]).is_empty(), "nothing marked");
        queue.mark(b);
        queue.mark(b);
        queue.mark(c);
        assert_eq!(queue.take(&[a, b]), vec![b]);
        // c was not a table in that schema yet: it stays queued for the next pass.
        assert_eq!(queue.take(&[a, b, c]), vec![c]);
        assert!(queue.take(&[a, b, c]).is_empty(), "nothing written since");
    }

    #[test]
    fn a_table_missing_from_the_schema_is_forgotten() {
        let queue = PurgeQueue::new();
        let (a, dropped) = (table(1), table(2));
        queue.mark(dropped);
        // Missing from one pass's schema: still queued, as that schema may be older than the
        // write that queued it.
        assert!(queue.take(&[a]).is_empty());
        assert_eq!(queue.lock().len(), 1);
        // Missing from a second one: dropped, forgotten.
        assert!(queue.take(&[a]).is_empty());
        assert_eq!(queue.lock().len(), 0);
        assert!(
            queue.take(&[a, dropped]).is_empty(),
            "not due once forgotten"
        );
        // Marked again (a write queues it anew), it is due again.
        queue.mark(dropped);
        assert_eq!(queue.take(&[a, dropped]), vec![dropped]);
    }
}

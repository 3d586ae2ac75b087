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

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::storage::TableId;

/// The tables a purge pass has to walk.
#[derive(Debug, Default)]
pub struct PurgeQueue {
    tables: Mutex<HashSet<TableId>>,
}

impl PurgeQueue {
    /// An empty queue.
    pub fn new() -> PurgeQueue {
        PurgeQueue::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<TableId>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `table`: it took a write that may leave something to purge, or its last pass
    /// failed or kept data a later pass has to remove, or the node just started.
    pub fn mark(&self, table: TableId) {
        self.lock().insert(table);
    }

    /// Takes the tables among `candidates` (the tables that exist now) that a pass has to walk,
    /// and unqueues them: a write during the pass queues its table again. Queued tables that
    /// are not candidates (not in that schema yet) stay queued.
    pub fn take(&self, candidates: &[TableId]) -> Vec<TableId> {
        let mut tables = self.lock();
        candidates
            .iter()
            .filter(|t| tables.remove(t))
            .copied()
            .collect()
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
        assert!(queue.take(&[a, b]).is_empty(), "nothing written since");
        // c was not a table in that schema yet: it stays queued for the next pass.
        assert_eq!(queue.take(&[a, b, c]), vec![c]);
        assert!(queue.take(&[a, b, c]).is_empty());
    }
}

//! Which tables the purge worker (`server::purge_worker`) has to walk, and from when.
//!
//! A purge pass reads every partition of a table, so walking tables that hold nothing to purge
//! costs a full read of the data set every [`crate::server::PURGE_INTERVAL`] for nothing (and,
//! on a large table, a step in resident memory and a latency stall while it runs). Only
//! deletions, cell tombstones and values with a TTL ever leave something to purge (plain writes
//! replace their slot's previous version), and each of those only once the table's
//! `gc_grace_seconds` have passed since its local deletion time or expiry. So the replica
//! queues a table with the time a mutation's leftovers count from
//! ([`crate::storage::Mutation::purge_from`]: at once for deletions, whose shadowed data can go
//! at the next pass), the queue keeps the earliest such time per table, and a table is due only
//! once `now - gc_grace` is past it. A pass queues the table again from the earliest time of
//! what it kept ([`crate::storage::PurgeStats::next`]). A table written with one-hour TTLs and
//! the default ten days of grace is first walked ten days and an hour after its first write,
//! not every ten minutes. The worker queues every table the node has, due at once, when it
//! starts: it cannot know what the data it opened holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::storage::{Seconds, TableId};

/// A queued table.
#[derive(Debug, Clone, Copy)]
struct Queued {
    /// The earliest time its leftovers count `gc_grace` from ([`Seconds::MIN`]: due at once).
    from: Seconds,
    /// Passes in a row that did not find it in the schema.
    missing: u8,
}

/// The tables a purge pass may have to walk.
#[derive(Debug, Default)]
pub struct PurgeQueue {
    tables: Mutex<HashMap<TableId, Queued>>,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<TableId, Queued>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `table` with leftovers counting from `from` ([`Seconds::MIN`]: due at the next
    /// pass): it took a write that may leave something to purge, or its last pass failed or
    /// kept data a later pass has to remove, or the node just started. A table already queued
    /// keeps the earlier time.
    pub fn mark(&self, table: TableId, from: Seconds) {
        let mut tables = self.lock();
        let queued = tables.entry(table).or_insert(Queued { from, missing: 0 });
        queued.from = queued.from.min(from);
        queued.missing = 0;
    }

    /// Takes the tables among `candidates` (the tables that exist now, each with its
    /// `gc_grace_seconds`) that a pass at `now` has to walk, and unqueues them: a write during
    /// the pass queues its table again. A table is due once `now - gc_grace` is past its time
    /// (purges remove what is strictly older). A queued table that is not a candidate stays
    /// queued, unless it was missing from the schema [`MISSING_PASSES`] times in a row
    /// (dropped): the queue never outgrows the schema.
    pub fn take(&self, candidates: &[(TableId, Seconds)], now: Seconds) -> Vec<TableId> {
        let grace: HashMap<TableId, Seconds> = candidates.iter().copied().collect();
        let mut due = Vec::new();
        self.lock().retain(|table, queued| match grace.get(table) {
            Some(gc_grace) => {
                queued.missing = 0;
                let ready =
                    queued.from == Seconds::MIN || queued.from < now.saturating_sub(*gc_grace);
                if ready {
                    due.push(*table);
                }
                !ready
            }
            None => {
                queued.missing += 1;
                queued.missing < MISSING_PASSES
            }
        });
        due.sort_unstable();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Seconds = 1_000_000;
    const AT_ONCE: Seconds = Seconds::MIN;

    fn table(n: u128) -> TableId {
        uuid::Uuid::from_u128(n)
    }

    /// Candidates with a `gc_grace_seconds` of 100.
    fn tables(ids: &[TableId]) -> Vec<(TableId, Seconds)> {
        ids.iter().map(|t| (*t, 100)).collect()
    }

    #[test]
    fn only_marked_tables_are_due_and_each_once() {
        let queue = PurgeQueue::new();
        let (a, b, c) = (table(1), table(2), table(3));
        assert!(
            queue.take(&tables(&[a, b]), NOW).is_empty(),
            "nothing marked"
        );
        queue.mark(b, AT_ONCE);
        queue.mark(b, AT_ONCE);
        queue.mark(c, AT_ONCE);
        assert_eq!(queue.take(&tables(&[a, b]), NOW), vec![b]);
        // c was not a table in that schema yet: it stays queued for the next pass.
        assert_eq!(queue.take(&tables(&[a, b, c]), NOW), vec![c]);
        assert!(
            queue.take(&tables(&[a, b, c]), NOW).is_empty(),
            "nothing written since"
        );
    }

    #[test]
    fn a_table_is_due_once_its_earliest_leftover_is_past_gc_grace() {
        let queue = PurgeQueue::new();
        let (a, b) = (table(1), table(2));
        // TTLs expiring at NOW + 50 and NOW + 10: purgeable once now - 100 > NOW + 10.
        queue.mark(a, NOW + 50);
        queue.mark(a, NOW + 10);
        queue.mark(b, NOW + 500);
        let both = [(a, 100), (b, 0)];
        assert!(queue.take(&both, NOW).is_empty(), "nothing expired yet");
        assert!(
            queue.take(&both, NOW + 110).is_empty(),
            "exactly gc_grace old is kept"
        );
        assert_eq!(queue.take(&both, NOW + 111), vec![a]);
        assert!(queue.take(&both, NOW + 111).is_empty(), "a was taken");
        // Not due for several passes, b was never forgotten: it is in the schema.
        assert_eq!(queue.take(&both, NOW + 501), vec![b]);
        // A deletion makes a table due at the next pass whatever else it waits for.
        queue.mark(a, NOW + 10_000);
        queue.mark(a, AT_ONCE);
        assert_eq!(queue.take(&both, NOW), vec![a]);
        // The per-table grace decides: the same time is due for one table and not the other.
        queue.mark(a, NOW);
        queue.mark(b, NOW);
        assert_eq!(queue.take(&[(a, 100), (b, 0)], NOW + 1), vec![b]);
    }

    #[test]
    fn a_table_missing_from_the_schema_is_forgotten() {
        let queue = PurgeQueue::new();
        let (a, dropped) = (table(1), table(2));
        queue.mark(dropped, AT_ONCE);
        // Missing from one pass's schema: still queued, as that schema may be older than the
        // write that queued it.
        assert!(queue.take(&tables(&[a]), NOW).is_empty());
        assert_eq!(queue.lock().len(), 1);
        // Missing from a second one: dropped, forgotten.
        assert!(queue.take(&tables(&[a]), NOW).is_empty());
        assert_eq!(queue.lock().len(), 0);
        assert!(
            queue.take(&tables(&[a, dropped]), NOW).is_empty(),
            "not due once forgotten"
        );
        // Marked again (a write queues it anew), it is due again.
        queue.mark(dropped, AT_ONCE);
        assert_eq!(queue.take(&tables(&[a, dropped]), NOW), vec![dropped]);
    }
}

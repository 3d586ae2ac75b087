//! What both engines share: a partition as stored (atoms), how a mutation becomes atoms, how a
//! slice is read out of stored atoms, and what a purge removes.
//!
//! An engine stores *atoms*: one reconciled version per slot ([`AtomKey`]), nothing removed for
//! shadowing. The memory engine keeps them in a [`PartitionState`]; the sled engine keeps one
//! sled key per atom. Reads hand atoms, in slice order, to a [`ReadAssembler`], which removes
//! what is shadowed, applies the limit and builds the canonical [`PartitionData`]. Purges compute
//! the atoms to remove with [`PartitionState::plan_purge`]. Because both engines run the same
//! code over the same atoms, they give the same answers, which the conformance suite checks.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::merge::{
    end_bound, end_pos, max_ts, reconcile_cell, reconcile_deletion, reconcile_liveness,
    start_bound, start_pos, survives, DeletionRuns, Pos, RowAtoms,
};
use super::{
    Cell, CellKey, ColumnId, Deletion, Liveness, Mutation, PartitionData, PartitionKey, PurgeStats,
    Row, Seconds, Slice,
};

/// The address of one slot within a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AtomKey {
    PartitionDeletion,
    /// A range deletion, identified by its bounds as positions (`start < end`).
    RangeDeletion(Pos, Pos),
    RowDeletion(Vec<u8>),
    Liveness(Vec<u8>),
    CollectionDeletion(Vec<u8>, ColumnId),
    Cell(Vec<u8>, CellKey),
}

/// The value stored in a slot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AtomValue {
    Deletion(Deletion),
    Liveness(Liveness),
    Cell(Cell),
}

impl AtomValue {
    /// Reconciles two versions of the same slot; `None` if they are of different kinds (which a
    /// well-formed store never has).
    pub(crate) fn reconcile(&self, other: &AtomValue) -> Option<AtomValue> {
        Some(match (self, other) {
            (AtomValue::Deletion(a), AtomValue::Deletion(b)) => {
                AtomValue::Deletion(reconcile_deletion(*a, *b))
            }
            (AtomValue::Liveness(a), AtomValue::Liveness(b)) => {
                AtomValue::Liveness(reconcile_liveness(*a, *b))
            }
            (AtomValue::Cell(a), AtomValue::Cell(b)) => {
                AtomValue::Cell(reconcile_cell(a, b).clone())
            }
            _ => return None,
        })
    }
}

/// The atoms a mutation writes, in no particular order; the same slot may appear twice (a
/// mutation that writes one cell twice), callers reconcile. Empty range deletions are dropped.
pub(crate) fn mutation_atoms(mutation: &Mutation) -> Vec<(AtomKey, AtomValue)> {
    let mut atoms = Vec::new();
    if let Some(d) = mutation.partition_deletion {
        atoms.push((AtomKey::PartitionDeletion, AtomValue::Deletion(d)));
    }
    for r in &mutation.range_deletions {
        let (s, e) = (start_pos(&r.start), end_pos(&r.end));
        if s < e {
            atoms.push((
                AtomKey::RangeDeletion(s, e),
                AtomValue::Deletion(r.deletion),
            ));
        }
    }
    for row in &mutation.rows {
        let c = &row.clustering;
        if let Some(d) = row.deletion {
            atoms.push((AtomKey::RowDeletion(c.clone()), AtomValue::Deletion(d)));
        }
        if let Some(l) = row.liveness {
            atoms.push((AtomKey::Liveness(c.clone()), AtomValue::Liveness(l)));
        }
        for &(col, d) in &row.collection_deletions {
            atoms.push((
                AtomKey::CollectionDeletion(c.clone(), col),
                AtomValue::Deletion(d),
            ));
        }
        for (k, cell) in &row.cells {
            atoms.push((
                AtomKey::Cell(c.clone(), k.clone()),
                AtomValue::Cell(cell.clone()),
            ));
        }
    }
    atoms
}

impl AtomKey {
    /// The clustering bytes of a row atom; `None` for partition and range deletions.
    pub(crate) fn clustering(&self) -> Option<&[u8]> {
        match self {
            AtomKey::PartitionDeletion | AtomKey::RangeDeletion(..) => None,
            AtomKey::RowDeletion(c)
            | AtomKey::Liveness(c)
            | AtomKey::CollectionDeletion(c, _)
            | AtomKey::Cell(c, _) => Some(c),
        }
    }
}

impl RowAtoms {
    /// Folds one row atom into the row (its clustering is not checked).
    pub(crate) fn merge_atom(
        &mut self,
        key: AtomKey,
        value: AtomValue,
    ) -> Result<(), KindMismatch> {
        match (key, value) {
            (AtomKey::RowDeletion(_), AtomValue::Deletion(d)) => self.merge_deletion(d),
            (AtomKey::Liveness(_), AtomValue::Liveness(l)) => self.merge_liveness(l),
            (AtomKey::CollectionDeletion(_, col), AtomValue::Deletion(d)) => {
                self.merge_collection_deletion(col, d)
            }
            (AtomKey::Cell(_, k), AtomValue::Cell(cell)) => self.merge_cell(k, cell),
            _ => return Err(KindMismatch),
        }
        Ok(())
    }
}

/// Error for an atom whose value has the wrong kind for its key.
#[derive(Debug)]
pub(crate) struct KindMismatch;

/// A partition as stored: one version per slot, shadowed data kept until a purge.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PartitionState {
    pub(crate) deletion: Option<Deletion>,
    pub(crate) ranges: BTreeMap<(Pos, Pos), Deletion>,
    pub(crate) rows: BTreeMap<Vec<u8>, RowAtoms>,
}

impl PartitionState {
    /// Folds one atom into the state (reconciling with what the slot holds).
    pub(crate) fn merge_atom(
        &mut self,
        key: AtomKey,
        value: AtomValue,
    ) -> Result<(), KindMismatch> {
        match (key, value) {
            (AtomKey::PartitionDeletion, AtomValue::Deletion(d)) => {
                self.deletion = Some(self.deletion.map_or(d, |old| reconcile_deletion(old, d)));
                Ok(())
            }
            (AtomKey::RangeDeletion(s, e), AtomValue::Deletion(d)) => {
                let slot = self.ranges.entry((s, e)).or_insert(d);
                *slot = reconcile_deletion(*slot, d);
                Ok(())
            }
            (key, value) => {
                let clustering = key.clustering().ok_or(KindMismatch)?.to_vec();
                self.rows
                    .entry(clustering)
                    .or_default()
                    .merge_atom(key, value)
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.deletion.is_none() && self.ranges.is_empty() && self.rows.is_empty()
    }

    /// Removes one atom (no-op if absent); drops rows left empty.
    pub(crate) fn remove(&mut self, key: &AtomKey) {
        let clustering = match key {
            AtomKey::PartitionDeletion => {
                self.deletion = None;
                return;
            }
            AtomKey::RangeDeletion(s, e) => {
                self.ranges.remove(&(s.clone(), e.clone()));
                return;
            }
            AtomKey::RowDeletion(c)
            | AtomKey::Liveness(c)
            | AtomKey::CollectionDeletion(c, _)
            | AtomKey::Cell(c, _) => c,
        };
        let Some(row) = self.rows.get_mut(clustering) else {
            return;
        };
        match key {
            AtomKey::RowDeletion(_) => row.deletion = None,
            AtomKey::Liveness(_) => row.liveness = None,
            AtomKey::CollectionDeletion(_, col) => {
                row.collection_deletions.remove(col);
            }
            AtomKey::Cell(_, k) => {
                row.cells.remove(k);
            }
            AtomKey::PartitionDeletion | AtomKey::RangeDeletion(..) => {}
        }
        if row.is_empty() {
            self.rows.remove(clustering);
        }
    }

    /// Reads a slice out of the state.
    pub(crate) fn read(
        &self,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> PartitionData {
        let plan = SlicePlan::new(slice);
        let raw_ranges = self
            .ranges
            .iter()
            .map(|((s, e), d)| (s.clone(), e.clone(), *d));
        let mut asm = ReadAssembler::new(partition.clone(), self.deletion, raw_ranges, &plan, now);
        if plan.include_static {
            if let Some(atoms) = self.rows.get(&[][..]) {
                asm.set_static(atoms);
            }
        }
        'ranges: for (lo, hi) in plan.ordered_intervals() {
            let (Some(lo), Some(hi)) = (btree_bound(lo, true), btree_bound(hi, false)) else {
                continue;
            };
            let range = self.rows.range::<Vec<u8>, _>((lo, hi));
            let rows: Box<dyn Iterator<Item = (&Vec<u8>, &RowAtoms)>> = if plan.reversed {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for (clustering, atoms) in rows {
                if plan.include_static && clustering.is_empty() {
                    continue;
                }
                if !asm.push_row(clustering, atoms) {
                    break 'ranges;
                }
            }
        }
        asm.finish()
    }

    /// What a purge at `now` with `gc_grace` removes: every atom shadowed by a deletion, every
    /// deletion or tombstone whose local deletion time is more than `gc_grace` before `now`, and
    /// every expiring cell or liveness that expired more than `gc_grace` before `now`.
    pub(crate) fn plan_purge(&self, now: Seconds, gc_grace: Seconds) -> (PurgeStats, Vec<AtomKey>) {
        let gc_before = now.saturating_sub(gc_grace);
        let purgeable = |d: &Deletion| d.local_deletion_time < gc_before;
        let mut stats = PurgeStats::default();
        let mut removed = Vec::new();
        let mut waiting = Waiting::default();
        let mut tombstone = |key: AtomKey, removed: &mut Vec<AtomKey>| {
            stats.tombstones_purged += 1;
            removed.push(key);
        };

        let floor = self.deletion.map(|d| d.timestamp);
        if let Some(d) = &self.deletion {
            if purgeable(d) {
                tombstone(AtomKey::PartitionDeletion, &mut removed);
            } else {
                waiting.add(d.local_deletion_time);
            }
        }
        for ((s, e), d) in &self.ranges {
            if !survives(d.timestamp, floor) || purgeable(d) {
                tombstone(AtomKey::RangeDeletion(s.clone(), e.clone()), &mut removed);
            } else {
                waiting.add(d.local_deletion_time);
            }
        }
        // Coverage uses every stored deletion, purgeable or not: what a purged deletion shadowed
        // goes with it.
        let runs = DeletionRuns::build(
            self.ranges
                .iter()
                .map(|((s, e), d)| (s.clone(), e.clone(), *d)),
            None,
        );
        let mut cells_purged = 0u64;
        for (c, row) in &self.rows {
            let cover = max_ts(floor, runs.covering(c).map(|d| d.timestamp));
            if let Some(d) = &row.deletion {
                if !survives(d.timestamp, cover) || purgeable(d) {
                    tombstone(AtomKey::RowDeletion(c.clone()), &mut removed);
                } else {
                    waiting.add(d.local_deletion_time);
                }
            }
            let shadow = max_ts(cover, row.deletion.map(|d| d.timestamp));
            if let Some(l) = &row.liveness {
                if !survives(l.timestamp, shadow) || (l.is_expiring() && l.expires_at < gc_before) {
                    cells_purged += 1;
                    removed.push(AtomKey::Liveness(c.clone()));
                } else if l.is_expiring() {
                    waiting.add(l.expires_at);
                }
            }
            for (col, d) in &row.collection_deletions {
                if !survives(d.timestamp, shadow) || purgeable(d) {
                    tombstone(AtomKey::CollectionDeletion(c.clone(), *col), &mut removed);
                } else {
                    waiting.add(d.local_deletion_time);
                }
            }
            for (k, cell) in &row.cells {
                let column_shadow = max_ts(
                    shadow,
                    row.collection_deletions.get(&k.column).map(|d| d.timestamp),
                );
                let gone = !survives(cell.timestamp, column_shadow)
                    || ((cell.is_tombstone() || cell.is_expiring())
                        && cell.local_deletion_time < gc_before);
                if gone {
                    if cell.is_tombstone() {
                        tombstone(AtomKey::Cell(c.clone(), k.clone()), &mut removed);
                    } else {
                        cells_purged += 1;
                        removed.push(AtomKey::Cell(c.clone(), k.clone()));
                    }
                } else if cell.is_tombstone() || cell.is_expiring() {
                    waiting.add(cell.local_deletion_time);
                }
            }
        }
        stats.cells_purged = cells_purged;
        stats.waiting = waiting.count;
        stats.next = waiting.next;
        (stats, removed)
    }
}

/// What a purge plan keeps for a later pass: how many, and the earliest time among them.
#[derive(Default)]
struct Waiting {
    count: u64,
    next: Option<Seconds>,
}

impl Waiting {
    fn add(&mut self, at: Seconds) {
        self.count += 1;
        self.next = super::earliest(self.next, Some(at));
    }
}

/// Converts a position into a bound on clustering bytes for a `BTreeMap` range (`start` side or
/// end side). `None` for a position that admits no row on that side.
fn btree_bound(pos: &Pos, start: bool) -> Option<Bound<Vec<u8>>> {
    Some(match (pos, start) {
        (Pos::Lowest, true) | (Pos::Highest, false) => Bound::Unbounded,
        (Pos::Highest, true) | (Pos::Lowest, false) => return None,
        (p, true) => start_bound(p),
        (p, false) => end_bound(p),
    })
}

/// A slice as position intervals, sorted, disjoint, non-empty.
#[derive(Debug, Clone)]
pub(crate) struct SlicePlan {
    pub(crate) intervals: Vec<(Pos, Pos)>,
    pub(crate) include_static: bool,
    pub(crate) reversed: bool,
    pub(crate) limit: Option<usize>,
}

impl SlicePlan {
    pub(crate) fn new(slice: &Slice) -> SlicePlan {
        let intervals = if slice.ranges.is_empty() {
            vec![(Pos::Lowest, Pos::Highest)]
        } else {
            // Tolerate unsorted or overlapping ranges: sort and union them.
            let mut raw: Vec<(Pos, Pos)> = slice
                .ranges
                .iter()
                .map(|(s, e)| (start_pos(s), end_pos(e)))
                .filter(|(s, e)| s < e)
                .collect();
            raw.sort();
            let mut merged: Vec<(Pos, Pos)> = Vec::with_capacity(raw.len());
            for (s, e) in raw {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => {
                        if e > last.1 {
                            last.1 = e;
                        }
                    }
                    _ => merged.push((s, e)),
                }
            }
            merged
        };
        SlicePlan {
            intervals,
            include_static: slice.include_static,
            reversed: slice.reversed,
            limit: slice.limit,
        }
    }

    /// The intervals in reading order (descending when reversed).
    pub(crate) fn ordered_intervals(&self) -> Box<dyn Iterator<Item = &(Pos, Pos)> + '_> {
        if self.reversed {
            Box::new(self.intervals.iter().rev())
        } else {
            Box::new(self.intervals.iter())
        }
    }
}

/// Builds a canonical read answer from atoms handed over in slice order.
pub(crate) struct ReadAssembler {
    partition: PartitionKey,
    partition_deletion: Option<Deletion>,
    runs: DeletionRuns,
    limit: Option<usize>,
    now: Seconds,
    static_row: Option<Row>,
    rows: Vec<Row>,
    live: usize,
}

impl ReadAssembler {
    /// `raw_ranges`: every stored range deletion of the partition.
    pub(crate) fn new(
        partition: PartitionKey,
        partition_deletion: Option<Deletion>,
        raw_ranges: impl IntoIterator<Item = (Pos, Pos, Deletion)>,
        plan: &SlicePlan,
        now: Seconds,
    ) -> ReadAssembler {
        let runs = DeletionRuns::build(raw_ranges, partition_deletion).clip(&plan.intervals);
        ReadAssembler {
            partition,
            partition_deletion,
            runs,
            limit: plan.limit,
            now,
            static_row: None,
            rows: Vec::new(),
            live: 0,
        }
    }

    /// Sets the static row's atoms.
    pub(crate) fn set_static(&mut self, atoms: &RowAtoms) {
        self.static_row = atoms.canonical(&[], self.partition_deletion.map(|d| d.timestamp));
    }

    /// Whether the limit has been reached (no more rows wanted).
    pub(crate) fn is_done(&self) -> bool {
        self.limit.is_some_and(|l| self.live >= l)
    }

    /// Adds the next row in slice order; returns `false` once no more rows are wanted.
    pub(crate) fn push_row(&mut self, clustering: &[u8], atoms: &RowAtoms) -> bool {
        if self.is_done() {
            return false;
        }
        let cover = max_ts(
            self.partition_deletion.map(|d| d.timestamp),
            self.runs.covering(clustering).map(|d| d.timestamp),
        );
        if let Some(row) = atoms.canonical(clustering, cover) {
            if row.is_live(self.now) {
                self.live += 1;
            }
            self.rows.push(row);
        }
        !self.is_done()
    }

    pub(crate) fn finish(self) -> PartitionData {
        PartitionData {
            partition: self.partition,
            partition_deletion: self.partition_deletion,
            range_deletions: self.runs.to_range_deletions(),
            static_row: self.static_row,
            rows: self.rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{RangeDeletion, RowUpdate};

    fn pk() -> PartitionKey {
        PartitionKey {
            token: 1,
            key: b"k".to_vec(),
        }
    }

    #[test]
    fn slice_plan_unions_ranges() {
        let slice = Slice {
            ranges: vec![
                (
                    Bound::Included(b"d".to_vec()),
                    Bound::Included(b"f".to_vec()),
                ),
                (
                    Bound::Included(b"a".to_vec()),
                    Bound::Excluded(b"e".to_vec()),
                ),
                (
                    Bound::Included(b"z".to_vec()),
                    Bound::Excluded(b"a".to_vec()),
                ),
            ],
            include_static: false,
            reversed: false,
            limit: None,
        };
        let plan = SlicePlan::new(&slice);
        assert_eq!(
            plan.intervals,
            vec![(Pos::Before(b"a".to_vec()), Pos::After(b"f".to_vec()))]
        );
    }

    #[test]
    fn only_deletions_and_ttls_may_need_a_purge_and_when() {
        let row = |update: RowUpdate| Mutation {
            table: uuid::Uuid::nil(),
            partition: pk(),
            partition_deletion: None,
            range_deletions: vec![],
            rows: vec![RowUpdate {
                clustering: b"a".to_vec(),
                ..update
            }],
        };
        let cell = |c: Cell| {
            row(RowUpdate {
                liveness: Some(Liveness::new(1)),
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    c,
                )],
                ..RowUpdate::default()
            })
        };
        assert_eq!(cell(Cell::live(1, b"v".to_vec())).purge_from(), None);
        // A cell tombstone or TTL replaces its slot: due from its own time.
        assert_eq!(cell(Cell::tombstone(1, 100)).purge_from(), Some(100));
        assert_eq!(
            cell(Cell::expiring(1, 60, 160, b"v".to_vec())).purge_from(),
            Some(160)
        );
        let mut two = cell(Cell::expiring(1, 60, 160, b"v".to_vec()));
        two.rows[0].liveness = Some(Liveness::expiring(1, 30, 130));
        assert_eq!(two.purge_from(), Some(130), "the earliest of them");
        // Deletions shadow other slots: due at once.
        assert_eq!(
            row(RowUpdate {
                deletion: Some(Deletion::new(1, 100)),
                ..RowUpdate::default()
            })
            .purge_from(),
            Some(Seconds::MIN)
        );
        assert_eq!(
            row(RowUpdate {
                collection_deletions: vec![(1, Deletion::new(1, 100))],
                ..RowUpdate::default()
            })
            .purge_from(),
            Some(Seconds::MIN)
        );
        let mut whole = cell(Cell::expiring(1, 60, 160, b"v".to_vec()));
        whole.partition_deletion = Some(Deletion::new(1, 100));
        assert_eq!(whole.purge_from(), Some(Seconds::MIN));
    }

    #[test]
    fn purge_plan_counts() {
        let mut state = PartitionState::default();
        let m = Mutation {
            table: uuid::Uuid::nil(),
            partition: pk(),
            partition_deletion: None,
            range_deletions: vec![RangeDeletion {
                start: Bound::Included(b"a".to_vec()),
                end: Bound::Included(b"b".to_vec()),
                deletion: Deletion::new(10, 100),
            }],
            rows: vec![RowUpdate {
                clustering: b"a".to_vec(),
                liveness: Some(Liveness::new(5)),
                cells: vec![(
                    CellKey {
                        column: 1,
                        path: None,
                    },
                    Cell::live(20, b"v".to_vec()),
                )],
                ..RowUpdate::default()
            }],
        };
        for (key, value) in mutation_atoms(&m) {
            state.merge_atom(key, value).expect("kinds match");
        }
        // Young range deletion: only the shadowed liveness goes.
        let (stats, removed) = state.plan_purge(150, 100);
        assert_eq!(
            stats,
            PurgeStats {
                cells_purged: 1,
                tombstones_purged: 0,
                waiting: 1,
                next: Some(100),
            }
        );
        assert_eq!(removed, vec![AtomKey::Liveness(b"a".to_vec())]);
        // Old range deletion goes too.
        let (stats, _) = state.plan_purge(201, 100);
        assert_eq!(
            stats,
            PurgeStats {
                cells_purged: 1,
                tombstones_purged: 1,
                waiting: 0,
                next: None,
            }
        );
    }
}

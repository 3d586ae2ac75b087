//! Last-write-wins reconciliation and shadowing: how two versions of the same data become one.
//!
//! ## Reconciling two versions of one thing
//!
//! Every piece of data lives in a *slot*: a cell slot (row, column, path), a row's liveness slot,
//! a row's deletion slot, a collection deletion slot (row, column), the partition deletion slot,
//! or a range deletion slot (its two bounds). Two versions of a slot reconcile to the one that
//! *supersedes* the other; the comparison is a **total order** over every field of the value, so
//! reconciliation is `max` in that order, which makes it commutative, associative and idempotent
//! (a join semilattice). The orders follow Cassandra 4 (`Cells.resolveRegular`,
//! `LivenessInfo.supersedes`, `DeletionTime.supersedes`):
//!
//! - **Cells** ([`compare_cells`]): the higher timestamp wins. At equal timestamps a tombstone or
//!   an expiring cell beats a plain live cell (CASSANDRA-14592: the outcome must not depend on the
//!   clock at reconciliation time, and an expiring cell is a future tombstone); a tombstone beats
//!   an expiring cell; between two tombstones or two expiring cells the larger local deletion time
//!   (expiry) wins; then the greater value bytes (unsigned lexicographic) win. Cassandra stops
//!   there and keeps an arbitrary side on a complete tie; we add the TTL and then the raw local
//!   deletion time as last tie-breaks so the result is a function of the two inputs alone.
//! - **Row liveness** ([`compare_liveness`]): higher timestamp; then an expiring liveness beats a
//!   non-expiring one; then the later expiry; then (our addition) the larger TTL.
//! - **Deletions** ([`compare_deletions`]): higher timestamp, then later local deletion time.
//!
//! Reconciliation never looks at the clock: an expired cell is still an expiring cell here.
//! Expiry is decided when data is *interpreted* ([`Cell::is_live`], [`Row::is_live`]).
//!
//! ## Shadowing
//!
//! A deletion with timestamp `t` deletes every piece of data in its scope whose timestamp is
//! `<= t` ([`Deletion::deletes`]). Scopes nest:
//!
//! - the partition deletion covers everything in the partition, including other deletions;
//! - a range deletion covers the rows whose clustering bytes fall in its bounds (never the row
//!   with empty clustering bytes, which is the static row, or the only row of a table without
//!   clustering columns: ranges only make sense between clustered rows);
//! - a row deletion covers the row's liveness, cells and collection deletions;
//! - a collection deletion covers the cells of its column.
//!
//! Expired data behaves as a tombstone: an expired cell is dead but still wins over older versions
//! of its slot (its local deletion time is its expiry); an expired liveness makes no row live but
//! still supersedes older liveness. Neither is removed before `gc_grace` has passed (see
//! [`Engine::purge`](super::Engine::purge)), because until then it must keep shadowing older data
//! that other replicas may still send.
//!
//! ## Canonical read results
//!
//! A read result ([`PartitionData`], [`Row`]) is kept in a canonical form: one version per slot,
//! every shadowed piece removed (a row deletion no newer than the partition or range deletion that
//! covers it is dropped as well), range deletions normalized into sorted, disjoint runs each
//! carrying the strongest deletion over it (runs no newer than the partition deletion dropped,
//! adjacent runs with the same deletion coalesced), rows with nothing left dropped. Removing
//! shadowed data never changes the outcome of a later merge (anything a removed piece could beat
//! is itself shadowed), so merging canonical forms ([`PartitionData::merge`], [`Row::merge`]) is
//! again commutative, associative and idempotent, and merging two replicas' answers gives exactly
//! what a single replica holding both replicas' data would answer.
//!
//! Range bounds are handled in a *position space*: every clustering value `v` has three positions
//! `Before(v) < At(v) < After(v)`; a range is the half-open interval `[start, end)` of positions
//! (`Included(v)` as a start is `Before(v)`, as an end `After(v)`, and so on) and a row `c` is in
//! it when `start <= At(c) < end`. Normalizing and clipping ranges is then plain interval
//! arithmetic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::{
    Cell, CellKey, ColumnId, Deletion, Liveness, Mutation, PartitionData, RangeDeletion, Row,
    RowUpdate, Seconds, TableId,
};

// ---------------------------------------------------------------------------------------------
// Deletions, liveness, cells: constructors, interpretation, reconciliation.
// ---------------------------------------------------------------------------------------------

impl Deletion {
    /// A deletion written at `timestamp` (microseconds) on a coordinator whose clock read
    /// `local_deletion_time` (seconds).
    pub fn new(timestamp: i64, local_deletion_time: Seconds) -> Deletion {
        Deletion {
            timestamp,
            local_deletion_time,
        }
    }

    /// Whether data written at `timestamp` is deleted by this deletion (`timestamp <= self`).
    pub fn deletes(&self, timestamp: i64) -> bool {
        timestamp <= self.timestamp
    }

    /// Whether this deletion wins over `other` when both occupy the same slot.
    pub fn supersedes(&self, other: &Deletion) -> bool {
        compare_deletions(self, other) == Ordering::Greater
    }
}

impl Liveness {
    /// Liveness written by an INSERT without TTL.
    pub fn new(timestamp: i64) -> Liveness {
        Liveness {
            timestamp,
            ttl: 0,
            expires_at: 0,
        }
    }

    /// Liveness written by an INSERT with a TTL of `ttl` seconds, expiring at `expires_at`.
    pub fn expiring(timestamp: i64, ttl: i32, expires_at: Seconds) -> Liveness {
        Liveness {
            timestamp,
            ttl,
            expires_at,
        }
    }

    /// Whether this liveness carries a TTL.
    pub fn is_expiring(&self) -> bool {
        self.ttl > 0
    }

    /// Whether this liveness makes its row exist at `now` (it has no TTL or has not expired).
    pub fn is_live(&self, now: Seconds) -> bool {
        !self.is_expiring() || now < self.expires_at
    }
}

impl Cell {
    /// A live cell without TTL.
    pub fn live(timestamp: i64, value: impl Into<Vec<u8>>) -> Cell {
        Cell {
            timestamp,
            ttl: 0,
            local_deletion_time: 0,
            value: Some(value.into()),
        }
    }

    /// A live cell with a TTL of `ttl` seconds, expiring at `expires_at`.
    pub fn expiring(
        timestamp: i64,
        ttl: i32,
        expires_at: Seconds,
        value: impl Into<Vec<u8>>,
    ) -> Cell {
        Cell {
            timestamp,
            ttl,
            local_deletion_time: expires_at,
            value: Some(value.into()),
        }
    }

    /// A cell tombstone written at `timestamp`, `local_deletion_time` seconds since the epoch.
    pub fn tombstone(timestamp: i64, local_deletion_time: Seconds) -> Cell {
        Cell {
            timestamp,
            ttl: 0,
            local_deletion_time,
            value: None,
        }
    }

    /// Whether this is a tombstone (no value).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Whether this is a value with a TTL.
    pub fn is_expiring(&self) -> bool {
        self.value.is_some() && self.ttl > 0
    }

    /// Whether the cell holds a value at `now`: not a tombstone, and not expired
    /// (`now < local_deletion_time` for an expiring cell).
    pub fn is_live(&self, now: Seconds) -> bool {
        match self.value {
            None => false,
            Some(_) => !self.is_expiring() || now < self.local_deletion_time,
        }
    }

    /// The value if the cell is live at `now`.
    pub fn live_value(&self, now: Seconds) -> Option<&[u8]> {
        if self.is_live(now) {
            self.value.as_deref()
        } else {
            None
        }
    }

    /// Whether this cell wins over `other` when both occupy the same slot.
    pub fn supersedes(&self, other: &Cell) -> bool {
        compare_cells(self, other) == Ordering::Greater
    }
}

/// Rank of a cell at equal timestamps, Cassandra's order: plain live < expiring < tombstone.
fn cell_class(cell: &Cell) -> u8 {
    if cell.is_tombstone() {
        2
    } else if cell.is_expiring() {
        1
    } else {
        0
    }
}

/// The total order in which cells of one slot supersede each other (greater wins); see the
/// module documentation. `Equal` only for identical cells.
pub fn compare_cells(a: &Cell, b: &Cell) -> Ordering {
    let key = |c: &Cell| {
        let class = cell_class(c);
        // Local deletion time decides before the value only for tombstones and expiring cells;
        // a plain live cell's local deletion time is meaningless (0 by contract).
        let deciding_ldt = if class > 0 { c.local_deletion_time } else { 0 };
        (c.timestamp, class, deciding_ldt)
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| a.value.as_deref().cmp(&b.value.as_deref()))
        .then_with(|| a.ttl.cmp(&b.ttl))
        .then_with(|| a.local_deletion_time.cmp(&b.local_deletion_time))
}

/// The total order in which row liveness infos supersede each other (greater wins).
pub fn compare_liveness(a: &Liveness, b: &Liveness) -> Ordering {
    let key = |l: &Liveness| {
        let expiring = l.is_expiring();
        (
            l.timestamp,
            expiring,
            if expiring { l.expires_at } else { 0 },
            l.ttl,
            l.expires_at,
        )
    };
    key(a).cmp(&key(b))
}

/// The total order in which deletions of one slot supersede each other (greater wins).
pub fn compare_deletions(a: &Deletion, b: &Deletion) -> Ordering {
    (a.timestamp, a.local_deletion_time).cmp(&(b.timestamp, b.local_deletion_time))
}

/// The version of a cell slot that wins: last write wins with Cassandra's tie-breaks.
pub fn reconcile_cell<'a>(a: &'a Cell, b: &'a Cell) -> &'a Cell {
    if compare_cells(a, b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// The version of a row's liveness that wins.
pub fn reconcile_liveness(a: Liveness, b: Liveness) -> Liveness {
    if compare_liveness(&a, &b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// The version of a deletion slot that wins.
pub fn reconcile_deletion(a: Deletion, b: Deletion) -> Deletion {
    if compare_deletions(&a, &b) == Ordering::Less {
        b
    } else {
        a
    }
}

/// Reconciles two optional deletions (`None` is "no deletion").
pub fn reconcile_optional_deletion(a: Option<Deletion>, b: Option<Deletion>) -> Option<Deletion> {
    match (a, b) {
        (Some(a), Some(b)) => Some(reconcile_deletion(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The larger of two optional shadowing timestamps.
pub(crate) fn max_ts(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Whether data written at `timestamp` survives a shadowing timestamp (`None`: nothing shadows).
pub(crate) fn survives(timestamp: i64, shadow: Option<i64>) -> bool {
    shadow.is_none_or(|s| timestamp > s)
}

// ---------------------------------------------------------------------------------------------
// Rows.
// ---------------------------------------------------------------------------------------------

impl Row {
    /// Whether the row exists at `now`: it has live primary-key liveness or at least one live
    /// cell. Assumes the row is canonical (shadowed data removed), as read results are.
    pub fn is_live(&self, now: Seconds) -> bool {
        self.liveness.is_some_and(|l| l.is_live(now))
            || self.cells.iter().any(|(_, c)| c.is_live(now))
    }

    /// The cells that hold a value at `now`, in `CellKey` order.
    pub fn live_cells(&self, now: Seconds) -> impl Iterator<Item = &(CellKey, Cell)> + '_ {
        self.cells.iter().filter(move |(_, c)| c.is_live(now))
    }

    /// Every cell of one column (the simple cell, or a collection's elements in path order),
    /// live or not.
    pub fn cells_of(&self, column: ColumnId) -> impl Iterator<Item = &(CellKey, Cell)> + '_ {
        let start = self.cells.partition_point(|(k, _)| k.column < column);
        self.cells[start..]
            .iter()
            .take_while(move |(k, _)| k.column == column)
    }

    /// The live value of a simple (non-collection) column at `now`.
    pub fn live_value(&self, column: ColumnId, now: Seconds) -> Option<&[u8]> {
        self.cells_of(column)
            .find(|(k, _)| k.path.is_none())
            .and_then(|(_, c)| c.live_value(now))
    }

    /// The live elements of a non-frozen collection column at `now`: `(path, value)` in path
    /// order.
    pub fn live_elements(
        &self,
        column: ColumnId,
        now: Seconds,
    ) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.cells_of(column)
            .filter_map(move |(k, c)| Some((k.path.as_deref()?, c.live_value(now)?)))
    }

    /// Whether the row carries nothing at all (no liveness, deletion, cell or collection
    /// deletion).
    pub fn is_empty(&self) -> bool {
        self.liveness.is_none()
            && self.deletion.is_none()
            && self.cells.is_empty()
            && self.collection_deletions.is_empty()
    }

    /// Merges two versions of the same row (same clustering; `a`'s clustering is kept): every
    /// slot reconciled, then whatever the row's own deletions shadow removed. Commutative,
    /// associative and idempotent on canonical rows.
    pub fn merge(a: &Row, b: &Row) -> Row {
        let mut atoms = RowAtoms::from_row(a);
        atoms.merge_row(b);
        atoms.canonical(&a.clustering, None).unwrap_or_else(|| Row {
            clustering: a.clustering.clone(),
            ..Row::default()
        })
    }
}

/// The raw contents of one row: one reconciled version per slot, nothing removed for shadowing.
/// What engines store and what reads fold data into before making it canonical.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RowAtoms {
    pub(crate) liveness: Option<Liveness>,
    pub(crate) deletion: Option<Deletion>,
    pub(crate) cells: BTreeMap<CellKey, Cell>,
    pub(crate) collection_deletions: BTreeMap<ColumnId, Deletion>,
}

impl RowAtoms {
    pub(crate) fn merge_liveness(&mut self, liveness: Liveness) {
        self.liveness = Some(match self.liveness {
            Some(old) => reconcile_liveness(old, liveness),
            None => liveness,
        });
    }

    pub(crate) fn merge_deletion(&mut self, deletion: Deletion) {
        self.deletion = reconcile_optional_deletion(self.deletion, Some(deletion));
    }

    pub(crate) fn merge_cell(&mut self, key: CellKey, cell: Cell) {
        match self.cells.get_mut(&key) {
            Some(old) => {
                if cell.supersedes(old) {
                    *old = cell;
                }
            }
            None => {
                self.cells.insert(key, cell);
            }
        }
    }

    pub(crate) fn merge_collection_deletion(&mut self, column: ColumnId, deletion: Deletion) {
        let slot = self.collection_deletions.entry(column).or_insert(deletion);
        *slot = reconcile_deletion(*slot, deletion);
    }

    pub(crate) fn merge_row(&mut self, row: &Row) {
        if let Some(l) = row.liveness {
            self.merge_liveness(l);
        }
        if let Some(d) = row.deletion {
            self.merge_deletion(d);
        }
        for (k, c) in &row.cells {
            self.merge_cell(k.clone(), c.clone());
        }
        for &(col, d) in &row.collection_deletions {
            self.merge_collection_deletion(col, d);
        }
    }

    pub(crate) fn from_row(row: &Row) -> RowAtoms {
        let mut atoms = RowAtoms::default();
        atoms.merge_row(row);
        atoms
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.liveness.is_none()
            && self.deletion.is_none()
            && self.cells.is_empty()
            && self.collection_deletions.is_empty()
    }

    /// The canonical row: shadowed data removed given `cover`, the timestamp of the strongest
    /// deletion covering the row from outside (partition or range deletion). `None` if nothing
    /// is left.
    pub(crate) fn canonical(&self, clustering: &[u8], cover: Option<i64>) -> Option<Row> {
        let deletion = self.deletion.filter(|d| survives(d.timestamp, cover));
        let shadow = max_ts(cover, deletion.map(|d| d.timestamp));
        let liveness = self.liveness.filter(|l| survives(l.timestamp, shadow));
        let collection_deletions: Vec<(ColumnId, Deletion)> = self
            .collection_deletions
            .iter()
            .filter(|(_, d)| survives(d.timestamp, shadow))
            .map(|(c, d)| (*c, *d))
            .collect();
        let cells: Vec<(CellKey, Cell)> = self
            .cells
            .iter()
            .filter(|(k, c)| {
                let column_shadow = max_ts(
                    shadow,
                    self.collection_deletions
                        .get(&k.column)
                        .map(|d| d.timestamp),
                );
                survives(c.timestamp, column_shadow)
            })
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let row = Row {
            clustering: clustering.to_vec(),
            liveness,
            deletion,
            cells,
            collection_deletions,
        };
        if row.is_empty() {
            None
        } else {
            Some(row)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Positions and range deletions.
// ---------------------------------------------------------------------------------------------

/// A position on the clustering line (see the module documentation). Range bounds map to
/// `Lowest`, `Before(v)`, `After(v)` and `Highest`; rows sit at `At(v)`, which is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pos {
    Lowest,
    Before(Vec<u8>),
    After(Vec<u8>),
    Highest,
}

impl Pos {
    fn sort_key(&self) -> (u8, &[u8], u8) {
        match self {
            Pos::Lowest => (0, &[], 0),
            Pos::Before(v) => (1, v, 0),
            Pos::After(v) => (1, v, 2),
            Pos::Highest => (2, &[], 0),
        }
    }

    /// Compares this position with the row position `At(clustering)`.
    pub(crate) fn cmp_row(&self, clustering: &[u8]) -> Ordering {
        self.sort_key().cmp(&(1, clustering, 1))
    }
}

impl Ord for Pos {
    fn cmp(&self, other: &Pos) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for Pos {
    fn partial_cmp(&self, other: &Pos) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The position a range starts at.
pub(crate) fn start_pos(bound: &Bound<Vec<u8>>) -> Pos {
    match bound {
        Bound::Unbounded => Pos::Lowest,
        Bound::Included(v) => Pos::Before(v.clone()),
        Bound::Excluded(v) => Pos::After(v.clone()),
    }
}

/// The position a range ends at (exclusive).
pub(crate) fn end_pos(bound: &Bound<Vec<u8>>) -> Pos {
    match bound {
        Bound::Unbounded => Pos::Highest,
        Bound::Included(v) => Pos::After(v.clone()),
        Bound::Excluded(v) => Pos::Before(v.clone()),
    }
}

/// The start bound of a range starting at `pos` (inverse of [`start_pos`]).
pub(crate) fn start_bound(pos: &Pos) -> Bound<Vec<u8>> {
    match pos {
        Pos::Lowest | Pos::Highest => Bound::Unbounded,
        Pos::Before(v) => Bound::Included(v.clone()),
        Pos::After(v) => Bound::Excluded(v.clone()),
    }
}

/// The end bound of a range ending at `pos` (inverse of [`end_pos`]).
pub(crate) fn end_bound(pos: &Pos) -> Bound<Vec<u8>> {
    match pos {
        Pos::Lowest | Pos::Highest => Bound::Unbounded,
        Pos::Before(v) => Bound::Excluded(v.clone()),
        Pos::After(v) => Bound::Included(v.clone()),
    }
}

/// Range deletions normalized: sorted, disjoint, non-empty intervals of positions, each with the
/// strongest deletion over it, none shadowed by the partition deletion they were built against,
/// adjacent intervals with equal deletions coalesced.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeletionRuns {
    runs: Vec<(Pos, Pos, Deletion)>,
}

impl DeletionRuns {
    /// Normalizes raw `(start, end, deletion)` intervals; runs whose deletion the partition
    /// deletion `floor` already implies are dropped.
    pub(crate) fn build(
        ranges: impl IntoIterator<Item = (Pos, Pos, Deletion)>,
        floor: Option<Deletion>,
    ) -> DeletionRuns {
        // Sweep over boundary points with a multiset of the deletions active there.
        let mut events: Vec<(Pos, bool, Deletion)> = Vec::new();
        for (start, end, deletion) in ranges {
            if start < end {
                events.push((start, true, deletion));
                events.push((end, false, deletion));
            }
        }
        events.sort_by(|a, b| a.0.cmp(&b.0));
        let floor_ts = floor.map(|d| d.timestamp);
        let mut active: BTreeMap<(i64, Seconds), usize> = BTreeMap::new();
        let mut out = DeletionRuns::default();
        let mut i = 0;
        while i < events.len() {
            let point = events[i].0.clone();
            while i < events.len() && events[i].0 == point {
                let (_, is_start, d) = &events[i];
                let key = (d.timestamp, d.local_deletion_time);
                if *is_start {
                    *active.entry(key).or_insert(0) += 1;
                } else if let Some(count) = active.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        active.remove(&key);
                    }
                }
                i += 1;
            }
            let Some(next) = events.get(i).map(|e| e.0.clone()) else {
                break;
            };
            if let Some((&(timestamp, local_deletion_time), _)) = active.last_key_value() {
                if survives(timestamp, floor_ts) {
                    out.push(
                        point,
                        next,
                        Deletion {
                            timestamp,
                            local_deletion_time,
                        },
                    );
                }
            }
        }
        out
    }

    /// Appends a run after the existing ones, coalescing it with the last one when they touch
    /// and carry the same deletion.
    fn push(&mut self, start: Pos, end: Pos, deletion: Deletion) {
        if let Some(last) = self.runs.last_mut() {
            if last.1 == start && last.2 == deletion {
                last.1 = end;
                return;
            }
        }
        self.runs.push((start, end, deletion));
    }

    /// The parts of these runs inside `intervals` (sorted, disjoint).
    pub(crate) fn clip(&self, intervals: &[(Pos, Pos)]) -> DeletionRuns {
        let mut out = DeletionRuns::default();
        for (start, end, deletion) in &self.runs {
            for (lo, hi) in intervals {
                let s = start.max(lo);
                let e = end.min(hi);
                if s < e {
                    out.push(s.clone(), e.clone(), *deletion);
                }
            }
        }
        out
    }

    /// The deletion covering the row with these clustering bytes, if any. The empty clustering
    /// (the static row) is never covered by a range.
    pub(crate) fn covering(&self, clustering: &[u8]) -> Option<Deletion> {
        if clustering.is_empty() {
            return None;
        }
        // First run whose end is after the row; it covers the row if its start is before it.
        let idx = self
            .runs
            .partition_point(|(_, end, _)| end.cmp_row(clustering) != Ordering::Greater);
        self.runs
            .get(idx)
            .filter(|(start, _, _)| start.cmp_row(clustering) == Ordering::Less)
            .map(|(_, _, d)| *d)
    }

    /// The runs as range deletions, in ascending order.
    pub(crate) fn to_range_deletions(&self) -> Vec<RangeDeletion> {
        self.runs
            .iter()
            .map(|(s, e, d)| RangeDeletion {
                start: start_bound(s),
                end: end_bound(e),
                deletion: *d,
            })
            .collect()
    }
}

/// Converts range deletions into position intervals.
pub(crate) fn range_positions(
    ranges: &[RangeDeletion],
) -> impl Iterator<Item = (Pos, Pos, Deletion)> + '_ {
    ranges
        .iter()
        .map(|r| (start_pos(&r.start), end_pos(&r.end), r.deletion))
}

// ---------------------------------------------------------------------------------------------
// Partitions.
// ---------------------------------------------------------------------------------------------

impl PartitionData {
    /// The mutation that writes everything this answer holds: applied to a replica, it brings
    /// that replica at least up to this answer (read repair, streaming). Re-applying data is
    /// harmless: merge is idempotent.
    pub fn to_mutation(&self, table: TableId) -> Mutation {
        self.clone().into_mutation(table)
    }

    /// [`PartitionData::to_mutation`] without a copy: the rows and cells move into the mutation.
    pub fn into_mutation(self, table: TableId) -> Mutation {
        let row_update = |row: Row| RowUpdate {
            clustering: row.clustering,
            liveness: row.liveness,
            deletion: row.deletion,
            cells: row.cells,
            collection_deletions: row.collection_deletions,
        };
        Mutation {
            table,
            partition: self.partition,
            partition_deletion: self.partition_deletion,
            range_deletions: self.range_deletions,
            rows: self
                .static_row
                .into_iter()
                .chain(self.rows)
                .map(row_update)
                .collect(),
        }
    }

    /// Merges two answers for the same partition and slice (e.g. from two replicas), rows in
    /// ascending clustering order. See [`PartitionData::merge_in_order`] for reversed slices.
    pub fn merge(a: &PartitionData, b: &PartitionData) -> PartitionData {
        PartitionData::merge_in_order(a, b, false)
    }

    /// Merges two answers for the same partition and slice: every slot reconciled, everything
    /// shadowed removed, range deletions normalized. The result is what one replica holding both
    /// answers' data would answer (without `limit`: see
    /// [`PartitionData::truncate_to_live_rows`]). Rows come out descending when `reversed`.
    /// Commutative, associative and idempotent. The partition key is taken from `a`.
    pub fn merge_in_order(a: &PartitionData, b: &PartitionData, reversed: bool) -> PartitionData {
        let partition_deletion =
            reconcile_optional_deletion(a.partition_deletion, b.partition_deletion);
        let floor = partition_deletion.map(|d| d.timestamp);
        let runs = DeletionRuns::build(
            range_positions(&a.range_deletions).chain(range_positions(&b.range_deletions)),
            partition_deletion,
        );

        let mut static_atoms = RowAtoms::default();
        for row in a.static_row.iter().chain(b.static_row.iter()) {
            static_atoms.merge_row(row);
        }
        let static_row = static_atoms.canonical(&[], floor);

        let mut rows: BTreeMap<&[u8], RowAtoms> = BTreeMap::new();
        for row in a.rows.iter().chain(b.rows.iter()) {
            rows.entry(&row.clustering).or_default().merge_row(row);
        }
        let canonical = |(clustering, atoms): (&[u8], RowAtoms)| {
            let cover = max_ts(floor, runs.covering(clustering).map(|d| d.timestamp));
            atoms.canonical(clustering, cover)
        };
        let rows: Vec<Row> = if reversed {
            rows.into_iter().rev().filter_map(canonical).collect()
        } else {
            rows.into_iter().filter_map(canonical).collect()
        };

        PartitionData {
            partition: a.partition.clone(),
            partition_deletion,
            range_deletions: runs.to_range_deletions(),
            static_row,
            rows,
        }
    }

    /// The rows that exist at `now` (static row excluded), in the answer's order.
    pub fn live_rows(&self, now: Seconds) -> impl Iterator<Item = &Row> + '_ {
        self.rows.iter().filter(move |r| r.is_live(now))
    }

    /// The static row if it exists at `now`.
    pub fn live_static_row(&self, now: Seconds) -> Option<&Row> {
        self.static_row.as_ref().filter(|r| r.is_live(now))
    }

    /// Whether anything in the partition exists at `now` (static row or a row).
    pub fn is_live(&self, now: Seconds) -> bool {
        self.live_static_row(now).is_some() || self.rows.iter().any(|r| r.is_live(now))
    }

    /// Whether the answer carries nothing at all (no deletion, no row).
    pub fn is_empty(&self) -> bool {
        self.partition_deletion.is_none()
            && self.range_deletions.is_empty()
            && self.static_row.is_none()
            && self.rows.is_empty()
    }

    /// Drops the rows after the `limit`-th live row (at `now`), as a read with that limit would
    /// have stopped; dead rows before it stay. Use after merging answers read with a limit.
    pub fn truncate_to_live_rows(&mut self, limit: usize, now: Seconds) {
        if limit == 0 {
            self.rows.clear();
            return;
        }
        let mut live = 0;
        let cut = self.rows.iter().position(|r| {
            if r.is_live(now) {
                live += 1;
            }
            live == limit
        });
        if let Some(idx) = cut {
            self.rows.truncate(idx + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del(ts: i64, ldt: i64) -> Deletion {
        Deletion::new(ts, ldt)
    }

    #[test]
    fn higher_timestamp_wins() {
        let old = Cell::live(1, b"zzz".to_vec());
        let new = Cell::live(2, b"aaa".to_vec());
        assert_eq!(reconcile_cell(&old, &new), &new);
        assert_eq!(reconcile_cell(&new, &old), &new);
        let tomb = Cell::tombstone(1, 100);
        assert_eq!(reconcile_cell(&tomb, &new), &new);
    }

    #[test]
    fn equal_timestamp_tie_breaks() {
        let live = Cell::live(5, b"zzz".to_vec());
        let expiring = Cell::expiring(5, 10, 100, b"aaa".to_vec());
        let tomb = Cell::tombstone(5, 50);
        // Tombstone beats expiring beats plain live, whatever the values.
        assert_eq!(reconcile_cell(&live, &tomb), &tomb);
        assert_eq!(reconcile_cell(&expiring, &tomb), &tomb);
        assert_eq!(reconcile_cell(&live, &expiring), &expiring);
        // Two tombstones: later local deletion time.
        let tomb2 = Cell::tombstone(5, 60);
        assert_eq!(reconcile_cell(&tomb, &tomb2), &tomb2);
        // Two expiring cells: later expiry before value.
        let expiring2 = Cell::expiring(5, 10, 101, b"a".to_vec());
        assert_eq!(reconcile_cell(&expiring, &expiring2), &expiring2);
        // Two plain live cells: greater value bytes (unsigned).
        let hi = Cell::live(5, vec![0x80]);
        let lo = Cell::live(5, vec![0x7f, 0xff]);
        assert_eq!(reconcile_cell(&lo, &hi), &hi);
        // Same expiry and value: larger TTL.
        let e1 = Cell::expiring(5, 10, 100, b"v".to_vec());
        let e2 = Cell::expiring(5, 20, 100, b"v".to_vec());
        assert_eq!(reconcile_cell(&e1, &e2), &e2);
    }

    #[test]
    fn liveness_and_deletion_orders() {
        let plain = Liveness::new(5);
        let exp = Liveness::expiring(5, 10, 100);
        assert_eq!(reconcile_liveness(plain, exp), exp);
        assert_eq!(reconcile_liveness(Liveness::expiring(5, 10, 90), exp), exp);
        assert_eq!(reconcile_liveness(Liveness::new(6), exp), Liveness::new(6));
        assert_eq!(reconcile_deletion(del(5, 1), del(5, 2)), del(5, 2));
        assert_eq!(reconcile_deletion(del(6, 1), del(5, 2)), del(6, 1));
        assert!(del(5, 0).deletes(5));
        assert!(!del(5, 0).deletes(6));
    }

    #[test]
    fn expiry_is_interpretation_not_reconciliation() {
        let c = Cell::expiring(1, 10, 100, b"v".to_vec());
        assert!(c.is_live(99));
        assert!(!c.is_live(100));
        assert_eq!(c.live_value(100), None);
        let l = Liveness::expiring(1, 10, 100);
        assert!(l.is_live(99) && !l.is_live(100));
        assert!(Liveness::new(1).is_live(i64::MAX));
    }

    #[test]
    fn runs_normalize_overlaps() {
        let a = (
            start_pos(&Bound::Included(b"b".to_vec())),
            end_pos(&Bound::Included(b"f".to_vec())),
            del(5, 0),
        );
        let b = (
            start_pos(&Bound::Included(b"d".to_vec())),
            end_pos(&Bound::Unbounded),
            del(7, 0),
        );
        let runs = DeletionRuns::build(vec![a, b], None);
        let out = runs.to_range_deletions();
        assert_eq!(
            out,
            vec![
                RangeDeletion {
                    start: Bound::Included(b"b".to_vec()),
                    end: Bound::Excluded(b"d".to_vec()),
                    deletion: del(5, 0)
                },
                RangeDeletion {
                    start: Bound::Included(b"d".to_vec()),
                    end: Bound::Unbounded,
                    deletion: del(7, 0)
                },
            ]
        );
        assert_eq!(runs.covering(b"a"), None);
        assert_eq!(runs.covering(b"b"), Some(del(5, 0)));
        assert_eq!(runs.covering(b"c"), Some(del(5, 0)));
        assert_eq!(runs.covering(b"d"), Some(del(7, 0)));
        assert_eq!(runs.covering(b"zz"), Some(del(7, 0)));
        // Floor drops shadowed runs.
        let floored = DeletionRuns::build(runs.runs.clone(), Some(del(6, 0)));
        assert_eq!(floored.covering(b"c"), None);
        assert_eq!(floored.covering(b"d"), Some(del(7, 0)));
    }

    #[test]
    fn empty_clustering_is_never_covered() {
        let all = (Pos::Lowest, Pos::Highest, del(9, 0));
        let runs = DeletionRuns::build(vec![all], None);
        assert_eq!(runs.covering(b""), None);
        assert_eq!(runs.covering(b"\0"), Some(del(9, 0)));
    }

    #[test]
    fn row_canonical_removes_shadowed() {
        let mut atoms = RowAtoms::default();
        atoms.merge_liveness(Liveness::new(3));
        atoms.merge_deletion(del(4, 0));
        atoms.merge_cell(
            CellKey {
                column: 1,
                path: None,
            },
            Cell::live(5, b"x".to_vec()),
        );
        atoms.merge_cell(
            CellKey {
                column: 2,
                path: Some(b"k".to_vec()),
            },
            Cell::live(6, b"y".to_vec()),
        );
        atoms.merge_collection_deletion(2, del(7, 0));
        let row = atoms.canonical(b"c", None).expect("row");
        assert_eq!(row.liveness, None);
        assert_eq!(row.deletion, Some(del(4, 0)));
        assert_eq!(row.cells.len(), 1);
        assert_eq!(row.collection_deletions, vec![(2, del(7, 0))]);
        assert!(row.is_live(0));
        // A cover at or above the row deletion absorbs it.
        let row = atoms.canonical(b"c", Some(5)).expect("row");
        assert_eq!(row.deletion, None);
        assert!(!row.is_live(0));
        assert!(atoms.canonical(b"c", Some(7)).is_none());
    }
}

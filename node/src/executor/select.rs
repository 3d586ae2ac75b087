//! SELECT: planning, reading through the data path, paging.
//!
//! A select reads partitions one at a time — the listed keys in key order for `k = / IN`, or the
//! ring in token order for token ranges and full scans — and within each partition the
//! clustering ranges of the WHERE clause, in clustering order (or reversed for `ORDER BY ...
//! DESC`). Storage is always read in bounded chunks: a partition in slices of at most
//! [`CHUNK_ROWS`] rows, a scan in batches of at most [`SCAN_BATCH`] partitions, so neither a huge
//! partition nor a huge table is ever loaded whole, whatever the page size — `COUNT(*)` over a
//! large table streams the same way.
//!
//! Rows pass, in order: liveness (TTL expiry), the in-memory filters (ALLOW FILTERING), `PER
//! PARTITION LIMIT`, `LIMIT`, then the page. When a page fills, the position of its last row —
//! partition, clustering bytes, rows left under LIMIT, rows already taken from the partition —
//! becomes the paging state, and the next page resumes strictly after it.
//!
//! A partition with a live static row but no live rows yields one row of partition key and
//! static values (nulls elsewhere) when the query does not restrict clustering columns, as in
//! Cassandra.

use std::sync::Arc;

use ringdb_cql::ast::Select;
use ringdb_cql::types::{CqlType, CqlValue};

use super::datapath::{DataPath, PartitionRead, RangeRead};
use super::error::{invalid, ExecError};
use super::keys::{self, ByteRange};
use super::paging::PagingState;
use super::restrictions::{
    self, BoundWhere, PartitionSel, PartitionShape, Where, FILTERING_MESSAGE,
};
use super::rows::{LogicalRow, RowDecoder};
use super::selection::{distinct_allowed, Aggregator, Selection};
use super::values::{eval_i64, EvalCtx};
use super::{ColumnSpec, QueryOptions, QueryResult};
use crate::schema::{ColumnKind, TableDef};
use crate::storage::{PartitionData, PartitionKey, Row, ScanRange, Seconds, Slice};

/// Most rows read from one partition per storage call.
pub(crate) const CHUNK_ROWS: usize = 512;
/// Most partitions per scan call.
pub(crate) const SCAN_BATCH: usize = 64;

/// A validated SELECT against a table.
pub(crate) struct SelectPlan<'a> {
    pub table: Arc<TableDef>,
    pub stmt: &'a Select,
    pub selection: Selection,
    pub restrictions: Where<'a>,
    /// Rows in descending clustering order.
    pub reversed: bool,
}

/// Validates a SELECT (everything that does not need bound values).
pub(crate) fn plan<'a>(
    table: Arc<TableDef>,
    stmt: &'a Select,
) -> Result<SelectPlan<'a>, ExecError> {
    if stmt.json {
        return invalid("SELECT JSON is not supported by ringdb");
    }
    let selection = Selection::resolve(&table, &stmt.selectors)?;
    let restrictions = restrictions::analyze(&table, &stmt.where_clause)?;
    if restrictions.needs_filtering && !stmt.allow_filtering && !table.is_virtual {
        // Cassandra's more specific message for a gap in the clustering columns.
        if matches!(restrictions.partition, PartitionShape::Keys(_)) {
            if let Some(f) = restrictions
                .filters
                .iter()
                .find(|f| matches!(table.columns[f.column].kind, ColumnKind::Clustering(..)))
            {
                if restrictions
                    .filters
                    .iter()
                    .all(|f| table.columns[f.column].kind.is_primary_key())
                    && super::restrictions::is_key_restriction_op(f.op)
                {
                    let ck = table.clustering();
                    let pos = ck
                        .iter()
                        .position(|c| c.name == table.columns[f.column].name)
                        .unwrap_or(0);
                    let prev = &ck[pos.saturating_sub(1)].name;
                    let after_slice = restrictions.slice.is_some();
                    if after_slice {
                        return invalid(format!(
                            "Clustering column \"{}\" cannot be restricted (preceding column \"{}\" is restricted by a non-EQ relation)",
                            table.columns[f.column].name, prev
                        ));
                    }
                    return invalid(format!(
                        "PRIMARY KEY column \"{}\" cannot be restricted as preceding column \"{}\" is not restricted",
                        table.columns[f.column].name, prev
                    ));
                }
            }
        }
        return invalid(FILTERING_MESSAGE);
    }
    if stmt.distinct {
        let pk: Vec<usize> = table
            .partition_key()
            .iter()
            .filter_map(|c| table.column_index(&c.name))
            .collect();
        let used = selection.columns();
        if let Some(bad) = used.iter().find(|i| !distinct_allowed(&table, **i)) {
            return invalid(format!(
                "SELECT DISTINCT queries must only request partition key columns and/or static columns (not {})",
                table.columns[*bad].name
            ));
        }
        if !selection.aggregate {
            let missing: Vec<&str> = pk
                .iter()
                .filter(|i| !used.contains(i))
                .map(|i| table.columns[*i].name.as_str())
                .collect();
            if !missing.is_empty() {
                return invalid(format!(
                    "SELECT DISTINCT queries must request all the partition key columns (missing {})",
                    missing.join(", ")
                ));
            }
        }
        if !restrictions.prefix.is_empty() || restrictions.slice.is_some() {
            return invalid("SELECT DISTINCT with WHERE clause only supports restriction by partition key and/or static columns.");
        }
    }
    let reversed = order_reversed(&table, stmt, &restrictions)?;
    Ok(SelectPlan {
        table,
        stmt,
        selection,
        restrictions,
        reversed,
    })
}

fn order_reversed(table: &TableDef, stmt: &Select, w: &Where<'_>) -> Result<bool, ExecError> {
    if stmt.order_by.is_empty() {
        return Ok(false);
    }
    if !matches!(w.partition, PartitionShape::Keys(_)) {
        return invalid(
            "ORDER BY is only supported when the partition key is restricted by an EQ or an IN.",
        );
    }
    let ck = table.clustering();
    let mut reversed = None;
    let mut last_pos: Option<usize> = None;
    for (name, order) in &stmt.order_by {
        let Some(pos) = ck.iter().position(|c| &c.name == name) else {
            if table.column(name).is_none() {
                return invalid(format!("Undefined column name {name}"));
            }
            return invalid(format!("Order by is currently only supported on the clustered columns of the PRIMARY KEY, got {name}"));
        };
        if last_pos.is_some_and(|l| pos <= l) {
            return invalid("Order by currently only supports the ordering of columns following their declared order in the PRIMARY KEY");
        }
        last_pos = Some(pos);
        let declared_desc =
            ck[pos].clustering_order() == Some(crate::schema::ClusteringOrder::Desc);
        let want_desc = *order == ringdb_cql::ast::Order::Desc;
        let r = declared_desc != want_desc;
        if reversed.is_some_and(|prev| prev != r) {
            return invalid("Unsupported order by relation");
        }
        reversed = Some(r);
    }
    Ok(reversed.unwrap_or(false))
}

/// Where a page stops.
enum Flow {
    Continue,
    /// The page is full: resume after the last row.
    PageFull,
    /// LIMIT reached: no more pages.
    Done,
}

/// Collects rows or aggregates them.
enum Sink {
    Rows(Vec<Vec<Option<Vec<u8>>>>),
    Aggregate(Aggregator),
}

/// One execution of a planned SELECT.
struct Run<'p, 'e> {
    plan: &'p SelectPlan<'p>,
    bound: BoundWhere,
    data: &'e dyn DataPath,
    ctx: EvalCtx<'e>,
    decoder: RowDecoder<'p>,
    consistency: u16,
    remaining: Option<u64>,
    per_partition_limit: Option<u64>,
    page_size: Option<usize>,
    page_rows: usize,
    sink: Sink,
    /// Position of the last row emitted: partition, clustering (None: partition finished),
    /// rows emitted from that partition.
    last: Option<(PartitionKey, Option<Vec<u8>>, u64)>,
}

fn positive_limit(v: Option<i64>, what: &str) -> Result<Option<u64>, ExecError> {
    match v {
        None => Ok(None),
        Some(n) if n <= 0 => invalid(format!("{what} must be strictly positive")),
        Some(n) => Ok(Some(n as u64)),
    }
}

/// Executes a planned SELECT.
pub(crate) async fn execute(
    plan: &SelectPlan<'_>,
    data: &dyn DataPath,
    ctx: EvalCtx<'_>,
    now: Seconds,
    opts: &QueryOptions,
) -> Result<QueryResult, ExecError> {
    let table = &plan.table;
    let bound = plan.restrictions.bind(table, &ctx)?;
    let limit = match &plan.stmt.limit {
        Some(t) => positive_limit(eval_i64(t, &CqlType::Int, &ctx, "[limit]")?, "LIMIT")?,
        None => None,
    };
    let per_partition_limit = match &plan.stmt.per_partition_limit {
        Some(t) => positive_limit(
            eval_i64(t, &CqlType::Int, &ctx, "[per_partition_limit]")?,
            "PER PARTITION LIMIT",
        )?,
        None => None,
    };
    let columns: Vec<ColumnSpec> = plan.selection.specs();
    let aggregate = plan.selection.aggregate;
    // An aggregate without GROUP BY reads everything; its LIMIT applies to the single result
    // row (Cassandra's AGGREGATE_EVERYTHING).
    let (limit, per_partition_limit) = if aggregate {
        (None, None)
    } else {
        (limit, per_partition_limit)
    };
    let page_size = if aggregate {
        None
    } else {
        opts.page_size.filter(|p| *p > 0).map(|p| p as usize)
    };

    let resume = match &opts.paging_state {
        Some(bytes) if !aggregate => match PagingState::decode(bytes)? {
            PagingState::Data {
                partition,
                clustering,
                remaining,
                partition_rows,
            } => Some((partition, clustering, remaining, partition_rows)),
            PagingState::Offset { .. } => {
                return Err(ExecError::Protocol(
                    "Invalid value for the paging state".into(),
                ))
            }
        },
        _ => None,
    };
    if let (Some(_), Some(_)) = (&page_size, &plan.stmt.order_by.first()) {
        if let PartitionSel::Keys(k) = &bound.partitions {
            if k.len() > 1 {
                return invalid("Cannot page queries with both ORDER BY and a IN restriction on the partition key; you must either remove the ORDER BY or the IN and sort client side, or disable paging for this query");
            }
        }
    }

    let mut run = Run {
        plan,
        bound,
        data,
        ctx,
        decoder: RowDecoder::new(table, now),
        consistency: opts.consistency,
        remaining: resume.as_ref().map_or(limit, |r| r.2),
        per_partition_limit,
        page_size,
        page_rows: 0,
        sink: if aggregate {
            Sink::Aggregate(Aggregator::new(&plan.selection))
        } else {
            Sink::Rows(Vec::new())
        },
        last: None,
    };
    let flow = if run.remaining == Some(0) || matches!(&run.bound.ranges, Some(r) if r.is_empty()) {
        Flow::Done
    } else {
        run.run(resume.map(|r| (r.0, r.1, r.3))).await?
    };
    let paging_state = match (flow, &run.last) {
        (Flow::PageFull, Some((partition, clustering, partition_rows))) => Some(
            PagingState::Data {
                partition: partition.clone(),
                clustering: clustering.clone(),
                remaining: run.remaining,
                partition_rows: *partition_rows,
            }
            .encode(),
        ),
        _ => None,
    };
    let rows = match run.sink {
        Sink::Rows(rows) => rows,
        Sink::Aggregate(agg) => vec![agg.finish(&plan.selection)],
    };
    Ok(QueryResult::Rows {
        columns,
        rows,
        paging_state,
    })
}

impl Run<'_, '_> {
    fn table(&self) -> &TableDef {
        &self.plan.table
    }

    /// Rows still wanted before something stops the page (for sizing storage reads).
    fn wanted(&self) -> usize {
        let mut n = CHUNK_ROWS;
        if let Some(p) = self.page_size {
            n = n.min(p.saturating_sub(self.page_rows) + 1);
        }
        if let Some(r) = self.remaining {
            n = n.min(usize::try_from(r).unwrap_or(usize::MAX).saturating_add(1));
        }
        n.max(2)
    }

    async fn run(
        &mut self,
        resume: Option<(PartitionKey, Option<Vec<u8>>, u64)>,
    ) -> Result<Flow, ExecError> {
        match self.bound.partitions.clone() {
            PartitionSel::Keys(keys_values) => {
                let mut partitions = Vec::with_capacity(keys_values.len());
                for values in &keys_values {
                    partitions.push(keys::partition_key(values)?);
                }
                let mut start = 0;
                let mut resume_after = None;
                let mut resume_rows = 0;
                if let Some((pk, clustering, rows)) = resume {
                    let idx = partitions.iter().position(|p| *p == pk).ok_or_else(|| {
                        ExecError::Protocol(
                            "Invalid value for the paging state: it does not match the query"
                                .into(),
                        )
                    })?;
                    match clustering {
                        None => start = idx + 1,
                        Some(c) => {
                            start = idx;
                            resume_after = Some(c);
                            resume_rows = rows;
                        }
                    }
                }
                for (i, pk) in partitions.iter().enumerate().skip(start) {
                    let (after, rows) = if i == start {
                        (resume_after.take(), resume_rows)
                    } else {
                        (None, 0)
                    };
                    match self.partition(pk, None, after, rows).await? {
                        Flow::Continue => {}
                        other => return Ok(other),
                    }
                }
                Ok(Flow::Continue)
            }
            PartitionSel::Range(bounds) => {
                let Ok(end_token) = bounds.end_token() else {
                    return Ok(Flow::Continue);
                };
                let mut after = bounds.lower.map(|(t, _)| PartitionKey {
                    token: t,
                    key: Vec::new(),
                });
                if let Some((pk, clustering, rows)) = resume {
                    if let Some(c) = clustering {
                        match self.partition(&pk, None, Some(c), rows).await? {
                            Flow::Continue => {}
                            other => return Ok(other),
                        }
                    }
                    after = Some(pk);
                }
                loop {
                    let batch_size = SCAN_BATCH.min(self.wanted()).max(1);
                    let limit = self.chunk_limit();
                    let slice = self.slice(self.bound.ranges.clone(), true, limit);
                    let range = ScanRange {
                        after: after.clone(),
                        end_token,
                    };
                    let batch = self
                        .data
                        .scan(RangeRead {
                            keyspace: &self.table().keyspace,
                            table: self.table().id,
                            range: &range,
                            slice: &slice,
                            max_partitions: batch_size,
                            now: self.decoder.now(),
                            consistency: self.consistency,
                        })
                        .await?;
                    let n = batch.len();
                    for data in batch {
                        let pk = data.partition.clone();
                        after = Some(pk.clone());
                        if !bounds.contains(pk.token) {
                            continue;
                        }
                        match self.partition(&pk, Some((data, limit)), None, 0).await? {
                            Flow::Continue => {}
                            other => return Ok(other),
                        }
                    }
                    if n < batch_size {
                        return Ok(Flow::Continue);
                    }
                }
            }
        }
    }

    fn chunk_limit(&self) -> usize {
        if self.plan.stmt.distinct {
            1
        } else {
            self.wanted()
        }
    }

    fn slice(&self, ranges: Option<Vec<ByteRange>>, include_static: bool, limit: usize) -> Slice {
        Slice {
            ranges: ranges.unwrap_or_default(),
            include_static: include_static
                && self.decoder.has_clustering()
                && self.table().has_statics(),
            reversed: self.plan.reversed,
            limit: Some(limit),
        }
    }

    async fn read(
        &self,
        pk: &PartitionKey,
        slice: &Slice,
    ) -> Result<Option<PartitionData>, ExecError> {
        self.data
            .read(PartitionRead {
                keyspace: &self.table().keyspace,
                table: self.table().id,
                partition: pk,
                slice,
                now: self.decoder.now(),
                consistency: self.consistency,
            })
            .await
    }

    /// Emits the rows of one partition. `first`: data already read by a scan with the initial
    /// slice, and the row limit of that read; `after`: resume strictly after this clustering;
    /// `partition_rows`: rows already emitted from this partition on earlier pages.
    async fn partition(
        &mut self,
        pk: &PartitionKey,
        first: Option<(PartitionData, usize)>,
        after: Option<Vec<u8>>,
        mut partition_rows: u64,
    ) -> Result<Flow, ExecError> {
        if self
            .per_partition_limit
            .is_some_and(|l| partition_rows >= l)
        {
            return Ok(Flow::Continue);
        }
        let resumed = after.is_some();
        let mut ranges: Option<Vec<ByteRange>> = self.bound.ranges.clone();
        if let Some(c) = &after {
            let base = ranges.unwrap_or_else(|| vec![restrictions::unbounded_range()]);
            let cut = keys::ranges_after(&base, c, self.plan.reversed);
            if cut.is_empty() {
                return Ok(Flow::Continue);
            }
            ranges = Some(cut);
        }
        let (mut data, mut limit_used) = match first {
            Some(d) => d,
            None => {
                let limit = self.chunk_limit();
                let slice = self.slice(ranges.clone(), true, limit);
                match self.read(pk, &slice).await? {
                    Some(d) => (d, limit),
                    None => return Ok(Flow::Continue),
                }
            }
        };
        let mut template = self.decoder.partition_template(pk)?;
        let static_row: Option<Row> = data.static_row.take();
        let static_live = static_row.as_ref().is_some_and(|r| self.decoder.is_live(r));
        if let Some(s) = &static_row {
            self.decoder.add_static(&mut template, s)?;
        }
        let has_clustering = self.decoder.has_clustering();

        if self.plan.stmt.distinct {
            let live = static_live
                || data.rows.iter().any(|r| {
                    (!has_clustering || !r.clustering.is_empty()) && self.decoder.is_live(r)
                });
            if !live {
                return Ok(Flow::Continue);
            }
            return self.emit(&template, pk, None, partition_rows.saturating_add(1));
        }

        let mut live_seen = resumed || partition_rows > 0;
        loop {
            let n = data.rows.len();
            let mut last_clustering = None;
            for row in std::mem::take(&mut data.rows) {
                let clustering = row.clustering.clone();
                last_clustering = Some(clustering.clone());
                if has_clustering && clustering.is_empty() {
                    continue;
                }
                if !self.decoder.is_live(&row) {
                    continue;
                }
                live_seen = true;
                let logical = self.decoder.decode_row(&template, &row)?;
                if !self.passes_filters(&logical) {
                    continue;
                }
                partition_rows = partition_rows.saturating_add(1);
                let flow = self.emit(&logical, pk, Some(clustering), partition_rows)?;
                if !matches!(flow, Flow::Continue) {
                    return Ok(flow);
                }
                if self
                    .per_partition_limit
                    .is_some_and(|l| partition_rows >= l)
                {
                    return Ok(Flow::Continue);
                }
            }
            // Fewer rows than the read's limit (live or not) means the slice is exhausted: a
            // read stops early only after `limit` live rows.
            let Some(last) = last_clustering else { break };
            if n < limit_used {
                break;
            }
            let chunk = self.chunk_limit();
            let base = ranges
                .clone()
                .unwrap_or_else(|| vec![restrictions::unbounded_range()]);
            let cut = keys::ranges_after(&base, &last, self.plan.reversed);
            if cut.is_empty() {
                break;
            }
            let slice = self.slice(Some(cut), false, chunk);
            limit_used = chunk;
            data = match self.read(pk, &slice).await? {
                Some(d) => d,
                None => break,
            };
        }
        if !live_seen
            && static_live
            && has_clustering
            && self.bound.ranges.is_none()
            && self.passes_filters(&template)
        {
            return self.emit(&template, pk, None, partition_rows.saturating_add(1));
        }
        Ok(Flow::Continue)
    }

    fn passes_filters(&self, row: &LogicalRow) -> bool {
        self.bound.filters.iter().all(|f| {
            let v: Option<CqlValue> = row.typed(self.table(), f.column);
            f.matches(v.as_ref())
        })
    }

    fn emit(
        &mut self,
        row: &LogicalRow,
        pk: &PartitionKey,
        clustering: Option<Vec<u8>>,
        partition_rows: u64,
    ) -> Result<Flow, ExecError> {
        let now = self.decoder.now();
        match &mut self.sink {
            Sink::Rows(rows) => rows.push(self.plan.selection.eval_row(row, &self.ctx, now)?),
            Sink::Aggregate(agg) => agg.add(&self.plan.selection, row, &self.ctx, now)?,
        }
        self.page_rows += 1;
        self.last = Some((pk.clone(), clustering, partition_rows));
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(1);
            if *r == 0 {
                return Ok(Flow::Done);
            }
        }
        if self.page_size.is_some_and(|p| self.page_rows >= p) {
            return Ok(Flow::PageFull);
        }
        Ok(Flow::Continue)
    }
}

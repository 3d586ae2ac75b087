//! From stored rows to CQL rows.
//!
//! Storage hands back rows of cells keyed by column id (plus element paths for non-frozen
//! collections), with their timestamps and expiry. A *logical row* is what a SELECT sees: one
//! optional value per table column, in the native protocol's serialized form, with the write
//! time and TTL each value came with. Partition key values come from the partition key bytes,
//! clustering values from the clustering bytes, static values from the partition's static row.
//! Expired cells and tombstones read as null; an empty non-frozen collection reads as null (as in
//! Cassandra). Cells of dropped columns have ids no live column has, so they are never shown.

use std::collections::HashMap;

use ringdb_cql::types::{self, CqlType, CqlValue};

use super::error::ExecError;
use super::keys;
use super::values::base;
use crate::schema::{ColumnDef, ColumnId, ColumnKind, TableDef};
use crate::storage::{PartitionKey, Row, Seconds};

/// One column's value in a logical row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CellView {
    /// Serialized value (native protocol form).
    pub value: Vec<u8>,
    /// Write timestamp (microseconds); for collections the newest element's.
    pub timestamp: i64,
    /// TTL the value was written with (0: none).
    pub ttl: i32,
    /// Expiry (seconds since the epoch) when `ttl > 0`.
    pub expires_at: Seconds,
}

impl CellView {
    fn key(value: Vec<u8>) -> CellView {
        CellView {
            value,
            timestamp: i64::MIN,
            ttl: 0,
            expires_at: 0,
        }
    }
}

/// A row as a SELECT sees it.
#[derive(Debug, Clone)]
pub(crate) struct LogicalRow {
    /// Token of the row's partition.
    pub token: i64,
    /// One entry per table column (by index in `TableDef::columns`); `None` is null.
    pub cells: Vec<Option<CellView>>,
}

impl LogicalRow {
    /// The typed value of a column (decoded from its bytes).
    pub(crate) fn typed(&self, table: &TableDef, column: usize) -> Option<CqlValue> {
        let cell = self.cells.get(column)?.as_ref()?;
        CqlValue::deserialize(&table.columns[column].ty, &cell.value).ok()
    }
}

/// Decodes stored rows of one table into logical rows.
pub(crate) struct RowDecoder<'t> {
    table: &'t TableDef,
    by_id: HashMap<ColumnId, usize>,
    clustering: Vec<&'t ColumnDef>,
    clustering_idx: Vec<usize>,
    pk_idx: Vec<usize>,
    now: Seconds,
}

impl<'t> RowDecoder<'t> {
    pub(crate) fn new(table: &'t TableDef, now: Seconds) -> RowDecoder<'t> {
        let by_id = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id, i))
            .collect();
        let clustering = table.clustering();
        let clustering_idx = clustering
            .iter()
            .filter_map(|c| table.column_index(&c.name))
            .collect();
        let pk_idx = table
            .partition_key()
            .iter()
            .filter_map(|c| table.column_index(&c.name))
            .collect();
        RowDecoder {
            table,
            by_id,
            clustering,
            clustering_idx,
            pk_idx,
            now,
        }
    }

    /// Expiry reference time.
    pub(crate) fn now(&self) -> Seconds {
        self.now
    }

    /// Whether the table has clustering columns (rows other than the single partition row).
    pub(crate) fn has_clustering(&self) -> bool {
        !self.clustering.is_empty()
    }

    /// A row template holding the partition key values.
    pub(crate) fn partition_template(
        &self,
        partition: &PartitionKey,
    ) -> Result<LogicalRow, ExecError> {
        let mut cells = vec![None; self.table.columns.len()];
        let parts = keys::split_partition_key(&partition.key, self.pk_idx.len())?;
        for (idx, bytes) in self.pk_idx.iter().zip(parts) {
            cells[*idx] = Some(CellView::key(bytes));
        }
        Ok(LogicalRow {
            token: partition.token,
            cells,
        })
    }

    /// Adds the static row's values to a template.
    pub(crate) fn add_static(
        &self,
        template: &mut LogicalRow,
        static_row: &Row,
    ) -> Result<(), ExecError> {
        self.fill_cells(template, static_row, true)
    }

    /// Whether a stored row exists at `now`.
    pub(crate) fn is_live(&self, row: &Row) -> bool {
        row.is_live(self.now)
    }

    /// The logical row for a stored (clustering) row: template values plus its own.
    pub(crate) fn decode_row(
        &self,
        template: &LogicalRow,
        row: &Row,
    ) -> Result<LogicalRow, ExecError> {
        let mut out = template.clone();
        if !self.clustering.is_empty() {
            let values = keys::decode_clustering(&self.clustering, &row.clustering)?;
            for (idx, v) in self.clustering_idx.iter().zip(values) {
                out.cells[*idx] = Some(CellView::key(v.serialize()));
            }
        }
        self.fill_cells(&mut out, row, false)?;
        Ok(out)
    }

    fn fill_cells(&self, out: &mut LogicalRow, row: &Row, statics: bool) -> Result<(), ExecError> {
        let mut i = 0;
        let cells = &row.cells;
        while i < cells.len() {
            let column = cells[i].0.column;
            let mut j = i;
            while j < cells.len() && cells[j].0.column == column {
                j += 1;
            }
            if let Some(&idx) = self.by_id.get(&column) {
                let col = &self.table.columns[idx];
                let is_static = col.kind == ColumnKind::Static;
                if is_static == statics && !col.kind.is_primary_key() {
                    out.cells[idx] = self.column_value(col, &cells[i..j])?;
                }
            }
            i = j;
        }
        Ok(())
    }

    fn column_value(
        &self,
        col: &ColumnDef,
        cells: &[(crate::storage::CellKey, crate::storage::Cell)],
    ) -> Result<Option<CellView>, ExecError> {
        let now = self.now;
        if !col.ty.is_multi_cell() {
            let Some((_, cell)) = cells.iter().find(|(k, _)| k.path.is_none()) else {
                return Ok(None);
            };
            return Ok(cell.live_value(now).map(|v| CellView {
                value: v.to_vec(),
                timestamp: cell.timestamp,
                ttl: cell.ttl,
                expires_at: cell.local_deletion_time,
            }));
        }
        let live: Vec<_> = cells
            .iter()
            .filter(|(k, c)| k.path.is_some() && c.is_live(now))
            .collect();
        if live.is_empty() {
            return Ok(None);
        }
        let timestamp = live
            .iter()
            .map(|(_, c)| c.timestamp)
            .max()
            .unwrap_or(i64::MIN);
        let (ttl, expires_at) = live
            .iter()
            .filter(|(_, c)| c.ttl > 0)
            .map(|(_, c)| (c.ttl, c.local_deletion_time))
            .min_by_key(|(_, e)| *e)
            .unwrap_or((0, 0));
        let corrupt = |e: ringdb_cql::types::TypeError| {
            ExecError::Server(format!("corrupt collection element in storage: {e}"))
        };
        let mut parts: Vec<Vec<u8>> = Vec::with_capacity(live.len() * 2);
        let count = live.len();
        match base(&col.ty) {
            CqlType::List(_) => {
                for (_, c) in &live {
                    parts.push(c.value.clone().unwrap_or_default());
                }
            }
            CqlType::Set(e) => {
                for (k, _) in &live {
                    let path = k.path.as_deref().unwrap_or_default();
                    let (v, _) = types::decode_comparable(e, false, path).map_err(corrupt)?;
                    parts.push(v.serialize());
                }
            }
            CqlType::Map(kt, _) => {
                for (k, c) in &live {
                    let path = k.path.as_deref().unwrap_or_default();
                    let (key, _) = types::decode_comparable(kt, false, path).map_err(corrupt)?;
                    parts.push(key.serialize());
                    parts.push(c.value.clone().unwrap_or_default());
                }
            }
            _ => return Ok(None),
        }
        Ok(Some(CellView {
            value: encode_collection(count, &parts),
            timestamp,
            ttl,
            expires_at,
        }))
    }
}

/// The native encoding of a collection: `[int] n` then each element as `[bytes]` (for maps, `n`
/// counts entries and `parts` alternates keys and values).
pub(crate) fn encode_collection(count: usize, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(&(count as i32).to_be_bytes());
    for p in parts {
        out.extend_from_slice(&(p.len() as i32).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

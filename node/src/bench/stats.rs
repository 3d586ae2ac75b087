//! Counting what a run did: latencies in HDR histograms, errors by kind, one sample per second.
//!
//! Workers record into [`Recorder`] shards (a few `std::sync::Mutex`es, each held for one
//! record, never across an `.await`), so many workers rarely contend. Once a second the collector
//! drains every shard ([`Recorder::drain`]) into a [`Interval`]: that second's histogram and
//! counts, which become one point of the series ([`Second`]) and are added to the run's totals
//! ([`Totals`]). Latencies are recorded in microseconds, from 1 µs to 60 s with three significant
//! digits; longer ones are clamped to 60 s.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use ringdb_cql::client::ClientError;
use serde::Serialize;

use super::workload::Op;

/// The highest latency a histogram tracks, in microseconds (larger ones are clamped to it).
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram (microseconds, three significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|_| {
        // The bounds above are valid; keep a usable histogram regardless.
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// What kind of failure an operation met, as the summary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No answer in time from the client's side, or a server WriteTimeout / ReadTimeout.
    Timeout,
    /// The server said OVERLOADED.
    Overloaded,
    /// The server said UNAVAILABLE (not enough live replicas for the consistency level).
    Unavailable,
    /// The connection broke or could not be made (a node went down), or no host was up.
    Connection,
    /// Anything else (invalid request, protocol error, server error, ...).
    Other,
}

impl ErrorKind {
    /// The kind of a client error, by the protocol's error codes.
    pub fn of(error: &ClientError) -> ErrorKind {
        use ringdb_cql::message::error_code;
        match error {
            ClientError::Timeout(_) => ErrorKind::Timeout,
            ClientError::Server { code, .. } => match *code {
                error_code::OVERLOADED => ErrorKind::Overloaded,
                error_code::UNAVAILABLE => ErrorKind::Unavailable,
                error_code::WRITE_TIMEOUT | error_code::READ_TIMEOUT => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            },
            ClientError::ConnectionClosed(_) | ClientError::Connect { .. } | ClientError::Io(_) => {
                ErrorKind::Connection
            }
            _ => ErrorKind::Other,
        }
    }

    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
        ErrorKind::Connection,
        ErrorKind::Other,
    ];

    /// The name used in the summary and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeouts",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Connection => "connection",
            ErrorKind::Other => "other",
        }
    }
}

/// Errors counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Client timeouts and server read/write timeouts.
    pub timeouts: u64,
    /// OVERLOADED answers.
    pub overloaded: u64,
    /// UNAVAILABLE answers.
    pub unavailable: u64,
    /// Broken or refused connections, no host up.
    pub connection: u64,
    /// Everything else.
    pub other: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.timeouts + self.overloaded + self.unavailable + self.connection + self.other
    }

    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Timeout => &mut self.timeouts,
            ErrorKind::Overloaded => &mut self.overloaded,
            ErrorKind::Unavailable => &mut self.unavailable,
            ErrorKind::Connection => &mut self.connection,
            ErrorKind::Other => &mut self.other,
        }
    }

    /// The count of one kind.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        let mut copy = *self;
        *copy.slot(kind)
    }

    fn add(&mut self, other: &ErrorCounts) {
        for kind in ErrorKind::ALL {
            *self.slot(kind) += other.get(kind);
        }
    }
}

/// What one interval (or shard) counted.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Latencies of successful operations, in microseconds.
    pub histogram: Histogram<u64>,
    /// Successful operations.
    pub ops: u64,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
    /// Reads that found no row.
    pub not_found: u64,
    /// Failed operations by kind.
    pub errors: ErrorCounts,
    /// The first message seen for each error kind (index as [`ErrorKind::ALL`]).
    pub error_examples: [Option<String>; 5],
}

impl Default for Interval {
    fn default() -> Self {
        Interval {
            histogram: new_histogram(),
            ops: 0,
            reads: 0,
            writes: 0,
            not_found: 0,
            errors: ErrorCounts::default(),
            error_examples: Default::default(),
        }
    }
}

impl Interval {
    /// Counts one successful operation.
    pub fn success(&mut self, op: Op, latency: Duration, found: bool) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_LATENCY_US)
            .clamp(1, MAX_LATENCY_US);
        // Cannot fail: the value is clamped into the histogram's range.
        let _ = self.histogram.record(us);
        self.ops += 1;
        match op {
            Op::Read => {
                self.reads += 1;
                if !found {
                    self.not_found += 1;
                }
            }
            Op::Write => self.writes += 1,
        }
    }

    /// Counts one failed operation; keeps the message if it is the first of its kind.
    pub fn failure(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        *self.errors.slot(kind) += 1;
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(4);
        if self.error_examples[i].is_none() {
            self.error_examples[i] = Some(message());
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Interval) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.ops += other.ops;
        self.reads += other.reads;
        self.writes += other.writes;
        self.not_found += other.not_found;
        self.errors.add(&other.errors);
        for (mine, theirs) in self.error_examples.iter_mut().zip(&other.error_examples) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
    }

    /// Empties the interval for reuse (keeps the histogram's allocation).
    fn reset(&mut self) {
        self.histogram.reset();
        self.ops = 0;
        self.reads = 0;
        self.writes = 0;
        self.not_found = 0;
        self.errors = ErrorCounts::default();
        self.error_examples = Default::default();
    }

    /// The latency at quantile `q`, in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

/// Where workers record, in a few shards.
pub struct Recorder {
    shards: Vec<Mutex<Interval>>,
}

impl Recorder {
    /// A recorder with `shards` shards (at least one).
    pub fn new(shards: usize) -> Recorder {
        Recorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Interval::default()))
                .collect(),
        }
    }

    /// The shard worker `worker` records into.
    pub fn shard(&self, worker: usize) -> MutexGuard<'_, Interval> {
        let m = &self.shards[worker % self.shards.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything recorded since the last drain, leaving the shards empty.
    pub fn drain(&self) -> Interval {
        let mut all = Interval::default();
        for m in &self.shards {
            let mut shard = m.lock().unwrap_or_else(|p| p.into_inner());
            all.merge(&shard);
            shard.reset();
        }
        all
    }
}

/// One point of the per-second series.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// Seconds since the start of the measured phase, at the end of this interval.
    pub t_s: f64,
    /// Successful operations per second over the interval.
    pub ops_per_s: f64,
    /// Successful operations in the interval.
    pub ops: u64,
    /// Failed operations in the interval.
    pub errors: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Highest latency, ms.
    pub max_ms: f64,
}

impl Second {
    /// The point for `interval`, which lasted `length` and ended `t` after the start.
    pub fn of(interval: &Interval, t: Duration, length: Duration) -> Second {
        let secs = length.as_secs_f64().max(1e-9);
        Second {
            t_s: round3(t.as_secs_f64()),
            ops_per_s: round3(interval.ops as f64 / secs),
            ops: interval.ops,
            errors: interval.errors.total(),
            p50_ms: interval.quantile_ms(0.5),
            p99_ms: interval.quantile_ms(0.99),
            max_ms: if interval.histogram.is_empty() {
                0.0
            } else {
                interval.histogram.max() as f64 / 1000.0
            },
        }
    }
}

/// Latency percentiles of a whole run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: round3(h.mean() / 1000.0),
        }
    }
}

/// The figures of one measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// What was measured: `target` or `null`.
    pub label: String,
    /// The hosts the run sent requests to (`HOST:PORT`).
    pub hosts: Vec<String>,
    /// `token-aware` or `round-robin`.
    pub routing: String,
    /// Seconds from the first operation to the last answer.
    pub elapsed_s: f64,
    /// Successful operations.
    pub ops: u64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Successful reads.
    pub reads: u64,
    /// Successful writes.
    pub writes: u64,
    /// Reads that found no row.
    pub reads_not_found: u64,
    /// Failed operations by kind.
    pub errors: ErrorCounts,
    /// All failed operations.
    pub errors_total: u64,
    /// The first message seen for each error kind that occurred.
    pub error_examples: Vec<(String, String)>,
    /// Latency of successful operations, ms.
    pub latency_ms: Percentiles,
    /// One point per second.
    pub series: Vec<Second>,
}

impl Totals {
    /// The totals of a run from everything it recorded.
    pub fn new(
        label: &str,
        hosts: Vec<String>,
        routing: &str,
        all: &Interval,
        elapsed: Duration,
        series: Vec<Second>,
    ) -> Totals {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Totals {
            label: label.to_string(),
            hosts,
            routing: routing.to_string(),
            elapsed_s: round3(elapsed.as_secs_f64()),
            ops: all.ops,
            throughput: round3(all.ops as f64 / secs),
            reads: all.reads,
            writes: all.writes,
            reads_not_found: all.not_found,
            errors: all.errors,
            errors_total: all.errors.total(),
            error_examples: ErrorKind::ALL
                .iter()
                .zip(&all.error_examples)
                .filter_map(|(k, m)| Some((k.name().to_string(), m.clone()?)))
                .collect(),
            latency_ms: Percentiles::of(&all.histogram),
            series,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_merges_shards_and_empties_them() {
        let r = Recorder::new(3);
        for w in 0..6 {
            r.shard(w)
                .success(Op::Write, Duration::from_millis(w as u64 + 1), true);
        }
        r.shard(1)
            .success(Op::Read, Duration::from_micros(10), false);
        r.shard(2).failure(ErrorKind::Timeout, || "late".into());
        r.shard(0).failure(ErrorKind::Timeout, || "later".into());
        let all = r.drain();
        assert_eq!(all.ops, 7);
        assert_eq!((all.reads, all.writes, all.not_found), (1, 6, 1));
        assert_eq!(all.errors.timeouts, 2);
        assert_eq!(all.errors.total(), 2);
        assert!(all.error_examples[0].is_some());
        let p = Percentiles::of(&all.histogram);
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
        assert!((p.max - 6.0).abs() < 0.01, "{p:?}");
        assert_eq!(r.drain().ops, 0);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut i = Interval::default();
        i.success(Op::Write, Duration::from_secs(3600), true);
        assert_eq!(i.ops, 1);
        assert!(i.quantile_ms(1.0) >= 59_000.0);
    }

    #[test]
    fn client_errors_are_classified() {
        use ringdb_cql::message::{ErrorBody, ErrorKind as Cql};
        let server = |kind: Cql| {
            let body = ErrorBody::new(kind, "x");
            ClientError::Server {
                code: body.code(),
                message: "x".into(),
                error: body,
            }
        };
        assert_eq!(
            ErrorKind::of(&ClientError::Timeout(Duration::from_secs(1))),
            ErrorKind::Timeout
        );
        assert_eq!(
            ErrorKind::of(&server(Cql::Overloaded)),
            ErrorKind::Overloaded
        );
        assert_eq!(ErrorKind::of(&server(Cql::Invalid)), ErrorKind::Other);
        assert_eq!(
            ErrorKind::of(&ClientError::ConnectionClosed("gone".into())),
            ErrorKind::Connection
        );
    }
}

//! The end of a run: the summary printed on stdout and the `--json` document.

use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{ErrorKind, Totals};

/// The run's configuration as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// `--host` as given.
    pub hosts: Vec<String>,
    /// `write`, `read`, `mixed:F`.
    pub workload: String,
    /// Distinct keys.
    pub rows: u64,
    /// Measured seconds asked for.
    pub duration_s: f64,
    /// Workers.
    pub concurrency: usize,
    /// Operations per second asked for, if capped.
    pub rate: Option<f64>,
    /// Replication factor asked for.
    pub rf: u32,
    /// Consistency level.
    pub consistency: String,
    /// Key distribution.
    pub distribution: String,
    /// Bytes per value.
    pub value_size: usize,
    /// Seconds each written row lives, if it expires.
    pub ttl: Option<u32>,
    /// Keyspace.
    pub keyspace: String,
    /// Connections per node.
    pub connections: usize,
    /// `token` or `round-robin` as asked.
    pub routing: String,
    /// Seed of the random keys.
    pub seed: u64,
}

/// The load phase's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Rows written.
    pub rows_written: u64,
    /// Writes that failed.
    pub errors: u64,
    /// Seconds it took.
    pub elapsed_s: f64,
}

/// Target figures divided by the null server's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ratios {
    /// Target throughput / null server throughput (1 is the ceiling of this client here).
    pub throughput: f64,
    /// Target p50 / null server p50.
    pub p50: f64,
    /// Target p99 / null server p99.
    pub p99: f64,
}

impl Ratios {
    /// The ratios of `target` to `null`.
    pub fn of(target: &Totals, null: &Totals) -> Ratios {
        let ratio = |a: f64, b: f64| if b > 0.0 { round3(a / b) } else { 0.0 };
        Ratios {
            throughput: ratio(target.throughput, null.throughput),
            p50: ratio(target.latency_ms.p50, null.latency_ms.p50),
            p99: ratio(target.latency_ms.p99, null.latency_ms.p99),
        }
    }
}

/// Everything `--json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine it ran on.
    pub machine: String,
    /// When it ran, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// The configuration.
    pub config: ConfigReport,
    /// The load phase, for read and mixed workloads.
    pub load: Option<LoadReport>,
    /// The target's figures.
    pub target: Totals,
    /// The null server's figures (`--compare-null`).
    pub null: Option<Totals>,
    /// Target / null (`--compare-null`).
    pub ratio_to_null: Option<Ratios>,
    /// True when the run was cut short by Ctrl-C.
    pub interrupted: bool,
}

/// The summary of one measured phase, a few lines.
pub fn render_totals(t: &Totals) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} node{}, {}): {:.1} s",
        t.label,
        t.hosts.len(),
        if t.hosts.len() == 1 { "" } else { "s" },
        t.routing,
        t.elapsed_s
    );
    let _ = writeln!(
        out,
        "  ops         {} (writes {}, reads {}, reads that found no row {})",
        t.ops, t.writes, t.reads, t.reads_not_found
    );
    let _ = writeln!(out, "  throughput  {:.1} ops/s", t.throughput);
    let kinds: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), t.errors.get(*k)))
        .collect();
    let _ = writeln!(
        out,
        "  errors      {} ({})",
        t.errors_total,
        kinds.join(", ")
    );
    for (kind, message) in &t.error_examples {
        let _ = writeln!(out, "    first {kind}: {message}");
    }
    let l = &t.latency_ms;
    let _ = writeln!(
        out,
        "  latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p999 {:.3}  max {:.3}  mean {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    out
}

/// The whole summary printed at the end.
pub fn render(report: &Report) -> String {
    let c = &report.config;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ringdb bench: {} for {:.1} s, {} workers{}, CL {}, RF {}, {} keys ({}), {}-byte values{}",
        c.workload,
        c.duration_s,
        c.concurrency,
        c.rate.map(|r| format!(" at {r} ops/s")).unwrap_or_default(),
        c.consistency,
        c.rf,
        c.rows,
        c.distribution,
        c.value_size,
        c.ttl.map(|t| format!(", TTL {t} s")).unwrap_or_default()
    );
    let _ = writeln!(out, "machine: {}", report.machine);
    if let Some(load) = &report.load {
        let _ = writeln!(
            out,
            "load: {} rows written in {:.1} s, {} errors",
            load.rows_written, load.elapsed_s, load.errors
        );
    }
    if let Some(null) = &report.null {
        out.push_str(&render_totals(null));
    }
    out.push_str(&render_totals(&report.target));
    if let Some(r) = &report.ratio_to_null {
        let _ = writeln!(
            out,
            "ratio to the null server (target / null): throughput {:.3}, p50 {:.2}x, p99 {:.2}x",
            r.throughput, r.p50, r.p99
        );
    }
    if report.interrupted {
        let _ = writeln!(out, "(interrupted before the end)");
    }
    out
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

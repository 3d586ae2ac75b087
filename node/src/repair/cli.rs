//! `ringdb repair [--host HOST[:PORT]] [--pr] [--json] [KEYSPACE [TABLE]]`: asks a node's admin
//! API to repair the ranges it replicates, shows a progress bar of the ranges done, and prints
//! the summary. The exit status is non-zero when any range failed (a replica down, a timeout),
//! or when the repair could not start.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use hyper::Method;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{RepairReport, MAX_REPORTED_FAILURES};
use crate::admin::client;

/// `ringdb repair` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct RepairArgs {
    /// Only this keyspace (default: every keyspace but the system ones).
    pub keyspace: Option<String>,
    /// Only this table of the keyspace.
    pub table: Option<String>,
    /// The node to repair: its admin API as HOST or HOST:PORT (`admin_address`, `admin_port`).
    #[arg(long, default_value = "127.0.0.1:7199")]
    pub host: String,
    /// Only the ranges this node is the primary replica of (run it on every node to cover the
    /// ring once).
    #[arg(long = "pr", visible_alias = "partitioner-range")]
    pub primary_range_only: bool,
    /// Print the summary as JSON (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl RepairArgs {
    /// The admin API path and query of this repair.
    pub fn path(&self) -> String {
        let mut params = Vec::new();
        if let Some(ks) = &self.keyspace {
            params.push(format!("keyspace={}", encode(ks)));
        }
        if let Some(t) = &self.table {
            params.push(format!("table={}", encode(t)));
        }
        if self.primary_range_only {
            params.push("pr=true".to_string());
        }
        if params.is_empty() {
            "/repair".to_string()
        } else {
            format!("/repair?{}", params.join("&"))
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Failed ranges the text summary lists (`--json` has more).
const MAX_PRINTED_FAILURES: usize = 10;

/// Runs `ringdb repair`.
pub async fn run(args: RepairArgs) -> anyhow::Result<ExitCode> {
    let addr = client::resolve(&args.host).await?;
    let health = client::get_json(addr, "/health").await?;
    let node = format!(
        "{} (host id {})",
        health
            .get("listen_address")
            .and_then(|v| v.as_str())
            .unwrap_or("?"),
        health
            .get("host_id")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    );
    let response = client::request(addr, Method::POST, &args.path()).await?;
    let mut lines = client::Lines::new(response);

    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if args.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} repair {msg:.dim} [{elapsed_precise}] {wide_bar} {pos}/{len} ranges",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last: Option<RepairReport> = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let report: RepairReport = serde_json::from_str(&line)
            .with_context(|| format!("the node sent a line that is not a report: {line}"))?;
        if last.is_none() && !args.json {
            bar.suspend(|| eprintln!("repairing {node}"));
        }
        bar.set_length(report.ranges_total);
        bar.set_position(report.ranges_done);
        bar.set_message(report.current.clone().unwrap_or_default());
        let finished = report.finished;
        last = Some(report);
        if finished {
            break;
        }
    }
    bar.finish_and_clear();
    let report = last.ok_or_else(|| anyhow!("the node closed the connection before reporting"))?;
    if !report.finished {
        anyhow::bail!(
            "the connection to {addr} ended before the repair finished ({} of {} ranges done); \
             `GET /repair` on the admin API shows how it ends",
            report.ranges_done,
            report.ranges_total
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_summary(&report));
    }
    if report.succeeded() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "ringdb: error: repair incomplete: {} of {} ranges failed",
            report.ranges_failed, report.ranges_total
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Bytes in binary units: `1.5 MiB` and the like.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The summary as `ringdb repair` prints it.
pub fn render_summary(r: &RepairReport) -> String {
    let mut out = String::new();
    let scope = if r.primary_range_only {
        "primary ranges"
    } else {
        "all replicated ranges"
    };
    out.push_str(&format!(
        "Repair {} of node {} (host id {}), {scope}\n",
        r.id, r.address, r.host_id
    ));
    for ks in &r.keyspaces {
        out.push_str(&format!(
            "  keyspace {} (replication factor {}): {} table(s) x {} range(s)\n",
            ks.name,
            ks.replication_factor,
            ks.tables.len(),
            ks.ranges
        ));
    }
    for s in &r.skipped {
        out.push_str(&format!(
            "  skipped keyspace {}: {}\n",
            s.keyspace, s.reason
        ));
    }
    let rows = [
        ("ranges compared", r.ranges_compared.to_string()),
        ("ranges out of sync", r.ranges_out_of_sync.to_string()),
        ("ranges failed", r.ranges_failed.to_string()),
        (
            "partitions streamed",
            format!(
                "{} ({})",
                r.partitions_streamed,
                human_bytes(r.bytes_streamed)
            ),
        ),
        (
            "partitions fetched",
            format!(
                "{} ({})",
                r.partitions_fetched,
                human_bytes(r.bytes_fetched)
            ),
        ),
        ("duration", format!("{:.1} s", r.elapsed_ms as f64 / 1000.0)),
    ];
    for (name, value) in rows {
        out.push_str(&format!("{name:<21}{value}\n"));
    }
    if !r.failures.is_empty() {
        out.push_str("failed ranges:\n");
        for f in r.failures.iter().take(MAX_PRINTED_FAILURES) {
            if f.keyspace.is_empty() {
                out.push_str(&format!("  {}\n", f.error));
            } else {
                out.push_str(&format!(
                    "  {}.{} {}: {}\n",
                    f.keyspace, f.table, f.range, f.error
                ));
            }
        }
        let listed = r.failures.len().min(MAX_PRINTED_FAILURES) as u64;
        let unlisted = r.ranges_failed.saturating_sub(listed);
        if unlisted > 0 {
            out.push_str(&format!(
                "  ... and {unlisted} more (--json lists up to {MAX_REPORTED_FAILURES})\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repair::{KeyspaceReport, RangeFailure, SkippedKeyspace};

    #[test]
    fn paths_encode_names() {
        let args = RepairArgs {
            keyspace: Some("Ks x".into()),
            table: Some("t&1".into()),
            host: String::new(),
            primary_range_only: true,
            json: false,
        };
        assert_eq!(args.path(), "/repair?keyspace=Ks%20x&table=t%261&pr=true");
        let all = RepairArgs {
            keyspace: None,
            table: None,
            ..args
        };
        assert_eq!(all.path(), "/repair?pr=true");
        let q = crate::admin::Query::parse("keyspace=Ks%20x&table=t%261").unwrap();
        assert_eq!(
            (q.get("keyspace"), q.get("table")),
            (Some("Ks x"), Some("t&1"))
        );
    }

    #[test]
    fn summary_names_every_figure() {
        let report = RepairReport {
            address: "127.0.0.2".into(),
            host_id: "h".into(),
            keyspaces: vec![KeyspaceReport {
                name: "ks".into(),
                replication_factor: 3,
                tables: vec!["t".into()],
                ranges: 48,
            }],
            skipped: vec![SkippedKeyspace {
                keyspace: "one".into(),
                reason: "replication factor 1".into(),
            }],
            ranges_total: 48,
            ranges_done: 48,
            ranges_compared: 47,
            ranges_out_of_sync: 5,
            ranges_failed: 1,
            partitions_streamed: 12,
            bytes_streamed: 4096,
            failures: vec![RangeFailure {
                keyspace: "ks".into(),
                table: "t".into(),
                range: "(1, 2]".into(),
                error: "replica 127.0.0.3 down".into(),
            }],
            elapsed_ms: 1500,
            finished: true,
            ..RepairReport::default()
        };
        let text = render_summary(&report);
        for want in [
            "ranges compared      47",
            "ranges out of sync   5",
            "ranges failed        1",
            "partitions streamed  12 (4.0 KiB)",
            "duration             1.5 s",
            "skipped keyspace one: replication factor 1",
            "ks.t (1, 2]: replica 127.0.0.3 down",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(!report.succeeded());
    }
}

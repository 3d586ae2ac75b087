//! Healing and growing, measured on real local clusters (issue 5): hint replay rate, bootstrap
//! streaming throughput, and repair time for a data set with 1% of its partitions out of sync.
//!
//! ```text
//! cargo build --release -p ringdb-node
//! cargo bench -p ringdb-tests --bench healing                       # everything, default sizes
//! cargo bench -p ringdb-tests --bench healing -- --only hints --hints 200000
//! cargo bench -p ringdb-tests --bench healing -- --only bootstrap --stream-mb 1024
//! cargo bench -p ringdb-tests --bench healing -- --only repair --repair-mb 1024
//! ```
//!
//! - **hints**: 3 nodes, RF 3; node3 is killed, `--hints` rows (100-byte values) are written at
//!   ONE (each leaves one hint for node3 on its coordinator), node3 is started again; the figure
//!   is hints replayed per second, from node3 up until no node holds a hint for it (the
//!   `ringdb_hints_pending` gauge of every node). Run twice: with the default
//!   `hinted_handoff_throttle` (1 MiB/s per target) and with the throttle lifted.
//! - **bootstrap**: one node, RF 1, loaded with `--stream-mb` MiB (1 KiB values); node2 is added
//!   and streams about half of it; the figure is the joining node's own count of bytes streamed
//!   over the streaming time (its log line `bootstrap streaming done`).
//! - **repair**: 2 nodes, RF 2, hinted handoff off, loaded with `--repair-mb` MiB (1 KiB values)
//!   at ALL; node2 is stopped while 1% of the partitions are overwritten at ONE, then started
//!   again; the figures are the wall time of `ringdb repair` on node1 (what it compared and
//!   streamed, from its JSON summary) and of a second repair, which finds nothing to stream.
//!
//! Needs the release binary (`RINGDB_BIN` or `target/release/ringdb`); prints `SKIPPED` without
//! it. Loading uses the `scylla` driver (token-aware, 256 requests in flight).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::stream::{self, StreamExt};
use ringdb_node::cluster::NodeHandle;
use ringdb_tests::{fetch_metrics, metric_sum, parse_metrics, ringdb_bin_or_skip, TestCluster};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

const UP_TIMEOUT: Duration = Duration::from_secs(180);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(900);
const METRICS_PORT: u16 = 9500;
const IN_FLIGHT: usize = 256;

struct Options {
    only: Vec<String>,
    hints: u64,
    stream_mb: u64,
    repair_mb: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        only: vec!["hints".into(), "bootstrap".into(), "repair".into()],
        hints: 200_000,
        stream_mb: 1024,
        repair_mb: 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{what} N"))?
                .parse()
                .with_context(|| format!("{what} N"))
        };
        match arg.as_str() {
            "--hints" => o.hints = number("--hints")?,
            "--stream-mb" => o.stream_mb = number("--stream-mb")?,
            "--repair-mb" => o.repair_mb = number("--repair-mb")?,
            "--only" => {
                let list = args.next().context("--only hints,bootstrap,repair")?;
                o.only = list.split(',').map(str::to_string).collect();
            }
            // `cargo bench` passes --bench; libtest-style filters are ignored.
            _ => {}
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let Some(bin) = ringdb_bin_or_skip("healing bench") else {
        return Ok(());
    };
    let o = options()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("healing bench; machine: {}", ringdb_tests::machine());
    if o.only.iter().any(|w| w == "hints") {
        for (label, throttle) in [
            ("default throttle (1 MiB/s)", None),
            ("unthrottled", Some("1GiB")),
        ] {
            let mut sets = vec![("commitlog_sync", "periodic")];
            if let Some(t) = throttle {
                sets.push(("hinted_handoff_throttle", t));
            }
            let guard = TestCluster::create("healing-hints", &bin, &[3], &sets)?;
            let result = rt.block_on(hints(&guard, o.hints, label));
            report(&guard, result)?;
        }
    }
    if o.only.iter().any(|w| w == "bootstrap") {
        let guard = TestCluster::create("healing-bootstrap", &bin, &[1], &[])?;
        let result = rt.block_on(bootstrap(&guard, o.stream_mb));
        report(&guard, result)?;
    }
    if o.only.iter().any(|w| w == "repair") {
        let guard = TestCluster::create(
            "healing-repair",
            &bin,
            &[2],
            &[("hinted_handoff_enabled", "false")],
        )?;
        let result = rt.block_on(repair(&guard, &bin, o.repair_mb));
        report(&guard, result)?;
    }
    Ok(())
}

/// Prints the nodes' logs when a part failed.
fn report(guard: &TestCluster, result: Result<()>) -> Result<()> {
    if result.is_err() {
        eprintln!("{}", guard.log_tails(40));
    }
    result
}

async fn connect(node: &NodeHandle) -> Result<Session> {
    SessionBuilder::new()
        .known_node(node.cql_addr.to_string())
        .build()
        .await
        .with_context(|| format!("connecting to {}", node.cql_addr))
}

async fn schema(session: &Session, rf: usize) -> Result<()> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE bench WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
            ),
            &[],
        )
        .await
        .context("CREATE KEYSPACE")?;
    session
        .query_unpaged("CREATE TABLE bench.kv (k bigint PRIMARY KEY, v blob)", &[])
        .await
        .context("CREATE TABLE")?;
    session.await_schema_agreement().await?;
    Ok(())
}

/// Writes keys `keys` with `value_size`-byte values at `cl`, IN_FLIGHT at a time; returns how
/// many MiB of values per second went in.
async fn load(
    session: &Session,
    keys: impl Iterator<Item = i64>,
    value_size: usize,
    cl: Consistency,
    tag: u8,
) -> Result<f64> {
    let mut insert = session
        .prepare("INSERT INTO bench.kv (k, v) VALUES (?, ?)")
        .await?;
    insert.set_consistency(cl);
    let insert = Arc::new(insert);
    let started = Instant::now();
    let mut n = 0u64;
    let errors: Vec<String> = stream::iter(keys.inspect(|_| n += 1))
        .map(|k| {
            let insert = insert.clone();
            let mut value = vec![tag; value_size];
            value[..8].copy_from_slice(&k.to_be_bytes());
            async move {
                session
                    .execute_unpaged(&insert, (k, value))
                    .await
                    .map_err(|e| format!("k={k}: {e}"))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    ensure!(
        errors.is_empty(),
        "{} of {n} writes failed; first: {}",
        errors.len(),
        errors[0]
    );
    let mib = (n as f64 * value_size as f64) / f64::from(1 << 20);
    Ok(mib / started.elapsed().as_secs_f64())
}

/// Hints every node holds (the `ringdb_hints_pending` gauge), over the running nodes.
fn pending_hints(nodes: &[NodeHandle]) -> Result<f64> {
    let mut total = 0.0;
    for node in nodes {
        let body = fetch_metrics(
            SocketAddr::new(IpAddr::V4(node.ip), METRICS_PORT),
            Duration::from_secs(5),
        )?;
        total += metric_sum(&parse_metrics(&body), "ringdb_hints_pending", &[]);
    }
    Ok(total)
}

async fn hints(guard: &TestCluster, rows: u64, label: &str) -> Result<()> {
    guard.start(UP_TIMEOUT).await?;
    let nodes = guard.nodes();
    let session = connect(&nodes[0]).await?;
    schema(&session, 3).await?;
    guard.kill_node("node3").await?;
    guard
        .wait_seen("node3", ringdb_node::cluster::Seen::Down, UP_TIMEOUT)
        .await?;
    let rate = load(&session, 0..rows as i64, 100, Consistency::One, 1).await?;
    // Hints for a down replica are stored in the background of the acknowledged writes.
    let stored = Instant::now();
    loop {
        let held = pending_hints(&nodes[..2])?;
        if held as u64 == rows {
            break;
        }
        ensure!(
            stored.elapsed() < Duration::from_secs(30),
            "expected {rows} hints for node3, the nodes hold {held}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = Instant::now();
    guard.start_node("node3", UP_TIMEOUT).await?;
    let seen_up = up.elapsed();
    let drain = Instant::now();
    loop {
        let left = pending_hints(&nodes[..2])?;
        if left == 0.0 {
            break;
        }
        ensure!(
            drain.elapsed() < DRAIN_TIMEOUT,
            "{left} hints still pending after {DRAIN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = drain.elapsed();
    println!(
        "hint replay, {label}: {rows} hints (100-byte values, written at ONE with node3 down at \
         {rate:.1} MiB/s) replayed in {:.2}s after node3 was up ({:.2}s to start): {:.0} \
         mutations/s",
        drained.as_secs_f64(),
        seen_up.as_secs_f64(),
        rows as f64 / drained.as_secs_f64()
    );
    guard.stop().await?;
    Ok(())
}

async fn bootstrap(guard: &TestCluster, mib: u64) -> Result<()> {
    guard.start(UP_TIMEOUT).await?;
    let nodes = guard.nodes();
    let session = connect(&nodes[0]).await?;
    schema(&session, 1).await?;
    let rows = (mib << 10) as i64;
    let rate = load(&session, 0..rows, 1024, Consistency::One, 2).await?;
    println!("bootstrap: loaded {mib} MiB ({rows} rows of 1 KiB) into node1 at {rate:.1} MiB/s");
    let node2 = guard.add_node("node2", None, None)?;
    let started = Instant::now();
    guard.start_node("node2", UP_TIMEOUT).await?;
    let joined = started.elapsed();
    let log = std::fs::read_to_string(&node2.log_path)?;
    let line = log
        .lines()
        .find(|l| l.contains("bootstrap streaming done"))
        .context("node2's log has no `bootstrap streaming done` line")?;
    let field = |name: &str| -> Result<f64> {
        let start = line
            .find(&format!("{name}="))
            .with_context(|| format!("no {name}= in {line}"))?
            + name.len()
            + 1;
        let value: String = line[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        value.parse().with_context(|| format!("{name}= in {line}"))
    };
    let (bytes, seconds, partitions) = (field("bytes")?, field("seconds")?, field("partitions")?);
    println!(
        "bootstrap streaming: node2 took {partitions} partitions, {:.0} MiB in {seconds:.2}s: \
         {:.0} MiB/s ({:.1}s from start to NORMAL and seen up by all)",
        bytes / f64::from(1 << 20),
        bytes / f64::from(1 << 20) / seconds,
        joined.as_secs_f64()
    );
    guard.stop().await?;
    Ok(())
}

async fn repair(guard: &TestCluster, bin: &Path, mib: u64) -> Result<()> {
    guard.start(UP_TIMEOUT).await?;
    let nodes = guard.nodes();
    let session = connect(&nodes[0]).await?;
    schema(&session, 2).await?;
    let rows = (mib << 10) as i64;
    let rate = load(&session, 0..rows, 1024, Consistency::All, 3).await?;
    println!("repair: loaded {mib} MiB ({rows} rows of 1 KiB, RF 2) at {rate:.1} MiB/s");
    guard.stop_node("node2").await?;
    guard
        .wait_seen("node2", ringdb_node::cluster::Seen::Down, UP_TIMEOUT)
        .await?;
    // 1% of the partitions, spread over the ring, get a new value node2 misses.
    let stale = (0..rows).step_by(100).count();
    load(&session, (0..rows).step_by(100), 1024, Consistency::One, 4)
        .await
        .context("overwriting 1% of the partitions with node2 down")?;
    guard.start_node("node2", UP_TIMEOUT).await?;
    for round in ["first (1% out of sync)", "second (in sync)"] {
        let started = Instant::now();
        let out = std::process::Command::new(bin)
            .args(["repair", "--json", "--host"])
            .arg(nodes[0].admin_addr.to_string())
            .arg("bench")
            .output()?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!(
                "ringdb repair failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("repair --json: {}", String::from_utf8_lossy(&out.stdout)))?;
        let get = |k: &str| summary.get(k).cloned().unwrap_or_default();
        println!(
            "repair, {round}: {:.2}s for {mib} MiB on 2 replicas ({} stale partitions written); \
             ranges compared {}, out of sync {}, partitions streamed {}, bytes streamed {}",
            took.as_secs_f64(),
            stale,
            get("ranges_compared"),
            get("ranges_out_of_sync"),
            get("partitions_streamed"),
            get("bytes_streamed"),
        );
    }
    guard.stop().await?;
    Ok(())
}

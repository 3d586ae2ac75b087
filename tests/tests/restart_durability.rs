//! Durability across `kill -9` and restart, checked with the Rust `scylla` driver.
//!
//! - `commitlog_sync: batch`: every write the node acknowledged is there after `kill -9` and a
//!   restart on the same data dir — writes acknowledged one by one, then writes in flight while the
//!   process is killed. The checker reports, in numbers, what was acknowledged and read back.
//! - `commitlog_sync: periodic`: after `kill -9` the node restarts cleanly and the schema survives
//!   (recent data may be lost, by design).
//! - A graceful stop (SIGTERM) exits 0 and loses nothing, whatever the sync mode.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::TryStreamExt;
use ringdb_tests::{run_async, NodeOptions, TestNode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const KS: &str = "ks_durable";

async fn connect(addr: &str) -> Result<Session> {
    SessionBuilder::new()
        .known_node(addr)
        .build()
        .await
        .with_context(|| format!("connect to {addr}"))
}

async fn create_schema(session: &Session) -> Result<()> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .context("CREATE KEYSPACE")?;
    session
        .query_unpaged(
            format!("CREATE TABLE IF NOT EXISTS {KS}.kv (k int PRIMARY KEY, v text)"),
            &[],
        )
        .await
        .context("CREATE TABLE")?;
    session
        .await_schema_agreement()
        .await
        .context("schema agreement")?;
    Ok(())
}

fn value_of(k: i32) -> String {
    format!("v{k}")
}

/// Writes keys `range` one at a time, each awaited; returns the acknowledged keys.
async fn write_one_by_one(session: &Session, range: std::ops::Range<i32>) -> Result<Vec<i32>> {
    let insert = session
        .prepare(format!("INSERT INTO {KS}.kv (k, v) VALUES (?, ?)"))
        .await
        .context("PREPARE INSERT")?;
    let mut acked = Vec::new();
    for k in range {
        session
            .execute_unpaged(&insert, (k, value_of(k)))
            .await
            .with_context(|| format!("INSERT k={k}"))?;
        acked.push(k);
    }
    Ok(acked)
}

/// Everything in the table after a restart.
async fn read_all(session: &Session) -> Result<BTreeMap<i32, String>> {
    let rows: Vec<(i32, String)> = session
        .query_iter(format!("SELECT k, v FROM {KS}.kv"), &[])
        .await
        .context("SELECT k, v (full scan)")?
        .rows_stream::<(i32, String)>()?
        .try_collect()
        .await
        .context("paging the full scan")?;
    Ok(rows.into_iter().collect())
}

/// The table is listed in the schema tables and the driver's metadata.
async fn check_schema_survived(session: &Session) -> Result<()> {
    let rows = session
        .query_unpaged(
            format!("SELECT table_name FROM system_schema.tables WHERE keyspace_name = '{KS}'"),
            &[],
        )
        .await
        .context("SELECT FROM system_schema.tables")?
        .into_rows_result()?;
    let names: Vec<String> = rows
        .rows::<(String,)>()?
        .map(|r| r.map(|(n,)| n))
        .collect::<Result<_, _>>()?;
    ensure!(
        names.iter().any(|n| n == "kv"),
        "after restart system_schema.tables for {KS} lists {names:?}, expected kv"
    );
    let state = session.get_cluster_state();
    let ks = state
        .get_keyspace(KS)
        .with_context(|| format!("after restart the driver's metadata has no keyspace {KS}"))?;
    ensure!(
        ks.tables.contains_key("kv"),
        "after restart the driver's metadata has no table {KS}.kv"
    );
    Ok(())
}

/// Acknowledged vs read back, in numbers.
fn check_acknowledged(acked: &[i32], read: &BTreeMap<i32, String>) -> Result<()> {
    let lost: Vec<i32> = acked
        .iter()
        .copied()
        .filter(|k| read.get(k) != Some(&value_of(*k)))
        .collect();
    println!(
        "checker: acknowledged {}, read back {} rows, lost {} acknowledged writes",
        acked.len(),
        read.len(),
        lost.len()
    );
    ensure!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost after kill -9 + restart (first lost keys: {:?})",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
    Ok(())
}

#[test]
fn batch_sync_keeps_every_acknowledged_write_across_kill9() {
    let test = "batch_sync_keeps_every_acknowledged_write_across_kill9";
    let options = NodeOptions::new().set("commitlog_sync", "batch");
    let Some(mut node) = TestNode::start_with_or_skip(test, options) else {
        return;
    };
    let addr = node.cql_host_port();
    run_async(Duration::from_secs(300), async {
        let session = Arc::new(connect(&addr).await?);
        create_schema(&session).await?;

        // Phase 1: 300 writes, each acknowledged before the next.
        let mut acked = write_one_by_one(&session, 0..300).await?;

        // Phase 2: a writer keeps going, one at a time, while the process is killed.
        let in_flight_acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let session = session.clone();
            let acked = in_flight_acked.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(insert) = session
                    .prepare(format!("INSERT INTO {KS}.kv (k, v) VALUES (?, ?)"))
                    .await
                else {
                    return;
                };
                for k in 1000..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let write = session.execute_unpaged(&insert, (k, value_of(k)));
                    match tokio::time::timeout(Duration::from_secs(5), write).await {
                        Ok(Ok(_)) => acked.lock().unwrap().push(k),
                        _ => break,
                    }
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        tokio::task::block_in_place(|| node.kill9());
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(30), writer)
            .await
            .context("writer did not stop within 30 s of kill -9")?
            .context("writer task")?;
        let phase2 = in_flight_acked.lock().unwrap().clone();
        println!(
            "phase 1 acknowledged {}, phase 2 (killed mid-stream) acknowledged {}",
            acked.len(),
            phase2.len()
        );
        acked.extend(phase2);
        drop(session);

        tokio::task::block_in_place(|| node.restart()).context("restart after kill -9")?;
        let session = connect(&addr).await.context("connect after restart")?;
        check_schema_survived(&session).await?;
        let read = read_all(&session).await?;
        check_acknowledged(&acked, &read)
    });
    drop(node);
}

#[test]
fn periodic_sync_restarts_cleanly_after_kill9_and_keeps_schema() {
    let test = "periodic_sync_restarts_cleanly_after_kill9_and_keeps_schema";
    let options = NodeOptions::new()
        .set("commitlog_sync", "periodic")
        .set("commitlog_sync_period_ms", 1000);
    let Some(mut node) = TestNode::start_with_or_skip(test, options) else {
        return;
    };
    let addr = node.cql_host_port();
    run_async(Duration::from_secs(240), async {
        let session = connect(&addr).await?;
        create_schema(&session).await?;
        let acked = write_one_by_one(&session, 0..100).await?;
        drop(session);
        tokio::task::block_in_place(|| node.kill9());

        tokio::task::block_in_place(|| node.restart()).context("restart after kill -9")?;
        let session = connect(&addr).await.context("connect after restart")?;
        check_schema_survived(&session).await?;
        let read = read_all(&session).await?;
        println!(
            "periodic: acknowledged {}, read back {} after kill -9 (loss allowed in periodic mode)",
            acked.len(),
            read.len()
        );
        for (k, v) in &read {
            ensure!(*v == value_of(*k), "row {k} has a corrupt value {v:?}");
        }
        // The restarted node takes writes.
        write_one_by_one(&session, 100..110)
            .await
            .context("writes after restart")?;
        Ok(())
    });
    drop(node);
}

#[test]
fn graceful_stop_exits_zero_and_keeps_every_write() {
    let test = "graceful_stop_exits_zero_and_keeps_every_write";
    let options = NodeOptions::new().set("commitlog_sync", "periodic");
    let Some(mut node) = TestNode::start_with_or_skip(test, options) else {
        return;
    };
    let addr = node.cql_host_port();
    run_async(Duration::from_secs(240), async {
        let session = connect(&addr).await?;
        create_schema(&session).await?;
        let acked = write_one_by_one(&session, 0..200).await?;
        drop(session);
        let status = tokio::task::block_in_place(|| node.stop()).context("SIGTERM")?;
        ensure!(
            status.success(),
            "node exited with {status} after SIGTERM, expected a graceful exit 0"
        );
        tokio::task::block_in_place(|| node.restart()).context("restart after SIGTERM")?;
        let session = connect(&addr).await.context("connect after restart")?;
        check_schema_survived(&session).await?;
        let read = read_all(&session).await?;
        check_acknowledged(&acked, &read)
    });
    drop(node);
}

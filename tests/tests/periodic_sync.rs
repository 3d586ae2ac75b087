//! The loss window of `commitlog_sync: periodic` (issue 9): a write is acknowledged before it is
//! fsynced, and the node fsyncs every `commitlog_sync_period_ms`, so a SIGKILL may lose the
//! writes of about the last period — but never older ones.
//!
//! Writers load one node at full speed and note when each write was acknowledged; the node is
//! killed with SIGKILL; after a restart every write acknowledged more than one period (plus
//! [`FLUSH_SLACK`] for the fsync itself on a loaded machine) before the kill must read back. The
//! checker prints what was acknowledged, what was lost, and how old the oldest lost write was:
//! the observed window, which README's "Durability" section quotes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ringdb_tests::{ringdb_bin_or_skip, run_async, NodeOptions, TestNode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const PERIOD_MS: u64 = 1000;
/// Time an fsync may take on top of the period on a busy 2-core machine: writes acknowledged
/// within this much of the last period before the kill may be lost too.
const FLUSH_SLACK: Duration = Duration::from_secs(2);
const WRITERS: i64 = 16;
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(4);

async fn connect(node: &TestNode) -> Result<Session> {
    SessionBuilder::new()
        .known_node(node.cql_host_port())
        .build()
        .await
        .context("scylla driver: connect")
}

#[test]
fn periodic_sync_loses_at_most_the_last_period_on_sigkill() {
    let test = "periodic_sync_loses_at_most_the_last_period_on_sigkill";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let mut node = TestNode::spawn(
        &bin,
        NodeOptions::new()
            .set("commitlog_sync", "periodic")
            .set("commitlog_sync_period_ms", PERIOD_MS),
    )
    .expect("spawn node");
    node.wait_ready(Duration::from_secs(60))
        .expect("node ready");

    // (key, when acknowledged)
    let acked: Arc<Mutex<Vec<(i64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let node_pid = node.pid().expect("running");
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    {
        let acked = acked.clone();
        let killed_at = killed_at.clone();
        let node_ref = &node;
        run_async(Duration::from_secs(120), async move {
            let session = Arc::new(connect(node_ref).await?);
            session
                .query_unpaged(
                    "CREATE KEYSPACE ks_periodic WITH replication = \
                     {'class': 'SimpleStrategy', 'replication_factor': 1}",
                    &[],
                )
                .await?;
            session
                .query_unpaged(
                    "CREATE TABLE ks_periodic.kv (k bigint PRIMARY KEY, v text)",
                    &[],
                )
                .await?;
            let insert = session
                .prepare("INSERT INTO ks_periodic.kv (k, v) VALUES (?, ?)")
                .await?;
            let started = Instant::now();
            let mut writers = Vec::new();
            for w in 0..WRITERS {
                let session = session.clone();
                let insert = insert.clone();
                let acked = acked.clone();
                writers.push(tokio::spawn(async move {
                    let mut k = w;
                    // Until the kill makes writes fail.
                    while started.elapsed() < LOAD_BEFORE_KILL * 4 {
                        match session
                            .execute_unpaged(&insert, (k, format!("value-{k}")))
                            .await
                        {
                            Ok(_) => acked.lock().expect("lock").push((k, Instant::now())),
                            Err(_) => break,
                        }
                        k += WRITERS;
                    }
                }));
            }
            tokio::time::sleep(LOAD_BEFORE_KILL).await;
            let status = std::process::Command::new("kill")
                .args(["-KILL", &node_pid.to_string()])
                .status()
                .context("kill -KILL")?;
            ensure!(status.success(), "kill -KILL failed");
            *killed_at.lock().expect("lock") = Some(Instant::now());
            for w in writers {
                let _ = w.await;
            }
            Ok(())
        });
    }
    node.kill9(); // reap
    let killed_at = killed_at
        .lock()
        .expect("lock")
        .expect("the node was killed");
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged before the kill: nothing to check",
        acked.len()
    );

    node.restart().expect("restart after SIGKILL");
    let lost: Arc<Mutex<Vec<(i64, Duration)>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let lost = lost.clone();
        let acked = acked.clone();
        let node_ref = &node;
        run_async(Duration::from_secs(300), async move {
            let session = connect(node_ref).await?;
            let select = session
                .prepare("SELECT v FROM ks_periodic.kv WHERE k = ?")
                .await?;
            for (k, at) in &acked {
                let rows = session
                    .execute_unpaged(&select, (*k,))
                    .await?
                    .into_rows_result()?;
                match rows.maybe_first_row::<(String,)>()? {
                    Some((v,)) => ensure!(v == format!("value-{k}"), "k={k}: wrong value {v}"),
                    None => lost
                        .lock()
                        .expect("lock")
                        .push((*k, killed_at.saturating_duration_since(*at))),
                }
            }
            Ok(())
        });
    }
    let lost = lost.lock().expect("lock").clone();
    let oldest_lost = lost.iter().map(|(_, age)| *age).max();
    eprintln!(
        "periodic {PERIOD_MS} ms: {} writes acknowledged before SIGKILL, {} lost; oldest lost \
         write acknowledged {:?} before the kill",
        acked.len(),
        lost.len(),
        oldest_lost
    );
    let bound = Duration::from_millis(PERIOD_MS) + FLUSH_SLACK;
    let too_old: Vec<_> = lost.iter().filter(|(_, age)| *age > bound).collect();
    assert!(
        too_old.is_empty(),
        "{} writes acknowledged more than {bound:?} before the kill were lost (first: {:?})",
        too_old.len(),
        &too_old[..too_old.len().min(5)]
    );
}

//! `commitlog_sync: periodic` and a killed process (issues 8 and 9): a write is acknowledged
//! before it is fsynced (the node fsyncs its commit log every `commitlog_sync_period_ms`), but
//! its commit log record is handed to the operating system before the write is applied, so a
//! SIGKILL of the process must lose nothing acknowledged; only a crash of the machine can lose
//! the writes of about the last period, which a test here cannot cause.
//!
//! Writers load one node at full speed and note when each write was acknowledged; the node is
//! killed with SIGKILL; after a restart (which replays the commit log) every acknowledged write
//! must read back. The checker prints what was acknowledged and what was lost.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use ringdb_tests::{
    create_keyspace, ringdb_bin_or_skip, run_async, scylla_session, NodeOptions, TestNode,
};

const PERIOD_MS: u64 = 1000;
const WRITERS: i64 = 16;
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(4);

#[test]
fn periodic_sync_loses_nothing_acknowledged_on_sigkill() {
    let test = "periodic_sync_loses_nothing_acknowledged_on_sigkill";
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
            let session = Arc::new(scylla_session(&[node_ref.cql_host_port()]).await?);
            create_keyspace(&session, "ks_periodic", 1).await?;
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
            let session = scylla_session(&[node_ref.cql_host_port()]).await?;
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
    assert!(
        lost.is_empty(),
        "{} acknowledged writes were lost by a SIGKILL (first, with how long before the kill \
         each was acknowledged: {:?})",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

//! Crash durability of a whole cluster (issue 9): with `commitlog_sync: batch`, a QUORUM write
//! load runs against 3 nodes (RF 3) while all three are killed with SIGKILL at once; after a
//! restart every write any node acknowledged is read back at ALL (a QUORUM write is durable on
//! two replicas when acknowledged; the third may have missed it, and the ALL read repairs it).
//!
//! The checker reports, in numbers, what was acknowledged, what was in flight at the kill and
//! what was read back. It can fail: a lost or wrong value, or a run in which nothing was
//! acknowledged (nothing to check), fails the test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use ringdb_tests::{create_keyspace, ringdb_bin_or_skip, run_async, TestCluster};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::Consistency;

const KS: &str = "ks_crash";
const WRITERS: u64 = 24;
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(3);
const UP_TIMEOUT: Duration = Duration::from_secs(120);

fn value_of(k: i64) -> String {
    format!("value-{k}")
}

async fn connect(addrs: &[String]) -> Result<Session> {
    SessionBuilder::new()
        .known_nodes(addrs)
        .schema_agreement_timeout(Duration::from_secs(30))
        .build()
        .await
        .context("scylla driver: connect")
}

#[test]
fn every_acknowledged_quorum_write_survives_killing_the_whole_cluster_at_once() {
    let test = "every_acknowledged_quorum_write_survives_killing_the_whole_cluster";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3], &[("commitlog_sync", "batch")])
        .expect("create cluster");
    run_async(Duration::from_secs(420), async {
        guard
            .start(UP_TIMEOUT)
            .await
            .map_err(|e| anyhow!("cluster did not come up: {e}"))?;
        let addrs: Vec<String> = guard
            .nodes()
            .iter()
            .map(|n| n.cql_addr.to_string())
            .collect();
        let session = Arc::new(connect(&addrs).await?);
        create_keyspace(&session, KS, 3).await?;
        session
            .query_unpaged(
                format!("CREATE TABLE {KS}.kv (k bigint PRIMARY KEY, v text)"),
                &[],
            )
            .await
            .context("CREATE TABLE")?;
        session
            .await_schema_agreement()
            .await
            .context("schema agreement")?;
        let mut insert = session
            .prepare(format!("INSERT INTO {KS}.kv (k, v) VALUES (?, ?)"))
            .await
            .context("PREPARE INSERT")?;
        insert.set_consistency(Consistency::Quorum);

        // Writers: unique keys (writer w writes w, w + WRITERS, …), until the cluster is gone.
        let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
        let failed = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (session, insert) = (session.clone(), insert.clone());
            let (acked, failed, killed) = (acked.clone(), failed.clone(), killed.clone());
            writers.push(tokio::spawn(async move {
                let mut k = w as i64;
                // After the kill, a few more attempts (they fail) and the writer stops.
                let mut after_kill = 0;
                while after_kill < 3 {
                    if killed.load(Ordering::SeqCst) {
                        after_kill += 1;
                    }
                    let write = session.execute_unpaged(&insert, (k, value_of(k)));
                    match tokio::time::timeout(Duration::from_secs(5), write).await {
                        Ok(Ok(_)) => acked.lock().expect("acked").push(k),
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    k += WRITERS as i64;
                }
            }));
        }
        tokio::time::sleep(LOAD_BEFORE_KILL).await;
        let acked_before_kill = acked.lock().expect("acked").len();
        // All three at once, while writes are in flight.
        guard.kill_all();
        killed.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.context("writer task")?;
        }
        drop(session);
        let acked: Vec<i64> = acked.lock().expect("acked").clone();
        ensure!(
            !acked.is_empty(),
            "no write was acknowledged before the kill: nothing to check"
        );

        guard
            .start(UP_TIMEOUT)
            .await
            .map_err(|e| anyhow!("cluster did not come back after the kill: {e}"))?;
        guard
            .wait_converged(UP_TIMEOUT)
            .await
            .map_err(|e| anyhow!("cluster did not converge after the restart: {e}"))?;

        // Every acknowledged write, at ALL.
        let session = connect(&addrs).await?;
        let mut select = session
            .prepare(format!("SELECT v FROM {KS}.kv WHERE k = ?"))
            .await
            .context("PREPARE SELECT")?;
        select.set_consistency(Consistency::All);
        let mut missing = Vec::new();
        let mut read_back = 0;
        for &k in &acked {
            let rows = session
                .execute_unpaged(&select, (k,))
                .await
                .with_context(|| format!("SELECT k={k} at ALL"))?
                .into_rows_result()
                .context("SELECT result is not ROWS")?;
            match rows.maybe_first_row::<(String,)>().context("decode row")? {
                Some((v,)) => {
                    ensure!(
                        v == value_of(k),
                        "k={k} reads {v:?}, expected {:?}",
                        value_of(k)
                    );
                    read_back += 1;
                }
                None => missing.push(k),
            }
        }
        eprintln!(
            "checker: {} writes acknowledged ({acked_before_kill} before the kill began), \
             {} failed or unanswered around the kill; {read_back} read back at ALL, {} missing",
            acked.len(),
            failed.load(Ordering::Relaxed),
            missing.len()
        );
        ensure!(
            missing.is_empty(),
            "{} acknowledged writes lost after killing the whole cluster, first {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        Ok(())
    });
}

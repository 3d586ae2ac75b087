//! Corrupt storage (issue 9): a node whose database holds damaged bytes must refuse to serve
//! them, say so loudly and stop, instead of answering with whatever it can decode.
//!
//! The test writes rows through a real node, stops it, damages the stored values of one
//! partition directly in its sled database (as a bad disk or a bug would), and restarts it.
//! Then: a row elsewhere still reads back (nothing is refused before the damage is seen); the
//! read of the damaged partition gets an error naming the corruption, never rows; the node logs a
//! STORAGE FAILURE and exits on its own with a non-zero status; a later restart serves the
//! undamaged rows until it meets the damage again.
//!
//! (A failed flush takes the same path — `storage::failstop` trips on both — and is covered by
//! the unit tests there and in `commitlog`: an fsync error cannot be provoked on this machine
//! without device-mapper, which it lacks.)

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ringdb_tests::{
    create_keyspace, ringdb_bin_or_skip, run_async, scylla_session, NodeOptions, TestNode,
};
use scylla::client::session::Session;

/// The partition key whose stored values are damaged; its bytes appear unescaped in the sled
/// keys of the partition (the key escaping only touches zero bytes).
const DAMAGED: &str = "damaged-partition-7f3a";
const ROWS: usize = 50;
/// How long the node may take from meeting the damage to exiting (it drains for at most 5 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Overwrites the stored value of every atom of the [`DAMAGED`] partition with a byte that is
/// no format version; returns how many were damaged.
fn damage(db_dir: &Path) -> Result<usize> {
    let db = sled::open(db_dir).with_context(|| format!("open sled at {}", db_dir.display()))?;
    let data = db.open_tree("data").context("open tree data")?;
    let marker = DAMAGED.as_bytes();
    let mut damaged = 0;
    for entry in data.iter() {
        let (key, _) = entry.context("iterate")?;
        if key.windows(marker.len()).any(|w| w == marker) {
            data.insert(key, &[0x7Fu8][..]).context("overwrite")?;
            damaged += 1;
        }
    }
    db.flush().context("flush")?;
    Ok(damaged)
}

async fn read(session: &Session, k: &str) -> Result<Option<String>> {
    let rows = session
        .query_unpaged("SELECT v FROM ks_fail.kv WHERE k = ?", (k,))
        .await?
        .into_rows_result()?;
    Ok(rows.maybe_first_row::<(String,)>()?.map(|(v,)| v))
}

#[test]
fn corrupt_data_is_refused_reported_and_stops_the_node() {
    let test = "corrupt_data_is_refused_reported_and_stops_the_node";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let mut node = TestNode::spawn(&bin, NodeOptions::new().set("commitlog_sync", "batch"))
        .expect("spawn node");
    node.wait_ready(Duration::from_secs(60))
        .expect("node ready");

    run_async(Duration::from_secs(120), async {
        let session = scylla_session(&[node.cql_host_port()]).await?;
        create_keyspace(&session, "ks_fail", 1).await?;
        session
            .query_unpaged("CREATE TABLE ks_fail.kv (k text PRIMARY KEY, v text)", &[])
            .await?;
        for i in 0..ROWS {
            session
                .query_unpaged(
                    "INSERT INTO ks_fail.kv (k, v) VALUES (?, ?)",
                    (format!("row-{i}"), format!("value-{i}")),
                )
                .await?;
        }
        session
            .query_unpaged(
                "INSERT INTO ks_fail.kv (k, v) VALUES (?, ?)",
                (DAMAGED, "soon unreadable"),
            )
            .await?;
        ensure!(read(&session, DAMAGED).await?.as_deref() == Some("soon unreadable"));
        Ok(())
    });

    let status = node.stop().expect("graceful stop");
    assert!(status.success(), "the first stop failed: {status}");
    let damaged = damage(&node.dir().join("data").join("db")).expect("damage the partition");
    assert!(
        damaged > 0,
        "no stored value of the partition {DAMAGED} was found to damage"
    );
    eprintln!("damaged {damaged} stored values of partition {DAMAGED}");

    node.restart().expect("restart with damaged data");
    let refusal = std::sync::Mutex::new(String::new());
    run_async(Duration::from_secs(120), async {
        let session = scylla_session(&[node.cql_host_port()]).await?;
        // Undamaged data is served until the damage is met.
        ensure!(read(&session, "row-3").await?.as_deref() == Some("value-3"));
        match read(&session, DAMAGED).await {
            Ok(rows) => anyhow::bail!("the damaged partition was served: {rows:?}"),
            Err(e) => *refusal.lock().expect("lock") = format!("{e:#}"),
        }
        Ok(())
    });
    let refusal = refusal.into_inner().expect("lock");
    eprintln!("refusal: {refusal}");
    assert!(
        refusal.to_lowercase().contains("corrupt"),
        "the refusal does not name the corruption: {refusal}"
    );

    let exit = node.wait_exit(EXIT_TIMEOUT).expect("wait for exit");
    let log = node.log();
    match exit {
        Some(status) => assert!(
            !status.success(),
            "the node exited with success after a storage failure"
        ),
        None => panic!(
            "the node still runs {EXIT_TIMEOUT:?} after meeting corrupt data; log tail:\n{}",
            node.log_tail(40)
        ),
    }
    assert!(
        log.contains("STORAGE FAILURE"),
        "no STORAGE FAILURE in the log; tail:\n{}",
        node.log_tail(40)
    );
    assert!(
        log.contains("the node stopped after a storage failure"),
        "the exit does not say why; tail:\n{}",
        node.log_tail(40)
    );

    // Restarted, the node serves again — and stops again at the same damage.
    node.restart().expect("restart after the failure");
    run_async(Duration::from_secs(120), async {
        let session = scylla_session(&[node.cql_host_port()]).await?;
        for i in 0..ROWS {
            let k = format!("row-{i}");
            ensure!(
                read(&session, &k).await?.as_deref() == Some(format!("value-{i}").as_str()),
                "{k} does not read back after the restart"
            );
        }
        ensure!(
            read(&session, DAMAGED).await.is_err(),
            "the damaged partition was served after a restart"
        );
        Ok(())
    });
    let exit = node.wait_exit(EXIT_TIMEOUT).expect("wait for exit");
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the node did not stop at the damage again: {exit:?}"
    );
}

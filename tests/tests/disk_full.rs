//! A full disk (issue 9), on a real file system: the node's `data_dir` is on a small tmpfs this
//! test mounts, mostly taken by a filler file. A client writes until the node refuses (below
//! `min_free_disk_space`); then: the refusal is a write failure, not a crash; every write the
//! node acknowledged reads back, and reads go on while the disk is full; once the filler is
//! deleted, writes are taken again; after a restart nothing acknowledged is missing.
//!
//! Mounting needs root (CAP_SYS_ADMIN): elsewhere the test prints SKIPPED with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ringdb_tests::{
    create_keyspace, ringdb_bin_or_skip, run_async, scylla_session, skip, NodeOptions, TestNode,
};
use scylla::client::session::Session;

const MOUNT_SIZE_MB: u64 = 128;
const MIN_FREE_MB: u64 = 32;
/// Free space left for the node's writes above `min_free_disk_space` once the filler is there.
const HEADROOM_MB: u64 = 24;
const VALUE_SIZE: usize = 2048;
const MAX_WRITES: i64 = 200_000;

/// A tmpfs mounted on a temp dir; unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u64) -> Result<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("ringdb-diskfull-")
            .tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .context("run mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes available on the file system of `path` (`df`).
fn available(path: &Path) -> Result<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .context("run df")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .with_context(|| format!("cannot read df output {text:?}"))
}

fn value_of(k: i64) -> Vec<u8> {
    let mut v = vec![(k % 251) as u8; VALUE_SIZE];
    v[..8].copy_from_slice(&k.to_be_bytes());
    v
}

async fn read_all(session: &Session, acked: &[i64]) -> Result<usize> {
    let select = session
        .prepare("SELECT v FROM ks_full.kv WHERE k = ?")
        .await
        .context("PREPARE SELECT")?;
    let mut missing = Vec::new();
    for &k in acked {
        let rows = session
            .execute_unpaged(&select, (k,))
            .await
            .with_context(|| format!("SELECT k={k}"))?
            .into_rows_result()
            .context("not ROWS")?;
        match rows.maybe_first_row::<(Vec<u8>,)>().context("decode")? {
            Some((v,)) => ensure!(v == value_of(k), "k={k}: wrong value read back"),
            None => missing.push(k),
        }
    }
    ensure!(
        missing.is_empty(),
        "{} acknowledged writes are missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    Ok(acked.len())
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_loses_nothing_and_recovers() {
    let test = "a_full_disk_refuses_writes_keeps_reads_loses_nothing_and_recovers";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let tmpfs = match Tmpfs::mount(MOUNT_SIZE_MB) {
        Ok(t) => t,
        Err(e) => {
            skip(
                test,
                &format!("cannot mount a small file system here: {e:#}"),
            );
            return;
        }
    };
    let data_dir: PathBuf = tmpfs.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let mut node = TestNode::spawn(
        &bin,
        NodeOptions::new()
            .set("data_dir", format!("'{}'", data_dir.display()))
            .set("min_free_disk_space", format!("{MIN_FREE_MB}MiB"))
            .set("commitlog_sync", "batch"),
    )
    .expect("spawn node");
    node.wait_ready(Duration::from_secs(60))
        .expect("node ready");

    let acked_all = std::sync::Mutex::new(Vec::new());
    run_async(Duration::from_secs(300), async {
        let session = scylla_session(&[node.cql_host_port()]).await?;
        create_keyspace(&session, "ks_full", 1).await?;
        session
            .query_unpaged(
                "CREATE TABLE ks_full.kv (k bigint PRIMARY KEY, v blob)",
                &[],
            )
            .await?;
        // Take all but HEADROOM_MB above the bound with a filler file.
        let filler = tmpfs.path().join("filler");
        let free = available(tmpfs.path())?;
        let keep = (MIN_FREE_MB + HEADROOM_MB) << 20;
        ensure!(
            free > keep,
            "only {free} bytes free on a fresh {MOUNT_SIZE_MB} MiB tmpfs"
        );
        std::fs::write(&filler, vec![0u8; (free - keep) as usize]).context("write filler")?;

        let insert = session
            .prepare("INSERT INTO ks_full.kv (k, v) VALUES (?, ?)")
            .await?;
        let mut acked = Vec::new();
        let refusal = loop {
            let k = acked.len() as i64;
            ensure!(
                k < MAX_WRITES,
                "{k} writes taken and the disk never counted as full"
            );
            match session.execute_unpaged(&insert, (k, value_of(k))).await {
                Ok(_) => acked.push(k),
                Err(e) => break e.to_string(),
            }
        };
        eprintln!(
            "disk full after {} acknowledged writes of {VALUE_SIZE} B; {} bytes free; refusal: {refusal}",
            acked.len(),
            available(tmpfs.path())?
        );
        ensure!(!acked.is_empty(), "the first write was refused: {refusal}");
        let lower = refusal.to_lowercase();
        ensure!(
            lower.contains("write") && lower.contains("fail"),
            "the refusal is not a write failure: {refusal}"
        );
        ensure!(
            lower.contains("disk full"),
            "the refusal does not say the disk is full: {refusal}"
        );
        let log = node.log();
        ensure!(
            log.contains("min_free_disk_space"),
            "the node's log does not say why writes fail"
        );
        ensure!(
            !log.contains("No space left on device"),
            "the storage engine itself ran into the full disk"
        );

        // Reads go on while the disk is full.
        let read = read_all(&session, &acked).await?;
        eprintln!("{read} acknowledged writes read back while the disk is full");

        // Space returns: writes are taken again (the node looks again within 100 ms).
        std::fs::remove_file(&filler).context("remove filler")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let k = acked.len() as i64;
        loop {
            match session.execute_unpaged(&insert, (k, value_of(k))).await {
                Ok(_) => {
                    acked.push(k);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("not yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => bail!("writes still refused 10 s after space returned: {e}"),
            }
        }
        drop(session);
        *acked_all.lock().expect("acked") = acked;
        Ok(())
    });

    // After a restart, nothing acknowledged is missing.
    node.restart().expect("restart");
    node.wait_ready(Duration::from_secs(60))
        .expect("ready again");
    run_async(Duration::from_secs(120), async {
        let session = scylla_session(&[node.cql_host_port()]).await?;
        let acked = acked_all.lock().expect("acked").clone();
        let count = session
            .query_unpaged("SELECT count(*) FROM ks_full.kv", &[])
            .await?
            .into_rows_result()?
            .single_row::<(i64,)>()?
            .0;
        ensure!(
            count == acked.len() as i64,
            "{count} rows after the restart, {} writes were acknowledged",
            acked.len()
        );
        let all = acked;
        let read = read_all(&session, &all).await?;
        eprintln!("after the restart: {read} rows, all with their values");
        Ok(())
    });
    drop(node);
    drop(tmpfs);
}

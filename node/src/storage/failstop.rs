//! Fail-stop storage: once the storage gave a sign that it cannot be trusted, serve nothing more.
//!
//! Two kinds of failure mean that what the engine returns, or what it will keep, is no longer
//! known to be right:
//!
//! - **corruption**: bytes read back do not decode ([`StorageError::Corrupt`]) — a damaged file,
//!   a bug, a disk that returns wrong data; the next read of another key may be just as wrong
//!   without the decoder noticing;
//! - **a failed flush or write** ([`StorageError::Io`] from `flush`, `apply`, `meta_put`...):
//!   after a failed fsync the kernel may have dropped the dirty pages it could not write, so
//!   writes already acknowledged may be gone while reads still see them in the cache (the
//!   "fsyncgate" lesson PostgreSQL learned); retrying the flush would report success falsely.
//!
//! [`FailStop`] wraps the node's engine. The first such error *trips* it: the error is logged
//! once, loudly, with what to do; every later call — read or write, of any partition — is
//! refused with [`StorageError::Stopped`] naming the original failure, so the node never serves
//! data it can no longer vouch for; and [`FailStop::failure`] turns to the reason, which the
//! server watches to stop the node (announce SHUTDOWN in gossip so peers mark it down and hint
//! its writes, close client connections, exit with a distinct status — see `ringdb node`). A
//! restart re-opens the database, which recovers from its log; if the damage is still there, the
//! node stops again, loudly, rather than serving it.
//!
//! A full disk is not a failure here: the engine refuses writes before the device fills
//! (`min_free_disk_space`, [`StorageError::DiskFull`]) and resumes when space returns. Neither is
//! a read of a meta key that does not exist. What trips is decided by [`trips`].

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::{
    Engine, MetaEntry, Mutation, PartitionData, PartitionKey, PurgePage, ScanRange, Seconds, Slice,
    StorageError, TableId,
};

/// An engine that stops serving after its first sign of corruption or of a failed write.
pub struct FailStop {
    inner: Arc<dyn Engine>,
    failed: OnceLock<String>,
    notify: watch::Sender<Option<String>>,
}

/// Whether an error means the storage can no longer be trusted.
pub fn trips(e: &StorageError) -> bool {
    match e {
        StorageError::Corrupt(_) | StorageError::Io(_) => true,
        StorageError::DiskFull(_) | StorageError::Stopped(_) => false,
    }
}

impl FailStop {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Engine>) -> FailStop {
        FailStop {
            inner,
            failed: OnceLock::new(),
            notify: watch::channel(None).0,
        }
    }

    /// Follows the failure: `None` while the storage is healthy, then the reason it stopped.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.notify.subscribe()
    }

    /// Why the storage stopped, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    fn check(&self) -> Result<(), StorageError> {
        match self.failed.get() {
            Some(reason) => Err(stopped(reason)),
            None => Ok(()),
        }
    }

    /// Runs one engine call: refused once stopped; an error that [`trips`] stops the storage.
    fn guard<T>(
        &self,
        operation: &str,
        call: impl FnOnce(&dyn Engine) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.check()?;
        let result = call(self.inner.as_ref());
        if let Err(e) = &result {
            if trips(e) {
                self.trip(operation, e);
            }
        }
        result
    }

    fn trip(&self, operation: &str, error: &StorageError) {
        let reason = format!("{operation} failed: {error}");
        if self.failed.set(reason.clone()).is_ok() {
            tracing::error!(
                operation,
                %error,
                "STORAGE FAILURE: the storage can no longer be trusted (corrupt data, or a write \
                 or flush the device did not complete); this node stops serving reads and writes \
                 and shuts down instead of serving possibly wrong data. Check the device and the \
                 system log (dmesg), then restart the node: the database recovers from its log, \
                 and `ringdb repair` brings back what the other replicas hold."
            );
            metrics::counter!(crate::metrics::STORAGE_FAILURES).increment(1);
            self.notify.send_replace(Some(reason));
        }
    }
}

fn stopped(reason: &str) -> StorageError {
    StorageError::Stopped(format!(
        "this node stopped serving after a storage failure ({reason})"
    ))
}

impl Engine for FailStop {
    fn apply(&self, mutation: &Mutation) -> Result<(), StorageError> {
        self.guard("write", |e| e.apply(mutation))
    }

    fn apply_all(&self, mutations: &[Mutation]) -> Result<(), StorageError> {
        self.guard("write", |e| e.apply_all(mutations))
    }

    fn read_partition(
        &self,
        table: TableId,
        partition: &PartitionKey,
        slice: &Slice,
        now: Seconds,
    ) -> Result<Option<PartitionData>, StorageError> {
        self.guard("read", |e| e.read_partition(table, partition, slice, now))
    }

    fn scan(
        &self,
        table: TableId,
        range: &ScanRange,
        slice: &Slice,
        max_partitions: usize,
        now: Seconds,
    ) -> Result<Vec<PartitionData>, StorageError> {
        self.guard("scan", |e| e.scan(table, range, slice, max_partitions, now))
    }

    fn truncate(&self, table: TableId) -> Result<(), StorageError> {
        self.guard("truncate", |e| e.truncate(table))
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.guard("flush", |e| e.flush())
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        self.guard("checkpoint", |e| e.checkpoint())
    }

    fn purge_page(
        &self,
        table: TableId,
        after: Option<&PartitionKey>,
        max_partitions: usize,
        now: Seconds,
        gc_grace: Seconds,
    ) -> Result<PurgePage, StorageError> {
        self.guard("purge", |e| {
            e.purge_page(table, after, max_partitions, now, gc_grace)
        })
    }

    fn meta_put(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.guard("metadata write", |e| e.meta_put(key, value))
    }

    fn meta_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.guard("metadata read", |e| e.meta_get(key))
    }

    fn meta_delete(&self, key: &[u8]) -> Result<(), StorageError> {
        self.guard("metadata delete", |e| e.meta_delete(key))
    }

    fn meta_delete_all(&self, keys: &[&[u8]]) -> Result<(), StorageError> {
        self.guard("metadata delete", |e| e.meta_delete_all(keys))
    }

    fn meta_scan_prefix(&self, prefix: &[u8]) -> Result<Vec<MetaEntry>, StorageError> {
        self.guard("metadata scan", |e| e.meta_scan_prefix(prefix))
    }

    fn meta_scan_prefix_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<MetaEntry>, StorageError> {
        self.guard("metadata scan", |e| {
            e.meta_scan_prefix_after(prefix, after, limit)
        })
    }

    fn disk_size(&self) -> u64 {
        self.inner.disk_size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::storage::MemoryEngine;

    /// A memory engine whose flush fails, or whose reads return corruption, on demand.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryEngine,
        fail_flush: AtomicBool,
        corrupt_reads: AtomicBool,
        full: AtomicBool,
    }

    impl Engine for Flaky {
        fn apply(&self, m: &Mutation) -> Result<(), StorageError> {
            if self.full.load(Ordering::Relaxed) {
                return Err(StorageError::DiskFull("test".into()));
            }
            self.inner.apply(m)
        }
        fn read_partition(
            &self,
            t: TableId,
            p: &PartitionKey,
            s: &Slice,
            now: Seconds,
        ) -> Result<Option<PartitionData>, StorageError> {
            if self.corrupt_reads.load(Ordering::Relaxed) {
                return Err(StorageError::Corrupt("bad value".into()));
            }
            self.inner.read_partition(t, p, s, now)
        }
        fn scan(
            &self,
            t: TableId,
            r: &ScanRange,
            s: &Slice,
            max: usize,
            now: Seconds,
        ) -> Result<Vec<PartitionData>, StorageError> {
            self.inner.scan(t, r, s, max, now)
        }
        fn truncate(&self, t: TableId) -> Result<(), StorageError> {
            self.inner.truncate(t)
        }
        fn flush(&self) -> Result<(), StorageError> {
            if self.fail_flush.load(Ordering::Relaxed) {
                return Err(StorageError::Io(
                    "fsync: Input/output error (os error 5)".into(),
                ));
            }
            Ok(())
        }
        fn purge_page(
            &self,
            t: TableId,
            after: Option<&PartitionKey>,
            max: usize,
            now: Seconds,
            g: Seconds,
        ) -> Result<PurgePage, StorageError> {
            self.inner.purge_page(t, after, max, now, g)
        }
        fn meta_put(&self, k: &[u8], v: &[u8]) -> Result<(), StorageError> {
            self.inner.meta_put(k, v)
        }
        fn meta_get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
            self.inner.meta_get(k)
        }
        fn meta_delete(&self, k: &[u8]) -> Result<(), StorageError> {
            self.inner.meta_delete(k)
        }
        fn meta_scan_prefix(&self, p: &[u8]) -> Result<Vec<MetaEntry>, StorageError> {
            self.inner.meta_scan_prefix(p)
        }
        fn meta_scan_prefix_after(
            &self,
            p: &[u8],
            a: Option<&[u8]>,
            l: usize,
        ) -> Result<Vec<MetaEntry>, StorageError> {
            self.inner.meta_scan_prefix_after(p, a, l)
        }
        fn disk_size(&self) -> u64 {
            0
        }
    }

    fn wrapped() -> (Arc<Flaky>, FailStop) {
        let flaky = Arc::new(Flaky::default());
        let engine = FailStop::new(flaky.clone());
        (flaky, engine)
    }

    #[test]
    fn a_failed_flush_stops_every_later_call() {
        let (flaky, engine) = wrapped();
        let mut failure = engine.failure();
        engine.meta_put(b"k", b"v").expect("healthy write");
        assert_eq!(engine.meta_get(b"k").expect("read"), Some(b"v".to_vec()));
        assert!(engine.failed().is_none());

        flaky.fail_flush.store(true, Ordering::Relaxed);
        assert!(matches!(engine.flush(), Err(StorageError::Io(_))));
        // The device "recovers": a retried flush would succeed, but nothing is served any more.
        flaky.fail_flush.store(false, Ordering::Relaxed);
        for result in [
            engine.meta_get(b"k").map(|_| ()),
            engine.meta_put(b"k2", b"v").map(|_| ()),
            engine.flush(),
        ] {
            match result {
                Err(StorageError::Stopped(why)) => {
                    assert!(why.contains("flush failed"), "{why}");
                    assert!(why.contains("Input/output error"), "{why}");
                }
                other => panic!("expected Stopped, got {other:?}"),
            }
        }
        assert!(failure.has_changed().expect("sender alive"));
        let reason = failure.borrow_and_update().clone().expect("a reason");
        assert!(reason.starts_with("flush failed"), "{reason}");
    }

    #[test]
    fn corruption_stops_reads_of_other_partitions_too() {
        let (flaky, engine) = wrapped();
        let table = TableId::from_u128(7);
        let key = PartitionKey {
            token: 1,
            key: b"a".to_vec(),
        };
        let slice = Slice::all();
        assert!(engine.read_partition(table, &key, &slice, 0).is_ok());
        flaky.corrupt_reads.store(true, Ordering::Relaxed);
        assert!(matches!(
            engine.read_partition(table, &key, &slice, 0),
            Err(StorageError::Corrupt(_))
        ));
        flaky.corrupt_reads.store(false, Ordering::Relaxed);
        let other = PartitionKey {
            token: 2,
            key: b"b".to_vec(),
        };
        match engine.read_partition(table, &other, &slice, 0) {
            Err(StorageError::Stopped(why)) => assert!(why.contains("corrupt"), "{why}"),
            other => panic!("expected Stopped, got {other:?}"),
        }
        assert!(engine
            .failed()
            .is_some_and(|r| r.starts_with("read failed")));
    }

    #[test]
    fn a_full_disk_does_not_stop_the_storage() {
        let (flaky, engine) = wrapped();
        flaky.full.store(true, Ordering::Relaxed);
        let m = Mutation {
            table: TableId::from_u128(7),
            partition: PartitionKey {
                token: 1,
                key: b"a".to_vec(),
            },
            partition_deletion: None,
            range_deletions: Vec::new(),
            rows: Vec::new(),
        };
        assert!(matches!(engine.apply(&m), Err(StorageError::DiskFull(_))));
        assert!(engine.failed().is_none());
        flaky.full.store(false, Ordering::Relaxed);
        engine.apply(&m).expect("writes resume with space");
        assert!(engine.meta_get(b"nothing").expect("read").is_none());
    }
}

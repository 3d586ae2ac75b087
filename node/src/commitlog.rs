//! When a write counts as durable.
//!
//! The engine writes every change to its commit log before applying it (the sled engine's
//! `storage::commit_log`), and [`Engine::flush`] fsyncs that log. What Cassandra calls
//! `commitlog_sync` is a policy for when the engine is flushed:
//!
//! - `batch`: a write is acknowledged only once it is durable. Writers share flushes (group
//!   commit): a writer registers with the flusher task and waits for the first flush that *starts*
//!   after its registration, so its write — applied before it registered — is covered. While one
//!   flush runs, every writer that arrives queues for the next one, so a burst of N concurrent
//!   writes costs about two fsyncs, not N.
//! - `periodic`: writes are acknowledged at once and the flusher flushes every
//!   `commitlog_sync_period_ms`. The log is handed to the operating system before a write is
//!   applied, so a killed process loses nothing; a crash of the machine can lose the
//!   acknowledged writes of about that window. Use `batch` where an acknowledged write must
//!   survive a power loss.
//!
//! The flusher is a single task owning the policy; writers talk to it over a bounded channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::storage::{Engine, StorageError};

/// Which durability policy a node runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Batch,
    Periodic { period_ms: u64 },
}

/// Writers waiting for a flush, at most this many queued before `wait_durable` waits for room.
const MAX_QUEUED_WAITERS: usize = 65_536;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Makes writes durable according to the node's [`SyncMode`].
pub struct CommitSync {
    mode: SyncMode,
    waiters: mpsc::Sender<Waiter>,
}

impl CommitSync {
    /// Starts the flusher task (on the current tokio runtime). It stops, after a final flush,
    /// when `shutdown` turns true or every `CommitSync` handle is dropped.
    ///
    /// Returns the handle writers use and the flusher's task, which shutdown awaits so that the
    /// final flush is done (and the engine released) before the node reports itself stopped.
    pub fn start(
        mode: SyncMode,
        engine: Arc<dyn Engine>,
        shutdown: watch::Receiver<bool>,
    ) -> (Arc<CommitSync>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED_WAITERS);
        let task = tokio::spawn(flusher(mode, engine, rx, shutdown));
        (Arc::new(CommitSync { mode, waiters: tx }), task)
    }

    /// The policy in force.
    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Called after a write was applied to the engine, before it is acknowledged: returns once
    /// the write is as durable as the policy promises.
    pub async fn wait_durable(&self) -> Result<(), StorageError> {
        if let SyncMode::Periodic { .. } = self.mode {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.waiters
            .send(tx)
            .await
            .map_err(|_| StorageError::Io("the node is shutting down".to_string()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::Io(e)),
            Err(_) => Err(StorageError::Io("the node is shutting down".to_string())),
        }
    }
}

async fn flush(engine: &Arc<dyn Engine>) -> Result<(), String> {
    let engine = engine.clone();
    match tokio::task::spawn_blocking(move || engine.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("flush task failed: {e}")),
    }
}

async fn flusher(
    mode: SyncMode,
    engine: Arc<dyn Engine>,
    mut waiters: mpsc::Receiver<Waiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = match mode {
        SyncMode::Periodic { period_ms } => Duration::from_millis(period_ms.max(1)),
        // In batch mode the timer only bounds how long unflushed background writes (hints,
        // schema) may wait; writers are served as they come.
        SyncMode::Batch => Duration::from_millis(1000),
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            first = waiters.recv() => {
                let Some(first) = first else { break };
                // Everyone queued so far had applied their write before queueing: one flush
                // covers them all.
                let mut batch = vec![first];
                while let Ok(w) = waiters.try_recv() {
                    batch.push(w);
                }
                let result = flush(&engine).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "flush failed; failing {} writes", batch.len());
                }
                for w in batch {
                    let _ = w.send(result.clone());
                }
            }
            _ = ticker.tick() => {
                if let Err(e) = flush(&engine).await {
                    tracing::error!(error = %e, "periodic flush failed");
                }
            }
            _ = crate::server::stopping(&mut shutdown) => break,
        }
    }
    // Drain: writers still queued get a final flush.
    waiters.close();
    let mut rest = Vec::new();
    while let Ok(w) = waiters.try_recv() {
        rest.push(w);
    }
    let result = flush(&engine).await;
    for w in rest {
        let _ = w.send(result.clone());
    }
}

//! Driving the load: `--concurrency` workers, an optional rate, a line of progress per second.
//!
//! Every operation takes a ticket from one shared counter. Without `--rate` the run is closed
//! loop: each worker sends its next request as soon as the previous one is answered, and latency
//! is measured from send to answer. With `--rate R` it is open loop: ticket `n` is *scheduled* at
//! `start + n / R`, the worker waits for that moment, and latency is measured from the scheduled
//! moment, not from the send. When the server falls behind, requests start late and that
//! lateness is part of their latency; a server that stalls for a second therefore shows a second
//! of latency on every request it delayed, not on one (no coordinated omission). The workers
//! bound what is in flight: with too few of them for the rate, the backlog shows as latency.
//!
//! The load phase (for read and mixed workloads) writes keys `0..rows` once each, in order,
//! with the same workers and no rate limit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use ringdb_cql::client::QueryOptions;
use tokio::task::JoinSet;

use super::routing::{OpError, Router};
use super::stats::{ErrorKind, Interval, Recorder, Second};
use super::workload::{KeySampler, Op, Workload};

/// A pause after "no node is up", so that workers do not spin while nodes come back.
const NO_HOST_PAUSE: Duration = Duration::from_millis(20);

/// What a phase does.
#[derive(Debug, Clone)]
pub enum PhaseKind {
    /// Write keys `0..rows` once each.
    Load {
        /// Number of rows.
        rows: u64,
    },
    /// Run the workload for a while.
    Measure {
        /// How long.
        duration: Duration,
    },
}

/// Everything a phase's workers need.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// Load or measure.
    pub kind: PhaseKind,
    /// Workers (requests in flight at most).
    pub concurrency: usize,
    /// Operations per second, all workers together (measure phase only).
    pub rate: Option<f64>,
    /// Which operations.
    pub workload: Workload,
    /// Which keys.
    pub keys: KeySampler,
    /// Bytes per written value.
    pub value_size: usize,
    /// Consistency level and the like.
    pub options: QueryOptions,
    /// Seed of the workers' random number generators.
    pub seed: u64,
    /// Print a line per second on stderr.
    pub progress: bool,
}

/// What a phase measured.
pub struct PhaseResult {
    /// Everything recorded.
    pub all: Interval,
    /// One point per second.
    pub series: Vec<Second>,
    /// From the start to the last answer.
    pub elapsed: Duration,
    /// True when the run was interrupted (Ctrl-C).
    pub interrupted: bool,
}

/// Runs one phase to its end (or until Ctrl-C).
pub async fn run_phase(router: Arc<Router>, spec: PhaseSpec) -> PhaseResult {
    let concurrency = spec.concurrency.max(1);
    let recorder = Arc::new(Recorder::new(concurrency.min(16)));
    let tickets = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let spec = Arc::new(spec);
    let start = Instant::now();
    let end = match spec.kind {
        PhaseKind::Measure { duration } => Some(start + duration),
        PhaseKind::Load { .. } => None,
    };

    let mut workers = JoinSet::new();
    for worker in 0..concurrency {
        let ctx = Worker {
            id: worker,
            router: router.clone(),
            spec: spec.clone(),
            recorder: recorder.clone(),
            tickets: tickets.clone(),
            stop: stop.clone(),
            start,
            end,
        };
        workers.spawn(ctx.run());
    }
    let mut done = tokio::spawn(async move { while workers.join_next().await.is_some() {} });

    let mut all = Interval::default();
    let mut series = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = start;
    // The last full interval and its length, kept to fold a short final remainder into.
    let mut previous: Option<(Interval, Duration)> = None;
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut done => break,
            _ = ticker.tick() => {
                let now = Instant::now();
                let interval = recorder.drain();
                let length = now - last;
                let point = Second::of(&interval, now - start, length);
                last = now;
                if spec.progress {
                    print_progress(&spec, &point, &all, &interval);
                }
                all.merge(&interval);
                if matches!(spec.kind, PhaseKind::Measure { .. }) {
                    series.push(point);
                    previous = Some((interval, length));
                }
            }
            _ = &mut ctrl_c, if !interrupted => {
                eprintln!("bench: interrupted; finishing the requests in flight");
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let now = Instant::now();
    let rest = recorder.drain();
    let tail = now - last;
    // The last partial second: its own point when long enough for a rate to mean something,
    // else folded into the point before, so that the series always adds up to the totals.
    if matches!(spec.kind, PhaseKind::Measure { .. }) && (rest.ops > 0 || rest.errors.total() > 0) {
        match previous {
            Some((mut interval, length)) if tail < Duration::from_millis(200) => {
                interval.merge(&rest);
                series.pop();
                series.push(Second::of(&interval, now - start, length + tail));
            }
            _ => series.push(Second::of(&rest, now - start, tail)),
        }
    }
    all.merge(&rest);
    PhaseResult {
        all,
        series,
        elapsed: now - start,
        interrupted,
    }
}

fn print_progress(spec: &PhaseSpec, point: &Second, before: &Interval, interval: &Interval) {
    match spec.kind {
        PhaseKind::Load { rows } => {
            let written = before.ops + interval.ops;
            eprintln!(
                "[{:>5.0}s] loading {written}/{rows} rows ({:.0} rows/s), errors {}",
                point.t_s,
                point.ops_per_s,
                before.errors.total() + interval.errors.total()
            );
        }
        PhaseKind::Measure { .. } => {
            eprintln!(
                "[{:>5.0}s] {:>9.0} ops/s  errors {:>5}  p50 {:>8.3} ms  p99 {:>8.3} ms",
                point.t_s, point.ops_per_s, point.errors, point.p50_ms, point.p99_ms
            );
        }
    }
}

struct Worker {
    id: usize,
    router: Arc<Router>,
    spec: Arc<PhaseSpec>,
    recorder: Arc<Recorder>,
    tickets: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Instant,
    end: Option<Instant>,
}

impl Worker {
    async fn run(self) {
        let spec = &*self.spec;
        let mut rng = StdRng::seed_from_u64(
            spec.seed ^ (self.id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            let (op, key, scheduled) = match spec.kind {
                PhaseKind::Load { rows } => {
                    if ticket >= rows {
                        break;
                    }
                    (Op::Write, ticket as i64, Instant::now())
                }
                PhaseKind::Measure { .. } => {
                    let end = self.end.unwrap_or_else(Instant::now);
                    let scheduled = match spec.rate {
                        Some(rate) => {
                            let at = self.start + Duration::from_secs_f64(ticket as f64 / rate);
                            if at >= end {
                                break;
                            }
                            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
                            at
                        }
                        None => {
                            let now = Instant::now();
                            if now >= end {
                                break;
                            }
                            now
                        }
                    };
                    let op = spec.workload.pick(&mut rng);
                    let key = spec.keys.sample(&mut rng, ticket);
                    (op, key, scheduled)
                }
            };
            let result = self
                .router
                .execute(op, key, spec.value_size, &spec.options, ticket as usize)
                .await;
            let latency = scheduled.elapsed();
            let no_host = matches!(result, Err(OpError::NoHost));
            {
                let mut shard = self.recorder.shard(self.id);
                match result {
                    Ok(found) => shard.success(op, latency, found),
                    Err(OpError::NoHost) => shard.failure(ErrorKind::Connection, || {
                        "no node has a live connection".to_string()
                    }),
                    Err(OpError::Client(e)) => shard.failure(ErrorKind::of(&e), || e.to_string()),
                }
            }
            if no_host {
                tokio::time::sleep(NO_HOST_PAUSE).await;
            }
        }
    }
}

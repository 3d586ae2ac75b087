//! The hybrid logical clock that stamps writes.
//!
//! Cassandra resolves conflicting writes last-write-wins on a microsecond timestamp chosen by the
//! coordinator (or the client). A plain wall clock makes two things go wrong: two writes issued by
//! the same node in the same microsecond tie, and a node whose clock stepped backwards issues
//! timestamps older than data it has already written, so its new writes silently lose. A hybrid
//! logical clock (HLC) fixes both while staying close to wall time:
//!
//! - every timestamp handed out is strictly greater than the previous one from this clock,
//! - and strictly greater than every timestamp the clock has been told about with
//!   [`HybridClock::observe`] (timestamps seen in mutations from other nodes),
//! - and otherwise equal to the wall clock in microseconds.
//!
//! So after a node sees a write stamped `t`, anything it writes later is stamped `> t`, and
//! ordering by timestamp respects causality across nodes that talk to each other.
//!
//! Wall time comes from a [`WallClock`], which tests replace with a [`ManualClock`] to make expiry
//! (TTL) and timestamps deterministic.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall time.
pub trait WallClock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_micros(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            // A clock before 1970 is broken; report the epoch and let the HLC keep counting.
            Err(_) => 0,
        }
    }
}

/// A wall clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock showing `micros` microseconds since the epoch.
    pub fn new(micros: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            micros: AtomicI64::new(micros),
        })
    }

    /// Sets the time.
    pub fn set_micros(&self, micros: i64) {
        self.micros.store(micros, Ordering::SeqCst);
    }

    /// Moves the time forward (or backward, with a negative argument) by whole seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.micros
            .fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

impl WallClock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.load(Ordering::SeqCst)
    }
}

/// How far ahead of local wall time an observed timestamp may be before [`HybridClock::observe`]
/// refuses it: a peer (or a bug) with a clock a year ahead must not drag every future write of
/// this node a year into the future.
pub const MAX_OBSERVED_DRIFT_MICROS: i64 = 60 * 60 * 1_000_000;

/// A hybrid logical clock producing write timestamps in microseconds. Lock-free and shareable.
pub struct HybridClock {
    wall: Arc<dyn WallClock>,
    /// The greatest timestamp handed out or observed.
    last: AtomicI64,
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridClock")
            .field("last", &self.last.load(Ordering::Relaxed))
            .finish()
    }
}

impl HybridClock {
    /// A clock over the system's wall clock.
    pub fn system() -> Arc<HybridClock> {
        HybridClock::new(Arc::new(SystemClock))
    }

    /// A clock over the given wall clock.
    pub fn new(wall: Arc<dyn WallClock>) -> Arc<HybridClock> {
        Arc::new(HybridClock {
            wall,
            last: AtomicI64::new(i64::MIN),
        })
    }

    /// The next write timestamp: strictly greater than every timestamp returned or observed
    /// before, and equal to wall time when wall time is ahead of all of them.
    pub fn now(&self) -> i64 {
        let wall = self.wall.now_micros();
        let mut last = self.last.load(Ordering::SeqCst);
        loop {
            let next = if wall > last {
                wall
            } else {
                last.saturating_add(1)
            };
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Records a timestamp seen elsewhere (in a mutation from another node) so that later
    /// timestamps from this clock are greater. Returns false, changing nothing, when `ts` is more
    /// than [`MAX_OBSERVED_DRIFT_MICROS`] ahead of local wall time.
    pub fn observe(&self, ts: i64) -> bool {
        if ts
            > self
                .wall
                .now_micros()
                .saturating_add(MAX_OBSERVED_DRIFT_MICROS)
        {
            return false;
        }
        self.last.fetch_max(ts, Ordering::SeqCst);
        true
    }

    /// Wall time in microseconds (not a write timestamp: not unique, may go backwards).
    pub fn wall_micros(&self) -> i64 {
        self.wall.now_micros()
    }

    /// Wall time in whole seconds since the epoch: the "now" of TTL expiry and deletion times.
    pub fn wall_seconds(&self) -> i64 {
        self.wall.now_micros().div_euclid(1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_wall_time_when_it_moves() {
        let wall = ManualClock::new(1_000_000);
        let clock = HybridClock::new(wall.clone());
        assert_eq!(clock.now(), 1_000_000);
        wall.advance_secs(1);
        assert_eq!(clock.now(), 2_000_000);
    }

    #[test]
    fn strictly_monotonic_when_wall_time_stalls_or_goes_back() {
        let wall = ManualClock::new(5_000_000);
        let clock = HybridClock::new(wall.clone());
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        wall.set_micros(1_000_000);
        let c = clock.now();
        assert!(c > b, "clock went backwards: {c} <= {b}");
        wall.set_micros(9_000_000);
        assert_eq!(clock.now(), 9_000_000);
    }

    #[test]
    fn never_behind_an_observed_timestamp() {
        let wall = ManualClock::new(1_000_000);
        let clock = HybridClock::new(wall.clone());
        assert!(clock.observe(1_500_000));
        assert!(clock.now() > 1_500_000);
        // Observing the past changes nothing.
        assert!(clock.observe(10));
        let t = clock.now();
        assert!(t > 1_500_000 && t < 1_600_000);
    }

    #[test]
    fn refuses_observations_far_in_the_future() {
        let wall = ManualClock::new(1_000_000);
        let clock = HybridClock::new(wall.clone());
        assert!(!clock.observe(1_000_000 + MAX_OBSERVED_DRIFT_MICROS + 1));
        assert_eq!(clock.now(), 1_000_000);
    }

    #[test]
    fn unique_across_threads() {
        let clock = HybridClock::new(ManualClock::new(42));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..1000).map(|_| clock.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn seconds_round_down_before_the_epoch_too() {
        let wall = ManualClock::new(-1);
        let clock = HybridClock::new(wall);
        assert_eq!(clock.wall_seconds(), -1);
    }
}

//! Throttles for background work that must leave the node's resources to its clients: ranges
//! streamed while a node joins or leaves (`stream_throughput_outbound`) and the purge of
//! expired data (`compaction_throughput`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Holds pages of work, from any number of tasks together, to `rate` bytes per second (0:
/// unthrottled): each page books its share of a second on a shared timeline, and a page that
/// took less than that waits for the rest.
pub(crate) struct Pacer {
    rate: u64,
    /// When the pages booked so far are paid for.
    booked_until: Mutex<Option<tokio::time::Instant>>,
}

impl Pacer {
    pub(crate) fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            booked_until: Mutex::new(None),
        }
    }

    /// Waits out the share of a page of `bytes` that started at `started`.
    pub(crate) async fn pace(&self, bytes: u64, started: tokio::time::Instant) {
        if let Some(until) = self.book(bytes, started) {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Books the share of a page of `bytes` that started at `started`: when it is paid for
    /// (none when unthrottled).
    fn book(&self, bytes: u64, started: tokio::time::Instant) -> Option<tokio::time::Instant> {
        if self.rate == 0 {
            return None;
        }
        let share = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let mut booked = self
            .booked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let until = booked.map_or(started, |b| b.max(started)) + share;
        *booked = Some(until);
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_shares_the_rate_among_concurrent_pages() {
        let t0 = tokio::time::Instant::now();
        let second = Duration::from_secs(1);
        assert_eq!(Pacer::new(0).book(1 << 20, t0), None, "0 is unthrottled");
        let pacer = Pacer::new(1_000_000);
        // Two lanes send a page of 1 MB each at the same moment: together they take 2 s.
        assert_eq!(pacer.book(1_000_000, t0), Some(t0 + second));
        assert_eq!(pacer.book(1_000_000, t0), Some(t0 + 2 * second));
        // A page that starts after the booked time is paid from its own start.
        let later = t0 + 5 * second;
        assert_eq!(pacer.book(500_000, later), Some(later + second / 2));
    }
}

//! The phi-accrual failure detector: how suspicious the silence of one peer is.
//!
//! A binary detector ("down after N seconds of silence") forces one timeout on every peer and
//! every network. The phi-accrual detector (Hayashibara et al., 2004) instead learns, per peer,
//! how heartbeats usually arrive, and turns the current silence into a level of suspicion:
//!
//! ```text
//! phi(t) = -log10( P(the next heartbeat arrives later than t | the intervals seen so far) )
//! ```
//!
//! `phi = 1` means a 10 % chance that the peer is in fact alive and we are just unlucky, `phi = 8`
//! one chance in 10^8. The caller convicts a peer when phi exceeds
//! [`DetectorConfig::phi_convict_threshold`].
//!
//! ## Which model, and why
//!
//! Cassandra models the intervals as exponential with only their mean:
//! `phi = t / (mean · ln 10)`, so a peer is convicted after `threshold · ln 10 ≈ 18.4` mean
//! intervals — 18 s with its 1 s gossip interval, whatever the variance. That is too slow for
//! our target (a dead node is marked down in about 2 s) and, worse, it cannot tell a steady peer
//! from an erratic one.
//!
//! We use Akka's model: intervals are normal with the sampled mean and standard deviation, and
//! two safety margins taken from real networks:
//!
//! - [`DetectorConfig::min_std_dev`]: a floor on the deviation, because a very regular peer
//!   (deviation near 0) would otherwise be convicted a hair after its usual interval;
//! - [`DetectorConfig::acceptable_pause`]: added to the mean, the silence tolerated before
//!   suspicion grows at all (a long GC pause, a burst of delay on a link, a lost message).
//!
//! A peer is then convicted after about `mean + acceptable_pause + 5.2 · std_dev` of silence
//! at the default threshold of 8. Gossip relays every node's heartbeat through random peers, so
//! the intervals between *newer heartbeats seen* for one peer are short (one to three gossip
//! rounds) but irregular; the measured deviation absorbs that irregularity, and the floor and
//! the pause absorb what the window has not seen yet.
//!
//! ## The defaults, and how they were chosen
//!
//! With the 150 ms gossip interval of [`crate::protocol::GossipConfig`], simulation measures
//! (mean, deviation) of the heartbeat intervals at about (0.16 s, 0.07 s) on a 5-node LAN and
//! (0.33 s, 0.22 s) on 50 nodes with 0–200 ms of random delay, where the last heartbeat of a
//! dead node also takes up to ~1 s to reach everyone. A 200 ms floor and a 400 ms pause then
//! give a median detection of about 1.7 s (5 nodes, LAN) to 2.7 s (50 nodes, 0–200 ms delay),
//! while the highest phi seen between live nodes in 30 simulated minutes of 0–200 ms delay
//! stays near 4–4.6 (against a threshold of 8) on 50 nodes, under 1 on 5. A 200 ms interval
//! with the same margins needed 3.2 s on 50 jittery nodes; cutting the pause to 300 ms to
//! compensate left a peak phi of 6.8, too close to 8. See `BENCHMARKS.md`, "Gossip
//! (simulated)", and `gossip/tests/simulation.rs`.
//!
//! ## Bounds
//!
//! Each detector keeps at most [`DetectorConfig::window_size`] intervals (oldest dropped), with
//! exact running sums in integer microseconds, so `phi` is O(1) and never drifts. Intervals longer
//! than [`DetectorConfig::max_sample_interval`] (a partition, a restart, a node that was down)
//! are not recorded: they say nothing about how this peer's heartbeats normally arrive, and one
//! of them would blunt detection for the whole window.
//!
//! The detector is sans-I/O like the rest of the crate: the caller passes `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Tuning of [`PhiAccrualDetector`]. The defaults suit the default gossip interval (200 ms).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// A peer is convicted (marked down) when its phi exceeds this. 8 is Cassandra's and Akka's
    /// default: at that level a false conviction has odds of about 1 in 10^8 under the model.
    pub phi_convict_threshold: f64,
    /// How many arrival intervals each detector remembers (oldest dropped). Must be ≥ 1.
    pub window_size: usize,
    /// The interval assumed before any heartbeat has been seen: the window starts with two
    /// samples, `initial_interval ± initial_interval / 4` (Akka's bootstrap), which real
    /// samples soon outweigh.
    pub initial_interval: Duration,
    /// Floor on the standard deviation used by the model.
    pub min_std_dev: Duration,
    /// Silence tolerated on top of the mean interval before suspicion grows.
    pub acceptable_pause: Duration,
    /// Intervals longer than this are not recorded (but still reset the silence).
    pub max_sample_interval: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            phi_convict_threshold: 8.0,
            window_size: 1000,
            initial_interval: Duration::from_millis(500),
            min_std_dev: Duration::from_millis(200),
            acceptable_pause: Duration::from_millis(400),
            max_sample_interval: Duration::from_secs(2),
        }
    }
}

/// The failure detector for one peer: a bounded window of heartbeat arrival intervals and the
/// time of the last arrival.
#[derive(Debug, Clone)]
pub struct PhiAccrualDetector {
    /// Recorded intervals, in microseconds (at most `u32::MAX`, over an hour), oldest first.
    /// 32 bits halve the memory of a window, which matters to simulations holding thousands.
    intervals: VecDeque<u32>,
    /// Sum of `intervals`.
    sum: u128,
    /// Sum of the squares of `intervals`.
    sum_squares: u128,
    /// Maximum length of `intervals`.
    window_size: usize,
    /// When the latest heartbeat arrived (or when the detector was made).
    last_arrival: Instant,
    /// See [`DetectorConfig::min_std_dev`], in seconds.
    min_std_dev: f64,
    /// See [`DetectorConfig::acceptable_pause`], in seconds.
    acceptable_pause: f64,
    /// See [`DetectorConfig::max_sample_interval`].
    max_sample_interval: Duration,
}

impl PhiAccrualDetector {
    /// A detector whose peer was last heard from at `now`, bootstrapped with
    /// [`DetectorConfig::initial_interval`].
    pub fn new(config: &DetectorConfig, now: Instant) -> Self {
        let mut detector = PhiAccrualDetector {
            intervals: VecDeque::new(),
            sum: 0,
            sum_squares: 0,
            window_size: config.window_size.max(1),
            last_arrival: now,
            min_std_dev: config.min_std_dev.as_secs_f64(),
            acceptable_pause: config.acceptable_pause.as_secs_f64(),
            max_sample_interval: config.max_sample_interval,
        };
        let mean = duration_micros(config.initial_interval);
        let deviation = mean / 4;
        detector.record(mean - deviation);
        detector.record(mean + deviation);
        detector
    }

    /// A newer heartbeat of the peer arrived at `now`: records the interval since the previous
    /// one (unless longer than [`DetectorConfig::max_sample_interval`]) and ends the silence.
    /// A `now` earlier than the last arrival is ignored.
    pub fn heartbeat(&mut self, now: Instant) {
        let Some(interval) = now.checked_duration_since(self.last_arrival) else {
            return;
        };
        if interval <= self.max_sample_interval {
            self.record(duration_micros(interval));
        }
        self.last_arrival = now;
    }

    /// The suspicion level at `now`: 0 right after a heartbeat, rising with silence, infinite
    /// when the silence is far beyond anything the model expects.
    pub fn phi(&self, now: Instant) -> f64 {
        let silence = now
            .saturating_duration_since(self.last_arrival)
            .as_secs_f64();
        let mean = self.mean_secs() + self.acceptable_pause;
        let std_dev = self.std_dev_secs().max(self.min_std_dev);
        phi_normal(silence, mean, std_dev)
    }

    /// Whether `phi(now)` exceeds `threshold`; cheaper than [`PhiAccrualDetector::phi`] while
    /// the silence is shorter than the mean interval plus the acceptable pause (phi < 0.31).
    pub fn suspects(&self, now: Instant, threshold: f64) -> bool {
        let silence = now
            .saturating_duration_since(self.last_arrival)
            .as_secs_f64();
        if threshold >= 0.31 && silence <= self.mean_secs() + self.acceptable_pause {
            return false;
        }
        self.phi(now) > threshold
    }

    /// When the latest heartbeat arrived (the creation time if none did).
    pub fn last_heartbeat(&self) -> Instant {
        self.last_arrival
    }

    /// How many intervals the window holds (bootstrap samples included).
    pub fn sample_count(&self) -> usize {
        self.intervals.len()
    }

    /// The mean of the recorded intervals.
    pub fn mean(&self) -> Duration {
        let n = self.intervals.len() as u128;
        Duration::from_micros((self.sum / n.max(1)) as u64)
    }

    /// The standard deviation of the recorded intervals (before the floor is applied).
    pub fn std_dev(&self) -> Duration {
        Duration::from_secs_f64(self.std_dev_secs())
    }

    fn mean_secs(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        self.sum as f64 / n / 1e6
    }

    fn std_dev_secs(&self) -> f64 {
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum as f64 / n;
        let variance = (self.sum_squares as f64 / n - mean * mean).max(0.0);
        variance.sqrt() / 1e6
    }

    fn record(&mut self, interval_micros: u64) {
        if self.intervals.len() == self.window_size {
            if let Some(oldest) = self.intervals.pop_front() {
                self.sum -= u128::from(oldest);
                self.sum_squares -= u128::from(u64::from(oldest) * u64::from(oldest));
            }
        }
        let interval = u32::try_from(interval_micros).unwrap_or(u32::MAX);
        self.intervals.push_back(interval);
        self.sum += u128::from(interval);
        self.sum_squares += u128::from(u64::from(interval) * u64::from(interval));
    }
}

fn duration_micros(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

/// `-log10(1 - F(t))` for the normal distribution `F` of `mean` and `std_dev`, with the logistic
/// approximation of the normal CDF that Akka uses (error below 0.02 % over the useful range, and
/// monotonic, which is what conviction needs).
fn phi_normal(t: f64, mean: f64, std_dev: f64) -> f64 {
    let y = (t - mean) / std_dev;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if t > mean {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn steady(
        config: &DetectorConfig,
        start: Instant,
        every: Duration,
        n: u32,
    ) -> PhiAccrualDetector {
        let mut d = PhiAccrualDetector::new(config, start);
        for i in 1..=n {
            d.heartbeat(start + every * i);
        }
        d
    }

    #[test]
    fn phi_grows_with_silence() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let d = steady(&config, t0, ms(200), 50);
        let last = d.last_heartbeat();
        let mut previous = -1.0;
        for silence in (0..=5000).step_by(100) {
            let phi = d.phi(last + ms(silence));
            assert!(
                phi >= previous,
                "phi fell from {previous} to {phi} at {silence} ms"
            );
            previous = phi;
        }
        assert!(d.phi(last) < 0.1);
        assert!(d.phi(last + ms(400)) < 1.0);
        assert!(d.phi(last + ms(5000)) > config.phi_convict_threshold);
    }

    #[test]
    fn heartbeat_resets_suspicion() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let mut d = steady(&config, t0, ms(200), 50);
        let late = d.last_heartbeat() + ms(3000);
        assert!(d.phi(late) > config.phi_convict_threshold);
        d.heartbeat(late);
        assert!(d.phi(late) < 0.1);
        assert!(d.phi(late + ms(200)) < 1.0);
    }

    #[test]
    fn window_is_bounded_and_sums_stay_exact() {
        let config = DetectorConfig {
            window_size: 10,
            ..DetectorConfig::default()
        };
        let t0 = Instant::now();
        let mut d = PhiAccrualDetector::new(&config, t0);
        assert_eq!(d.sample_count(), 2);
        let mut now = t0;
        for i in 0..1000u64 {
            now += ms(100 + i % 7);
            d.heartbeat(now);
            assert!(d.sample_count() <= 10);
        }
        assert_eq!(d.sample_count(), 10);
        // The last ten intervals: 100 + (i % 7) ms for i in 990..1000.
        let expected: u64 = (990..1000u64)
            .map(|i| 100_000 + (i % 7) * 1000)
            .sum::<u64>()
            / 10;
        assert_eq!(d.mean(), Duration::from_micros(expected));
    }

    #[test]
    fn erratic_peer_is_given_more_slack_than_steady_one() {
        let config = DetectorConfig {
            min_std_dev: ms(1),
            acceptable_pause: Duration::ZERO,
            ..DetectorConfig::default()
        };
        let t0 = Instant::now();
        let steady_peer = steady(&config, t0, ms(300), 100);
        let mut erratic = PhiAccrualDetector::new(&config, t0);
        let mut now = t0;
        for i in 0..100 {
            now += if i % 2 == 0 { ms(100) } else { ms(500) };
            erratic.heartbeat(now);
        }
        let silence = ms(700);
        assert!(
            steady_peer.phi(steady_peer.last_heartbeat() + silence)
                > erratic.phi(erratic.last_heartbeat() + silence)
        );
    }

    #[test]
    fn long_gaps_are_not_recorded() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let mut d = steady(&config, t0, ms(200), 20);
        let before = (d.sample_count(), d.mean());
        let after_partition = d.last_heartbeat() + ms(30_000);
        d.heartbeat(after_partition);
        assert_eq!((d.sample_count(), d.mean()), before);
        assert_eq!(d.last_heartbeat(), after_partition);
        assert!(d.phi(after_partition + ms(200)) < 1.0);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let config = DetectorConfig::default();
        let t0 = Instant::now() + ms(10_000);
        let mut d = PhiAccrualDetector::new(&config, t0);
        d.heartbeat(t0 - ms(5));
        assert_eq!(d.last_heartbeat(), t0);
        assert_eq!(d.sample_count(), 2);
        assert_eq!(d.phi(t0 - ms(1000)), d.phi(t0));
    }

    #[test]
    fn bootstrap_gives_a_fresh_peer_some_slack() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let d = PhiAccrualDetector::new(&config, t0);
        assert!(d.phi(t0 + ms(500)) < 1.0);
        assert!(d.phi(t0 + ms(10_000)) > config.phi_convict_threshold);
    }

    #[test]
    fn suspects_agrees_with_phi() {
        let config = DetectorConfig::default();
        let t0 = Instant::now();
        let d = steady(&config, t0, ms(150), 40);
        let last = d.last_heartbeat();
        for threshold in [0.5, 1.0, 3.0, 8.0, 16.0] {
            for silence in (0..6000).step_by(10) {
                let now = last + ms(silence);
                assert_eq!(d.suspects(now, threshold), d.phi(now) > threshold);
            }
        }
    }

    #[test]
    fn phi_normal_is_monotonic_and_finite_or_infinite() {
        let mut previous = 0.0;
        for i in 0..2000 {
            let t = f64::from(i) * 0.01;
            let phi = phi_normal(t, 1.0, 0.2);
            assert!(!phi.is_nan());
            assert!(phi >= previous);
            previous = phi;
        }
        assert!(phi_normal(0.0, 1.0, 0.2) < 1e-6);
        assert!(phi_normal(1.0, 1.0, 0.2) < 0.31);
    }
}

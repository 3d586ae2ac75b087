//! Failed logins, rate limited per client address — sans-I/O: time is a parameter.
//!
//! After `max_failures` failed logins from one address within `lockout`, that address is locked
//! out for `lockout` from the last failure: its attempts are refused without checking the
//! password (so a guesser gets no signal and costs no hashing). A successful login clears the
//! address's failures. The table is bounded: when it is full, expired entries are dropped first,
//! then the address with the oldest failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
pub const MAX_TRACKED_ADDRESSES: usize = 65_536;

#[derive(Debug, Clone)]
struct Entry {
    /// Failures in the current window.
    failures: u32,
    /// When the current window of failures started.
    first: Instant,
    /// The latest failure.
    last: Instant,
}

/// Per-address failed-login counts.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    lockout: Duration,
    capacity: usize,
    by_address: HashMap<IpAddr, Entry>,
}

impl LoginLimiter {
    /// `max_failures` within `lockout` lock an address out for `lockout`. `max_failures` 0
    /// disables the limit.
    pub fn new(max_failures: u32, lockout: Duration) -> LoginLimiter {
        LoginLimiter::with_capacity(max_failures, lockout, MAX_TRACKED_ADDRESSES)
    }

    pub fn with_capacity(max_failures: u32, lockout: Duration, capacity: usize) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            lockout,
            capacity: capacity.max(1),
            by_address: HashMap::new(),
        }
    }

    /// `Err(wait)` if `address` is locked out at `now`, with how long it still is.
    pub fn check(&mut self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let Some(e) = self.by_address.get(&address) else {
            return Ok(());
        };
        let until = e.last + self.lockout;
        if e.failures >= self.max_failures && now < until {
            return Err(until - now);
        }
        if now >= until {
            self.by_address.remove(&address);
        }
        Ok(())
    }

    /// Records a failed login; returns true if `address` is now locked out.
    pub fn failure(&mut self, address: IpAddr, now: Instant) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        if !self.by_address.contains_key(&address) && self.by_address.len() >= self.capacity {
            self.make_room(now);
        }
        let lockout = self.lockout;
        let e = self.by_address.entry(address).or_insert(Entry {
            failures: 0,
            first: now,
            last: now,
        });
        if now.saturating_duration_since(e.first) > lockout {
            e.failures = 0;
            e.first = now;
        }
        e.failures += 1;
        e.last = now;
        e.failures >= self.max_failures
    }

    /// A successful login clears the address's failures.
    pub fn success(&mut self, address: IpAddr) {
        self.by_address.remove(&address);
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.by_address.len()
    }

    fn make_room(&mut self, now: Instant) {
        let lockout = self.lockout;
        self.by_address
            .retain(|_, e| now.saturating_duration_since(e.last) < lockout);
        if self.by_address.len() >= self.capacity {
            if let Some(oldest) = self
                .by_address
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(a, _)| *a)
            {
                self.by_address.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn locks_out_after_the_limit_until_the_lockout_passes() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut l = LoginLimiter::new(3, minute);
        assert!(!l.failure(ip(1), t0));
        assert!(!l.failure(ip(1), t0 + Duration::from_secs(1)));
        assert!(l.check(ip(1), t0 + Duration::from_secs(2)).is_ok());
        assert!(l.failure(ip(1), t0 + Duration::from_secs(2)));
        let wait = l.check(ip(1), t0 + Duration::from_secs(3)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(59));
        // Other addresses are not affected.
        assert!(l.check(ip(2), t0 + Duration::from_secs(3)).is_ok());
        // Past the lockout the address may try again, from zero.
        assert!(l.check(ip(1), t0 + Duration::from_secs(62)).is_ok());
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn failures_spread_wider_than_the_window_do_not_lock_and_success_clears() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::new(2, Duration::from_secs(10));
        assert!(!l.failure(ip(1), t0));
        assert!(!l.failure(ip(1), t0 + Duration::from_secs(11)));
        assert!(l.check(ip(1), t0 + Duration::from_secs(12)).is_ok());
        l.success(ip(1));
        assert!(!l.failure(ip(1), t0 + Duration::from_secs(12)));
        assert!(l.check(ip(1), t0 + Duration::from_secs(12)).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::with_capacity(5, Duration::from_secs(60), 4);
        for n in 0..10 {
            l.failure(ip(n), t0 + Duration::from_millis(n as u64));
            assert!(l.tracked() <= 4);
        }
        // The newest addresses are the ones kept.
        l.failure(ip(9), t0 + Duration::from_millis(20));
        assert!(l.by_address.contains_key(&ip(9)));
        assert!(!l.by_address.contains_key(&ip(0)));
    }

    #[test]
    fn zero_disables_the_limit() {
        let t0 = Instant::now();
        let mut l = LoginLimiter::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            assert!(!l.failure(ip(1), t0));
        }
        assert!(l.check(ip(1), t0).is_ok());
    }
}

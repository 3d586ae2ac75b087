//! Admission of CQL requests: the bounds on what clients may have in flight, and what a request
//! past a bound gets.
//!
//! Two bounds, both checked by the connection's reader before a request is given a task
//! ([`crate::cql_server`]):
//!
//! - **per node** ([`NodeLimiter`]): requests in flight over all connections, in number
//!   (`native_transport_max_concurrent_requests`) and in bytes of request frames
//!   (`native_transport_max_concurrent_requests_in_bytes`). Past either, the request is answered
//!   at once with Overloaded (0x1001) and a message naming the bound; the connection stays open.
//!   This is what keeps memory bounded when many connections are busy at once: each one is
//!   within its own bound, together they are not.
//! - **per connection** (`native_transport_max_requests_per_connection`, a semaphore in the
//!   connection): past it the connection is either paused (the reader stops reading, TCP
//!   back-pressure: the default, as in Cassandra) or, when the client asked for it with the
//!   STARTUP option `THROW_ON_OVERLOAD=1` or the node is configured with
//!   `native_transport_throw_on_overload`, the request is answered Overloaded ([`OverloadMode`]).
//!
//! A request holds its admission until its response is queued for the socket, so responses a
//! client does not read count too: a client that never reads fills its connection's bound and
//! is paused, and cannot make the node hold more than the bounds.
//!
//! Cheap control messages (STARTUP, OPTIONS, REGISTER) are not counted by the node bound, so a
//! client can always connect and learn that the node is overloaded from its first statement.

use std::sync::{Arc, Mutex};

/// How a connection behaves past its own bound of requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadMode {
    /// Stop reading from the connection until a request finishes (TCP back-pressure).
    BackPressure,
    /// Answer the request at once with Overloaded (0x1001).
    Throw,
}

impl OverloadMode {
    /// The mode a connection starts in: [`OverloadMode::Throw`] when the node is configured to
    /// throw (`native_transport_throw_on_overload`).
    pub fn configured(throw_on_overload: bool) -> OverloadMode {
        if throw_on_overload {
            OverloadMode::Throw
        } else {
            OverloadMode::BackPressure
        }
    }

    /// Whether a STARTUP option map asks to throw: `THROW_ON_OVERLOAD` set to `1` or `true` (the
    /// option Cassandra 4 and its drivers use; other values, or none, leave the mode as it is).
    pub fn startup_asks_to_throw<'a>(
        mut options: impl Iterator<Item = (&'a String, &'a String)>,
    ) -> bool {
        options.any(|(k, v)| {
            k.eq_ignore_ascii_case("THROW_ON_OVERLOAD")
                && (v.trim() == "1" || v.trim().eq_ignore_ascii_case("true"))
        })
    }
}

/// Why a request was not admitted. Its [`std::fmt::Display`] is the message the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `native_transport_max_concurrent_requests` requests are in flight on the node.
    #[error(
        "Overloaded: {limit} requests are in flight on this node \
         (native_transport_max_concurrent_requests); retry later or on another node"
    )]
    NodeRequests { limit: usize },
    /// The request's frame does not fit in what is left of
    /// `native_transport_max_concurrent_requests_in_bytes`.
    #[error(
        "Overloaded: {in_flight} bytes of requests are in flight on this node and this one has \
         {size}, over the limit of {limit} (native_transport_max_concurrent_requests_in_bytes); \
         retry later or on another node"
    )]
    NodeBytes {
        limit: u64,
        in_flight: u64,
        size: u64,
    },
    /// `native_transport_max_requests_per_connection` requests are in flight on the connection,
    /// which asked to be told rather than paused.
    #[error(
        "Overloaded: {limit} requests are in flight on this connection \
         (native_transport_max_requests_per_connection, THROW_ON_OVERLOAD); retry later"
    )]
    ConnectionRequests { limit: usize },
}

impl Refusal {
    /// The `limit` label of the refusal metric ([`crate::metrics::REQUESTS_OVERLOADED`]).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Refusal::NodeRequests { .. } => "node_requests",
            Refusal::NodeBytes { .. } => "node_bytes",
            Refusal::ConnectionRequests { .. } => "connection_requests",
        }
    }
}

/// What is in flight on the node.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// Requests admitted and not finished.
    pub requests: usize,
    /// Bytes of their frames.
    pub bytes: u64,
}

/// The node-wide bound on requests in flight over all client connections.
#[derive(Debug)]
pub struct NodeLimiter {
    max_requests: usize,
    max_bytes: u64,
    // A short section with no `.await`: a plain mutex keeps the two counts consistent together.
    in_flight: Mutex<InFlight>,
}

impl NodeLimiter {
    /// A limiter admitting at most `max_requests` requests (at least 1) and `max_bytes` bytes of
    /// request frames at once.
    pub fn new(max_requests: usize, max_bytes: u64) -> Arc<NodeLimiter> {
        Arc::new(NodeLimiter {
            max_requests: max_requests.max(1),
            max_bytes,
            in_flight: Mutex::new(InFlight::default()),
        })
    }

    /// Admits a request whose frame has `size` bytes, or says which bound it is past. A frame
    /// larger than the whole byte budget is admitted only when no other bytes are in flight, so
    /// that it is not refused forever (the frame size limit bounds it).
    pub fn try_admit(self: &Arc<Self>, size: u64) -> Result<Admitted, Refusal> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.requests >= self.max_requests {
            return Err(Refusal::NodeRequests {
                limit: self.max_requests,
            });
        }
        let fits = in_flight.bytes.saturating_add(size) <= self.max_bytes;
        if !fits && in_flight.bytes > 0 {
            return Err(Refusal::NodeBytes {
                limit: self.max_bytes,
                in_flight: in_flight.bytes,
                size,
            });
        }
        in_flight.requests += 1;
        in_flight.bytes = in_flight.bytes.saturating_add(size);
        Ok(Admitted {
            limiter: self.clone(),
            size,
        })
    }

    /// What is in flight now.
    pub fn in_flight(&self) -> InFlight {
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release(&self, size: u64) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.requests = in_flight.requests.saturating_sub(1);
        in_flight.bytes = in_flight.bytes.saturating_sub(size);
    }
}

/// An admitted request; dropping it gives its share of the bound back.
#[derive(Debug)]
pub struct Admitted {
    limiter: Arc<NodeLimiter>,
    size: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.limiter.release(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_count_bound_refuses_past_it_and_frees_on_drop() {
        let limiter = NodeLimiter::new(3, 1 << 20);
        let held: Vec<Admitted> = (0..3).map(|_| limiter.try_admit(10).unwrap()).collect();
        assert_eq!(
            limiter.in_flight(),
            InFlight {
                requests: 3,
                bytes: 30
            }
        );
        let refusal = limiter.try_admit(10).unwrap_err();
        assert_eq!(refusal, Refusal::NodeRequests { limit: 3 });
        assert!(refusal
            .to_string()
            .contains("native_transport_max_concurrent_requests"));
        drop(held);
        assert_eq!(limiter.in_flight(), InFlight::default());
        assert!(limiter.try_admit(10).is_ok());
    }

    #[test]
    fn the_byte_bound_refuses_what_does_not_fit_but_never_starves_a_large_frame() {
        let limiter = NodeLimiter::new(100, 100);
        let a = limiter.try_admit(60).unwrap();
        let refusal = limiter.try_admit(41).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NodeBytes {
                limit: 100,
                in_flight: 60,
                size: 41
            }
        );
        assert!(refusal
            .to_string()
            .contains("native_transport_max_concurrent_requests_in_bytes"));
        let b = limiter.try_admit(40).unwrap();
        assert_eq!(limiter.in_flight().bytes, 100);
        drop((a, b));
        // Alone, a frame larger than the whole budget goes through; nothing fits beside it.
        let big = limiter.try_admit(500).unwrap();
        assert!(matches!(
            limiter.try_admit(1),
            Err(Refusal::NodeBytes { .. })
        ));
        drop(big);
        assert_eq!(limiter.in_flight(), InFlight::default());
    }

    #[test]
    fn admissions_from_many_threads_never_exceed_the_bound() {
        let limiter = NodeLimiter::new(50, u64::MAX);
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (limiter, peak) = (limiter.clone(), peak.clone());
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    let mut refused = 0;
                    for i in 0..2000 {
                        match limiter.try_admit(1) {
                            Ok(a) => held.push(a),
                            Err(_) => refused += 1,
                        }
                        let now = limiter.in_flight().requests;
                        peak.fetch_max(now, std::sync::atomic::Ordering::Relaxed);
                        if i % 3 == 0 {
                            held.clear();
                        }
                    }
                    refused
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(std::sync::atomic::Ordering::Relaxed) <= 50);
        assert_eq!(limiter.in_flight(), InFlight::default());
    }

    #[test]
    fn throw_on_overload_is_asked_with_1_or_true() {
        let opts = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let asks = |o: Vec<(String, String)>| {
            OverloadMode::startup_asks_to_throw(o.iter().map(|(k, v)| (k, v)))
        };
        assert!(asks(opts("THROW_ON_OVERLOAD", "1")));
        assert!(asks(opts("throw_on_overload", "true")));
        assert!(!asks(opts("THROW_ON_OVERLOAD", "0")));
        assert!(!asks(opts("CQL_VERSION", "3.0.0")));
        assert_eq!(OverloadMode::configured(true), OverloadMode::Throw);
        assert_eq!(OverloadMode::configured(false), OverloadMode::BackPressure);
    }
}

//! What the bench sends: the schema, the two statements, which operation comes next, which key
//! it touches and what value it writes.
//!
//! Everything here is pure (a seeded RNG is passed in), so it is unit-tested without a server.
//! The parsers behind the command-line flags (`--workload`, `--duration`, `--dist`, `--cl`) live
//! here too, each with an error that says what was expected.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use ringdb_cql::message::Consistency;

/// The table every run uses, in the keyspace of `--keyspace`.
pub const TABLE: &str = "kv";

/// `CREATE TABLE` for the bench's table: one `bigint` partition key, one `blob` value.
pub fn create_table(keyspace: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} (key bigint PRIMARY KEY, value blob)")
}

/// `CREATE KEYSPACE` with `SimpleStrategy` and replication factor `rf`.
pub fn create_keyspace(keyspace: &str, rf: u32) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
    )
}

/// The prepared write: binds `key` (bigint) then `value` (blob); with `ttl`, every row written
/// expires that many seconds later.
pub fn insert_statement(keyspace: &str, ttl: Option<u32>) -> String {
    let using = ttl.map(|t| format!(" USING TTL {t}")).unwrap_or_default();
    format!("INSERT INTO {keyspace}.{TABLE} (key, value) VALUES (?, ?){using}")
}

/// The prepared read: binds `key` (bigint); returns `key, value`.
pub fn select_statement(keyspace: &str) -> String {
    format!("SELECT key, value FROM {keyspace}.{TABLE} WHERE key = ?")
}

/// The serialized partition key of `key` (a CQL `bigint`: 8 bytes big-endian). The Murmur3 token
/// of these bytes places the row, so the same bytes route a request.
pub fn key_bytes(key: i64) -> [u8; 8] {
    key.to_be_bytes()
}

/// The value written for `key`: its 8 key bytes repeated to `size` bytes. Deterministic, so a
/// reader (or a test) can tell a row written by the bench from anything else.
pub fn value_for(key: i64, size: usize) -> Vec<u8> {
    let k = key_bytes(key);
    (0..size).map(|i| k[i % 8]).collect()
}

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `INSERT` of one row.
    Write,
    /// `SELECT` of one row by key.
    Read,
}

/// `--workload`: which operations a run sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Workload {
    /// Only writes.
    Write,
    /// Only reads (the rows are loaded first).
    Read,
    /// Reads with probability `read_fraction`, writes otherwise (the rows are loaded first).
    Mixed {
        /// Share of reads, in `[0, 1]`.
        read_fraction: f64,
    },
}

impl Workload {
    /// True when the run reads, so the rows must exist first.
    pub fn needs_data(&self) -> bool {
        !matches!(self, Workload::Write)
    }

    /// The next operation.
    pub fn pick(&self, rng: &mut impl Rng) -> Op {
        match *self {
            Workload::Write => Op::Write,
            Workload::Read => Op::Read,
            Workload::Mixed { read_fraction } => {
                if rng.random::<f64>() < read_fraction {
                    Op::Read
                } else {
                    Op::Write
                }
            }
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Write => f.write_str("write"),
            Workload::Read => f.write_str("read"),
            Workload::Mixed { read_fraction } => write!(f, "mixed:{read_fraction}"),
        }
    }
}

/// Parses `write`, `read`, `mixed` (half reads), `mixed:F` (a share of reads `F` in `[0, 1]`) or
/// `mixed:R:W` (reads to writes, e.g. `mixed:3:1` for 75 % reads).
pub fn parse_workload(s: &str) -> Result<Workload, String> {
    let lower = s.trim().to_ascii_lowercase();
    let mut parts = lower.split(':');
    let head = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let expected = "expected write, read, mixed, mixed:READ_FRACTION (e.g. mixed:0.9) or \
                    mixed:READS:WRITES (e.g. mixed:3:1)";
    match (head, rest.as_slice()) {
        ("write", []) => Ok(Workload::Write),
        ("read", []) => Ok(Workload::Read),
        ("mixed", []) => Ok(Workload::Mixed { read_fraction: 0.5 }),
        ("mixed", [fraction]) => match fraction.parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(Workload::Mixed { read_fraction: f }),
            _ => Err(format!(
                "invalid read fraction {fraction:?} in {s:?}: a number from 0 to 1 ({expected})"
            )),
        },
        ("mixed", [reads, writes]) => match (reads.parse::<f64>(), writes.parse::<f64>()) {
            (Ok(r), Ok(w)) if r >= 0.0 && w >= 0.0 && r + w > 0.0 => Ok(Workload::Mixed {
                read_fraction: r / (r + w),
            }),
            _ => Err(format!(
                "invalid ratio {reads}:{writes} in {s:?}: two non-negative numbers ({expected})"
            )),
        },
        _ => Err(format!("unknown workload {s:?}: {expected}")),
    }
}

/// Parses a duration: a number with a unit `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`, `1.5h`);
/// a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        format!("invalid duration {s:?}: expected a number and a unit, like 500ms, 30s, 2m or 1h")
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 365.0 * 24.0 * 3600.0 {
        return Err(format!(
            "invalid duration {s:?}: must be more than zero and at most a year"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a consistency level by name (`ONE`, `quorum`, `LOCAL_QUORUM`, ...).
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    s.trim()
        .to_ascii_uppercase()
        .parse::<Consistency>()
        .map_err(|_| {
            format!(
                "unknown consistency level {s:?}: expected ANY, ONE, TWO, THREE, QUORUM, ALL, \
             LOCAL_QUORUM, EACH_QUORUM or LOCAL_ONE"
            )
        })
}

/// `--dist`: how keys are drawn from `0..rows`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Every key equally likely.
    Uniform,
    /// Key `k` (0-based) drawn with probability proportional to `1 / (k + 1)^exponent`: key 0
    /// is the hottest.
    Zipf {
        /// The exponent (`s`), above 0; 1 by default.
        exponent: f64,
    },
    /// Keys in order, wrapping around: 0, 1, 2, ..., rows - 1, 0, ...
    Sequential,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => f.write_str("uniform"),
            Distribution::Zipf { exponent } => write!(f, "zipf:{exponent}"),
            Distribution::Sequential => f.write_str("seq"),
        }
    }
}

/// Parses `uniform`, `zipf`, `zipf:EXPONENT` or `seq`.
pub fn parse_distribution(s: &str) -> Result<Distribution, String> {
    let lower = s.trim().to_ascii_lowercase();
    let expected = "expected uniform, zipf, zipf:EXPONENT (e.g. zipf:1.2) or seq";
    match lower.split_once(':') {
        None if lower == "uniform" => Ok(Distribution::Uniform),
        None if lower == "zipf" => Ok(Distribution::Zipf { exponent: 1.0 }),
        None if lower == "seq" || lower == "sequential" => Ok(Distribution::Sequential),
        Some(("zipf", e)) => match e.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() && x <= 10.0 => {
                Ok(Distribution::Zipf { exponent: x })
            }
            _ => Err(format!(
                "invalid Zipf exponent {e:?} in {s:?}: a number above 0 and at most 10"
            )),
        },
        _ => Err(format!("unknown distribution {s:?}: {expected}")),
    }
}

/// Draws keys from `0..rows` by a [`Distribution`].
#[derive(Debug, Clone)]
pub enum KeySampler {
    /// Uniform over `0..rows`.
    Uniform {
        /// Number of keys.
        rows: u64,
    },
    /// Zipf over `0..rows`.
    Zipf(Zipf),
    /// In order; the counter is given by the caller (a ticket number).
    Sequential {
        /// Number of keys.
        rows: u64,
    },
}

impl KeySampler {
    /// A sampler for `rows` keys (at least one).
    pub fn new(dist: Distribution, rows: u64) -> KeySampler {
        let rows = rows.max(1);
        match dist {
            Distribution::Uniform => KeySampler::Uniform { rows },
            Distribution::Zipf { exponent } => KeySampler::Zipf(Zipf::new(rows, exponent)),
            Distribution::Sequential => KeySampler::Sequential { rows },
        }
    }

    /// The key of operation number `ticket`.
    pub fn sample(&self, rng: &mut impl Rng, ticket: u64) -> i64 {
        let key = match self {
            KeySampler::Uniform { rows } => rng.random_range(0..*rows),
            KeySampler::Zipf(z) => z.sample(rng) - 1,
            KeySampler::Sequential { rows } => ticket % rows,
        };
        key as i64
    }
}

/// A Zipf distribution over `1..=n` sampled in constant time by rejection-inversion (W. Hörmann
/// and G. Derflinger, "Rejection-inversion to generate variates from monotone discrete
/// distributions", 1996; the same method as Apache Commons' `RejectionInversionZipfSampler`), so
/// that millions of keys need no table.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    /// Zipf over `1..=n` with this exponent (> 0).
    pub fn new(n: u64, exponent: f64) -> Zipf {
        let n = n.max(1) as f64;
        let mut z = Zipf {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        z.h_integral_x1 = z.h_integral(1.5) - 1.0;
        z.h_integral_n = z.h_integral(n + 0.5);
        z.s = 2.0 - z.h_integral_inverse(z.h_integral(2.5) - z.h(2.0));
        z
    }

    /// One draw in `1..=n`.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        loop {
            let u =
                self.h_integral_n + rng.random::<f64>() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }

    fn h(&self, x: f64) -> f64 {
        (-self.exponent * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = x.ln();
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.exponent);
        if t < -1.0 {
            // Rounding can push t just below -1 (the limit of the inverse); clamp it.
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }
}

/// `ln(1 + x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `(e^x - 1) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_insert_carries_the_ttl_asked_for() {
        assert_eq!(
            insert_statement("b", None),
            "INSERT INTO b.kv (key, value) VALUES (?, ?)"
        );
        assert_eq!(
            insert_statement("b", Some(600)),
            "INSERT INTO b.kv (key, value) VALUES (?, ?) USING TTL 600"
        );
    }

    #[test]
    fn workloads_parse() {
        assert_eq!(parse_workload("write"), Ok(Workload::Write));
        assert_eq!(parse_workload("READ"), Ok(Workload::Read));
        assert_eq!(
            parse_workload("mixed"),
            Ok(Workload::Mixed { read_fraction: 0.5 })
        );
        assert_eq!(
            parse_workload("mixed:0.9"),
            Ok(Workload::Mixed { read_fraction: 0.9 })
        );
        assert_eq!(
            parse_workload("mixed:3:1"),
            Ok(Workload::Mixed {
                read_fraction: 0.75
            })
        );
        for bad in ["nope", "mixed:2", "mixed:x", "mixed:0:0", "write:1", ""] {
            let e = parse_workload(bad).unwrap_err();
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        for bad in ["xyz", "", "10x", "0s", "-1s", "s", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn consistency_and_distribution_parse() {
        assert_eq!(parse_consistency("quorum"), Ok(Consistency::Quorum));
        assert_eq!(parse_consistency("LOCAL_ONE"), Ok(Consistency::LocalOne));
        assert!(parse_consistency("most").is_err());
        assert_eq!(parse_distribution("uniform"), Ok(Distribution::Uniform));
        assert_eq!(
            parse_distribution("zipf"),
            Ok(Distribution::Zipf { exponent: 1.0 })
        );
        assert_eq!(
            parse_distribution("zipf:1.5"),
            Ok(Distribution::Zipf { exponent: 1.5 })
        );
        assert_eq!(parse_distribution("seq"), Ok(Distribution::Sequential));
        assert!(parse_distribution("zipf:0").is_err());
        assert!(parse_distribution("normal").is_err());
    }

    #[test]
    fn mixed_picks_reads_at_the_asked_rate() {
        let mut rng = StdRng::seed_from_u64(7);
        let w = Workload::Mixed { read_fraction: 0.8 };
        let reads = (0..10_000).filter(|_| w.pick(&mut rng) == Op::Read).count();
        assert!((7_600..8_400).contains(&reads), "{reads}");
    }

    #[test]
    fn uniform_and_sequential_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let u = KeySampler::new(Distribution::Uniform, 10);
        assert!((0..1000).all(|t| (0..10).contains(&u.sample(&mut rng, t))));
        let s = KeySampler::new(Distribution::Sequential, 3);
        let keys: Vec<i64> = (0..7).map(|t| s.sample(&mut rng, t)).collect();
        assert_eq!(keys, [0, 1, 2, 0, 1, 2, 0]);
    }

    /// Against the exact probabilities `k^-s / H(n, s)`: the sampler's frequencies of the first
    /// keys match within a few percent, every draw is in range, and key 0 is the hottest.
    #[test]
    fn zipf_matches_its_probabilities() {
        for exponent in [0.8, 1.0, 1.3] {
            let n = 1000u64;
            let z = Zipf::new(n, exponent);
            let mut rng = StdRng::seed_from_u64(42);
            let draws = 200_000;
            let mut counts = vec![0u64; n as usize + 1];
            for _ in 0..draws {
                let k = z.sample(&mut rng);
                assert!((1..=n).contains(&k));
                counts[k as usize] += 1;
            }
            let norm: f64 = (1..=n).map(|k| (k as f64).powf(-exponent)).sum();
            for k in 1..=5u64 {
                let expected = (k as f64).powf(-exponent) / norm * draws as f64;
                let got = counts[k as usize] as f64;
                assert!(
                    (got - expected).abs() / expected < 0.05,
                    "s={exponent} k={k}: {got} draws, expected {expected:.0}"
                );
            }
            assert!(counts[1] > counts[2] && counts[2] > counts[10]);
        }
    }

    #[test]
    fn zipf_of_one_key() {
        let z = Zipf::new(1, 1.0);
        let mut rng = StdRng::seed_from_u64(3);
        assert!((0..100).all(|_| z.sample(&mut rng) == 1));
    }

    #[test]
    fn values_are_the_key_bytes_repeated() {
        assert_eq!(value_for(1, 10), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(value_for(-1, 3), [0xff; 3]);
        assert!(value_for(5, 0).is_empty());
    }
}

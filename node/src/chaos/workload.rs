//! The workload: concurrent clients writing unique keys with unique values and reading them
//! back through the project's own CQL client, each operation recorded; and the final read of
//! every key at ALL that the checker compares with the history.
//!
//! Each client runs one operation at a time (as a Jepsen process does), against one coordinator
//! at a time. It starts on a node of its own (spread over the nodes, or over its datacenter's
//! nodes with a `LOCAL_*` level) and, as drivers do, moves to the next node when its node cannot
//! be reached or answers with a coordinator's trouble (a timeout, `Unavailable`, a lost
//! connection); a node that failed is avoided for [`AVOID_FOR`], and the client goes back to
//! its own node once that node answers again. An operation fails without being sent only when no
//! node of the client's list can be reached.
//!
//! Half the operations are writes of a new key (keys are allocated from one counter, values
//! derived from the seed and the key) with prepared statements; the other half read a key
//! written recently by any client, or now and then a key never written (negative). A write whose
//! outcome is unknown is retried, with the same key and value, up to [`MAX_WRITE_ATTEMPTS`]
//! times; each attempt is recorded as what it was.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ringdb_cql::client::{Client, ClientOptions, PreparedStatement, QueryOptions, QueryResult};
use ringdb_cql::message::Consistency;
use ringdb_cql::types::CqlValue;
use tokio::sync::watch;

use super::checker::FinalRead;
use super::history::{self, Op, OpKind, Outcome};

/// How long a failed node is avoided before a client tries it again.
pub const AVOID_FOR: Duration = Duration::from_secs(3);
/// Attempts of one write (the first and its retries) while its outcome is unknown.
pub const MAX_WRITE_ATTEMPTS: u32 = 3;
/// Keys of recent writes that reads choose from.
pub const RECENT_KEYS: usize = 512;
/// Share of reads that ask for a key never written.
const UNWRITTEN_READS: f64 = 0.05;
/// Share of operations that are writes.
const WRITE_SHARE: f64 = 0.5;

/// A node clients can use as coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub addr: SocketAddr,
    pub dc: String,
}

/// What the clients run.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub clients: usize,
    pub consistency: Consistency,
    /// Operations per second over all clients; `None`: as fast as they go.
    pub rate: Option<f64>,
    pub seed: u64,
    pub keyspace: String,
    pub endpoints: Vec<Endpoint>,
    /// Clients stay in their own datacenter (the `LOCAL_*` levels).
    pub local_only: bool,
    /// Time allowed for each request.
    pub request_timeout: Duration,
    /// Time allowed to connect to a node (handshake and preparing the statements included).
    pub connect_timeout: Duration,
}

impl WorkloadConfig {
    /// `INSERT INTO ks.t (k, v) VALUES (?, ?)`.
    pub fn insert_cql(&self) -> String {
        format!("INSERT INTO {}.t (k, v) VALUES (?, ?)", self.keyspace)
    }

    /// `SELECT v FROM ks.t WHERE k = ?`.
    pub fn select_cql(&self) -> String {
        format!("SELECT v FROM {}.t WHERE k = ?", self.keyspace)
    }

    /// The endpoints client `id` may use, its own node first, then the next ones round-robin.
    pub fn endpoints_of(&self, id: usize) -> Vec<usize> {
        let mut dcs: Vec<&str> = Vec::new();
        for e in &self.endpoints {
            if !dcs.contains(&e.dc.as_str()) {
                dcs.push(&e.dc);
            }
        }
        let (allowed, slot): (Vec<usize>, usize) = if self.local_only && !dcs.is_empty() {
            let dc = dcs[id % dcs.len()];
            (
                (0..self.endpoints.len())
                    .filter(|&i| self.endpoints[i].dc == dc)
                    .collect(),
                id / dcs.len(),
            )
        } else {
            ((0..self.endpoints.len()).collect(), id)
        };
        if allowed.is_empty() {
            return allowed;
        }
        let home = slot % allowed.len();
        (0..allowed.len())
            .map(|i| allowed[(home + i) % allowed.len()])
            .collect()
    }
}

/// The value written to `key`: unique in practice, and the same for the same seed.
pub fn value_for(seed: u64, key: i64) -> i64 {
    // splitmix64
    let mut z = seed ^ (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as i64
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub acknowledged: AtomicU64,
    pub failed: AtomicU64,
    pub indeterminate: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => &self.acknowledged,
            Outcome::Failed => &self.failed,
            Outcome::Indeterminate => &self.indeterminate,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// (acknowledged, failed, indeterminate).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.acknowledged.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.indeterminate.load(Ordering::Relaxed),
        )
    }
}

/// What the clients share.
#[derive(Debug)]
pub struct Shared {
    /// When the run began: every time in the history counts from here.
    pub start: Instant,
    next_key: AtomicI64,
    recent: Mutex<VecDeque<i64>>,
    pub counters: Counters,
}

impl Shared {
    pub fn new(start: Instant) -> Shared {
        Shared {
            start,
            next_key: AtomicI64::new(1),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_KEYS)),
            counters: Counters::default(),
        }
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn remember(&self, key: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_KEYS {
            recent.pop_front();
        }
        recent.push_back(key);
    }

    fn recent_key(&self, rng: &mut StdRng) -> Option<i64> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.is_empty() {
            None
        } else {
            recent.get(rng.random_range(0..recent.len())).copied()
        }
    }
}

/// A connection to one node with the statements prepared on it.
struct Connection {
    endpoint: usize,
    client: Client,
    insert: PreparedStatement,
    select: PreparedStatement,
}

/// Connects to `endpoint` and prepares the workload's statements, within `timeout`.
async fn open(
    config: &WorkloadConfig,
    endpoint: usize,
    timeout: Duration,
) -> Result<(Client, PreparedStatement, PreparedStatement), String> {
    let addr = config.endpoints[endpoint].addr;
    let work = async {
        let options = ClientOptions {
            connect_timeout: timeout,
            request_timeout: config.request_timeout,
            ..ClientOptions::default()
        };
        let client = Client::connect(addr, options)
            .await
            .map_err(|e| e.to_string())?;
        let insert = client
            .prepare(&config.insert_cql())
            .await
            .map_err(|e| format!("preparing the insert: {e}"))?;
        let select = client
            .prepare(&config.select_cql())
            .await
            .map_err(|e| format!("preparing the select: {e}"))?;
        Ok((client, insert, select))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

/// An operation about to run.
#[derive(Debug, Clone, Copy)]
struct Planned {
    kind: OpKind,
    key: i64,
    value: Option<i64>,
    attempt: u32,
}

/// One client of the workload.
struct Worker {
    id: usize,
    config: Arc<WorkloadConfig>,
    shared: Arc<Shared>,
    rng: StdRng,
    /// Endpoint indexes it may use, its own first.
    endpoints: Vec<usize>,
    connection: Option<Connection>,
    avoid_until: HashMap<usize, Instant>,
    /// Failures in a row of each node (reset when an operation through it succeeds).
    failures: HashMap<usize, u32>,
    last_home_try: Instant,
    ops: Vec<Op>,
}

impl Worker {
    /// Avoids a node that just failed: [`AVOID_FOR`], doubled for each failure in a row (up
    /// to 8 times as long), so that a node cut off for long costs one operation now and then.
    fn avoid(&mut self, endpoint: usize) {
        let streak = self.failures.entry(endpoint).or_default();
        *streak += 1;
        let factor = 1u32 << (*streak - 1).min(3);
        self.avoid_until
            .insert(endpoint, Instant::now() + AVOID_FOR * factor);
    }

    fn avoided(&self, endpoint: usize) -> bool {
        self.avoid_until
            .get(&endpoint)
            .is_some_and(|t| Instant::now() < *t)
    }

    /// The connection to use: the current one, its own node again once that is back, or the
    /// first node of its list that answers. The error lists why each node could not be used.
    async fn connection(&mut self) -> Result<usize, String> {
        let home = self.endpoints[0];
        if let Some(c) = &self.connection {
            if c.client.closed_reason().is_some() {
                let endpoint = c.endpoint;
                self.connection = None;
                self.avoid(endpoint);
            } else if c.endpoint != home
                && !self.avoided(home)
                && self.last_home_try.elapsed() >= AVOID_FOR
            {
                self.last_home_try = Instant::now();
                match open(&self.config, home, self.config.connect_timeout).await {
                    Ok((client, insert, select)) => {
                        self.connection = Some(Connection {
                            endpoint: home,
                            client,
                            insert,
                            select,
                        })
                    }
                    Err(_) => self.avoid(home),
                }
            }
        }
        if let Some(c) = &self.connection {
            return Ok(c.endpoint);
        }
        // Nodes not avoided first, in list order; then the avoided ones, soonest free first.
        let mut order: Vec<usize> = self
            .endpoints
            .iter()
            .copied()
            .filter(|e| !self.avoided(*e))
            .collect();
        let mut avoided: Vec<usize> = self
            .endpoints
            .iter()
            .copied()
            .filter(|e| self.avoided(*e))
            .collect();
        avoided.sort_by_key(|e| self.avoid_until.get(e).copied());
        order.extend(avoided);
        let mut why = Vec::new();
        for endpoint in order {
            match open(&self.config, endpoint, self.config.connect_timeout).await {
                Ok((client, insert, select)) => {
                    if endpoint == home {
                        self.last_home_try = Instant::now();
                    }
                    self.connection = Some(Connection {
                        endpoint,
                        client,
                        insert,
                        select,
                    });
                    return Ok(endpoint);
                }
                Err(e) => {
                    why.push(format!("{}: {e}", self.config.endpoints[endpoint].name));
                    self.avoid(endpoint);
                }
            }
        }
        Err(format!("no coordinator reachable ({})", why.join("; ")))
    }

    fn plan(&mut self) -> Planned {
        let write = self.rng.random_bool(WRITE_SHARE);
        if !write {
            let key = if self.rng.random_bool(UNWRITTEN_READS) {
                Some(-self.rng.random_range(1..i64::from(i32::MAX)))
            } else {
                self.shared.recent_key(&mut self.rng)
            };
            if let Some(key) = key {
                return Planned {
                    kind: OpKind::Read,
                    key,
                    value: None,
                    attempt: 1,
                };
            }
        }
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        Planned {
            kind: OpKind::Write,
            key,
            value: Some(value_for(self.config.seed, key)),
            attempt: 1,
        }
    }

    /// Runs one operation and records it; returns its outcome.
    async fn run_op(&mut self, op: Planned) -> Outcome {
        let start_us = self.shared.now_us();
        if op.kind == OpKind::Write && op.attempt == 1 {
            self.shared.remember(op.key);
        }
        let endpoint = match self.connection().await {
            Ok(e) => e,
            Err(why) => {
                return self.record(op, start_us, Outcome::Failed, None, Some(why), None);
            }
        };
        let Some(c) = &self.connection else {
            unreachable!("connection() returned Ok with a connection");
        };
        let options = QueryOptions {
            consistency: self.config.consistency,
            ..QueryOptions::default()
        };
        let result = match op.kind {
            OpKind::Write => {
                c.client
                    .execute(
                        &c.insert,
                        [
                            CqlValue::BigInt(op.key),
                            CqlValue::BigInt(op.value.unwrap_or_default()),
                        ],
                        &options,
                    )
                    .await
            }
            OpKind::Read => {
                c.client
                    .execute(&c.select, [CqlValue::BigInt(op.key)], &options)
                    .await
            }
        };
        match result {
            Ok(answer) => {
                self.failures.remove(&endpoint);
                let (outcome, value, error) = match (op.kind, answer) {
                    (OpKind::Write, _) => (Outcome::Ok, op.value, None),
                    (OpKind::Read, QueryResult::Rows(rows)) => {
                        (Outcome::Ok, first_bigint(&rows.rows), None)
                    }
                    (OpKind::Read, other) => (
                        Outcome::Failed,
                        None,
                        Some(format!("a read answered without rows: {other:?}")),
                    ),
                };
                self.record(op, start_us, outcome, value, error, Some(endpoint))
            }
            Err(e) => {
                let outcome = history::classify(&e);
                if history::coordinator_trouble(&e) {
                    self.connection = None;
                    self.avoid(endpoint);
                }
                let value = if op.kind == OpKind::Write {
                    op.value
                } else {
                    None
                };
                self.record(
                    op,
                    start_us,
                    outcome,
                    value,
                    Some(history::error_text(&e)),
                    Some(endpoint),
                )
            }
        }
    }

    fn record(
        &mut self,
        op: Planned,
        start_us: u64,
        outcome: Outcome,
        value: Option<i64>,
        error: Option<String>,
        endpoint: Option<usize>,
    ) -> Outcome {
        let end_us = self.shared.now_us();
        let e = endpoint.map(|i| &self.config.endpoints[i]);
        self.ops.push(Op {
            id: 0,
            client: self.id,
            kind: op.kind,
            key: op.key,
            value: if op.kind == OpKind::Write {
                op.value
            } else {
                value
            },
            start_us,
            end_us,
            outcome,
            error,
            coordinator: e.map(|e| e.name.clone()),
            dc: e.map(|e| e.dc.clone()),
            attempt: op.attempt,
        });
        self.shared.counters.count(outcome);
        outcome
    }
}

/// The `v` of the first row, if any.
fn first_bigint(rows: &[Vec<Option<CqlValue>>]) -> Option<i64> {
    match rows.first().and_then(|r| r.first()) {
        Some(Some(CqlValue::BigInt(v))) => Some(*v),
        _ => None,
    }
}

/// Runs client `id` until `stop`; returns its operations.
pub async fn run_client(
    id: usize,
    config: Arc<WorkloadConfig>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> Vec<Op> {
    let endpoints = config.endpoints_of(id);
    let mut worker = Worker {
        id,
        rng: StdRng::seed_from_u64(config.seed.wrapping_add(id as u64 + 1)),
        endpoints,
        config: config.clone(),
        shared,
        connection: None,
        avoid_until: HashMap::new(),
        failures: HashMap::new(),
        last_home_try: Instant::now(),
        ops: Vec::new(),
    };
    if worker.endpoints.is_empty() {
        return worker.ops;
    }
    let interval = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(config.clients as f64 / r));
    // Spread the clients' first operations over one interval.
    let mut next_at = Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64(id as f64 / config.clients.max(1) as f64)
        });
    let mut retry: Option<Planned> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        if let Some(interval) = interval {
            let now = Instant::now();
            if next_at > now {
                if !super::nemesis::sleep_or_stop(next_at - now, &stop).await {
                    break;
                }
            } else if now - next_at > Duration::from_secs(1) {
                // Far behind (a slow operation): do not burst to catch up.
                next_at = now;
            }
            next_at += interval;
        }
        let op = match retry.take() {
            Some(op) => op,
            None => worker.plan(),
        };
        let outcome = worker.run_op(op).await;
        if op.kind == OpKind::Write
            && outcome == Outcome::Indeterminate
            && op.attempt < MAX_WRITE_ATTEMPTS
        {
            retry = Some(Planned {
                attempt: op.attempt + 1,
                ..op
            });
        }
    }
    worker.ops
}

/// How many times the final read tries each key.
pub const FINAL_READ_ATTEMPTS: u32 = 6;
/// Final reads in flight at once.
pub const FINAL_READ_CONCURRENCY: usize = 32;

/// Reads every key in `keys` at ALL, spreading the reads over every node; each key is tried up
/// to [`FINAL_READ_ATTEMPTS`] times (on another node each time) before it is left unreadable.
pub async fn final_reads(config: &WorkloadConfig, keys: &[i64]) -> HashMap<i64, FinalRead> {
    let mut connections: Vec<(Client, PreparedStatement)> = Vec::new();
    let mut why = Vec::new();
    for i in 0..config.endpoints.len() {
        match open(config, i, config.connect_timeout).await {
            Ok((client, _, select)) => connections.push((client, select)),
            Err(e) => why.push(format!("{}: {e}", config.endpoints[i].name)),
        }
    }
    if connections.is_empty() {
        let e = format!("no node reachable: {}", why.join("; "));
        return keys
            .iter()
            .map(|k| (*k, FinalRead::Unreadable(e.clone())))
            .collect();
    }
    let connections = &connections;
    let options = QueryOptions {
        consistency: Consistency::All,
        ..QueryOptions::default()
    };
    let options = &options;
    futures::stream::iter(keys.iter().copied().enumerate())
        .map(|(i, key)| async move {
            let mut last = String::new();
            for attempt in 0..FINAL_READ_ATTEMPTS {
                let (client, select) = &connections[(i + attempt as usize) % connections.len()];
                match client
                    .execute(select, [CqlValue::BigInt(key)], options)
                    .await
                {
                    Ok(QueryResult::Rows(rows)) => {
                        return (
                            key,
                            match first_bigint(&rows.rows) {
                                Some(v) => FinalRead::Found(v),
                                None => FinalRead::Missing,
                            },
                        )
                    }
                    Ok(other) => last = format!("answered without rows: {other:?}"),
                    Err(e) => last = history::error_text(&e),
                }
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
            }
            (key, FinalRead::Unreadable(last))
        })
        .buffer_unordered(FINAL_READ_CONCURRENCY)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dcs: &[usize], local_only: bool) -> WorkloadConfig {
        let mut endpoints = Vec::new();
        let mut k = 0;
        for (d, n) in dcs.iter().enumerate() {
            for _ in 0..*n {
                k += 1;
                endpoints.push(Endpoint {
                    name: format!("node{k}"),
                    addr: format!("127.0.0.{k}:9042").parse().unwrap(),
                    dc: format!("dc{}", d + 1),
                });
            }
        }
        WorkloadConfig {
            clients: 4,
            consistency: Consistency::Quorum,
            rate: None,
            seed: 1,
            keyspace: "chaos".into(),
            endpoints,
            local_only,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn clients_spread_over_the_nodes_and_fail_over_in_order() {
        let c = config(&[3], false);
        assert_eq!(c.endpoints_of(0), vec![0, 1, 2]);
        assert_eq!(c.endpoints_of(1), vec![1, 2, 0]);
        assert_eq!(c.endpoints_of(3), vec![0, 1, 2]);
    }

    #[test]
    fn local_clients_stay_in_their_datacenter() {
        let c = config(&[3, 3], true);
        assert_eq!(c.endpoints_of(0), vec![0, 1, 2]);
        assert_eq!(c.endpoints_of(1), vec![3, 4, 5]);
        assert_eq!(c.endpoints_of(2), vec![1, 2, 0]);
        assert_eq!(c.endpoints_of(3), vec![4, 5, 3]);
        let global = config(&[3, 3], false);
        assert_eq!(global.endpoints_of(4), vec![4, 5, 0, 1, 2, 3]);
    }

    #[test]
    fn values_are_distinct_and_replayable() {
        let values: std::collections::HashSet<i64> = (1..10_000).map(|k| value_for(7, k)).collect();
        assert_eq!(values.len(), 9_999);
        assert_eq!(value_for(7, 42), value_for(7, 42));
        assert_ne!(value_for(7, 42), value_for(8, 42));
    }

    #[test]
    fn statements_name_the_keyspace() {
        let c = config(&[1], false);
        assert_eq!(c.insert_cql(), "INSERT INTO chaos.t (k, v) VALUES (?, ?)");
        assert_eq!(c.select_cql(), "SELECT v FROM chaos.t WHERE k = ?");
    }
}

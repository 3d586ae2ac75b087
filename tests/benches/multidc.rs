//! Two datacenters on one machine, with and without a slow link between them (issue 6): what
//! LOCAL_QUORUM and EACH_QUORUM cost a client in dc1.
//!
//! ```text
//! cargo build --release -p ringdb-node
//! cargo bench -p ringdb-tests --bench multidc                 # 2000 requests per figure
//! cargo bench -p ringdb-tests --bench multidc -- --requests 5000 --delay-ms 200
//! ```
//!
//! A 3 + 3 cluster (`ringdb cluster create -n 3:3`), keyspace `{'dc1': 3, 'dc2': 3}`; the client
//! (the `scylla` driver, token-aware, dc1 preferred, no failover to dc2) sends one request at a
//! time, so each figure is the latency of one request alone. Measured: LOCAL_QUORUM writes and
//! reads with no delay; then with `ringdb cluster delay dc1 / dc2 --ms D` (every internode
//! message between the datacenters D ms late each way): LOCAL_QUORUM writes and reads again,
//! and EACH_QUORUM writes, which must wait for dc2. Prints p50, p99 and max per figure.
//!
//! Needs the release binary (`RINGDB_BIN` or `target/release/ringdb`); prints `SKIPPED`
//! without it.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ringdb_tests::{ringdb_bin_or_skip, TestCluster};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;

struct Options {
    requests: u64,
    delay_ms: u64,
}

fn options() -> Result<Options> {
    let mut o = Options {
        requests: 2000,
        delay_ms: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64> {
            args.next()
                .with_context(|| format!("{what} N"))?
                .parse()
                .with_context(|| format!("{what} N"))
        };
        match arg.as_str() {
            "--requests" => o.requests = number("--requests")?,
            "--delay-ms" => o.delay_ms = number("--delay-ms")?,
            // `cargo bench` passes --bench; libtest-style filters are ignored.
            _ => {}
        }
    }
    Ok(o)
}

fn main() -> Result<()> {
    let Some(bin) = ringdb_bin_or_skip("multidc bench") else {
        return Ok(());
    };
    let o = options()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("multidc bench; machine: {}", ringdb_tests::machine());
    let guard = TestCluster::create("multidc", &bin, &[3, 3], &[])?;
    let result = rt.block_on(run(&guard, &o));
    if result.is_err() {
        eprintln!("{}", guard.log_tails(40));
    }
    result
}

/// Latencies in milliseconds, sorted.
struct Figure(Vec<f64>);

impl Figure {
    fn at(&self, q: f64) -> f64 {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i.min(self.0.len() - 1)]
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests)",
            self.at(0.5),
            self.at(0.99),
            self.0.last().copied().unwrap_or(0.0),
            self.0.len()
        )
    }
}

async fn timed(
    session: &Session,
    cql: &str,
    cl: Consistency,
    keys: std::ops::Range<i64>,
) -> Result<Figure> {
    let mut statement = session
        .prepare(cql)
        .await
        .with_context(|| cql.to_string())?;
    statement.set_consistency(cl);
    let mut out = Vec::with_capacity(keys.end.saturating_sub(keys.start) as usize);
    let writes = cql.starts_with("INSERT");
    for k in keys {
        let started = Instant::now();
        if writes {
            session
                .execute_unpaged(&statement, (k, format!("value-{k}")))
                .await
        } else {
            session.execute_unpaged(&statement, (k,)).await
        }
        .with_context(|| format!("{cql} k={k} at {cl:?}"))?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    Ok(Figure(out))
}

async fn run(guard: &TestCluster, o: &Options) -> Result<()> {
    let cluster = guard.cluster();
    cluster.start(Duration::from_secs(180)).await?;
    let nodes = cluster.nodes();
    let dc1 = nodes
        .iter()
        .find(|n| n.dc == "dc1")
        .context("a node in dc1")?;
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(
            DefaultPolicy::builder()
                .prefer_datacenter("dc1".to_string())
                .permit_dc_failover(false)
                .token_aware(true)
                .build(),
        )
        .build()
        .into_handle();
    let session = SessionBuilder::new()
        .known_node(dc1.cql_addr.to_string())
        .default_execution_profile_handle(profile)
        .build()
        .await
        .with_context(|| format!("connecting to {}", dc1.cql_addr))?;
    session
        .query_unpaged(
            "CREATE KEYSPACE bench WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}",
            &[],
        )
        .await
        .context("CREATE KEYSPACE")?;
    session
        .query_unpaged("CREATE TABLE bench.kv (k bigint PRIMARY KEY, v text)", &[])
        .await
        .context("CREATE TABLE")?;
    session.await_schema_agreement().await?;

    let n = o.requests as i64;
    let insert = "INSERT INTO bench.kv (k, v) VALUES (?, ?)";
    let select = "SELECT v FROM bench.kv WHERE k = ?";
    let lq = Consistency::LocalQuorum;
    // Warm-up: connections, prepared statements, caches.
    timed(&session, insert, lq, 0..200).await?;

    let mut lines = Vec::new();
    lines.push(
        timed(&session, insert, lq, 0..n)
            .await?
            .line("LOCAL_QUORUM write, no delay"),
    );
    lines.push(
        timed(&session, select, lq, 0..n)
            .await?
            .line("LOCAL_QUORUM read, no delay"),
    );
    let a = cluster.resolve_group("dc1")?;
    let b = cluster.resolve_group("dc2")?;
    cluster.delay(&a, &b, o.delay_ms)?;
    let d = o.delay_ms;
    lines.push(
        timed(&session, insert, lq, n..2 * n)
            .await?
            .line(&format!("LOCAL_QUORUM write, dc1-dc2 +{d} ms")),
    );
    lines.push(
        timed(&session, select, lq, n..2 * n)
            .await?
            .line(&format!("LOCAL_QUORUM read, dc1-dc2 +{d} ms")),
    );
    // EACH_QUORUM waits a round trip to dc2 each time: fewer requests.
    let each = (n / 10).max(20);
    lines.push(
        timed(
            &session,
            insert,
            Consistency::EachQuorum,
            2 * n..2 * n + each,
        )
        .await?
        .line(&format!("EACH_QUORUM write, dc1-dc2 +{d} ms")),
    );
    cluster.heal()?;
    for line in lines {
        println!("{line}");
    }
    // Let the hints of writes dc2 answered late settle before the cluster is removed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}

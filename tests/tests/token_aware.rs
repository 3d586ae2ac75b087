//! Token-aware routing end to end (issue 4, "Done when"): on a 3-node cluster with a keyspace of
//! replication factor 1 (each key has exactly one replica), the Rust `scylla` driver with default
//! settings — token-aware for prepared statements — sends every INSERT and SELECT to the key's
//! replica. The server says so in its metrics: each node counts the requests it coordinates in
//! `ringdb_coordinator_requests_total{op="write"|"read",replica="yes"|"no"}`, `replica="yes"`
//! when the coordinator is itself a replica of the partition.
//!
//! The check is on the deltas summed over the three nodes' `/metrics` around each phase:
//!
//! - token-aware (prepared statements, default policy): `replica="no"` stays 0 for reads and
//!   writes, and `replica="yes"` grows by at least the number of statements;
//! - control (the same prepared statements in an execution profile whose `DefaultPolicy` is not
//!   token-aware, so requests go to nodes in turn): `replica="no"` grows for reads and writes,
//!   which shows the counter can fail.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use ringdb_node::cluster::{NodeHandle, PROMETHEUS_PORT};
use ringdb_tests::{
    create_keyspace, fetch_metrics, metric_sum, parse_metrics, ringdb_bin_or_skip, run_async,
};
use ringdb_tests::{MetricSample, TestCluster};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::prepared::PreparedStatement;

const KS: &str = "ks_token_aware";
const KEYS: i32 = 200;
const COORDINATOR_REQUESTS: &str = "ringdb_coordinator_requests_total";
const UP_TIMEOUT: Duration = Duration::from_secs(120);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

fn value_of(k: i32, phase: &str) -> String {
    format!("{phase}-{k}")
}

/// `ringdb_coordinator_requests_total` summed over the nodes, by (op, replica).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Coordinated {
    write_replica: f64,
    write_other: f64,
    read_replica: f64,
    read_other: f64,
}

impl Coordinated {
    fn since(self, before: Coordinated) -> Coordinated {
        Coordinated {
            write_replica: self.write_replica - before.write_replica,
            write_other: self.write_other - before.write_other,
            read_replica: self.read_replica - before.read_replica,
            read_other: self.read_other - before.read_other,
        }
    }
}

impl std::fmt::Display for Coordinated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes coordinated by a replica {}, by a non-replica {}; \
             reads coordinated by a replica {}, by a non-replica {}",
            self.write_replica, self.write_other, self.read_replica, self.read_other
        )
    }
}

/// Scrapes every node's `/metrics` (port 9500 on its own address) and sums the coordinator
/// counters; fails if a node does not export `ringdb_coordinator_requests_total` at all.
async fn scrape(nodes: &[NodeHandle]) -> Result<Coordinated> {
    let mut total = Coordinated::default();
    for node in nodes {
        let addr = SocketAddr::new(IpAddr::V4(node.ip), PROMETHEUS_PORT);
        let body = tokio::task::spawn_blocking(move || fetch_metrics(addr, SCRAPE_TIMEOUT))
            .await
            .context("scrape task")??;
        let samples: Vec<MetricSample> = parse_metrics(&body);
        ensure!(
            samples.iter().any(|s| s.name == COORDINATOR_REQUESTS),
            "{} ({addr}) exports no {COORDINATOR_REQUESTS}; its metrics: {:?}",
            node.name,
            {
                let mut names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
                names.dedup();
                names
            }
        );
        let sum = |op, replica| {
            metric_sum(
                &samples,
                COORDINATOR_REQUESTS,
                &[("op", op), ("replica", replica)],
            )
        };
        total.write_replica += sum("write", "yes");
        total.write_other += sum("write", "no");
        total.read_replica += sum("read", "yes");
        total.read_other += sum("read", "no");
    }
    Ok(total)
}

/// Writes then reads back every key, one statement at a time, with the given statements.
async fn write_and_read(
    session: &Session,
    insert: &PreparedStatement,
    select: &PreparedStatement,
    phase: &str,
) -> Result<()> {
    for k in 0..KEYS {
        session
            .execute_unpaged(insert, (k, value_of(k, phase)))
            .await
            .with_context(|| format!("{phase}: INSERT k={k}"))?;
    }
    for k in 0..KEYS {
        let (v,) = session
            .execute_unpaged(select, (k,))
            .await
            .with_context(|| format!("{phase}: SELECT k={k}"))?
            .into_rows_result()
            .context("SELECT result is not ROWS")?
            .single_row::<(String,)>()
            .with_context(|| format!("{phase}: SELECT k={k} did not return one row"))?;
        ensure!(
            v == value_of(k, phase),
            "{phase}: k={k} reads {v:?}, expected {:?}",
            value_of(k, phase)
        );
    }
    Ok(())
}

async fn create_schema(session: &Session) -> Result<()> {
    // The driver then awaits schema agreement on all 3 nodes.
    create_keyspace(session, KS, 1).await?;
    session
        .query_unpaged(
            format!("CREATE TABLE {KS}.kv (k int PRIMARY KEY, v text)"),
            &[],
        )
        .await
        .context("CREATE TABLE (the driver then awaits schema agreement on all 3 nodes)")?;
    session
        .await_schema_agreement()
        .await
        .context("schema agreement")?;
    session
        .refresh_metadata()
        .await
        .context("refresh_metadata")?;
    Ok(())
}

#[test]
fn token_aware_driver_sends_every_request_to_a_replica() {
    let test = "token_aware_driver_sends_every_request_to_a_replica";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3], &[]).expect("create cluster");
    run_async(Duration::from_secs(300), async {
        guard
            .start(UP_TIMEOUT)
            .await
            .map_err(|e| anyhow!("cluster did not come up: {e}"))?;
        let nodes = guard.nodes();
        let session = SessionBuilder::new()
            .known_nodes(nodes.iter().map(|n| n.cql_addr.to_string()))
            .schema_agreement_timeout(Duration::from_secs(30))
            .build()
            .await
            .context("scylla driver: connect with default settings")?;
        let seen = session.get_cluster_state().get_nodes_info().len();
        ensure!(seen == 3, "the driver sees {seen} nodes, expected 3");
        create_schema(&session).await?;

        let insert = session
            .prepare(format!("INSERT INTO {KS}.kv (k, v) VALUES (?, ?)"))
            .await
            .context("PREPARE INSERT")?;
        let select = session
            .prepare(format!("SELECT v FROM {KS}.kv WHERE k = ?"))
            .await
            .context("PREPARE SELECT")?;
        ensure!(
            insert.is_token_aware() && select.is_token_aware(),
            "the driver cannot route the prepared statements by token (no partition key \
             indexes in PREPARED?)"
        );

        // Token-aware: the default policy sends each statement to the key's only replica.
        let before = scrape(&nodes).await?;
        write_and_read(&session, &insert, &select, "token-aware").await?;
        let token_aware = scrape(&nodes).await?.since(before);
        eprintln!(
            "token-aware phase, {KEYS} INSERTs and {KEYS} SELECTs: {token_aware} (all nodes)"
        );
        ensure!(
            token_aware.write_other == 0.0 && token_aware.read_other == 0.0,
            "with token-aware routing some requests were coordinated by a node that is not a \
             replica of their key: {token_aware}"
        );
        ensure!(
            token_aware.write_replica >= f64::from(KEYS)
                && token_aware.read_replica >= f64::from(KEYS),
            "{KEYS} writes and {KEYS} reads were not all counted as coordinated by a replica: \
             {token_aware}"
        );

        // Control: the same statements, routed without token awareness.
        let round_robin = ExecutionProfile::builder()
            .load_balancing_policy(DefaultPolicy::builder().token_aware(false).build())
            .build()
            .into_handle();
        let mut insert_rr = insert.clone();
        insert_rr.set_execution_profile_handle(Some(round_robin.clone()));
        let mut select_rr = select.clone();
        select_rr.set_execution_profile_handle(Some(round_robin));
        let before = scrape(&nodes).await?;
        write_and_read(&session, &insert_rr, &select_rr, "round-robin").await?;
        let control = scrape(&nodes).await?.since(before);
        eprintln!("control phase (not token-aware), same statements: {control} (all nodes)");

        ensure!(
            control.write_other > 0.0 && control.read_other > 0.0,
            "without token awareness no request was counted as coordinated by a non-replica \
             (with 3 nodes and RF 1 about 2 in 3 should be): {control}; the counter cannot tell"
        );
        Ok(())
    });
}

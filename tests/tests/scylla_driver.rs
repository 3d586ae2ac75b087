//! The Rust `scylla` 1.x driver, with default session settings, against a real `ringdb node`:
//! connect, DDL with schema agreement, a prepared INSERT of 10 000 rows (concurrent, bounded),
//! paging through all of them with a prepared SELECT, and token-aware routing whose tokens agree
//! with the server's `token()`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use ringdb_tests::{run_async, TestNode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::PagingState;
use scylla::statement::unprepared::Statement;

const KS: &str = "ks_scylla";
const PARTITIONS: i32 = 100;
const ROWS_PER_PARTITION: i32 = 100;
const ROWS: i32 = PARTITIONS * ROWS_PER_PARTITION;
const CONCURRENCY: usize = 64;
const PAGE_SIZE: i32 = 1000;

fn value_of(pk: i32, ck: i32) -> String {
    format!("value-{pk}-{ck}")
}

async fn connect(node: &str) -> Result<Session> {
    SessionBuilder::new()
        .known_node(node)
        .build()
        .await
        .with_context(|| format!("scylla driver: connect to {node} with default settings"))
}

async fn create_schema(session: &Session) -> Result<()> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {KS} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .context("CREATE KEYSPACE")?;
    session
        .await_schema_agreement()
        .await
        .context("schema agreement after CREATE KEYSPACE")?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {KS}.rows (pk int, ck int, v text, \
                 PRIMARY KEY (pk, ck))"
            ),
            &[],
        )
        .await
        .context("CREATE TABLE")?;
    let version = session
        .await_schema_agreement()
        .await
        .context("schema agreement after CREATE TABLE")?;
    let agreed = session
        .check_schema_agreement()
        .await
        .context("check_schema_agreement")?;
    ensure!(
        agreed == Some(version),
        "check_schema_agreement gave {agreed:?}, await_schema_agreement gave {version}"
    );
    Ok(())
}

async fn write_rows(session: &Session) -> Result<()> {
    let insert = session
        .prepare(format!(
            "INSERT INTO {KS}.rows (pk, ck, v) VALUES (?, ?, ?)"
        ))
        .await
        .context("PREPARE INSERT")?;
    let insert = &insert;
    let results: Vec<Result<(), String>> = stream::iter(0..ROWS)
        .map(|i| async move {
            let (pk, ck) = (i / ROWS_PER_PARTITION, i % ROWS_PER_PARTITION);
            session
                .execute_unpaged(insert, (pk, ck, value_of(pk, ck)))
                .await
                .map(|_| ())
                .map_err(|e| format!("row ({pk}, {ck}): {e}"))
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    ensure!(
        errors.is_empty(),
        "{} of {ROWS} prepared INSERTs failed; first: {}",
        errors.len(),
        errors[0]
    );
    Ok(())
}

/// Full scan with a prepared SELECT paged by hand, checking every row exactly once.
async fn page_through_all(session: &Session) -> Result<()> {
    let select = session
        .prepare(
            Statement::new(format!("SELECT pk, ck, v FROM {KS}.rows")).with_page_size(PAGE_SIZE),
        )
        .await
        .context("PREPARE full-scan SELECT")?;
    let mut seen: HashSet<(i32, i32)> = HashSet::new();
    let mut paging_state = PagingState::start();
    let mut pages = 0;
    loop {
        pages += 1;
        if pages > 2 * (ROWS / PAGE_SIZE) as usize + 10 {
            bail!("more than {pages} pages for {ROWS} rows at page size {PAGE_SIZE}: paging loops");
        }
        let (result, paging_response) = session
            .execute_single_page(&select, (), paging_state)
            .await
            .with_context(|| format!("EXECUTE full-scan SELECT, page {pages}"))?;
        let rows = result.into_rows_result().context("page is not ROWS")?;
        ensure!(
            rows.rows_num() <= PAGE_SIZE as usize,
            "page {pages} has {} rows, more than the page size {PAGE_SIZE}",
            rows.rows_num()
        );
        for row in rows.rows::<(i32, i32, String)>()? {
            let (pk, ck, v) = row.context("deserialize (int, int, text)")?;
            ensure!(
                v == value_of(pk, ck),
                "row ({pk}, {ck}) has v = {v:?}, expected {:?}",
                value_of(pk, ck)
            );
            ensure!(seen.insert((pk, ck)), "row ({pk}, {ck}) returned twice");
        }
        match paging_response.into_paging_control_flow() {
            std::ops::ControlFlow::Break(()) => break,
            std::ops::ControlFlow::Continue(next) => paging_state = next,
        }
    }
    ensure!(
        seen.len() == ROWS as usize,
        "full scan returned {} distinct rows in {pages} pages, expected {ROWS}",
        seen.len()
    );
    ensure!(
        pages >= (ROWS / PAGE_SIZE) as usize,
        "{ROWS} rows came in only {pages} pages at page size {PAGE_SIZE}: paging not honoured"
    );
    Ok(())
}

/// Single-partition prepared SELECTs (routed by token) paged with the driver's iterator; the
/// driver's token for each partition key must equal the server's `token(pk)`, and the driver must
/// map it to our node.
async fn token_aware_reads(session: &Session, node_ip: std::net::IpAddr) -> Result<()> {
    session
        .refresh_metadata()
        .await
        .context("refresh_metadata")?;
    let state = session.get_cluster_state();
    let nodes = state.get_nodes_info();
    ensure!(
        nodes.len() == 1,
        "driver sees {} nodes, expected 1",
        nodes.len()
    );
    ensure!(
        nodes[0].address.ip() == node_ip,
        "driver's node address {} is not the node's {node_ip}",
        nodes[0].address
    );
    let ks = state
        .get_keyspace(KS)
        .with_context(|| format!("keyspace {KS} missing from driver metadata"))?;
    let table = ks
        .tables
        .get("rows")
        .context("table rows missing from driver metadata")?;
    ensure!(
        table.partition_key == ["pk"] && table.clustering_key == ["ck"],
        "driver metadata keys: partition {:?}, clustering {:?}",
        table.partition_key,
        table.clustering_key
    );

    let mut select = session
        .prepare(format!("SELECT ck, v FROM {KS}.rows WHERE pk = ?"))
        .await
        .context("PREPARE single-partition SELECT")?;
    select.set_page_size(7);
    let token_of = session
        .prepare(format!(
            "SELECT token(pk) FROM {KS}.rows WHERE pk = ? LIMIT 1"
        ))
        .await
        .context("PREPARE SELECT token(pk)")?;
    for pk in (0..PARTITIONS).step_by(9) {
        let token = select
            .calculate_token(&(pk,))
            .context("calculate_token")?
            .context("driver computed no token: partition key indexes missing from PREPARED")?;
        let replicas = state.get_token_endpoints(KS, "rows", token);
        ensure!(
            replicas.len() == 1 && replicas[0].0.address.ip() == node_ip,
            "driver maps token {} to {} replicas, expected our node",
            token.value(),
            replicas.len()
        );
        let (server_token,) = session
            .execute_unpaged(&token_of, (pk,))
            .await
            .context("EXECUTE SELECT token(pk)")?
            .into_rows_result()?
            .single_row::<(i64,)>()
            .context("token(pk) row")?;
        ensure!(
            server_token == token.value(),
            "pk {pk}: server token(pk) = {server_token}, driver's Murmur3 token = {}",
            token.value()
        );

        let rows: Vec<(i32, String)> = session
            .execute_iter(select.clone(), (pk,))
            .await
            .context("execute_iter single partition")?
            .rows_stream::<(i32, String)>()?
            .try_collect()
            .await
            .with_context(|| format!("paging through partition {pk} at page size 7"))?;
        let expected: Vec<(i32, String)> = (0..ROWS_PER_PARTITION)
            .map(|ck| (ck, value_of(pk, ck)))
            .collect();
        ensure!(
            rows == expected,
            "partition {pk}: got {} rows (first {:?}), expected {ROWS_PER_PARTITION} in clustering order",
            rows.len(),
            rows.first()
        );
    }
    Ok(())
}

#[test]
fn scylla_driver_prepares_writes_and_pages_10k_rows() {
    let test = "scylla_driver_prepares_writes_and_pages_10k_rows";
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    let addr = node.cql_host_port();
    let ip = node.cql_addr().ip();
    run_async(Duration::from_secs(300), async move {
        let session = connect(&addr).await?;
        create_schema(&session).await?;
        write_rows(&session).await?;
        page_through_all(&session).await?;
        token_aware_reads(&session, ip).await?;
        Ok(())
    });
    drop(node);
}

#[test]
fn scylla_driver_sees_errors_as_errors() {
    let test = "scylla_driver_sees_errors_as_errors";
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    let addr = node.cql_host_port();
    run_async(Duration::from_secs(120), async move {
        let session = connect(&addr).await?;
        let missing = session
            .query_unpaged("SELECT * FROM no_such_ks.no_such_table", &[])
            .await;
        ensure!(missing.is_err(), "SELECT from a missing table succeeded");
        let bad = session.query_unpaged("SELEC nonsense", &[]).await;
        ensure!(bad.is_err(), "a syntax error succeeded");
        // The session is still usable afterwards.
        let (release,) = session
            .query_unpaged(
                "SELECT release_version FROM system.local WHERE key = 'local'",
                &[],
            )
            .await
            .context("SELECT release_version after errors")?
            .into_rows_result()?
            .single_row::<(String,)>()?;
        ensure!(!release.is_empty(), "empty release_version");
        Ok(())
    });
    drop(node);
}

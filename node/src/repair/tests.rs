//! Repair sessions on an in-process cluster (real replicas and internode transports, no
//! gossip: see `coordinator::testing`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ringdb_ring::{MerkleTree, Token, TokenRange};
use tokio::sync::watch;

use super::session::{leaf_runs, reconcile, LeafRun};
use super::{RepairError, RepairOptions, RepairReport, RepairService};
use crate::coordinator::testing::{insert, int_partition, value_of, TestCluster};
use crate::schema::TableDef;
use crate::storage::{Deletion, Engine, Mutation, PartitionData, ScanRange, Slice};

const TIMEOUT: Duration = Duration::from_secs(30);

fn service(cluster: &TestCluster, node: usize) -> (Arc<RepairService>, watch::Sender<bool>) {
    let (stop, stop_rx) = watch::channel(false);
    let service = RepairService::new(
        cluster.nodes[node].coordinator.clone(),
        cluster.nodes[node].schema.clone(),
        stop_rx,
    );
    (service, stop)
}

async fn repair(cluster: &TestCluster, node: usize, options: RepairOptions) -> RepairReport {
    let (service, _stop) = service(cluster, node);
    let mut reports = service.start(options).expect("repair starts");
    let report = tokio::time::timeout(TIMEOUT, reports.wait_for(|r| r.finished))
        .await
        .expect("repair finishes in time")
        .expect("report")
        .clone();
    assert_eq!(service.current(), Some(report.clone()));
    report
}

fn everything(engine: &dyn Engine, table: &TableDef) -> Vec<PartitionData> {
    let all = ScanRange {
        after: None,
        end_token: None,
    };
    engine
        .scan(table.id, &all, &Slice::all(), 1_000_000, 0)
        .expect("scan")
}

fn apply(engine: &dyn Engine, mutations: impl IntoIterator<Item = Mutation>) {
    for m in mutations {
        engine.apply(&m).expect("apply");
    }
}

fn delete(table: &TableDef, k: i32, timestamp: i64) -> Mutation {
    Mutation {
        table: table.id,
        partition: int_partition(k),
        partition_deletion: Some(Deletion {
            timestamp,
            local_deletion_time: 1_700_000_000,
        }),
        range_deletions: vec![],
        rows: vec![],
    }
}

async fn three_nodes() -> (TestCluster, Arc<TableDef>) {
    let cluster = TestCluster::start(&["r1", "r1", "r1"], Duration::from_secs(5)).await;
    let table = cluster.create_table(3, "CREATE TABLE t (k int PRIMARY KEY, v text)");
    (cluster, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergent_replicas_converge_and_a_second_repair_streams_nothing() {
    let (cluster, table) = three_nodes().await;
    let engines: Vec<&dyn Engine> = cluster.nodes.iter().map(|n| n.engine.as_ref()).collect();
    for (i, engine) in engines.iter().enumerate() {
        // Node 2 missed keys 100..150.
        let keys = (0..500).filter(|k| i != 2 || !(100..150).contains(k));
        apply(
            *engine,
            keys.map(|k| insert(&table, k, &format!("v{k}"), 10)),
        );
    }
    // Only node 0 has 500..520; node 1 has newer values for 0..10; node 2 deleted 200.
    apply(
        engines[0],
        (500..520).map(|k| insert(&table, k, "only0", 10)),
    );
    apply(engines[1], (0..10).map(|k| insert(&table, k, "newer", 20)));
    apply(engines[2], [delete(&table, 200, 30)]);

    let consistent = repair(&cluster, 1, RepairOptions::default()).await;
    assert!(consistent.succeeded(), "{consistent:#?}");
    assert_eq!(consistent.ranges_total, 3, "one table x three ranges");
    assert_eq!(consistent.ranges_compared, 3);
    assert_eq!(consistent.ranges_out_of_sync, 3);
    // Missing partitions reached each node that lacked them, newer versions replaced older.
    // Node 0 misses 10 newer + 1 deletion; node 1 misses 20 + 1; node 2 misses 50 + 20 + 10.
    assert_eq!(
        consistent.partitions_streamed,
        11 + 21 + 80,
        "{consistent:#?}"
    );
    assert!(consistent.bytes_streamed > 0);
    assert!(consistent.partitions_fetched > 0 && consistent.subranges_out_of_sync > 0);

    let reference = everything(engines[0], &table);
    assert_eq!(reference.len(), 520);
    for engine in &engines[1..] {
        assert!(everything(*engine, &table) == reference, "replicas differ");
    }
    for engine in &engines {
        assert_eq!(value_of(*engine, &table, 3).as_deref(), Some("newer"));
        assert_eq!(value_of(*engine, &table, 120).as_deref(), Some("v120"));
        assert_eq!(value_of(*engine, &table, 510).as_deref(), Some("only0"));
        assert_eq!(value_of(*engine, &table, 200), None, "the deletion wins");
    }

    for node in [0, 2] {
        let again = repair(&cluster, node, RepairOptions::default()).await;
        assert!(again.succeeded(), "{again:#?}");
        assert_eq!(again.ranges_compared, 3);
        assert_eq!(
            (
                again.ranges_out_of_sync,
                again.partitions_fetched,
                again.partitions_streamed,
                again.bytes_streamed
            ),
            (0, 0, 0, 0),
            "a repaired cluster streams nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_gets_everything_back() {
    let (cluster, table) = three_nodes().await;
    for node in &cluster.nodes[..2] {
        apply(
            node.engine.as_ref(),
            (0..3000).map(|k| insert(&table, k, &format!("v{k}"), 10)),
        );
    }
    // Node 2 is empty: it chooses depth 0 and the others a deep tree; trees are rebuilt at
    // the deepest depth, and everything streams to node 2 only.
    let report = repair(&cluster, 2, RepairOptions::default()).await;
    assert!(report.succeeded(), "{report:#?}");
    assert_eq!(report.partitions_streamed, 3000);
    assert_eq!(
        report.partitions_fetched, 3000,
        "one copy read, from one of the two"
    );
    assert_eq!(
        everything(cluster.nodes[2].engine.as_ref(), &table).len(),
        3000
    );
    let again = repair(&cluster, 0, RepairOptions::default()).await;
    assert_eq!(
        (again.ranges_out_of_sync, again.partitions_streamed),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_replica_fails_its_ranges() {
    let (mut cluster, table) = three_nodes().await;
    apply(
        cluster.nodes[0].engine.as_ref(),
        [insert(&table, 1, "a", 10)],
    );
    cluster.set_alive(2, false);
    let report = repair(&cluster, 0, RepairOptions::default()).await;
    assert!(!report.succeeded());
    assert_eq!(report.ranges_failed, report.ranges_total);
    assert_eq!(report.ranges_compared, 0);
    assert!(report.failures[0].error.contains("down"), "{report:#?}");
    assert_eq!(report.partitions_streamed, 0);
}

#[tokio::test]
async fn one_repair_at_a_time_and_bad_requests_are_refused() {
    let (cluster, _table) = three_nodes().await;
    let (service, _stop) = service(&cluster, 0);
    assert_eq!(service.current(), None);
    let mut first = service
        .start(RepairOptions::default())
        .expect("first starts");
    // The current-thread runtime has not run the session yet: it is still running.
    assert!(matches!(
        service.start(RepairOptions::default()),
        Err(RepairError::Busy { total: 3, .. })
    ));
    tokio::time::timeout(TIMEOUT, first.wait_for(|r| r.finished))
        .await
        .expect("finishes")
        .expect("report");
    let bad = |keyspace: Option<&str>, table: Option<&str>| RepairOptions {
        keyspace: keyspace.map(str::to_string),
        table: table.map(str::to_string),
        primary_range_only: false,
    };
    assert_eq!(
        service.start(bad(Some("nope"), None)).unwrap_err(),
        RepairError::UnknownKeyspace("nope".into())
    );
    assert!(matches!(
        service.start(bad(Some("ks"), Some("nope"))),
        Err(RepairError::UnknownTable { .. })
    ));
    assert!(matches!(
        service.start(bad(Some("system"), None)),
        Err(RepairError::Invalid(_))
    ));
    assert!(matches!(
        service.start(bad(None, Some("t"))),
        Err(RepairError::Invalid(_))
    ));
    // The last summary stays visible after refusals.
    assert!(service.current().is_some_and(|r| r.finished));

    let primary = repair(
        &cluster,
        0,
        RepairOptions {
            primary_range_only: true,
            ..RepairOptions::default()
        },
    )
    .await;
    assert_eq!(primary.ranges_total, 1, "each node has one token");
    assert!(primary.succeeded());
}

#[tokio::test]
async fn replication_factor_one_is_skipped_and_reported() {
    let cluster = TestCluster::start(&["r1", "r1"], Duration::from_secs(5)).await;
    cluster.create_table(1, "CREATE TABLE t (k int PRIMARY KEY, v text)");
    let report = repair(&cluster, 0, RepairOptions::default()).await;
    assert!(report.succeeded());
    assert_eq!(report.ranges_total, 0);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].reason.contains("replication factor 1"));
}

fn tree(range: TokenRange, entries: &[(i64, u8)]) -> MerkleTree {
    MerkleTree::build(range, 3, entries.iter().map(|&(t, d)| (Token(t), [d; 16]))).unwrap()
}

#[test]
fn leaf_runs_group_replicas_by_leaf_hash() {
    // 8 leaves of width 100 over (0, 800].
    let r = TokenRange::new(Token(0), Token(800));
    let a = tree(r, &[(50, 1), (150, 1), (450, 1)]);
    let b = tree(r, &[(50, 2), (150, 2), (450, 1)]);
    let c = tree(r, &[(50, 1), (150, 1), (450, 3)]);
    let differing: BTreeSet<usize> = [0, 1, 4].into();
    let runs = leaf_runs(&[&a, &b, &c], &differing);
    assert_eq!(
        runs,
        vec![
            LeafRun {
                first: 0,
                last: 1,
                groups: vec![vec![0, 2], vec![1]],
            },
            LeafRun {
                first: 4,
                last: 4,
                groups: vec![vec![0, 1], vec![2]],
            },
        ]
    );
}

#[test]
fn reconcile_writes_the_merge_to_groups_that_differ() {
    let table = {
        let store = crate::schema::SchemaStore::open(Arc::new(crate::storage::MemoryEngine::new()))
            .expect("schema");
        crate::coordinator::testing::create_table(
            &store,
            3,
            "CREATE TABLE t (k int PRIMARY KEY, v text)",
        )
    };
    let read = |mutations: &[Mutation]| -> Vec<PartitionData> {
        let engine = crate::storage::MemoryEngine::new();
        apply(&engine, mutations.iter().cloned());
        everything(&engine, &table)
    };
    let old = read(&[insert(&table, 1, "old", 10), insert(&table, 2, "same", 10)]);
    let new = read(&[insert(&table, 1, "new", 20), insert(&table, 2, "same", 10)]);
    let only = read(&[insert(&table, 3, "x", 10)]);
    let pages = vec![(old, true), (new, true), (only, true)];
    let out = reconcile(&table, &pages, None);
    let keys = |ms: &Vec<Mutation>| -> Vec<i64> { ms.iter().map(|m| m.partition.token).collect() };
    let mut want0 = vec![int_partition(1).token, int_partition(3).token];
    want0.sort();
    assert_eq!(keys(&out[0]), want0, "older 1, missing 3");
    assert_eq!(keys(&out[1]), vec![int_partition(3).token]);
    let mut want2 = vec![int_partition(1).token, int_partition(2).token];
    want2.sort();
    assert_eq!(keys(&out[2]), want2);
    // Nothing past the cut.
    let cut = reconcile(&table, &pages, Some(&int_partition(-1)));
    let before: usize = cut.iter().map(Vec::len).sum();
    assert!(before <= out.iter().map(Vec::len).sum());
}

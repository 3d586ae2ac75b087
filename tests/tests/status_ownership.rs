//! `ringdb status [KEYSPACE]` on a real two-datacenter cluster (3 nodes in dc1, 2 in dc2): the
//! ownership column follows `nodetool status [keyspace]`.
//!
//! - no keyspace yet: raw ownership ("Owns"), all nodes summing to 100%;
//! - `ringdb status nts` with NetworkTopologyStrategy {dc1: 3, dc2: 1}: "Owns (effective)",
//!   100% for each dc1 node, dc2's nodes summing to 100%;
//! - no keyspace named while `nts` is the only non-system keyspace: its effective ownership;
//! - a second keyspace replicated differently: raw ownership and nodetool's note;
//! - a LocalStrategy keyspace: raw ownership and nodetool's LocalStrategy note;
//! - an unknown keyspace: an error naming it and a non-zero exit.

use std::net::SocketAddr;
use std::time::Duration;

use ringdb_cql::client::{Client, ClientOptions, QueryOptions, NO_VALUES};
use ringdb_tests::{ringdb_bin_or_skip, ringdb_command, run_command, CommandOutput, TestCluster};

const UP_TIMEOUT: Duration = Duration::from_secs(120);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
const DIFFERENT_NOTE: &str = "Note: Non-system keyspaces don't have the same replication \
     settings, effective ownership information is meaningless";
const LOCAL_NOTE: &str = "Ownership values for keyspaces with LocalStrategy are meaningless";

fn status(bin: &std::path::Path, host: SocketAddr, args: &[&str]) -> CommandOutput {
    let mut cmd = ringdb_command(bin);
    cmd.args(["status", "--host", &host.to_string()]).args(args);
    run_command(cmd, CLI_TIMEOUT).expect("run ringdb status")
}

fn status_json(bin: &std::path::Path, host: SocketAddr, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = status(bin, host, &all);
    assert!(out.success(), "ringdb status failed: {}", out.describe());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ringdb status --json printed no JSON ({e}): {}", out.stdout))
}

/// Each node's `owns` in datacenter `dc`.
fn owns(status: &serde_json::Value, dc: &str) -> Vec<f64> {
    status["datacenters"][dc]
        .as_array()
        .unwrap_or_else(|| panic!("no {dc} in {status}"))
        .iter()
        .map(|n| n["owns"].as_f64().unwrap_or_else(|| panic!("no owns: {n}")))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn status_shows_effective_ownership_like_nodetool() {
    let test = "status_shows_effective_ownership";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3, 2], &[]).expect("create cluster");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        guard
            .start(UP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let node1 = guard.node("node1").expect("node1").cql_addr;
    let client = rt
        .block_on(Client::connect(node1, ClientOptions::default()))
        .expect("connect to node1");
    let execute = |cql: &str| {
        rt.block_on(client.query(cql, NO_VALUES, &QueryOptions::default()))
            .unwrap_or_else(|e| panic!("{cql}: {e}"));
    };

    // No keyspace of ours yet: raw ownership.
    let s = status_json(&bin, node1, &[]);
    assert_eq!(s["ownership"], "raw", "{s}");
    assert!(s["note"].is_null(), "{s}");
    let total: f64 = owns(&s, "dc1").iter().chain(&owns(&s, "dc2")).sum();
    assert!(close(total, 1.0), "raw ownership sums to {total}: {s}");

    execute(
        "CREATE KEYSPACE nts WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 1}",
    );
    let s = status_json(&bin, node1, &["nts"]);
    assert_eq!(s["ownership"], "effective", "{s}");
    assert_eq!(s["keyspace"], "nts", "{s}");
    let dc1 = owns(&s, "dc1");
    assert_eq!(dc1.len(), 3, "{s}");
    assert!(dc1.iter().all(|&o| close(o, 1.0)), "dc1 {dc1:?}");
    let dc2 = owns(&s, "dc2");
    assert_eq!(dc2.len(), 2, "{s}");
    assert!(close(dc2.iter().sum(), 1.0), "dc2 {dc2:?}");

    let out = status(&bin, node1, &["nts"]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("Owns (effective)"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("100.0%").count(), 3, "{}", out.stdout);

    // The only non-system keyspace: its replication is used without naming it.
    let s = status_json(&bin, node1, &[]);
    assert_eq!(s["ownership"], "effective", "{s}");
    assert!(s["keyspace"].is_null(), "{s}");
    assert!(owns(&s, "dc1").iter().all(|&o| close(o, 1.0)), "{s}");

    // Keyspaces replicated differently: raw ownership and nodetool's note.
    execute(
        "CREATE KEYSPACE simple2 WITH replication = \
         {'class': 'SimpleStrategy', 'replication_factor': 2}",
    );
    let out = status(&bin, node1, &[]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains(DIFFERENT_NOTE), "{}", out.stdout);
    assert!(!out.stdout.contains("(effective)"), "{}", out.stdout);
    let s = status_json(&bin, node1, &[]);
    assert_eq!(s["ownership"], "raw", "{s}");
    let total: f64 = owns(&s, "dc1").iter().chain(&owns(&s, "dc2")).sum();
    assert!(close(total, 1.0), "raw ownership sums to {total}: {s}");

    // SimpleStrategy ignores datacenters: every node together holds 2 copies of the ring.
    let s = status_json(&bin, node1, &["simple2"]);
    let total: f64 = owns(&s, "dc1").iter().chain(&owns(&s, "dc2")).sum();
    assert!(close(total, 2.0), "RF 2 sums to {total}: {s}");

    let out = status(&bin, node1, &["system"]);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains(LOCAL_NOTE), "{}", out.stdout);

    let out = status(&bin, node1, &["no_such_ks"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains("keyspace 'no_such_ks' does not exist"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

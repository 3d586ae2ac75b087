//! What clients see of membership: native-protocol events pushed by a node as the cluster
//! changes, and `ringdb status` as users read it.
//!
//! A client connected to node1 registers for `STATUS_CHANGE` and `TOPOLOGY_CHANGE`, then:
//! node3 is killed (`DOWN` for node3's CQL address), started again (`UP`), and a new node4 joins
//! (`NEW_NODE` and `UP`). `ringdb status --json` run against node1 shows the nodes with the
//! nodetool-style state codes along the way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringdb_cql::client::{Client, ClientOptions};
use ringdb_cql::message::{Event, StatusChangeType, TopologyChangeType};
use ringdb_tests::{ringdb_bin_or_skip, ringdb_command, run_command, TestCluster};

const UP_TIMEOUT: Duration = Duration::from_secs(120);
const EVENT_TIMEOUT: Duration = Duration::from_secs(45);

/// Waits (bounded) for an event matching `want`, printing the others it sees.
async fn expect_event(
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    what: &str,
    want: impl Fn(&Event) -> bool,
) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) if want(&e) => {
                eprintln!("got {what}: {e:?}");
                return;
            }
            Ok(Some(e)) => eprintln!("(while waiting for {what}) event {e:?}"),
            Ok(None) => panic!("event stream closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {EVENT_TIMEOUT:?}"),
        }
    }
}

fn status_json(bin: &std::path::Path, host: SocketAddr) -> serde_json::Value {
    let mut cmd = ringdb_command(bin);
    cmd.args(["status", "--json", "--host", &host.to_string()]);
    let out = run_command(cmd, Duration::from_secs(30)).expect("run ringdb status");
    assert!(out.success(), "ringdb status failed: {}", out.describe());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ringdb status --json printed no JSON ({e}): {}", out.stdout))
}

fn state_of(status: &serde_json::Value, ip: &str) -> Option<String> {
    status["datacenters"]
        .as_object()?
        .values()
        .flat_map(|nodes| nodes.as_array().cloned().unwrap_or_default())
        .find(|n| n["address"] == ip)
        .and_then(|n| n["state"].as_str().map(str::to_string))
}

#[test]
fn clients_get_status_and_topology_events_and_status_shows_the_ring() {
    let test = "clients_get_status_and_topology_events";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3], &[]).expect("create cluster");
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
        let node1 = guard.node("node1").expect("node1");
        let node3 = guard.node("node3").expect("node3");

        let status = status_json(&bin, node1.cql_addr);
        for n in guard.nodes() {
            assert_eq!(
                state_of(&status, &n.ip.to_string()).as_deref(),
                Some("UN"),
                "{} in {status}",
                n.name
            );
        }
        let owns: f64 = status["datacenters"]["dc1"]
            .as_array()
            .expect("dc1 nodes")
            .iter()
            .map(|n| n["owns"].as_f64().expect("owns"))
            .sum();
        assert!((owns - 1.0).abs() < 1e-6, "ownership sums to {owns}");

        let client = Client::connect(node1.cql_addr, ClientOptions::default())
            .await
            .expect("connect to node1");
        let mut events = client.events();
        client
            .register(&["STATUS_CHANGE", "TOPOLOGY_CHANGE"])
            .await
            .expect("register");

        guard
            .kill_node("node3")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr3 = node3.cql_addr;
        expect_event(&mut events, "DOWN for node3", |e| {
            *e == Event::StatusChange {
                change: StatusChangeType::Down,
                addr: addr3,
            }
        })
        .await;
        let status = status_json(&bin, node1.cql_addr);
        assert_eq!(
            state_of(&status, &node3.ip.to_string()).as_deref(),
            Some("DN")
        );

        guard
            .start_node("node3", UP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        expect_event(&mut events, "UP for node3", |e| {
            *e == Event::StatusChange {
                change: StatusChangeType::Up,
                addr: addr3,
            }
        })
        .await;

        let node4 = guard
            .add_node("node4", None, None)
            .unwrap_or_else(|e| panic!("{e}"));
        guard
            .start_node("node4", UP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr4 = node4.cql_addr;
        expect_event(&mut events, "NEW_NODE for node4", |e| {
            *e == Event::TopologyChange {
                change: TopologyChangeType::NewNode,
                addr: addr4,
            }
        })
        .await;
        guard
            .wait_converged(UP_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = status_json(&bin, node1.cql_addr);
        assert_eq!(
            state_of(&status, &node4.ip.to_string()).as_deref(),
            Some("UN")
        );
    });
}

//! `ringdb chaos` end to end: a real cluster made by `ringdb cluster create`, the real binary's
//! workload, nemesis and checker, and the `--json` report parsed here.
//!
//! 1. three nodes, RF 3, QUORUM, every kind of fault for 60 s: nothing lost or anomalous, and
//!    at least 99% of operations acknowledged outside the windows where a quorum of some
//!    replica set was unreachable (there are none without `--aggressive`);
//! 2. two datacenters of three nodes, LOCAL_QUORUM, 60 s: the same;
//! 3. the deliberate coordinator bug (`--lose-every-nth-write 50`): the checker must fail the
//!    run and list the lost writes — proof that the first two could fail.
//!
//! The runs are timing-sensitive (availability), so the tests of this file take turns rather
//! than share the machine's CPUs. After every run the cluster must be left healed: every node
//! running, no partition, the deliberate bug off.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ringdb_node::cluster::ProcessState;
use ringdb_tests::{
    ringdb_bin_or_skip, ringdb_command, run_command, unique_cluster_base_ip, CommandOutput,
    TestCluster,
};
use serde_json::Value;

/// One chaos run at a time in this test binary.
static SERIAL: Mutex<()> = Mutex::new(());

/// Time `ringdb cluster create --start` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(180);
/// Time a chaos run may take beyond its `--duration` (healing, hints, repair, final reads).
const CHAOS_OVERHEAD: Duration = Duration::from_secs(480);
/// Operations per second of the workload: enough for a 99% figure to mean something, little
/// enough to leave the nodes CPU on a small machine.
const RATE: &str = "200";

/// Runs `ringdb cluster heal` when dropped (before the cluster guard kills the nodes), so that
/// no packet-filter rule outlives a failed test.
struct Healer {
    bin: PathBuf,
    name: String,
    dir: PathBuf,
}

impl Drop for Healer {
    fn drop(&mut self) {
        let mut cmd = ringdb_command(&self.bin);
        cmd.args(["cluster", "heal", &self.name, "--dir"])
            .arg(&self.dir);
        let _ = run_command(cmd, Duration::from_secs(60));
    }
}

/// A started cluster made by the CLI, guarded.
struct Setup {
    bin: PathBuf,
    name: String,
    // Dropped first: heal, then the guard kills the nodes.
    _healer: Healer,
    guard: TestCluster,
}

impl Setup {
    fn create(test: &str, name: &str, nodes: &str, total: usize) -> Option<Setup> {
        let bin = ringdb_bin_or_skip(test)?;
        let guard = TestCluster::in_temp_dir(test).expect("temp dir");
        let dir = guard.cluster_dir();
        let base = unique_cluster_base_ip(total).to_string();
        let mut cmd = ringdb_command(&bin);
        cmd.args([
            "cluster",
            "create",
            name,
            "-n",
            nodes,
            "--base-ip",
            &base,
            "--start",
            "--timeout",
            "120",
            "--dir",
        ])
        .arg(&dir);
        let out = run_command(cmd, CREATE_TIMEOUT).expect("run ringdb cluster create");
        let setup = Setup {
            _healer: Healer {
                bin: bin.clone(),
                name: name.to_string(),
                dir: dir.clone(),
            },
            bin,
            name: name.to_string(),
            guard,
        };
        assert!(out.success(), "cluster create failed:\n{}", out.describe());
        Some(setup)
    }

    fn dir(&self) -> PathBuf {
        self.guard.cluster_dir()
    }

    /// Runs `ringdb chaos NAME --dir DIR ARGS --json FILE`; returns the output and the JSON.
    fn chaos(&self, args: &[&str], duration: Duration) -> (CommandOutput, Option<Value>) {
        let json = self.guard.tmp().join("chaos.json");
        let mut cmd = ringdb_command(&self.bin);
        cmd.args(["chaos", &self.name, "--dir"])
            .arg(self.dir())
            .args(args)
            .arg("--json")
            .arg(&json);
        let out = run_command(cmd, duration + CHAOS_OVERHEAD).expect("run ringdb chaos");
        let parsed = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        (out, parsed)
    }

    /// Every node running, no cut or delay, the deliberate bug off.
    fn assert_left_healed(&mut self) {
        let cluster = self.guard.open().expect("open the cluster");
        let faults = cluster.faults().expect("read faults");
        assert!(
            faults.cuts.is_empty() && faults.delays.is_empty(),
            "partitions left: {faults:?}"
        );
        assert_eq!(
            faults.lose_every_nth_write, 0,
            "the deliberate bug was left on"
        );
        for node in cluster.nodes() {
            let state = cluster.process_state(&node.name).expect("state");
            assert_eq!(state, ProcessState::Running, "{} left {state}", node.name);
            let file = node.dir.join("faults.json");
            if let Ok(text) = std::fs::read_to_string(&file) {
                let v: Value = serde_json::from_str(&text).expect("fault file is JSON");
                assert_eq!(v["lose_every_nth_write"], 0, "{}: {text}", file.display());
                assert_eq!(
                    v["blocked"],
                    serde_json::json!([]),
                    "{}: {text}",
                    file.display()
                );
            }
        }
    }

    /// Stops the cluster and deletes its folder (only on success: a failure keeps the logs).
    fn remove(self, bin: &Path) {
        let mut cmd = ringdb_command(bin);
        cmd.args(["cluster", "remove", &self.name, "--dir"])
            .arg(self.dir());
        let out = run_command(cmd, Duration::from_secs(60)).expect("run ringdb cluster remove");
        assert!(out.success(), "cluster remove failed:\n{}", out.describe());
    }
}

fn f64_at(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number: {cur}", path.join(".")))
}

fn u64_at(v: &Value, path: &[&str]) -> u64 {
    f64_at(v, path) as u64
}

/// The checks of a run that must pass: exit 0, nothing lost or anomalous, every acknowledged
/// write verified, availability ≥ 99% outside quorum-loss windows; returns the report.
fn assert_passed(out: &CommandOutput, json: Option<Value>) -> Value {
    let account = out.describe();
    let json = json.unwrap_or_else(|| panic!("no --json report written:\n{account}"));
    let report = &json["report"];
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(0),
        "chaos did not pass:\n{account}"
    );
    assert!(out.stdout.contains("Result: PASS"), "{account}");
    assert_eq!(report["result"], "PASS", "{account}");
    assert_eq!(u64_at(report, &["lost"]), 0, "{account}");
    assert_eq!(u64_at(report, &["anomalous"]), 0, "{account}");
    let acknowledged = u64_at(report, &["verdict", "acknowledged_writes"]);
    let verified = u64_at(report, &["verdict", "verified"]);
    assert!(
        acknowledged >= 1000,
        "only {acknowledged} acknowledged writes:\n{account}"
    );
    assert_eq!(acknowledged, verified, "{account}");
    assert_eq!(
        report["verdict"]["unverified"].as_array().map(Vec::len),
        Some(0),
        "{account}"
    );
    // The stale-read rule applied to a good share of the reads.
    assert!(
        u64_at(report, &["verdict", "reads_checked_for_staleness"]) >= 500,
        "{account}"
    );
    let availability = f64_at(report, &["availability", "excluding_quorum_loss"]);
    assert!(
        availability >= 99.0,
        "availability {availability:.2}% < 99% outside quorum-loss windows:\n{account}"
    );
    // Every operation is in the history, with the fields the issue asks for.
    let history = json["history"].as_array().expect("history");
    assert_eq!(
        history.len() as u64,
        u64_at(report, &["ops", "attempted"]),
        "{account}"
    );
    for field in [
        "client",
        "kind",
        "key",
        "start_ms",
        "end_ms",
        "outcome",
        "coordinator",
    ] {
        assert!(
            history[0].get(field).is_some(),
            "history entries lack `{field}`: {}",
            history[0]
        );
    }
    // Repair ran on every node without failing.
    for r in report["healing"]["repairs"].as_array().expect("repairs") {
        assert!(r["error"].is_null(), "repair failed: {r}\n{account}");
    }
    eprintln!("{}", out.stdout);
    report.clone()
}

/// The history of the last run's `--json` file.
fn json_history(setup: &Setup) -> Vec<Value> {
    let bytes = std::fs::read(setup.guard.tmp().join("chaos.json")).expect("read chaos.json");
    let json: Value = serde_json::from_slice(&bytes).expect("chaos.json is JSON");
    json["history"].as_array().cloned().unwrap_or_default()
}

/// The kinds of the fault windows of a report.
fn window_kinds(report: &Value) -> Vec<String> {
    let mut kinds: Vec<String> = report["availability"]["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn quorum_on_three_nodes_loses_nothing_through_every_kind_of_fault() {
    let test = "quorum_on_three_nodes_loses_nothing_through_every_kind_of_fault";
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut setup) = Setup::create(test, "chaos-q3", "3", 3) else {
        return;
    };
    let duration = Duration::from_secs(60);
    let (out, json) = setup.chaos(
        &[
            "--duration",
            "60s",
            "--faults",
            "kill,pause,partition,restart",
            "--cl",
            "QUORUM",
            "--rate",
            RATE,
            "--seed",
            "2024",
        ],
        duration,
    );
    let report = assert_passed(&out, json);
    assert_eq!(
        report["run"]["replication"],
        "{'class': 'SimpleStrategy', 'replication_factor': 3}"
    );
    // Kinds come in rounds: a 60 s run has room for at least one of each.
    assert_eq!(
        window_kinds(&report),
        vec!["kill", "partition", "pause", "restart"],
        "{}",
        out.describe()
    );
    for w in report["availability"]["windows"]
        .as_array()
        .expect("windows")
    {
        assert_eq!(w["quorum_lost"], false, "without --aggressive: {w}");
        assert_eq!(
            w["nodes"].as_array().map(Vec::len),
            Some(1),
            "one node at a time: {w}"
        );
    }
    setup.assert_left_healed();
    let bin = setup.bin.clone();
    setup.remove(&bin);
}

#[test]
fn local_quorum_on_two_datacenters_loses_nothing() {
    let test = "local_quorum_on_two_datacenters_loses_nothing";
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut setup) = Setup::create(test, "chaos-lq33", "3:3", 6) else {
        return;
    };
    let duration = Duration::from_secs(60);
    let (out, json) = setup.chaos(
        &[
            "--duration",
            "60s",
            "--faults",
            "kill,pause,partition,restart",
            "--cl",
            "LOCAL_QUORUM",
            "--rate",
            RATE,
            "--seed",
            "33",
        ],
        duration,
    );
    let report = assert_passed(&out, json);
    assert_eq!(
        report["run"]["replication"],
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"
    );
    assert_eq!(report["verdict"]["read_your_writes"], "same_dc");
    let windows = report["availability"]["windows"]
        .as_array()
        .expect("windows");
    assert!(windows.len() >= 2, "{}", out.describe());
    for w in windows {
        assert_eq!(w["quorum_lost"], false, "without --aggressive: {w}");
    }
    assert!(
        !window_kinds(&report).is_empty(),
        "no fault injected:\n{}",
        out.describe()
    );
    // With LOCAL_QUORUM each client stays in its datacenter; both datacenters coordinate.
    let history = json_history(&setup);
    let mut dcs_of_client: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for op in &history {
        if let (Some(client), Some(dc)) = (op["client"].as_u64(), op["dc"].as_str()) {
            dcs_of_client
                .entry(client)
                .or_default()
                .insert(dc.to_string());
        }
    }
    assert_eq!(dcs_of_client.len(), 4, "{dcs_of_client:?}");
    for (client, dcs) in &dcs_of_client {
        assert_eq!(dcs.len(), 1, "client {client} left its datacenter: {dcs:?}");
    }
    let all: BTreeSet<String> = dcs_of_client.values().flatten().cloned().collect();
    assert_eq!(all, ["dc1", "dc2"].map(String::from).into());
    setup.assert_left_healed();
    let bin = setup.bin.clone();
    setup.remove(&bin);
}

#[test]
fn the_checker_catches_a_coordinator_that_acknowledges_unwritten_writes() {
    let test = "the_checker_catches_a_coordinator_that_acknowledges_unwritten_writes";
    let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut setup) = Setup::create(test, "chaos-bug", "3", 3) else {
        return;
    };
    let duration = Duration::from_secs(15);
    let (out, json) = setup.chaos(
        &[
            "--duration",
            "15s",
            "--faults",
            "kill",
            "--rate",
            RATE,
            "--seed",
            "50",
            "--lose-every-nth-write",
            "50",
        ],
        duration,
    );
    let account = out.describe();
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "the deliberate bug went unnoticed:\n{account}"
    );
    let json = json.unwrap_or_else(|| panic!("no --json report written:\n{account}"));
    let report = &json["report"];
    assert_eq!(report["result"], "FAIL", "{account}");
    let lost = u64_at(report, &["lost"]);
    let acknowledged = u64_at(report, &["verdict", "acknowledged_writes"]);
    // Every 50th write each coordinator takes is lost: about 2% of them.
    assert!(
        lost > 0 && lost * 200 >= acknowledged,
        "{lost} lost of {acknowledged} acknowledged:\n{account}"
    );
    let listed = report["verdict"]["lost"].as_array().expect("lost list");
    assert_eq!(listed.len() as u64, lost);
    assert!(
        out.stdout.contains(&format!("Lost writes ({lost}):")),
        "{account}"
    );
    assert!(out.stdout.contains("DELIBERATE BUG ON"), "{account}");
    // Each lost write is an acknowledged write of the history whose key is missing.
    let history = json["history"].as_array().expect("history");
    for l in listed.iter().take(20) {
        let op = &history[l["op"].as_u64().expect("op id") as usize];
        assert_eq!(op["kind"], "write");
        assert_eq!(op["outcome"], "ok");
        assert_eq!(op["key"], l["key"]);
        assert!(l["found"].is_null(), "{l}");
    }
    setup.assert_left_healed();
    let bin = setup.bin.clone();
    setup.remove(&bin);
}

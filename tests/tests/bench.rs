//! `ringdb bench` end to end (issue 8), as a user runs it: real `ringdb bench` processes against a
//! real node and against the null server (`ringdb bench --null-server`), their `--json` figures
//! checked for what must hold whatever the machine (operations done, no errors, percentiles in
//! order), the rows read back with a client, the `--plot` SVG opened, and bad arguments refused
//! with a readable error. No wall-clock thresholds: figures depend on the machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ringdb_cql::client::{Client, ClientOptions, QueryOptions, NO_VALUES};
use ringdb_cql::types::CqlValue;
use ringdb_tests::{
    free_port, raw, ringdb_bin_or_skip, ringdb_command, run_async, run_command, wait_bounded,
    CommandOutput, TestNode,
};
use serde_json::Value as Json;

/// A run is 2 s of load plus setup and, for reads, loading; generous for a busy machine.
const RUN_LIMIT: Duration = Duration::from_secs(180);
const ROWS: u64 = 2000;
const VALUE_SIZE: usize = 100;

fn bench(bin: &Path, args: &[&str]) -> CommandOutput {
    let mut cmd = ringdb_command(bin);
    cmd.arg("bench").args(args);
    let out = run_command(cmd, RUN_LIMIT).expect("run ringdb bench");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        !all.contains("panicked at"),
        "ringdb bench panicked:\n{}",
        out.describe()
    );
    assert!(!out.timed_out(), "ringdb bench hung:\n{}", out.describe());
    out
}

fn bench_ok(bin: &Path, args: &[&str]) -> CommandOutput {
    let out = bench(bin, args);
    assert!(
        out.success(),
        "`ringdb bench {}` failed:\n{}",
        args.join(" "),
        out.describe()
    );
    out
}

fn read_json(path: &Path) -> Json {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn num(v: &Json, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// What must hold for any successful run: operations done, no error, percentiles present and
/// in order, a per-second series.
fn check_totals(report: &Json, which: &str) {
    let t = &report[which];
    let ops = num(t, "ops");
    assert!(ops > 0.0, "{which}: no operation done: {report:#}");
    assert_eq!(num(t, "errors_total"), 0.0, "{which}: errors: {report:#}");
    let (p50, p90, p99, p999, max) = (
        num(t, "latency_ms.p50"),
        num(t, "latency_ms.p90"),
        num(t, "latency_ms.p99"),
        num(t, "latency_ms.p999"),
        num(t, "latency_ms.max"),
    );
    assert!(p50 > 0.0, "{which}: p50 missing: {report:#}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{which}: percentiles out of order: {:#}",
        t["latency_ms"]
    );
    assert!(num(t, "throughput") > 0.0);
    let series = t["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{which}: no per-second point");
    let summed: f64 = series.iter().map(|s| num(s, "ops")).sum();
    assert_eq!(summed, ops, "{which}: the series adds up to the total");
}

/// The value the bench writes for `key`: its 8 bytes big-endian, repeated to the value size.
fn expected_value(key: i64, size: usize) -> Vec<u8> {
    let k = key.to_be_bytes();
    (0..size).map(|i| k[i % 8]).collect()
}

/// Reads every row of `keyspace.kv` and checks each holds the value the bench writes for its
/// key; returns the keys.
fn read_back(addr: SocketAddr, keyspace: &str) -> Vec<i64> {
    let mut keys = Vec::new();
    let keys_out = &mut keys;
    let keyspace = keyspace.to_string();
    run_async(Duration::from_secs(60), async move {
        let client = Client::connect(addr, ClientOptions::default()).await?;
        let rows = client
            .query_all(
                &format!("SELECT key, value FROM {keyspace}.kv"),
                NO_VALUES,
                &QueryOptions::default(),
            )
            .await?
            .into_rows()
            .ok_or_else(|| anyhow::anyhow!("no rows result"))?;
        for row in &rows.rows {
            let (Some(CqlValue::BigInt(key)), Some(CqlValue::Blob(value))) = (&row[0], &row[1])
            else {
                anyhow::bail!("unexpected row {row:?}");
            };
            anyhow::ensure!(
                *value == expected_value(*key, VALUE_SIZE),
                "row {key} holds {} bytes that are not what the bench wrote",
                value.len()
            );
            keys_out.push(*key);
        }
        Ok(())
    });
    keys
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `ringdb bench --null-server` as a child process, killed on drop.
struct NullServer {
    child: Child,
    addr: SocketAddr,
}

impl NullServer {
    fn start(bin: &Path) -> NullServer {
        let ip = Ipv4Addr::LOCALHOST;
        let addr = SocketAddr::from((ip, free_port(ip)));
        let mut cmd: Command = ringdb_command(bin);
        cmd.args(["bench", "--null-server", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn ringdb bench --null-server");
        let mut server = NullServer { child, addr };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if raw::options_ping(addr, Duration::from_secs(2)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("null server exited with {status} before serving");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "null server on {addr} not answering OPTIONS after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = wait_bounded(&mut self.child, Duration::from_secs(10));
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ringdb-bench-test-")
        .tempdir()
        .expect("temp dir")
}

#[test]
fn bench_writes_then_reads_a_real_node() {
    let test = "bench_writes_then_reads_a_real_node";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let Some(node) = TestNode::start_or_skip(test) else {
        return;
    };
    let dir = temp_dir();
    let host = node.cql_host_port();
    let rows = ROWS.to_string();
    let value_size = VALUE_SIZE.to_string();
    let common = [
        "--host",
        host.as_str(),
        "--rows",
        rows.as_str(),
        "--duration",
        "2s",
        "--concurrency",
        "8",
        "--value-size",
        value_size.as_str(),
        "--keyspace",
        "bench_e2e",
        "--quiet",
    ];

    let write_json = dir.path().join("write.json");
    let mut args = common.to_vec();
    let w = path_str(&write_json);
    args.extend(["--workload", "write", "--json", w.as_str()]);
    let out = bench_ok(&bin, &args);
    assert!(out.stdout.contains("throughput"), "{}", out.describe());
    let report = read_json(&write_json);
    check_totals(&report, "target");
    assert_eq!(report["target"]["routing"], "token-aware", "{report:#}");
    assert_eq!(report["config"]["workload"], "write");
    assert_eq!(num(&report["target"], "reads"), 0.0);
    // What the run wrote is there, value for value.
    let written = read_back(node.cql_addr(), "bench_e2e");
    assert!(!written.is_empty(), "no row written");
    assert!(written.iter().all(|k| (0..ROWS as i64).contains(k)));

    let read_json_path = dir.path().join("read.json");
    let mut args = common.to_vec();
    let r = path_str(&read_json_path);
    args.extend(["--workload", "read", "--json", r.as_str(), "--dist", "zipf"]);
    bench_ok(&bin, &args);
    let report = read_json(&read_json_path);
    check_totals(&report, "target");
    assert_eq!(num(&report, "load.rows_written"), ROWS as f64, "{report:#}");
    assert_eq!(num(&report, "load.errors"), 0.0);
    assert!(num(&report["target"], "reads") > 0.0);
    assert_eq!(num(&report["target"], "writes"), 0.0);
    // Every key was loaded, so every read found its row.
    assert_eq!(num(&report["target"], "reads_not_found"), 0.0, "{report:#}");
    let mut all = read_back(node.cql_addr(), "bench_e2e");
    all.sort_unstable();
    assert_eq!(
        all,
        (0..ROWS as i64).collect::<Vec<_>>(),
        "every key 0..{ROWS} is stored"
    );
}

#[test]
fn bench_against_the_null_server() {
    let test = "bench_against_the_null_server";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let server = NullServer::start(&bin);
    let dir = temp_dir();
    let json = dir.path().join("null.json");
    let host = server.addr.to_string();
    for workload in ["write", "mixed:3:1"] {
        bench_ok(
            &bin,
            &[
                "--host",
                &host,
                "--workload",
                workload,
                "--rows",
                "500",
                "--duration",
                "2s",
                "--concurrency",
                "16",
                "--json",
                &path_str(&json),
                "--quiet",
            ],
        );
        let report = read_json(&json);
        check_totals(&report, "target");
        if workload != "write" {
            assert!(num(&report["target"], "reads") > 0.0, "{report:#}");
            assert!(num(&report["target"], "writes") > 0.0, "{report:#}");
            assert_eq!(num(&report, "load.rows_written"), 500.0);
        }
    }
}

#[test]
fn bench_plot_and_compare_null() {
    let test = "bench_plot_and_compare_null";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let server = NullServer::start(&bin);
    let dir = temp_dir();
    let svg: PathBuf = dir.path().join("run.svg");
    let json = dir.path().join("run.json");
    let host = server.addr.to_string();
    let out = bench_ok(
        &bin,
        &[
            "--host",
            &host,
            "--workload",
            "write",
            "--duration",
            "2s",
            "--concurrency",
            "8",
            "--rate",
            "2000",
            "--compare-null",
            "--plot",
            &path_str(&svg),
            "--json",
            &path_str(&json),
        ],
    );
    assert!(
        out.stdout.contains("ratio to the null server"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("ops/s"),
        "no progress line:\n{}",
        out.describe()
    );
    let report = read_json(&json);
    check_totals(&report, "target");
    check_totals(&report, "null");
    assert!(num(&report, "ratio_to_null.throughput") > 0.0, "{report:#}");
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.contains("<svg"), "not an SVG:\n{text}");
    assert!(
        text.contains("<polyline") || text.contains("<path"),
        "no line in the SVG:\n{text}"
    );
}

#[test]
fn bench_rejects_bad_arguments_clearly() {
    let test = "bench_rejects_bad_arguments_clearly";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let cases: [(&[&str], &str); 6] = [
        (&["--workload", "nope"], "unknown workload"),
        (&["--duration", "xyz"], "invalid duration"),
        (&["--cl", "most"], "unknown consistency level"),
        (&["--dist", "normal"], "unknown distribution"),
        (&["--concurrency", "0"], "--concurrency"),
        (&["--rate=0"], "invalid rate"),
    ];
    for (args, expected) in cases {
        let out = bench(&bin, args);
        assert!(
            !out.success(),
            "`ringdb bench {}` succeeded",
            args.join(" ")
        );
        assert!(
            out.stderr.contains(expected),
            "`ringdb bench {}`: stderr does not say {expected:?}:\n{}",
            args.join(" "),
            out.describe()
        );
    }
    // Nothing listens on port 1: a clear error, not a hang or a panic.
    let out = bench(&bin, &["--host", "127.0.0.1:1", "--duration", "1s"]);
    assert!(!out.success(), "{}", out.describe());
    assert!(out.stderr.contains("cannot connect"), "{}", out.describe());
}

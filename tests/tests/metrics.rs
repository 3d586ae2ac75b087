//! The Prometheus endpoint: with `prometheus_port` set, `GET /metrics` (plain HTTP over a
//! `TcpStream`) after some CQL traffic shows request counters and latency histograms, and
//! connection and byte counts.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringdb_tests::raw::RawConn;
use ringdb_tests::{free_port, NodeOptions, TestNode};

/// One `GET /metrics` (HTTP/1.0, so the body is not chunked); returns the body.
fn get_metrics(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .context("read response")?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("HTTP response without a header/body separator")?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        bail!("GET /metrics answered `{status}`");
    }
    Ok(body.to_string())
}

/// Polls `/metrics` on the node's address, then on 127.0.0.1 (an exporter bound to 0.0.0.0),
/// for at most 20 s.
fn fetch(node_ip: Ipv4Addr, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let candidates = [
        SocketAddr::new(IpAddr::V4(node_ip), port),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
    ];
    let mut last = String::new();
    loop {
        for addr in candidates {
            match get_metrics(addr) {
                Ok(body) => return body,
                Err(e) => last = format!("{addr}: {e:#}"),
            }
        }
        if Instant::now() >= deadline {
            panic!("no /metrics on port {port} within 20 s; last error: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(name with labels, value)` of every sample line.
fn samples(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.trim().parse::<f64>().ok()?))
        })
        .collect()
}

fn metric_names(body: &str) -> Vec<String> {
    let mut names: Vec<String> = samples(body)
        .into_iter()
        .map(|(n, _)| n.split('{').next().unwrap_or("").to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Starts a node with the exporter on, drives some CQL traffic, returns (node, body).
fn node_with_traffic(test: &str) -> Option<(TestNode, String)> {
    let port = free_port(Ipv4Addr::LOCALHOST);
    let options = NodeOptions::new().set("prometheus_port", port);
    let node = TestNode::start_with_or_skip(test, options)?;
    let mut c = RawConn::connect_ready(node.cql_addr(), Duration::from_secs(10)).expect("connect");
    for _ in 0..20 {
        c.query_ok("SELECT release_version FROM system.local WHERE key = 'local'")
            .expect("SELECT");
        c.options().expect("OPTIONS");
    }
    let id = c
        .prepare("SELECT cluster_name FROM system.local WHERE key = ?")
        .expect("PREPARE");
    for _ in 0..10 {
        c.execute(&id, &[Some(b"local")]).expect("EXECUTE");
    }
    let _ = c.query("SELECT * FROM no_such_ks.no_such_table");
    let body = fetch(node.ip(), port);
    Some((node, body))
}

#[test]
fn metrics_show_request_counters_and_latency_histograms() {
    let test = "metrics_show_request_counters_and_latency_histograms";
    let Some((node, body)) = node_with_traffic(test) else {
        return;
    };
    let names = metric_names(&body);
    let all = samples(&body);
    let requests: Vec<&(String, f64)> = all
        .iter()
        .filter(|(n, v)| n.to_ascii_lowercase().contains("request") && *v > 0.0)
        .collect();
    assert!(
        !requests.is_empty(),
        "no metric with `request` in its name has a value > 0 after 50 requests; metrics: {names:?}"
    );
    let histogram = all.iter().any(|(n, _)| {
        let n = n.to_ascii_lowercase();
        let latency = n.contains("latency") || n.contains("duration") || n.contains("seconds");
        latency && (n.contains("_bucket") || n.contains("quantile=") || n.contains("_sum"))
    });
    assert!(
        histogram,
        "no latency histogram or summary (a `latency`/`duration`/`seconds` metric with buckets or \
         quantiles); metrics: {names:?}"
    );
    println!("metrics: {names:?}");
    drop(node);
}

#[test]
fn metrics_show_connections_and_bytes() {
    let test = "metrics_show_connections_and_bytes";
    let Some((node, body)) = node_with_traffic(test) else {
        return;
    };
    let names = metric_names(&body);
    for word in ["connection", "bytes"] {
        assert!(
            names.iter().any(|n| n.to_ascii_lowercase().contains(word)),
            "no metric with `{word}` in its name; metrics: {names:?}"
        );
    }
    drop(node);
}

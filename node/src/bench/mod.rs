//! `ringdb bench`: a load generator in the spirit of cassandra-stress and latte, built on the
//! `cql-lite` client, and the null server it measures against.
//!
//! # A run
//!
//! 1. **Setup** ([`routing`]): connect to the first `--host` that answers, create the keyspace
//!    (`SimpleStrategy`, `--rf`) and the table `kv (key bigint PRIMARY KEY, value blob)` if they
//!    do not exist (`--drop` recreates them), wait for schema agreement, read the ring from the
//!    system tables, open `--connections` connections to every node and prepare the two
//!    statements on each.
//! 2. **Load** ([`runner`]), for `read` and `mixed` workloads: write keys `0..rows` once each
//!    (skipped with `--skip-load`).
//! 3. **Measure** ([`runner`]): `--concurrency` workers send prepared INSERTs and SELECTs for
//!    `--duration`, token-aware, closed loop or open loop at `--rate`, keys drawn by `--dist`
//!    ([`workload`]); a line of progress per second on stderr ([`stats`]).
//! 4. **Report** ([`report`]): the summary on stdout, `--json` and `--plot` ([`plot`]).
//!
//! With `--compare-null` the same workload first runs against a [`null_server`] started in this
//! process on a free loopback port, and the summary gives the target's figures as ratios to it:
//! the null server is the ceiling of this client on this machine, so a ratio says how much of it
//! the database keeps, whatever the machine. `--null-server ADDR:PORT` runs the null server alone
//! until Ctrl-C, for other clients (drivers, another machine's bench).
//!
//! Errors never stop a run: each is counted by kind (timeouts, overloaded, unavailable,
//! connection, other) and the run goes on; a broken connection is re-opened in the background
//! (see [`routing`]).

pub mod null_server;
pub mod plot;
pub mod report;
pub mod routing;
pub mod runner;
pub mod stats;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ringdb_cql::client::{ClientOptions, QueryOptions};
use ringdb_cql::message::Consistency;

use report::{ConfigReport, LoadReport, Ratios, Report};
use routing::{Router, RouterConfig, Routing};
use runner::{PhaseKind, PhaseSpec};
use stats::Totals;
use workload::{
    parse_consistency, parse_distribution, parse_duration, parse_workload, Distribution,
    KeySampler, Workload,
};

/// `ringdb bench` arguments.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Examples:
  ringdb bench --host 127.0.0.1 --workload write --rows 100000 --duration 30s --concurrency 64
  ringdb bench --host 127.0.0.1,127.0.0.2 --workload mixed:0.9 --rate 20000 --rf 3 --cl QUORUM \\
      --dist zipf --json run.json --plot run.svg
  ringdb bench --host 127.0.0.1 --workload read --compare-null      # figures as ratios to the null server
  ringdb bench --null-server 127.0.0.1:9142                          # only serve the null server

The summary goes to stdout, progress (one line per second) to stderr. Errors never stop a run;
they are counted by kind. Exit status: 0 when the run completed, 1 when it could not start (no
host reachable, schema refused), 2 for bad arguments.")]
pub struct BenchArgs {
    /// Nodes to start from, HOST[:PORT] separated by commas (port 9042 by default); the rest of
    /// the cluster is found from system.peers.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9042")]
    pub host: Vec<String>,
    /// write, read, mixed (half reads), mixed:READ_FRACTION (mixed:0.9) or mixed:READS:WRITES
    /// (mixed:3:1). read and mixed load the rows first.
    #[arg(long, default_value = "write", value_parser = parse_workload)]
    pub workload: Workload,
    /// Number of distinct keys (0..ROWS).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rows: u64,
    /// How long to measure: 500ms, 30s, 2m, 1h.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests in flight at most (one worker each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Cap on operations per second, all workers together. Open loop: latency counts from each
    /// operation's scheduled start, so a stalled server shows (no coordinated omission).
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Replication factor of the keyspace when the bench creates it (SimpleStrategy).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rf: u32,
    /// Consistency level of every request: ONE, QUORUM, ALL, LOCAL_QUORUM, ...
    #[arg(long, default_value = "ONE", value_parser = parse_consistency)]
    pub cl: Consistency,
    /// How keys are drawn: uniform, zipf (exponent 1; key 0 hottest), zipf:EXPONENT, or seq
    /// (in order, wrapping).
    #[arg(long, default_value = "uniform", value_parser = parse_distribution)]
    pub dist: Distribution,
    /// Bytes per written value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=16 * 1024 * 1024))]
    pub value_size: u64,
    /// Seconds each written row lives (`INSERT ... USING TTL`); rows never expire by default.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=630_720_000))]
    pub ttl: Option<u32>,
    /// Write the figures (config, totals, percentiles, per-second series) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw throughput and p99 latency per second as an SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Keyspace of the bench's table (kv).
    #[arg(long, default_value = "ringdb_bench", value_parser = parse_keyspace)]
    pub keyspace: String,
    /// Connections per node (each carries many requests at once).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub connections: u64,
    /// token: send each request to a replica of its key; round-robin: to the given hosts in turn.
    #[arg(long, value_enum, default_value = "token")]
    pub routing: Routing,
    /// Client-side timeout of each request.
    #[arg(long, default_value = "12s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Do not load the rows before a read or mixed run (they are there from an earlier run).
    #[arg(long)]
    pub skip_load: bool,
    /// Drop the keyspace first, then create it again (with --rf).
    #[arg(long)]
    pub drop: bool,
    /// Run the same workload against an in-process null server first (127.0.0.1, a free port)
    /// and report the target's figures as ratios to it.
    #[arg(long)]
    pub compare_null: bool,
    /// Do not benchmark: serve the null server on ADDR:PORT until Ctrl-C. It answers the
    /// protocol v4 with canned responses (no storage): what the bench and drivers need.
    #[arg(long, value_name = "ADDR:PORT")]
    pub null_server: Option<SocketAddr>,
    /// Seed of the keys and the read/write choices (random by default; printed in the JSON).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress lines.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub login: crate::login::LoginArgs,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "invalid rate {s:?}: expected operations per second, a number above 0"
        )),
    }
}

fn parse_keyspace(s: &str) -> Result<String, String> {
    let ok = s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid keyspace {s:?}: lower-case letters, digits and _, starting with a letter, \
             at most 48 characters"
        ))
    }
}

/// `HOST[:PORT]` with port 9042 by default.
fn with_port(host: &str) -> String {
    crate::status::cql_target(host)
}

/// Runs `ringdb bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(addr) = args.null_server {
        return serve_null(addr, args.value_size as usize).await;
    }
    let seeds: Vec<String> = args
        .host
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .map(with_port)
        .collect();
    if seeds.is_empty() {
        anyhow::bail!("--host names no host");
    }
    let seed = args.seed.unwrap_or_else(|| rand::random::<u64>() >> 1);
    let config = ConfigReport {
        hosts: seeds.clone(),
        workload: args.workload.to_string(),
        rows: args.rows,
        duration_s: args.duration.as_secs_f64(),
        concurrency: args.concurrency as usize,
        rate: args.rate,
        rf: args.rf,
        consistency: args.cl.to_string(),
        distribution: args.dist.to_string(),
        value_size: args.value_size as usize,
        ttl: args.ttl,
        keyspace: args.keyspace.clone(),
        connections: args.connections as usize,
        routing: match args.routing {
            Routing::Token => "token".into(),
            Routing::RoundRobin => "round-robin".into(),
        },
        seed,
    };
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let mut interrupted = false;
    let null = if args.compare_null {
        let server = null_server::NullServer::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            args.value_size as usize,
        )
        .await
        .context("starting the in-process null server")?;
        let addr = server.local_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stop_rx.await;
        }));
        eprintln!("bench: null server (in process) on {addr}");
        let result = measure(&args, vec![addr.to_string()], "null server", seed).await;
        let _ = stop_tx.send(());
        let _ = serving.await;
        let (totals, _, stopped) = result?;
        interrupted |= stopped;
        Some(totals)
    } else {
        None
    };
    if interrupted {
        anyhow::bail!("interrupted during the null server run");
    }
    eprintln!("bench: target {}", seeds.join(","));
    let (target, load, stopped) = measure(&args, seeds, "target", seed).await?;
    interrupted |= stopped;

    let ratio_to_null = null.as_ref().map(|n| Ratios::of(&target, n));
    let report = Report {
        machine: machine(),
        started_unix_s,
        config,
        load,
        target,
        null,
        ratio_to_null,
        interrupted,
    };
    print!("{}", report::render(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "ringdb bench: {} against {} ({} workers, CL {})",
            report.config.workload,
            report.target.hosts.join(","),
            report.config.concurrency,
            report.config.consistency
        );
        plot::write_svg(path, &title, &report.target.series)?;
        eprintln!("bench: plot written to {}", path.display());
    }
    Ok(())
}

/// Setup, load (when the workload reads) and the measured phase against `hosts`.
async fn measure(
    args: &BenchArgs,
    hosts: Vec<String>,
    label: &str,
    seed: u64,
) -> anyhow::Result<(Totals, Option<LoadReport>, bool)> {
    let router_config = RouterConfig {
        seeds: hosts,
        connections: args.connections as usize,
        routing: args.routing,
        client: ClientOptions {
            request_timeout: args.timeout,
            connect_timeout: Duration::from_secs(5).min(args.timeout),
            max_in_flight: 32768,
            credentials: args.login.credentials()?,
            ..ClientOptions::default()
        },
        keyspace: args.keyspace.clone(),
        rf: args.rf,
        drop_first: args.drop,
        ttl: args.ttl,
    };
    let router: Arc<Router> = Router::connect(&router_config).await?;
    if let Some(reason) = &router.fallback_reason {
        eprintln!("bench: {label}: token-aware routing is off ({reason}); round robin over the given hosts");
    }
    eprintln!(
        "bench: {label}: {} node{} ({}), {} connection{} each",
        router.host_addrs().len(),
        if router.host_addrs().len() == 1 {
            ""
        } else {
            "s"
        },
        router.routing_name(),
        args.connections,
        if args.connections == 1 { "" } else { "s" }
    );
    let options = QueryOptions {
        consistency: args.cl,
        page_size: None,
        ..QueryOptions::default()
    };
    let spec = |kind: PhaseKind| PhaseSpec {
        kind,
        concurrency: args.concurrency as usize,
        rate: args.rate,
        workload: args.workload,
        keys: KeySampler::new(args.dist, args.rows),
        value_size: args.value_size as usize,
        options: options.clone(),
        seed,
        progress: !args.quiet,
    };
    let mut load = None;
    if args.workload.needs_data() && !args.skip_load {
        eprintln!("bench: {label}: loading {} rows", args.rows);
        let phase =
            runner::run_phase(router.clone(), spec(PhaseKind::Load { rows: args.rows })).await;
        load = Some(LoadReport {
            rows_written: phase.all.writes,
            errors: phase.all.errors.total(),
            elapsed_s: (phase.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if phase.interrupted {
            router.stop();
            anyhow::bail!("interrupted while loading");
        }
    }
    eprintln!("bench: {label}: {} for {:?}", args.workload, args.duration);
    let phase = runner::run_phase(
        router.clone(),
        spec(PhaseKind::Measure {
            duration: args.duration,
        }),
    )
    .await;
    router.stop();
    let totals = Totals::new(
        label,
        router.host_addrs(),
        router.routing_name(),
        &phase.all,
        phase.elapsed,
        phase.series,
    );
    Ok((totals, load, phase.interrupted))
}

/// `--null-server`: serves until Ctrl-C or SIGTERM.
async fn serve_null(addr: SocketAddr, value_size: usize) -> anyhow::Result<()> {
    let server = null_server::NullServer::bind(addr, value_size)
        .await
        .with_context(|| format!("binding the null server to {addr}"))?;
    let bound = server.local_addr()?;
    eprintln!("bench: null server listening on {bound} (protocol v4, no storage); Ctrl-C stops it");
    server.serve(crate::server::wait_for_signal()).await;
    eprintln!("bench: null server stopped");
    Ok(())
}

/// The machine a run was on: architecture, CPUs, CPU model.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    format!("{}, {cpus} CPUs, {model}", std::env::consts::ARCH)
        .trim_end_matches(", ")
        .to_string()
}

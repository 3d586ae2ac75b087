//! `ringdb chaos`: a Jepsen-style test of a local cluster — a workload, a nemesis injecting
//! faults, and a checker that says, in numbers, what was acknowledged and what was read back.
//!
//! # A run
//!
//! 1. **Preflight.** The cluster (made by `ringdb cluster create`, opened through
//!    [`crate::cluster`]) must have every node running, no fault in force and have converged.
//!    The keyspace `chaos` is dropped and created again — SimpleStrategy RF 3 on one
//!    datacenter, NetworkTopologyStrategy with 3 (or fewer, if the datacenter is smaller) per
//!    datacenter on several ([`model::Topology::replication`]) — with the table
//!    `t (k bigint PRIMARY KEY, v bigint)`, and every node must accept a write at ALL before the
//!    run begins.
//! 2. **Workload** ([`workload`]): `--clients` clients write unique keys with unique values and
//!    read recent keys back at `--cl`, optionally at `--rate` operations per second in all,
//!    failing over between coordinators as drivers do. Every operation is recorded
//!    ([`history`]): acknowledged, failed (certainly not applied), or indeterminate.
//! 3. **Nemesis** ([`nemesis`]): after a lead-in without faults, fault windows drawn from
//!    `--seed` — kill, pause, partition, restart — each held 3–8 s, healed, followed by a rest of
//!    2–5 s once the cluster has converged again; never more than the consistency level
//!    tolerates unless `--aggressive`.
//! 4. **Healing.** Partitions healed, paused nodes resumed, dead ones started, convergence; then
//!    the hints every node holds (`pending_hints` of `system_views.cluster_status`) must drain,
//!    and every node repairs the keyspace through its admin API (`POST /repair`).
//! 5. **Check** ([`checker`]): every written key is read at ALL; lost writes, anomalous values
//!    and stale reads are counted and listed ([`report`]).
//!
//! The exit status is 0 when nothing was lost or anomalous, 1 when something was, 2 when the
//! run could not complete or some keys could not be checked (130 after Ctrl-C).
//!
//! # Leaving the cluster as it was
//!
//! Whatever happens — an error, a panic, Ctrl-C — partitions are healed, paused nodes resumed
//! and the deliberate bug (`--lose-every-nth-write`) turned off: asynchronously with dead nodes
//! started again on the normal path, and by a guard's `Drop` otherwise.

pub mod checker;
pub mod cli;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod report;
pub mod workload;

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use ringdb_cql::client::{Client, ClientOptions, QueryOptions, QueryResult, NO_VALUES};
use ringdb_cql::message::Consistency;
use ringdb_cql::types::CqlValue;
use tokio::sync::watch;

use crate::cluster::{Cluster, ProcessState};
use crate::repair::RepairReport;
use history::Op;
use model::Topology;
use nemesis::{FaultKind, Nemesis, NemesisState, Planner, RECOVERY_TIMEOUT};
use report::{Healing, RepairLine, Report, RunInfo, EXIT_ERROR};
use workload::{Endpoint, Shared, WorkloadConfig};

/// The keyspace the workload owns (dropped and created again by every run).
pub const KEYSPACE: &str = "chaos";
/// How long the cluster may take to converge before the run.
pub const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the schema may take to reach every node.
pub const SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);
/// How long hints may take to drain after healing.
pub const HINTS_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one node's repair may take.
pub const REPAIR_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the clients may take to finish their last operation once told to stop.
pub const CLIENT_STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for each request of the workload (above the nodes' default read timeout of
/// 5 s, so that the coordinator's own timeouts are what clients see).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// Time allowed to connect to a node and prepare the statements.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Exit status after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;

/// What `ringdb chaos` was asked for.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The cluster's name.
    pub name: String,
    /// The cluster's folder.
    pub dir: PathBuf,
    /// How long the workload runs (the last fault window may make it a little longer).
    pub duration: Duration,
    pub faults: Vec<FaultKind>,
    pub consistency: Consistency,
    /// Operations per second over all clients.
    pub rate: Option<f64>,
    pub seed: u64,
    pub clients: usize,
    /// Allow faults beyond what the consistency level tolerates.
    pub aggressive: bool,
    /// Where to write the history and the report as JSON.
    pub json: Option<PathBuf>,
    /// The deliberate coordinator bug: acknowledge every n-th write without writing it (0: off).
    pub lose_every_nth_write: u32,
    /// The binary that nodes started by the run (after kill, restart) run, as with
    /// `ringdb cluster start`; `None` leaves the cluster's as it is.
    pub binary: Option<PathBuf>,
}

/// Prints lines on stderr that do not garble the progress line.
#[derive(Clone)]
struct Console {
    start: Instant,
    tty: bool,
}

impl Console {
    fn say(&self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(
            err,
            "[{:>6.1}s] ringdb chaos: {message}",
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// Runs a chaos test; returns the exit status.
pub async fn run(options: ChaosOptions) -> anyhow::Result<u8> {
    anyhow::ensure!(
        model::usable_level(options.consistency),
        "--cl {} cannot be used for both writes and reads (use ONE, TWO, THREE, QUORUM, ALL, \
         LOCAL_QUORUM or LOCAL_ONE)",
        options.consistency
    );
    anyhow::ensure!(
        (1..=256).contains(&options.clients),
        "--clients takes 1 to 256"
    );
    anyhow::ensure!(
        options.duration >= Duration::from_secs(1),
        "--duration must be at least 1s"
    );
    let cluster =
        Cluster::open(&options.dir).with_context(|| format!("opening cluster {}", options.name))?;
    if cluster.name() != options.name {
        bail!(
            "{} holds cluster {}, not {}",
            options.dir.display(),
            cluster.name(),
            options.name
        );
    }
    if let Some(binary) = &options.binary {
        cluster.set_binary(binary)?;
    }
    let cluster = Arc::new(cluster);
    let console = Console {
        start: Instant::now(),
        tty: std::io::stderr().is_terminal(),
    };
    let nodes = cluster.nodes();
    let topology = Topology::new(nodes.iter().map(|n| (n.name.clone(), n.dc.clone())));
    preflight(&cluster).await?;

    let config = Arc::new(WorkloadConfig {
        clients: options.clients,
        consistency: options.consistency,
        rate: options.rate.filter(|r| *r > 0.0),
        seed: options.seed,
        keyspace: KEYSPACE.to_string(),
        endpoints: nodes
            .iter()
            .map(|n| Endpoint {
                name: n.name.clone(),
                addr: n.cql_addr,
                dc: n.dc.clone(),
            })
            .collect(),
        local_only: model::is_local(options.consistency),
        request_timeout: REQUEST_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
    });
    let planner = Planner::new(
        options.seed,
        &topology,
        &options.faults,
        options.consistency,
        options.aggressive,
    );
    let usable_faults: Vec<String> = planner
        .kinds()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    console.say(&format!(
        "cluster {} ({} nodes), keyspace {KEYSPACE} {}, {} clients at {}{}, seed {} (replay with \
         --seed {})",
        options.name,
        nodes.len(),
        topology.replication(),
        options.clients,
        options.consistency,
        match config.rate {
            Some(r) => format!(", {r} ops/s"),
            None => String::new(),
        },
        options.seed,
        options.seed
    ));
    if usable_faults.len() < options.faults.len() {
        let dropped: Vec<&str> = options
            .faults
            .iter()
            .map(|k| k.name())
            .filter(|k| !usable_faults.iter().any(|u| u == k))
            .collect();
        console.say(&format!(
            "no {} fault fits within what {} tolerates on this cluster; left out (--aggressive \
             allows them)",
            dropped.join(", "),
            options.consistency
        ));
    }

    let guard = FaultGuard {
        cluster: cluster.clone(),
        lose_writes: options.lose_every_nth_write > 0,
        armed: AtomicBool::new(true),
    };
    // From here Ctrl-C stops the run and heals the cluster rather than killing the process.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let interrupted = Arc::new(AtomicBool::new(false));
    let (interrupt_tx, mut interrupt_rx) = watch::channel(false);
    let ctrl_c = {
        let stop_tx = stop_tx.clone();
        let interrupted = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
                stop_tx.send_replace(true);
                interrupt_tx.send_replace(true);
            }
        })
    };
    create_schema(&config, &topology).await?;
    console.say("keyspace ready on every node");
    if options.lose_every_nth_write > 0 {
        let c = cluster.clone();
        let n = options.lose_every_nth_write;
        tokio::task::spawn_blocking(move || c.set_lose_writes(n))
            .await
            .context("the fault task failed")??;
        console.say(&format!(
            "DELIBERATE BUG ON: every {n}th write is acknowledged without being written"
        ));
    }

    // ---- workload and nemesis ----------------------------------------------------------------
    let run_start = Instant::now();
    let console = Console {
        start: run_start,
        ..console
    };
    let shared = Arc::new(Shared::new(run_start));
    let clients: Vec<_> = (0..options.clients)
        .map(|id| {
            tokio::spawn(workload::run_client(
                id,
                config.clone(),
                shared.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let state = Arc::new(Mutex::new(NemesisState::default()));
    let progress = tokio::spawn(progress_line(
        console.clone(),
        shared.clone(),
        state.clone(),
        options.duration,
        stop_rx.clone(),
    ));
    let deadline = run_start + options.duration;
    let nemesis = Nemesis {
        cluster: cluster.clone(),
        topology: topology.clone(),
        consistency: options.consistency,
        run_start,
        state: state.clone(),
        say: {
            let console = console.clone();
            Arc::new(move |m: &str| console.say(m))
        },
    };
    let lead_in = (options.duration / 6).min(Duration::from_secs(5));
    let mut run_error: Option<String> = None;
    if let Err(e) = nemesis
        .run(planner, lead_in, deadline, stop_rx.clone())
        .await
    {
        console.say(&format!("nemesis failed, stopping the run: {e:#}"));
        run_error = Some(format!("nemesis: {e:#}"));
    } else {
        nemesis::sleep_or_stop(deadline.saturating_duration_since(Instant::now()), &stop_rx).await;
    }
    stop_tx.send_replace(true);
    let ran_s = run_start.elapsed().as_secs_f64();
    let mut ops: Vec<Op> = Vec::new();
    let joined =
        tokio::time::timeout(CLIENT_STOP_TIMEOUT, futures::future::join_all(clients)).await;
    match joined {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(client_ops) => ops.extend(client_ops),
                    Err(e) => run_error = Some(format!("a client task failed: {e}")),
                }
            }
        }
        Err(_) => {
            run_error = Some(format!(
                "the clients did not stop within {CLIENT_STOP_TIMEOUT:?}"
            ))
        }
    }
    let _ = progress.await;
    ops.sort_by_key(|o| (o.start_us, o.client));
    for (i, op) in ops.iter_mut().enumerate() {
        op.id = i;
    }
    let windows = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .windows
        .clone();
    let (acked, failed, indeterminate) = shared.counters.snapshot();
    console.say(&format!(
        "workload stopped after {ran_s:.1} s: {} operations, {acked} acknowledged, {failed} \
         failed, {indeterminate} indeterminate; {} fault windows",
        ops.len(),
        windows.len()
    ));

    let info = RunInfo {
        cluster: options.name.clone(),
        nodes: topology.nodes.clone(),
        keyspace: KEYSPACE.to_string(),
        replication: topology.replication(),
        consistency: options.consistency.to_string(),
        clients: options.clients,
        rate: config.rate,
        seed: options.seed,
        faults: options
            .faults
            .iter()
            .map(|k| k.name().to_string())
            .collect(),
        aggressive: options.aggressive,
        lose_every_nth_write: options.lose_every_nth_write,
        duration_s: options.duration.as_secs_f64(),
        ran_s,
    };

    // ---- healing -------------------------------------------------------------------------------
    console.say("healing: partitions, paused and dead nodes, the deliberate bug");
    let healing_start = Instant::now();
    if let Err(e) = restore(&cluster, options.lose_every_nth_write > 0).await {
        let report = Report::build(
            info,
            &ops,
            &windows,
            None,
            None,
            Some(format!(
                "{}could not bring the cluster back: {e:#}",
                run_error.map(|e| format!("{e}; ")).unwrap_or_default()
            )),
        );
        finish(&report, &ops, options.json.as_deref())?;
        return Ok(EXIT_ERROR);
    }
    guard.disarm();
    let mut healing = Healing {
        converged_s: healing_start.elapsed().as_secs_f64(),
        ..Healing::default()
    };
    console.say(&format!(
        "cluster healed and converged after {:.1} s",
        healing.converged_s
    ));
    if interrupted.load(Ordering::SeqCst) {
        let report = interrupted_report(Report::build(
            info,
            &ops,
            &windows,
            Some(healing),
            None,
            Some("interrupted (Ctrl-C) during the workload; no check was made".into()),
        ));
        finish(&report, &ops, options.json.as_deref())?;
        return Ok(EXIT_INTERRUPTED);
    }

    // ---- hints, repair, final reads, check -----------------------------------------------------
    let checked = async {
        let (drained, left) = wait_hints(&config, HINTS_TIMEOUT).await;
        healing.hints_waited = true;
        healing.hints_drained_s = drained;
        healing.hints_left = left;
        match drained {
            Some(s) => console.say(&format!("hints drained after {s:.1} s")),
            None if left < 0 => console.say(&format!(
                "hints could not be counted within {HINTS_TIMEOUT:?}; repair will cover them"
            )),
            None => console.say(&format!(
                "{left} hints still held after {HINTS_TIMEOUT:?}; repair will cover them"
            )),
        }
        for node in cluster.nodes() {
            console.say(&format!("repairing keyspace {KEYSPACE} on {}", node.name));
            let line = repair_node(&node.name, node.admin_addr).await;
            if let Some(e) = &line.error {
                console.say(&format!("repair of {} failed: {e}", node.name));
            }
            healing.repairs.push(line);
        }
        let keys: Vec<i64> = ops
            .iter()
            .filter(|o| o.kind == history::OpKind::Write)
            .map(|o| o.key)
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .collect();
        console.say(&format!("reading {} keys back at ALL", keys.len()));
        let finals = workload::final_reads(&config, &keys).await;
        let rule = model::read_your_writes(options.consistency, &topology);
        checker::check(&ops, &finals, rule)
    };
    let verdict = tokio::select! {
        v = checked => v,
        _ = interrupt_rx.wait_for(|i| *i) => {
            let report = interrupted_report(Report::build(
                info,
                &ops,
                &windows,
                None,
                None,
                Some("interrupted (Ctrl-C) during the check".into()),
            ));
            finish(&report, &ops, options.json.as_deref())?;
            return Ok(EXIT_INTERRUPTED);
        }
    };
    ctrl_c.abort();
    let repair_failed: Vec<String> = healing
        .repairs
        .iter()
        .filter(|r| r.error.is_some() || r.failed > 0)
        .map(|r| r.node.clone())
        .collect();
    if !repair_failed.is_empty() && run_error.is_none() {
        run_error = Some(format!(
            "repair did not complete on {}",
            repair_failed.join(", ")
        ));
    }
    let report = Report::build(
        info,
        &ops,
        &windows,
        Some(healing),
        Some(verdict),
        run_error,
    );
    finish(&report, &ops, options.json.as_deref())?;
    Ok(report.exit_code)
}

/// Marks a report as cut short by Ctrl-C.
fn interrupted_report(mut report: Report) -> Report {
    report.result = "INTERRUPTED".to_string();
    report.exit_code = EXIT_INTERRUPTED;
    report
}

/// Prints the report and writes the JSON file.
fn finish(report: &Report, ops: &[Op], json: Option<&std::path::Path>) -> anyhow::Result<()> {
    print!("{}", report.render());
    let _ = std::io::stdout().flush();
    if let Some(path) = json {
        #[derive(serde::Serialize)]
        struct JsonOut<'a> {
            report: &'a Report,
            history: &'a [Op],
        }
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        serde_json::to_writer(
            &mut w,
            &JsonOut {
                report,
                history: ops,
            },
        )
        .with_context(|| format!("writing {}", path.display()))?;
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "ringdb chaos: history ({} operations) and report written to {}",
            ops.len(),
            path.display()
        );
    }
    Ok(())
}

/// Every node running, no fault in force, converged.
async fn preflight(cluster: &Cluster) -> anyhow::Result<()> {
    let name = cluster.name();
    let dir = cluster.dir().display().to_string();
    let mut not_running = Vec::new();
    for node in cluster.nodes() {
        let state = cluster.process_state(&node.name)?;
        if state != ProcessState::Running {
            not_running.push(format!("{} is {state}", node.name));
        }
    }
    if !not_running.is_empty() {
        bail!(
            "every node must be running before a chaos run: {} (`ringdb cluster start {name} \
             --dir {dir}`, or `ringdb cluster resume`)",
            not_running.join(", ")
        );
    }
    let faults = cluster.faults()?;
    if !faults.is_empty() {
        bail!(
            "faults are in force on cluster {name}: {} (`ringdb cluster heal {name} --dir {dir}` \
             clears partitions and delays{})",
            faults.describe().join("; "),
            if faults.lose_every_nth_write > 0 {
                "; the deliberate bug is turned off by a chaos run that ends normally"
            } else {
                ""
            }
        );
    }
    cluster
        .wait_converged(PREFLIGHT_TIMEOUT)
        .await
        .context("the cluster has not converged")?;
    Ok(())
}

/// Drops and creates the keyspace and table, then waits until every node accepts a write at
/// ALL of key 0 (which the workload never uses).
async fn create_schema(config: &WorkloadConfig, topology: &Topology) -> anyhow::Result<()> {
    let first = &config.endpoints[0];
    let client = Client::connect(
        first.addr,
        ClientOptions {
            connect_timeout: CONNECT_TIMEOUT * 5,
            request_timeout: Duration::from_secs(30),
            ..ClientOptions::default()
        },
    )
    .await
    .with_context(|| format!("connecting to {} at {}", first.name, first.addr))?;
    let statements = [
        format!("DROP KEYSPACE IF EXISTS {KEYSPACE}"),
        format!(
            "CREATE KEYSPACE {KEYSPACE} WITH replication = {}",
            topology.replication()
        ),
        format!("CREATE TABLE {KEYSPACE}.t (k bigint PRIMARY KEY, v bigint)"),
    ];
    for statement in &statements {
        crate::demo::query_retrying(&client, statement, &QueryOptions::default()).await?;
    }
    let deadline = Instant::now() + SCHEMA_TIMEOUT;
    let all = QueryOptions {
        consistency: Consistency::All,
        ..QueryOptions::default()
    };
    for (i, endpoint) in config.endpoints.iter().enumerate() {
        loop {
            let attempt = async {
                let options = ClientOptions {
                    connect_timeout: CONNECT_TIMEOUT,
                    request_timeout: REQUEST_TIMEOUT,
                    ..ClientOptions::default()
                };
                let c = Client::connect(endpoint.addr, options)
                    .await
                    .map_err(|e| e.to_string())?;
                let insert = c
                    .prepare(&config.insert_cql())
                    .await
                    .map_err(|e| e.to_string())?;
                c.prepare(&config.select_cql())
                    .await
                    .map_err(|e| e.to_string())?;
                c.execute(&insert, [CqlValue::BigInt(0), CqlValue::BigInt(0)], &all)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(node = %endpoint.name, error = %e, "schema not ready");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => bail!(
                    "keyspace {KEYSPACE} not usable on {} (node {} of {}) within \
                     {SCHEMA_TIMEOUT:?}: {e}",
                    endpoint.name,
                    i + 1,
                    config.endpoints.len()
                ),
            }
        }
    }
    Ok(())
}

/// Heals what the nemesis may have left: partitions, paused nodes, dead or stopped nodes, the
/// deliberate bug; then waits for convergence.
async fn restore(cluster: &Arc<Cluster>, lose_writes: bool) -> anyhow::Result<()> {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let faults = c.faults()?;
        if !faults.cuts.is_empty() || !faults.delays.is_empty() {
            c.heal()?;
        }
        if lose_writes {
            c.set_lose_writes(0)?;
        }
        Ok(())
    })
    .await
    .context("the heal task failed")??;
    for node in cluster.nodes() {
        match cluster.process_state(&node.name)? {
            ProcessState::Paused => cluster.resume_node(&node.name).await?,
            ProcessState::Stopped | ProcessState::Dead => {
                cluster.start_node(&node.name, RECOVERY_TIMEOUT).await?
            }
            ProcessState::Running => {}
        }
    }
    cluster.wait_converged(RECOVERY_TIMEOUT).await?;
    Ok(())
}

/// Heals synchronously on `Drop` unless disarmed: the last resort after an error or a panic.
struct FaultGuard {
    cluster: Arc<Cluster>,
    lose_writes: bool,
    armed: AtomicBool,
}

impl FaultGuard {
    fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        if !self.armed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.cluster.heal() {
            eprintln!("ringdb chaos: could not heal the partitions: {e}");
        }
        if self.lose_writes {
            if let Err(e) = self.cluster.set_lose_writes(0) {
                eprintln!("ringdb chaos: could not turn the deliberate bug off: {e}");
            }
        }
        for entry in self.cluster.manifest().nodes {
            if self.cluster.process_state(&entry.name).ok() == Some(ProcessState::Paused) {
                if let Some(pid) = entry.pid {
                    if let Err(e) = crate::cluster::process::signal(pid, libc::SIGCONT) {
                        eprintln!("ringdb chaos: could not resume {}: {e}", entry.name);
                    }
                }
            }
            if matches!(
                self.cluster.process_state(&entry.name),
                Ok(ProcessState::Dead | ProcessState::Stopped)
            ) {
                eprintln!(
                    "ringdb chaos: {} is down; `ringdb cluster start {} {}` starts it",
                    entry.name,
                    self.cluster.name(),
                    entry.name
                );
            }
        }
    }
}

/// Waits until no node holds hints; returns how long that took (`None`: not within `timeout`)
/// and how many were held at the last look.
async fn wait_hints(config: &WorkloadConfig, timeout: Duration) -> (Option<f64>, i64) {
    let begin = Instant::now();
    let mut left = -1;
    loop {
        match pending_hints(config).await {
            Ok(0) => return (Some(begin.elapsed().as_secs_f64()), 0),
            Ok(n) => left = n,
            Err(e) => tracing::debug!(error = %e, "reading pending hints"),
        }
        if begin.elapsed() >= timeout {
            return (None, left);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Hints held by every node, summed (`system_views.cluster_status.pending_hints`).
async fn pending_hints(config: &WorkloadConfig) -> anyhow::Result<i64> {
    let mut total = 0;
    for e in &config.endpoints {
        let options = ClientOptions {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: CONNECT_TIMEOUT * 2,
            ..ClientOptions::default()
        };
        let client = Client::connect(e.addr, options)
            .await
            .with_context(|| format!("connecting to {}", e.name))?;
        let rows = client
            .query(
                "SELECT pending_hints FROM system_views.cluster_status",
                NO_VALUES,
                &QueryOptions::default(),
            )
            .await
            .with_context(|| format!("reading {}'s cluster_status", e.name))?;
        let QueryResult::Rows(rows) = rows else {
            bail!("{} answered cluster_status without rows", e.name);
        };
        for row in &rows.rows {
            if let Some(Some(CqlValue::BigInt(n))) = row.first() {
                total += n;
            }
        }
    }
    Ok(total)
}

/// Repairs the workload's keyspace on one node through its admin API; a repair with failed
/// ranges is tried once more.
async fn repair_node(name: &str, admin: std::net::SocketAddr) -> RepairLine {
    let mut line = RepairLine {
        node: name.to_string(),
        ..RepairLine::default()
    };
    for attempt in 0..2 {
        let begin = Instant::now();
        let result = tokio::time::timeout(REPAIR_TIMEOUT, repair_once(admin)).await;
        line.seconds = begin.elapsed().as_secs_f64();
        match result {
            Ok(Ok(report)) => {
                line.ranges = report.ranges_total;
                line.out_of_sync = report.ranges_out_of_sync;
                line.failed = report.ranges_failed;
                line.partitions_streamed = report.partitions_streamed;
                line.error = None;
                if report.succeeded() {
                    return line;
                }
                line.error = Some(format!(
                    "{} of {} ranges failed{}",
                    report.ranges_failed,
                    report.ranges_total,
                    report
                        .failures
                        .first()
                        .map(|f| format!(" (first: {} {}: {})", f.table, f.range, f.error))
                        .unwrap_or_default()
                ));
            }
            Ok(Err(e)) => line.error = Some(format!("{e:#}")),
            Err(_) => line.error = Some(format!("not finished within {REPAIR_TIMEOUT:?}")),
        }
        if attempt == 0 {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
    line
}

async fn repair_once(admin: std::net::SocketAddr) -> anyhow::Result<RepairReport> {
    use crate::admin::client;
    let response = client::request(
        admin,
        hyper::Method::POST,
        &format!("/repair?keyspace={KEYSPACE}"),
    )
    .await?;
    let mut lines = client::Lines::new(response);
    let mut last: Option<RepairReport> = None;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let report: RepairReport = serde_json::from_str(&line)
            .with_context(|| format!("the node sent a line that is not a report: {line}"))?;
        let finished = report.finished;
        last = Some(report);
        if finished {
            break;
        }
    }
    match last {
        Some(r) if r.finished => Ok(r),
        Some(r) => Err(anyhow!(
            "the connection ended before the repair finished ({} of {} ranges)",
            r.ranges_done,
            r.ranges_total
        )),
        None => Err(anyhow!("the node closed the connection before reporting")),
    }
}

/// The live progress line: elapsed, ops/s, outcomes so far, the fault in force. Redrawn in
/// place on a terminal, printed every 5 s otherwise.
async fn progress_line(
    console: Console,
    shared: Arc<Shared>,
    state: Arc<Mutex<NemesisState>>,
    duration: Duration,
    stop: watch::Receiver<bool>,
) {
    let every = if console.tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut last = (Instant::now(), 0u64);
    loop {
        if !nemesis::sleep_or_stop(every, &stop).await {
            break;
        }
        let (acked, failed, indeterminate) = shared.counters.snapshot();
        let total = acked + failed + indeterminate;
        let now = Instant::now();
        let rate = (total - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, total);
        let fault = state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
            .unwrap_or_else(|| "none".to_string());
        let text = format!(
            "{:>5.1}/{:.0}s  {rate:>6.0} ops/s  acked {acked}  failed {failed}  indeterminate \
             {indeterminate}  fault: {fault}",
            console.start.elapsed().as_secs_f64(),
            duration.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        if console.tty {
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        } else {
            let _ = writeln!(err, "ringdb chaos: {text}");
        }
    }
    if console.tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

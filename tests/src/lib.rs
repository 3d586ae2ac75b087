//! Support code for the end-to-end tests: real `ringdb` processes driven by real clients.
//!
//! A [`TestNode`] is one `ringdb node` process with a temp dir of its own (data dir, YAML config,
//! log file) on a loopback address of its own (`127.0.x.y`, default ports), so tests in one
//! process and several test processes can run side by side without colliding. The process is
//! killed when the `TestNode` is dropped; when the test is panicking at that moment the temp dir is
//! kept and the log path and its last lines are printed, so a failure can be read afterwards.
//!
//! Everything that waits is bounded in time: readiness, graceful stop, subprocesses
//! ([`run_command`], [`run_shell`], [`run_venv_tool`]).
//!
//! The binary is `$RINGDB_BIN` if set, else `<workspace>/target/release/ringdb`. When it is missing,
//! [`ringdb_bin_or_skip`] prints `SKIPPED: …` and the test returns early — except in CI
//! (`CI=true`), where a missing binary is a failure.
//!
//! Readiness is checked with a raw protocol v4 OPTIONS frame ([`raw`]) rather than with our own
//! client, so the harness depends on nothing the server's authors are still writing.
//!
//! Multi-node tests run their clusters through `ringdb_node::cluster`, the module behind
//! `ringdb cluster`: [`unique_cluster_base_ip`] finds a block of free loopback addresses
//! (127.1.x.y, apart from the single nodes' 127.0.x.y) and a [`TestCluster`] kills the cluster's
//! nodes on `Drop` — keeping its folder and printing every node's log tail when the test panicked.

pub mod raw;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The CQL port every node uses on its own address.
pub const NATIVE_TRANSPORT_PORT: u16 = 9042;
/// The internode port every node uses on its own address.
pub const STORAGE_PORT: u16 = 7000;
/// How long a freshly started node may take to answer OPTIONS.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many log lines a failing test prints.
const LOG_TAIL_LINES: usize = 50;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// True when running in CI (`CI=true`), where missing prerequisites are failures, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            !v.is_empty() && v != "false" && v != "0"
        })
        .unwrap_or(false)
}

/// Where the `ringdb` binary is expected: `$RINGDB_BIN`, else `<workspace>/target/release/ringdb`.
pub fn ringdb_bin_path() -> PathBuf {
    match std::env::var_os("RINGDB_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/release/ringdb"),
    }
}

/// The `ringdb` binary, or `None` after printing `SKIPPED: <test>: <reason>` when it is missing.
/// In CI a missing binary panics instead: CI must never pass by skipping.
pub fn ringdb_bin_or_skip(test: &str) -> Option<PathBuf> {
    let path = ringdb_bin_path();
    if path.is_file() {
        return Some(path);
    }
    let reason = format!(
        "ringdb binary not found at {} (set RINGDB_BIN or run `cargo build --release -p ringdb-node`)",
        path.display()
    );
    if in_ci() {
        panic!("{test}: {reason}; CI=true, so this is a failure, not a skip");
    }
    skip(test, &reason);
    None
}

/// Prints a loud skip note. libtest captures `println!`/`eprintln!` of passing tests, so the note
/// is written to the process's stderr directly, where `cargo test` always shows it.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A loopback address no other node of this process uses, mixed with the pid so that parallel test
/// processes pick different ones too; checked free by binding its CQL and storage ports.
pub fn unique_loopback_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // 127.0.1.1 ..= 127.0.250.253: avoids 127.0.0.x (often used by other software) and .0/.254/.255.
    const HOSTS_PER_NET: u32 = 253;
    const NETS: u32 = 250;
    let pid = std::process::id();
    let base = pid.wrapping_mul(7919) % (HOSTS_PER_NET * NETS);
    for _ in 0..1024 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let slot = (base + n) % (HOSTS_PER_NET * NETS);
        let x = 1 + slot / HOSTS_PER_NET;
        let y = 1 + slot % HOSTS_PER_NET;
        let ip = Ipv4Addr::new(127, 0, x as u8, y as u8);
        if port_is_free(ip, NATIVE_TRANSPORT_PORT) && port_is_free(ip, STORAGE_PORT) {
            return ip;
        }
    }
    panic!("no free 127.0.x.y address found after 1024 tries");
}

fn port_is_free(ip: Ipv4Addr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

/// How many addresses one [`unique_cluster_base_ip`] block spans (the most nodes a test cluster
/// may have, added nodes included).
pub const CLUSTER_BLOCK: usize = 16;

/// The first of [`CLUSTER_BLOCK`] consecutive loopback addresses (127.1.x.y) that no other cluster
/// of this process uses, mixed with the pid so parallel test processes pick different blocks;
/// each address is checked free (CQL, storage over TCP and UDP, metrics). Node K of a cluster
/// created with this base gets `base + K - 1`.
pub fn unique_cluster_base_ip(nodes: usize) -> Ipv4Addr {
    assert!(
        (1..=CLUSTER_BLOCK).contains(&nodes),
        "a test cluster has 1..={CLUSTER_BLOCK} nodes"
    );
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // 127.1.x.(16k+1) for x in 0..=255, k in 0..=14: blocks never reach .0 or .255.
    const BLOCKS_PER_NET: u32 = 15;
    const SLOTS: u32 = BLOCKS_PER_NET * 256;
    let base = std::process::id().wrapping_mul(104_729) % SLOTS;
    for _ in 0..SLOTS {
        let slot = (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SLOTS;
        let x = (slot / BLOCKS_PER_NET) as u8;
        let first = (slot % BLOCKS_PER_NET) as u8 * CLUSTER_BLOCK as u8 + 1;
        let free = (0..CLUSTER_BLOCK as u8).all(|i| {
            let ip = Ipv4Addr::new(127, 1, x, first + i);
            port_is_free(ip, NATIVE_TRANSPORT_PORT)
                && port_is_free(ip, STORAGE_PORT)
                && std::net::UdpSocket::bind((ip, STORAGE_PORT)).is_ok()
                && port_is_free(ip, ringdb_node::cluster::PROMETHEUS_PORT)
        });
        if free {
            return Ipv4Addr::new(127, 1, x, first);
        }
    }
    panic!("no free block of {CLUSTER_BLOCK} loopback addresses in 127.1.0.0/16");
}

/// A free TCP port on `ip` (bound then released; good enough for tests).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// How to configure a [`TestNode`]: extra config keys on top of the harness's own.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Extra or overriding config keys, written to the YAML file verbatim as `key: value`
    /// (so the value is YAML: quote strings that need it).
    pub config: BTreeMap<String, String>,
    /// Extra environment variables for the node process.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments after `node --config FILE` (e.g. `--set key=value`).
    pub args: Vec<String>,
}

impl NodeOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a config key (the value is raw YAML).
    pub fn set(mut self, key: &str, yaml_value: impl ToString) -> Self {
        self.config.insert(key.to_string(), yaml_value.to_string());
        self
    }

    /// Adds an environment variable for the node process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds command-line arguments after `node --config FILE`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

/// One `ringdb node` process with its own temp dir and loopback address.
pub struct TestNode {
    bin: PathBuf,
    ip: Ipv4Addr,
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    options: NodeOptions,
    child: Option<Child>,
    starts: u32,
}

impl TestNode {
    /// Starts a node with default options and waits until it serves CQL. Returns `None` (after
    /// printing SKIPPED) when the binary is missing outside CI.
    pub fn start_or_skip(test: &str) -> Option<TestNode> {
        Self::start_with_or_skip(test, NodeOptions::new())
    }

    /// Like [`TestNode::start_or_skip`] with options. Panics (keeping the log) if the node does not
    /// become ready within [`READY_TIMEOUT`].
    pub fn start_with_or_skip(test: &str, options: NodeOptions) -> Option<TestNode> {
        let bin = ringdb_bin_or_skip(test)?;
        let mut node = TestNode::spawn(&bin, options).expect("spawn ringdb node");
        if let Err(e) = node.wait_ready(READY_TIMEOUT) {
            panic!("{test}: node did not become ready: {e:#}");
        }
        Some(node)
    }

    /// Creates the temp dir and config and spawns the process; does not wait for readiness.
    pub fn spawn(bin: &Path, options: NodeOptions) -> Result<TestNode> {
        let ip = unique_loopback_ip();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringdb-test-{ip}-"))
            .tempdir()
            .context("create temp dir")?;
        let dir_path = dir.path().to_path_buf();
        let data_dir = dir_path.join("data");
        std::fs::create_dir_all(&data_dir).context("create data dir")?;
        let config_path = dir_path.join("ringdb.yaml");
        let log_path = dir_path.join("node.log");

        let mut config: BTreeMap<String, String> = BTreeMap::new();
        config.insert("cluster_name".into(), yaml_str("ringdb-test"));
        config.insert("listen_address".into(), yaml_str(&ip.to_string()));
        config.insert("storage_port".into(), STORAGE_PORT.to_string());
        config.insert("native_transport_address".into(), yaml_str(&ip.to_string()));
        // The admin API on the node's own address too, so that nodes never share its port.
        config.insert("admin_address".into(), yaml_str(&ip.to_string()));
        config.insert(
            "native_transport_port".into(),
            NATIVE_TRANSPORT_PORT.to_string(),
        );
        config.insert("data_dir".into(), yaml_str(&data_dir.to_string_lossy()));
        for (k, v) in &options.config {
            config.insert(k.clone(), v.clone());
        }
        let mut yaml = String::from("# written by the ringdb end-to-end test harness\n");
        for (k, v) in &config {
            yaml.push_str(&format!("{k}: {v}\n"));
        }
        std::fs::write(&config_path, yaml).context("write config")?;

        let mut node = TestNode {
            bin: bin.to_path_buf(),
            ip,
            dir: Some(dir),
            dir_path,
            config_path,
            log_path,
            options,
            child: None,
            starts: 0,
        };
        node.start_process()?;
        Ok(node)
    }

    fn start_process(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("node {} is already running", self.ip);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("open node log")?;
        self.starts += 1;
        writeln!(
            log,
            "===== test harness: start #{} of `{} node --config {}` =====",
            self.starts,
            self.bin.display(),
            self.config_path.display()
        )?;
        let log_err = log.try_clone()?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("node")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        scrub_ringdb_env(&mut cmd);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The node's loopback address.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The node's CQL address.
    pub fn cql_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), NATIVE_TRANSPORT_PORT)
    }

    /// `HOST:PORT` of the CQL endpoint, as `ringdb shell` and drivers take it.
    pub fn cql_host_port(&self) -> String {
        self.cql_addr().to_string()
    }

    /// The node's temp dir (kept when the test fails).
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_lines(&self.log(), n)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True if the process was started and has not exited (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Polls until a protocol v4 OPTIONS gets SUPPORTED, the process exits, or `timeout` passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        self.wait_ready_at(self.cql_addr(), timeout)
    }

    /// [`TestNode::wait_ready`] for a CQL address other than the default one (a test that moved
    /// the port with `--set` or the environment).
    pub fn wait_ready_at(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("try_wait")? {
                    self.child = None;
                    bail!(
                        "node process exited with {status} before serving CQL on {addr}; log {}:\n{}",
                        self.log_path.display(),
                        self.log_tail(LOG_TAIL_LINES)
                    );
                }
            } else {
                bail!("node is not running");
            }
            let last_err = match raw::options_ping(addr, Duration::from_secs(2)) {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "node on {addr} not ready after {timeout:?} (last error: {last_err}); log {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; its status, or `None` if it
    /// is still running then. An error when it was not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("node is not running");
        };
        let status = wait_bounded(child, timeout)?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// SIGKILL, then reap. No-op when not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = wait_bounded(&mut child, Duration::from_secs(10));
        }
    }

    /// SIGTERM, then wait up to [`STOP_TIMEOUT`]; SIGKILL if it has not exited by then (and
    /// return an error saying so). Returns the exit status of a graceful exit.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("node is not running");
        };
        send_signal(child.id(), "TERM")?;
        match wait_bounded(&mut child, STOP_TIMEOUT)? {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = wait_bounded(&mut child, Duration::from_secs(10));
                bail!(
                    "node did not exit within {STOP_TIMEOUT:?} of SIGTERM (killed); log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                )
            }
        }
    }

    /// Starts the process again on the same address, config and data dir (stopping it first with
    /// SIGTERM if it is still running) and waits until it serves CQL.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.child = None;
        self.start_process()?;
        self.wait_ready(READY_TIMEOUT)
    }

    /// Keeps the temp dir after the test (it is also kept automatically on panic).
    pub fn keep_dir(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            return dir.keep();
        }
        self.dir_path.clone()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
        let keep = std::thread::panicking() || std::env::var_os("RINGDB_KEEP_TEST_DIRS").is_some();
        if keep {
            let dir = self.keep_dir();
            eprintln!(
                "---- ringdb node {} (kept {}) log {}: last {LOG_TAIL_LINES} lines ----\n{}\n---- end of log ----",
                self.ip,
                dir.display(),
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

/// A local cluster for one test, in a temp dir of its own. Derefs to the
/// [`ringdb_node::cluster::Cluster`].
///
/// On `Drop` every node process of the cluster is killed. When the test is panicking (or
/// `RINGDB_KEEP_TEST_DIRS` is set) the temp dir is kept and the last lines of every node's log are
/// printed; otherwise the temp dir is removed. A cluster made by the CLI in a separate process is
/// guarded too: make the guard with [`TestCluster::in_temp_dir`] first, run the CLI on
/// [`TestCluster::cluster_dir`], then [`TestCluster::open`] — even when the CLI fails halfway, the
/// nodes it started are killed on `Drop`.
pub struct TestCluster {
    test: String,
    tmp: Option<tempfile::TempDir>,
    tmp_path: PathBuf,
    cluster: Option<ringdb_node::cluster::Cluster>,
}

impl TestCluster {
    /// An empty temp dir for a cluster (nothing created yet).
    pub fn in_temp_dir(test: &str) -> Result<TestCluster> {
        let tmp = tempfile::Builder::new()
            .prefix("ringdb-cluster-test-")
            .tempdir()
            .context("create temp dir")?;
        Ok(TestCluster {
            test: test.to_string(),
            tmp_path: tmp.path().to_path_buf(),
            tmp: Some(tmp),
            cluster: None,
        })
    }

    /// Creates (does not start) a cluster named after the test with `dcs` nodes per datacenter on
    /// a fresh block of loopback addresses, its nodes run by `bin`; `extra` is extra node config.
    pub fn create(
        test: &str,
        bin: &Path,
        dcs: &[usize],
        extra: &[(&str, &str)],
    ) -> Result<TestCluster> {
        let mut guard = TestCluster::in_temp_dir(test)?;
        let name: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let mut spec = ringdb_node::cluster::ClusterSpec::new(
            &name,
            guard.cluster_dir(),
            dcs.to_vec(),
            bin.to_path_buf(),
        );
        spec.base_ip = unique_cluster_base_ip(dcs.iter().sum());
        spec.extra_config = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let progress: ringdb_node::cluster::Progress =
            std::sync::Arc::new(|m: &str| eprintln!("cluster: {m}"));
        guard.cluster = Some(ringdb_node::cluster::Cluster::create(spec)?.with_progress(progress));
        Ok(guard)
    }

    /// Opens the cluster a CLI made in [`TestCluster::cluster_dir`].
    pub fn open(&mut self) -> Result<&ringdb_node::cluster::Cluster> {
        let progress: ringdb_node::cluster::Progress =
            std::sync::Arc::new(|m: &str| eprintln!("cluster: {m}"));
        let cluster =
            ringdb_node::cluster::Cluster::open(&self.cluster_dir())?.with_progress(progress);
        Ok(self.cluster.insert(cluster))
    }

    /// The temp dir (the cluster lives in its `cluster/` subfolder; tests may use the rest).
    pub fn tmp(&self) -> &Path {
        &self.tmp_path
    }

    /// Where the cluster lives (`TMP/cluster`).
    pub fn cluster_dir(&self) -> PathBuf {
        self.tmp_path.join("cluster")
    }

    /// The cluster; panics if it was neither created nor opened.
    pub fn cluster(&self) -> &ringdb_node::cluster::Cluster {
        self.cluster
            .as_ref()
            .expect("TestCluster: create or open the cluster first")
    }

    /// Every node's log tail, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let Some(cluster) = self.cluster.as_ref() else {
            return String::new();
        };
        let mut out = String::new();
        for node in cluster.nodes() {
            let tail = cluster
                .log_tail(&node.name, lines)
                .unwrap_or_else(|e| format!("(no log: {e})"));
            out.push_str(&format!(
                "---- {} {} log {}: last {lines} lines ----\n{tail}\n",
                node.name,
                node.ip,
                node.log_path.display()
            ));
        }
        out
    }
}

impl std::ops::Deref for TestCluster {
    type Target = ringdb_node::cluster::Cluster;

    fn deref(&self) -> &Self::Target {
        self.cluster()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.cluster.is_none() {
            // A CLI may have created (and started) it without the test opening it.
            if let Ok(c) = ringdb_node::cluster::Cluster::open(&self.cluster_dir()) {
                self.cluster = Some(c);
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.kill_all();
        }
        let keep = std::thread::panicking() || std::env::var_os("RINGDB_KEEP_TEST_DIRS").is_some();
        if keep {
            let dir = match self.tmp.take() {
                Some(d) => d.keep(),
                None => self.tmp_path.clone(),
            };
            eprintln!(
                "==== {}: cluster kept in {} ====\n{}==== end of cluster logs ====",
                self.test,
                dir.display(),
                self.log_tails(LOG_TAIL_LINES)
            );
        }
    }
}

/// Removes every `RINGDB_*` variable of the test environment (e.g. `RINGDB_BIN`) from a command,
/// so the node only sees the configuration the test means to give it.
pub fn scrub_ringdb_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RINGDB_") {
            cmd.env_remove(&key);
        }
    }
}

/// A YAML double-quoted string.
pub fn yaml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{signal} {pid} failed: {status}");
    }
    Ok(())
}

/// Waits for a child at most `timeout`; `Ok(None)` if it is still running then.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("try_wait")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a bounded subprocess run produced.
#[derive(Debug)]
pub struct CommandOutput {
    /// `None` when the process was killed for running past its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }

    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// A readable account for assertion messages.
    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed after its time limit".to_string(),
        };
        format!(
            "status: {status}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.stdout, self.stderr
        )
    }
}

/// Runs a command with stdin closed, capturing stdout and stderr; kills it after `timeout`.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Result<CommandOutput> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let out = child.stdout.take().map(drain_in_thread);
    let err = child.stderr.take().map(drain_in_thread);
    let status = match wait_bounded(&mut child, timeout)? {
        Some(s) => Some(s),
        None => {
            let _ = child.kill();
            let _ = wait_bounded(&mut child, Duration::from_secs(10));
            None
        }
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    Ok(CommandOutput {
        status,
        stdout: join(out),
        stderr: join(err),
    })
}

fn drain_in_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// A `ringdb` command with the test environment's `RINGDB_*` variables removed.
pub fn ringdb_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    scrub_ringdb_env(&mut cmd);
    cmd
}

/// Runs `ringdb shell ARGS...` (stdin closed) for at most `timeout`.
pub fn run_shell(bin: &Path, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
    let mut cmd = ringdb_command(bin);
    cmd.arg("shell").args(args);
    run_command(cmd, timeout)
}

/// The workspace's Python venv (`<workspace>/.venv`, or `$RINGDB_VENV`).
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("RINGDB_VENV") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv"),
    }
}

/// A tool of the venv (`cqlsh`, `python`, `pytest`, …), if installed.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let p = venv_dir().join("bin").join(name);
    p.is_file().then_some(p)
}

/// Runs a venv tool for at most `timeout`; errors if the tool is not installed (run `scripts/test`
/// once to create the venv).
pub fn run_venv_tool(name: &str, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
    let Some(tool) = venv_tool(name) else {
        bail!(
            "{name} not found in {} (scripts/test creates the venv)",
            venv_dir().display()
        );
    };
    let mut cmd = Command::new(tool);
    cmd.args(args);
    run_command(cmd, timeout)
}

/// Writes `contents` to a new file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(path)
}

/// Runs an async test body on a fresh multi-threaded runtime, failing after `limit`.
/// A session of the Rust `scylla` driver with default settings, knowing `nodes` (`host:port`).
pub async fn scylla_session(nodes: &[String]) -> Result<scylla::client::session::Session> {
    scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(nodes)
        .build()
        .await
        .with_context(|| format!("scylla driver: connect to {}", nodes.join(", ")))
}

/// Creates keyspace `name` with SimpleStrategy and replication factor `rf`.
pub async fn create_keyspace(
    session: &scylla::client::session::Session,
    name: &str,
    rf: u32,
) -> Result<()> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {name} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': {rf}}}"
            ),
            &[],
        )
        .await
        .with_context(|| format!("creating keyspace {name} (RF {rf})"))?;
    Ok(())
}

pub fn run_async<F: std::future::Future<Output = Result<()>>>(limit: Duration, body: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime");
    match rt.block_on(async { tokio::time::timeout(limit, body).await }) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}"),
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ips_differ_within_a_process() {
        let a = unique_loopback_ip();
        let b = unique_loopback_ip();
        assert_ne!(a, b);
        assert_eq!(a.octets()[0..2], [127, 0]);
        assert!(a.octets()[2] >= 1 && a.octets()[3] >= 1 && a.octets()[3] <= 253);
    }

    #[test]
    fn cluster_blocks_differ_and_stay_in_127_1() {
        let a = unique_cluster_base_ip(5);
        let b = unique_cluster_base_ip(16);
        assert_ne!(a, b);
        for ip in [a, b] {
            assert_eq!(ip.octets()[0..2], [127, 1]);
            assert_eq!(ip.octets()[3] % 16, 1);
            assert!(ip.octets()[3] as usize + CLUSTER_BLOCK - 1 <= 254);
        }
    }

    #[test]
    fn yaml_strings_are_quoted() {
        assert_eq!(yaml_str(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }

    #[test]
    fn bounded_command_is_killed() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let out = run_command(cmd, Duration::from_millis(200)).unwrap();
        assert!(out.timed_out());
    }

    #[test]
    fn command_output_is_captured() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_command(cmd, Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout.trim(), "out");
        assert_eq!(out.stderr.trim(), "err");
        assert_eq!(out.status.and_then(|s| s.code()), Some(3));
    }
}

/// One `GET /metrics` from a node's Prometheus exporter at `addr` (HTTP/1.0, so the body is not
/// chunked), bounded by `timeout` for the connect and each read; returns the body.
pub fn fetch_metrics(addr: SocketAddr, timeout: Duration) -> Result<String> {
    use std::net::TcpStream;
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\nAccept: text/plain\r\n\r\n")?;
    let mut raw = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut raw)
        .with_context(|| format!("read /metrics from {addr}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{addr}: HTTP response without a header/body separator"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200") {
        bail!("GET http://{addr}/metrics answered `{status}`");
    }
    Ok(body.to_string())
}

/// One sample of the Prometheus text format: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus text-format body (comments and unparsable lines skipped; label
/// values may not contain `,` or `"`, which is true of ringdb's own metrics).
pub fn parse_metrics(body: &str) -> Vec<MetricSample> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.trim().parse::<f64>().ok()?;
            let (name, labels) = match series.split_once('{') {
                None => (series.trim().to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let inner = rest.trim_end().strip_suffix('}')?;
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.trim().is_empty())
                        .filter_map(|p| {
                            let (k, v) = p.split_once('=')?;
                            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                        })
                        .collect();
                    (name.trim().to_string(), labels)
                }
            };
            Some(MetricSample {
                name,
                labels,
                value,
            })
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include every `(key, value)` of `labels`.
pub fn metric_sum(samples: &[MetricSample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod metrics_parsing_tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let body = "# HELP x y\n# TYPE c counter\n\
                    c{op=\"write\",replica=\"yes\"} 12\n\
                    c{replica=\"no\",op=\"write\"} 3\n\
                    c{op=\"read\",replica=\"no\"} 4\n\
                    g 1.5\n";
        let samples = parse_metrics(body);
        assert_eq!(samples.len(), 4);
        assert_eq!(metric_sum(&samples, "c", &[("op", "write")]), 15.0);
        assert_eq!(metric_sum(&samples, "c", &[("replica", "no")]), 7.0);
        assert_eq!(
            metric_sum(&samples, "c", &[("op", "write"), ("replica", "no")]),
            3.0
        );
        assert_eq!(metric_sum(&samples, "g", &[]), 1.5);
        assert_eq!(metric_sum(&samples, "missing", &[]), 0.0);
    }
}

/// The machine a benchmark ran on: architecture, CPUs available, CPU model (the same line
/// `ringdb bench` prints).
pub fn machine() -> String {
    ringdb_node::bench::machine()
}

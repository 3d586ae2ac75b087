//! Running the cluster: starting nodes (seeds first), stopping them gracefully, the signals of
//! `kill`, `pause` and `resume`, and the bounded waits — until nodes serve CQL, until the
//! cluster has converged, until a node is seen up or down by every other node.
//!
//! A wait that runs out names the node most likely at fault ([`probe::culprit`]) with the tail of
//! its log; a node process that exits during a wait fails the wait at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::manifest::NodeEntry;
use super::probe::{self, NodeView, Observed};
use super::{
    lock, manifest, process, utc_now, Cluster, ClusterError, NodeHandle, NodeStatus, ProcessState,
    Seen, CONVERGE_POLL, SEEN_POLL, SIGNAL_TIMEOUT, STOP_TIMEOUT,
};

impl Cluster {
    // ---- starting ----------------------------------------------------------------------------

    /// Starts every stopped or dead node (seeds first) and waits, at most `timeout` in all, until
    /// the cluster has converged. Running nodes are left alone; paused nodes stay paused and are
    /// not waited for.
    pub async fn start(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        let entries = self.manifest().nodes;
        let (seeds, others): (Vec<NodeEntry>, Vec<NodeEntry>) =
            entries.into_iter().partition(|n| n.seed);
        let mut started = Vec::new();
        for node in &seeds {
            if self.spawn_unless_alive(node)? {
                started.push(node.name.clone());
            }
        }
        // Seeds serve first, so the others find someone to join through.
        self.wait_serving(&started, deadline, timeout).await?;
        for node in &others {
            if self.spawn_unless_alive(node)? {
                started.push(node.name.clone());
            }
        }
        self.wait_converged_until(deadline, timeout, &started).await
    }

    /// Starts one node (if it is stopped or dead) and waits until the cluster has converged.
    pub async fn start_node(&self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        let entry = self.entry(name)?;
        let deadline = Instant::now() + timeout;
        let started = if self.spawn_if_stopped(&entry)? {
            vec![entry.name.clone()]
        } else {
            Vec::new()
        };
        self.wait_converged_until(deadline, timeout, &started).await
    }

    /// Stops a node gracefully if it runs, then starts it and waits for convergence.
    pub async fn restart_node(&self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        self.stop_node(name).await?;
        self.start_node(name, timeout).await
    }

    /// Like [`Cluster::spawn_if_stopped`], but leaves a paused node paused (with a note).
    fn spawn_unless_alive(&self, entry: &NodeEntry) -> Result<bool, ClusterError> {
        if self.state_of(entry) == ProcessState::Paused {
            self.say(&format!("{}: paused; left as it is", entry.name));
            return Ok(false);
        }
        self.spawn_if_stopped(entry)
    }

    /// Spawns the node unless its process is alive. Errors for a paused node.
    fn spawn_if_stopped(&self, entry: &NodeEntry) -> Result<bool, ClusterError> {
        match self.state_of(entry) {
            ProcessState::Running => return Ok(false),
            ProcessState::Paused => {
                return Err(ClusterError::BadState {
                    node: entry.name.clone(),
                    state: ProcessState::Paused,
                    hint: format!(
                        "resume it first (ringdb cluster resume NAME {})",
                        entry.name
                    ),
                })
            }
            ProcessState::Stopped | ProcessState::Dead => {}
        }
        let node = self.node(&entry.name)?;
        let binary = self.binary();
        let banner = format!(
            "===== ringdb cluster: starting {} of cluster {} at {}: {} node --config {} =====",
            node.name,
            self.name(),
            utc_now(),
            binary.display(),
            node.config_path.display()
        );
        let child = process::spawn_node(
            &binary,
            &node.config_path,
            &node.dir,
            &node.log_path,
            &banner,
        )
        .map_err(|source| ClusterError::Spawn {
            node: node.name.clone(),
            binary: binary.clone(),
            source,
        })?;
        let pid = child.id();
        let pid_start = process::proc_stat(pid).map(|(_, start)| start);
        {
            let mut children = lock(&self.children);
            if let Some(mut old) = children.insert(node.name.clone(), child) {
                let _ = old.try_wait();
            }
        }
        self.update(|m| {
            if let Some(n) = m.node_mut(&node.name) {
                n.pid = Some(pid);
                n.pid_start = pid_start;
            }
            Ok(())
        })?;
        self.say(&format!(
            "{}: started (pid {pid}) on {}",
            node.name, node.cql_addr
        ));
        Ok(true)
    }

    /// Fails at once with the node's log when a process we just started has exited.
    fn check_started_alive(&self, started: &[String], during: &str) -> Result<(), ClusterError> {
        for name in started {
            let entry = self.entry(name)?;
            if self.state_of(&entry) == ProcessState::Dead {
                let node = self.node(name)?;
                return Err(ClusterError::Exited {
                    tail: self.log_tail_or_note(&node),
                    node: format!("{} ({})", node.name, node.ip),
                    during: during.to_string(),
                    log: node.log_path,
                });
            }
        }
        Ok(())
    }

    /// Waits until each of `names` answers CQL.
    async fn wait_serving(
        &self,
        names: &[String],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let mut pending: Vec<NodeHandle> = names
            .iter()
            .map(|n| self.node(n))
            .collect::<Result<_, _>>()?;
        let mut last_error: HashMap<String, String> = HashMap::new();
        while !pending.is_empty() {
            self.check_started_alive(names, "before serving CQL")?;
            let probes = pending.iter().map(|n| async move {
                let options = ringdb_cql::client::ClientOptions {
                    connect_timeout: Duration::from_secs(2),
                    credentials: n.credentials.clone(),
                    ..Default::default()
                };
                ringdb_cql::client::Client::connect(n.cql_addr, options)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            let results = futures::future::join_all(probes).await;
            let mut still = Vec::new();
            for (node, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => self.say(&format!("{}: serving CQL", node.name)),
                    Err(e) => {
                        last_error.insert(node.name.clone(), e);
                        still.push(node);
                    }
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let node = &pending[0];
                return Err(ClusterError::NotUp {
                    summary: format!(
                        "{} ({}) did not serve CQL within {timeout:?}: {}",
                        node.name,
                        node.cql_addr,
                        last_error
                            .get(&node.name)
                            .map(String::as_str)
                            .unwrap_or("no answer")
                    ),
                    node: node.name.clone(),
                    log: node.log_path.clone(),
                    tail: self.log_tail_or_note(node),
                });
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
        Ok(())
    }

    // ---- observing ----------------------------------------------------------------------------

    /// What one node says about the cluster (its `system.peers` and `cluster_status`).
    pub async fn view(&self, name: &str) -> Result<NodeView, ClusterError> {
        let node = self.node(name)?;
        probe::read_view_as(node.cql_addr, node.credentials.clone())
            .await
            .map_err(|e| ClusterError::Stuck {
                node: name.to_string(),
                what: format!("cannot read its view over CQL: {e}"),
            })
    }

    /// Reads the views of the running nodes (in parallel).
    async fn observe_running(&self) -> Vec<Observed> {
        let running: Vec<NodeHandle> = self
            .nodes()
            .into_iter()
            .filter(|n| {
                self.process_state(&n.name)
                    .map(|s| s == ProcessState::Running)
                    .unwrap_or(false)
            })
            .collect();
        let views = futures::future::join_all(
            running
                .iter()
                .map(|n| probe::read_view_as(n.cql_addr, n.credentials.clone())),
        )
        .await;
        running
            .into_iter()
            .zip(views)
            .map(|(n, view)| Observed {
                name: n.name,
                ip: IpAddr::V4(n.ip),
                view,
            })
            .collect()
    }

    /// The state of every node, and for running nodes what they say about the cluster.
    pub async fn status(&self) -> Vec<NodeStatus> {
        let observed = self.observe_running().await;
        self.nodes()
            .into_iter()
            .map(|node| {
                let entry = self.entry(&node.name).ok();
                let process = entry
                    .as_ref()
                    .map(|e| self.state_of(e))
                    .unwrap_or(ProcessState::Stopped);
                let pid = entry.and_then(|e| e.pid).filter(|_| process.is_alive());
                let view = observed
                    .iter()
                    .find(|o| o.name == node.name)
                    .map(|o| o.view.clone());
                NodeStatus {
                    node,
                    process,
                    pid,
                    view,
                }
            })
            .collect()
    }

    /// Waits at most `timeout` until the cluster has converged (see the module docs).
    pub async fn wait_converged(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.wait_converged_until(Instant::now() + timeout, timeout, &[])
            .await
    }

    async fn wait_converged_until(
        &self,
        deadline: Instant,
        timeout: Duration,
        started: &[String],
    ) -> Result<(), ClusterError> {
        // Nodes running now must keep running through the wait.
        let mut expected: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| {
                self.process_state(n)
                    .map(|s| s == ProcessState::Running)
                    .unwrap_or(false)
            })
            .collect();
        for s in started {
            if !expected.contains(s) {
                expected.push(s.clone());
            }
        }
        let mut last_report = Instant::now();
        loop {
            self.check_started_alive(&expected, "while the cluster was converging")?;
            let observed = self.observe_running().await;
            let gaps = probe::check_converged(&observed);
            if gaps.is_empty() {
                self.say(&format!(
                    "converged: {} running node(s) see each other up",
                    observed.len()
                ));
                return Ok(());
            }
            if Instant::now() >= deadline {
                let culprit = probe::culprit(&gaps).unwrap_or_else(|| gaps[0].observer.clone());
                let node = self.node(&culprit)?;
                return Err(ClusterError::NotUp {
                    summary: format!(
                        "{} ({}) did not come up within {timeout:?}: {}",
                        node.name,
                        node.ip,
                        summarize(&gaps, 6)
                    ),
                    tail: self.log_tail_or_note(&node),
                    log: node.log_path,
                    node: node.name,
                });
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                last_report = Instant::now();
                self.say(&format!("waiting: {}", summarize(&gaps, 3)));
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
    }

    /// Waits at most `timeout` until every other running node's `cluster_status` shows `subject`
    /// as `want` (polling every [`SEEN_POLL`]); returns how long that took.
    pub async fn wait_seen(
        &self,
        subject: &str,
        want: Seen,
        timeout: Duration,
    ) -> Result<Duration, ClusterError> {
        let target = IpAddr::V4(self.node(subject)?.ip);
        let begin = Instant::now();
        let deadline = begin + timeout;
        loop {
            let observed: Vec<Observed> = self
                .observe_running()
                .await
                .into_iter()
                .filter(|o| o.name != subject)
                .collect();
            let mut lacking = Vec::new();
            for o in &observed {
                let ok = match &o.view {
                    Err(e) => {
                        lacking.push(format!("{} does not answer CQL ({e})", o.name));
                        continue;
                    }
                    Ok(view) if view.cluster_status.is_none() => {
                        return Err(ClusterError::Stuck {
                            node: o.name.clone(),
                            what: "has no system_views.cluster_status (a ringdb without gossip?)"
                                .into(),
                        })
                    }
                    Ok(view) => match (view.member(target), want) {
                        (Some(m), Seen::Up) => m.is_up_normal(),
                        (Some(m), Seen::Down) => !m.up,
                        (None, _) => false,
                    },
                };
                if !ok {
                    let seen = match &o.view {
                        Ok(v) => v.member(target).map_or("nothing".into(), |m| m.code()),
                        Err(_) => "?".into(),
                    };
                    lacking.push(format!("{} sees {seen}", o.name));
                }
            }
            if observed.is_empty() {
                lacking.push("no other node is running".into());
            }
            if lacking.is_empty() {
                return Ok(begin.elapsed());
            }
            if Instant::now() >= deadline {
                let node = self.node(subject)?;
                return Err(ClusterError::NotUp {
                    summary: format!(
                        "{subject} was not seen {} by every other running node within {timeout:?}: {}",
                        if want == Seen::Up { "up (UN)" } else { "down" },
                        lacking.join("; ")
                    ),
                    tail: self.log_tail_or_note(&node),
                    log: node.log_path,
                    node: node.name,
                });
            }
            tokio::time::sleep(SEEN_POLL).await;
        }
    }

    // ---- stopping and signals -----------------------------------------------------------------

    /// Stops every node gracefully (SIGTERM; SIGKILL after [`STOP_TIMEOUT`]).
    pub async fn stop(&self) -> Result<(), ClusterError> {
        let names = self.names();
        self.stop_nodes(&names).await
    }

    /// Stops one node gracefully (SIGTERM; SIGKILL after [`STOP_TIMEOUT`]). A stopped node stays
    /// stopped; a dead node is marked stopped.
    pub async fn stop_node(&self, name: &str) -> Result<(), ClusterError> {
        self.entry(name)?;
        self.stop_nodes(&[name.to_string()]).await
    }

    async fn stop_nodes(&self, names: &[String]) -> Result<(), ClusterError> {
        let mut signalled = Vec::new();
        for name in names {
            let entry = self.entry(name)?;
            let state = self.state_of(&entry);
            if let (true, Some(pid)) = (state.is_alive(), entry.pid) {
                self.send(name, pid, libc::SIGTERM, "SIGTERM")?;
                if state == ProcessState::Paused {
                    // A stopped process handles SIGTERM only once continued.
                    self.send(name, pid, libc::SIGCONT, "SIGCONT")?;
                }
                self.say(&format!("{name}: stopping (pid {pid})"));
                signalled.push((name.clone(), pid));
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for (name, pid) in &signalled {
            if !self
                .wait_state_async(name, |s| !s.is_alive(), deadline)
                .await
            {
                self.say(&format!(
                    "{name}: still running {STOP_TIMEOUT:?} after SIGTERM; sending SIGKILL"
                ));
                self.signal_and_wait(
                    name,
                    *pid,
                    libc::SIGKILL,
                    "SIGKILL",
                    |s| !s.is_alive(),
                    "still exists",
                )
                .await?;
            }
        }
        let names = names.to_vec();
        self.update(|m| {
            for n in m.nodes.iter_mut().filter(|n| names.contains(&n.name)) {
                n.pid = None;
                n.pid_start = None;
            }
            Ok(())
        })?;
        lock(&self.children).retain(|name, _| !names.contains(name));
        Ok(())
    }

    /// Kills a node with SIGKILL (no graceful shutdown) and waits until its process is gone. The
    /// node shows as `dead` afterwards.
    pub async fn kill_node(&self, name: &str) -> Result<(), ClusterError> {
        let pid = self.alive_pid(name, "nothing to kill")?;
        self.signal_and_wait(
            name,
            pid,
            libc::SIGKILL,
            "SIGKILL",
            |s| !s.is_alive(),
            "still exists",
        )
        .await?;
        self.say(&format!("{name}: killed (pid {pid})"));
        Ok(())
    }

    /// Pauses a running node with SIGSTOP: it keeps its sockets but answers nothing.
    pub async fn pause_node(&self, name: &str) -> Result<(), ClusterError> {
        let entry = self.entry(name)?;
        let state = self.state_of(&entry);
        let (ProcessState::Running, Some(pid)) = (state, entry.pid) else {
            return Err(ClusterError::BadState {
                node: name.to_string(),
                state,
                hint: "only a running node can be paused".into(),
            });
        };
        self.signal_and_wait(
            name,
            pid,
            libc::SIGSTOP,
            "SIGSTOP",
            |s| s == ProcessState::Paused,
            "not stopped",
        )
        .await?;
        self.say(&format!("{name}: paused (pid {pid})"));
        Ok(())
    }

    /// Resumes a paused node with SIGCONT.
    pub async fn resume_node(&self, name: &str) -> Result<(), ClusterError> {
        let entry = self.entry(name)?;
        let state = self.state_of(&entry);
        let (ProcessState::Paused, Some(pid)) = (state, entry.pid) else {
            return Err(ClusterError::BadState {
                node: name.to_string(),
                state,
                hint: "only a paused node can be resumed".into(),
            });
        };
        self.signal_and_wait(
            name,
            pid,
            libc::SIGCONT,
            "SIGCONT",
            |s| s != ProcessState::Paused,
            "still stopped",
        )
        .await?;
        self.say(&format!("{name}: resumed (pid {pid})"));
        Ok(())
    }

    /// Sends `signal` to the node's process and waits (at most [`SIGNAL_TIMEOUT`]) until its
    /// state satisfies `reached`; otherwise the node is `Stuck` ("pid P <stuck> … after SIG…").
    async fn signal_and_wait(
        &self,
        name: &str,
        pid: u32,
        signal: libc::c_int,
        signal_name: &'static str,
        reached: impl Fn(ProcessState) -> bool,
        stuck: &str,
    ) -> Result<(), ClusterError> {
        self.send(name, pid, signal, signal_name)?;
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        if self.wait_state_async(name, reached, deadline).await {
            return Ok(());
        }
        Err(ClusterError::Stuck {
            node: name.to_string(),
            what: format!("pid {pid} {stuck} {SIGNAL_TIMEOUT:?} after {signal_name}"),
        })
    }

    pub(super) fn alive_pid(&self, name: &str, hint: &str) -> Result<u32, ClusterError> {
        let entry = self.entry(name)?;
        let state = self.state_of(&entry);
        match (state.is_alive(), entry.pid) {
            (true, Some(pid)) => Ok(pid),
            _ => Err(ClusterError::BadState {
                node: name.to_string(),
                state,
                hint: hint.to_string(),
            }),
        }
    }

    fn send(
        &self,
        name: &str,
        pid: u32,
        sig: i32,
        signal: &'static str,
    ) -> Result<(), ClusterError> {
        process::signal(pid, sig).map_err(|source| ClusterError::Signal {
            node: name.to_string(),
            signal,
            pid,
            source,
        })
    }

    pub(super) async fn wait_state_async(
        &self,
        name: &str,
        done: impl Fn(ProcessState) -> bool,
        deadline: Instant,
    ) -> bool {
        loop {
            match self.process_state(name) {
                Ok(s) if done(s) => return true,
                Err(_) => return true,
                Ok(_) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs every live node process of the cluster and waits (at most [`SIGNAL_TIMEOUT`])
    /// until they are gone. Synchronous, for `Drop` guards; never fails.
    pub fn kill_all(&self) {
        let mut pids = Vec::new();
        for entry in self.manifest().nodes {
            if let (true, Some(pid)) = (self.state_of(&entry).is_alive(), entry.pid) {
                let _ = process::signal(pid, libc::SIGKILL);
                pids.push(entry.name.clone());
            }
        }
        let deadline = Instant::now() + SIGNAL_TIMEOUT;
        for name in pids {
            while Instant::now() < deadline
                && self
                    .process_state(&name)
                    .map(|s| s.is_alive())
                    .unwrap_or(false)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Kills every node and deletes the cluster's folder.
    pub fn remove(self) -> Result<(), ClusterError> {
        self.kill_all();
        self.drop_packet_filter();
        // Only a folder that holds a manifest is ours to delete.
        if !manifest::manifest_path(&self.dir).is_file() {
            return Err(ClusterError::NotFound { dir: self.dir });
        }
        std::fs::remove_dir_all(&self.dir).map_err(|e| ClusterError::io(&self.dir, e))
    }
}

/// The first `max` gaps, and how many more.
fn summarize(gaps: &[probe::Gap], max: usize) -> String {
    let mut text: Vec<String> = gaps.iter().take(max).map(|g| g.to_string()).collect();
    if gaps.len() > max {
        text.push(format!("(+{} more)", gaps.len() - max));
    }
    text.join("; ")
}

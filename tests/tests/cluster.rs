//! Local multi-node clusters through `ringdb cluster` (the CLI) and `ringdb_node::cluster` (the
//! module behind it): layout and certificates, convergence of five real processes, failure
//! detection after `kill -9` and `SIGSTOP`, rejoin with a higher generation, and mutual TLS
//! keeping out a node whose certificate comes from another CA.
//!
//! Every cluster runs on its own block of loopback addresses (127.1.x.y) in its own temp dir; a
//! [`TestCluster`] kills its nodes on `Drop` and, when the test failed, keeps the dir and prints
//! each node's log tail. Every wait is bounded.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use ringdb_node::cluster::probe::{self, NodeView};
use ringdb_node::cluster::{process, Cluster, ProcessState, Seen};
use ringdb_tests::{
    ringdb_bin_or_skip, ringdb_command, run_command, unique_cluster_base_ip, yaml_str,
    CommandOutput, TestCluster,
};

/// Time allowed for a cluster to come up (five processes on a small CI machine).
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed for the failure detector to mark a node down, or a node to be seen up again.
const DETECT_TIMEOUT: Duration = Duration::from_secs(45);
/// Time allowed for one CLI command that does not wait for a cluster.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// Runs `ringdb cluster ARGS…` with extra environment variables, bounded in time.
fn cli_env(bin: &Path, env: &[(&str, &Path)], args: &[&str], timeout: Duration) -> CommandOutput {
    let mut cmd = ringdb_command(bin);
    cmd.arg("cluster").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_command(cmd, timeout).expect("run ringdb cluster");
    eprintln!(
        "$ ringdb cluster {}\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    out
}

fn cli(bin: &Path, args: &[&str], timeout: Duration) -> CommandOutput {
    cli_env(bin, &[], args, timeout)
}

fn ip_of(cluster: &Cluster, node: &str) -> IpAddr {
    IpAddr::V4(cluster.node(node).expect("node exists").ip)
}

fn view(rt: &tokio::runtime::Runtime, cluster: &Cluster, node: &str) -> NodeView {
    rt.block_on(cluster.view(node))
        .unwrap_or_else(|e| panic!("reading {node}'s view: {e}"))
}

/// The generation of `subject` in every other running node's cluster_status.
fn generations_seen(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    subject: &str,
) -> Vec<(String, i64)> {
    let ip = ip_of(cluster, subject);
    cluster
        .nodes()
        .iter()
        .filter(|n| n.name != subject)
        .filter(|n| cluster.process_state(&n.name).ok() == Some(ProcessState::Running))
        .map(|n| {
            let v = view(rt, cluster, &n.name);
            let generation = v
                .member(ip)
                .and_then(|m| m.generation)
                .unwrap_or_else(|| panic!("{} has no generation for {subject}: {v:?}", n.name));
            (n.name.clone(), generation)
        })
        .collect()
}

#[test]
fn create_lays_out_a_two_dc_cluster_without_starting_it() {
    let test = "create_lays_out_a_two_dc_cluster_without_starting_it";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let home = tempfile::tempdir().expect("temp dir");
    let env = [("RINGDB_HOME", home.path())];
    let base = unique_cluster_base_ip(6);
    let base_s = base.to_string();
    let out = cli_env(
        &bin,
        &env,
        &[
            "create",
            "two-dcs",
            "-n",
            "3:3",
            "--num-tokens",
            "8",
            "--base-ip",
            &base_s,
        ],
        CLI_TIMEOUT,
    );
    assert!(out.success(), "create failed:\n{}", out.describe());
    let dir = home.path().join("clusters/two-dcs");
    assert!(
        dir.join("cluster.yaml").is_file(),
        "no manifest in {}",
        dir.display()
    );
    assert!(dir.join("ca/ca.crt").is_file() && dir.join("ca/ca.key").is_file());

    let ip = |k: u32| Ipv4Addr::from(u32::from(base) + k - 1);
    let seeds = vec![ip(1).to_string(), ip(4).to_string()];
    for k in 1..=6u32 {
        let name = format!("node{k}");
        let node_dir = dir.join(&name);
        let config_path = node_dir.join("ringdb.yaml");
        let loaded = ringdb_node::config::Config::load(Some(&config_path), std::iter::empty(), &[])
            .unwrap_or_else(|e| panic!("{} does not load: {e}", config_path.display()));
        let c = loaded.config;
        let (dc, rack) = (
            if k <= 3 { "dc1" } else { "dc2" },
            format!("rack{}", (k - 1) % 3 + 1),
        );
        assert_eq!(c.cluster_name, "two-dcs");
        assert_eq!(c.listen_address, IpAddr::V4(ip(k)), "{name}");
        assert_eq!(c.native_transport_address, IpAddr::V4(ip(k)), "{name}");
        assert_eq!(
            (c.storage_port, c.native_transport_port),
            (7000, 9042),
            "{name}"
        );
        assert_eq!(
            (c.dc.as_str(), c.rack.as_str()),
            (dc, rack.as_str()),
            "{name}"
        );
        assert_eq!(c.seeds, seeds, "{name}");
        assert_eq!(c.num_tokens, 8, "{name}");
        assert_eq!(c.data_dir, node_dir.join("data"), "{name}");
        assert!(c.data_dir.is_dir(), "{name}: no data dir");
        let certs = node_dir.join("certs");
        assert_eq!(
            c.internode_ca.as_deref(),
            Some(certs.join("ca.crt").as_path())
        );
        assert_eq!(
            c.internode_cert.as_deref(),
            Some(certs.join(format!("{name}.crt")).as_path())
        );
        assert_eq!(
            c.internode_key.as_deref(),
            Some(certs.join(format!("{name}.key")).as_path())
        );
        for f in [
            certs.join("ca.crt"),
            certs.join(format!("{name}.crt")),
            certs.join(format!("{name}.key")),
        ] {
            let pem =
                std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(pem.contains("-----BEGIN "), "{} is not PEM", f.display());
        }
        check_cert_with_openssl(
            &dir.join("ca/ca.crt"),
            &certs.join(format!("{name}.crt")),
            ip(k),
        );
    }
    // The binary itself accepts the configuration it was given.
    let mut check = ringdb_command(&bin);
    check
        .args(["node", "--check", "--config"])
        .arg(dir.join("node4/ringdb.yaml"));
    let out = run_command(check, CLI_TIMEOUT).expect("run ringdb node --check");
    assert!(out.success(), "node --check:\n{}", out.describe());

    let out = cli_env(&bin, &env, &["list"], CLI_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("two-dcs "))
        .unwrap_or_else(|| panic!("list does not show two-dcs:\n{}", out.describe()));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[1..3], ["6", "0"], "{line}");

    let out = cli_env(&bin, &env, &["status", "two-dcs"], CLI_TIMEOUT);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(3),
        "status of a stopped cluster exits 3:\n{}",
        out.describe()
    );
    for k in 1..=6u32 {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("node{k} ")))
            .unwrap_or_else(|| panic!("no row for node{k}:\n{}", out.stdout));
        assert!(
            row.contains(&ip(k).to_string()) && row.contains("stopped"),
            "{row}"
        );
    }

    let out = cli_env(&bin, &env, &["create", "two-dcs", "-n", "1"], CLI_TIMEOUT);
    assert!(
        !out.success() && out.stderr.contains("already exists"),
        "{}",
        out.describe()
    );
    let out = cli_env(&bin, &env, &["status", "no-such-cluster"], CLI_TIMEOUT);
    assert!(
        !out.success() && out.stderr.contains("no cluster"),
        "{}",
        out.describe()
    );
    let out = cli_env(&bin, &env, &["kill", "two-dcs", "node9"], CLI_TIMEOUT);
    assert!(
        !out.success() && out.stderr.contains("no node node9"),
        "{}",
        out.describe()
    );

    let out = cli_env(&bin, &env, &["remove", "two-dcs"], CLI_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    assert!(!dir.exists(), "{} still exists after remove", dir.display());
    let out = cli_env(&bin, &env, &["list"], CLI_TIMEOUT);
    assert!(out.stdout.contains("no clusters"), "{}", out.describe());
}

/// Where `openssl` is installed: the node certificate verifies against the cluster CA and names
/// the node's address.
fn check_cert_with_openssl(ca: &Path, cert: &Path, ip: Ipv4Addr) {
    let mut verify = std::process::Command::new("openssl");
    verify.arg("verify").arg("-CAfile").arg(ca).arg(cert);
    let Ok(out) = run_command(verify, CLI_TIMEOUT) else {
        return; // no openssl here
    };
    if out.status.is_none() || out.stderr.contains("not found") {
        return;
    }
    assert!(
        out.success(),
        "{} does not verify:\n{}",
        cert.display(),
        out.describe()
    );
    let mut text = std::process::Command::new("openssl");
    text.args(["x509", "-noout", "-text", "-in"]).arg(cert);
    let out = run_command(text, CLI_TIMEOUT).expect("openssl x509");
    assert!(
        out.stdout.contains(&format!("IP Address:{ip}")),
        "{} does not name {ip}:\n{}",
        cert.display(),
        out.stdout
    );
}

#[test]
fn five_nodes_converge_see_a_killed_node_down_and_welcome_it_back() {
    let test = "five_nodes_converge_see_a_killed_node_down_and_welcome_it_back";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let mut guard = TestCluster::in_temp_dir(test).expect("temp dir");
    let dir = guard.cluster_dir();
    let dir_s = dir.to_string_lossy().into_owned();
    let base = unique_cluster_base_ip(5).to_string();
    let up_secs = UP_TIMEOUT.as_secs().to_string();
    let with_dir = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--dir".to_string(), dir_s.clone()]);
        v
    };
    let run = |args: Vec<String>, timeout: Duration| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&bin, &args, timeout)
    };

    let out = run(
        with_dir(&[
            "create",
            "five",
            "-n",
            "5",
            "--base-ip",
            &base,
            "--start",
            "--timeout",
            &up_secs,
        ]),
        UP_TIMEOUT + CLI_TIMEOUT,
    );
    assert!(out.success(), "create --start failed:\n{}", out.describe());
    let cluster = guard.open().expect("open the cluster the CLI made");
    let rt = runtime();
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 5);

    // Converged: every node lists the four others with tokens, dc, rack and host id, and
    // cluster_status shows all five UN with itself as the local row.
    let views: Vec<(String, NodeView)> = nodes
        .iter()
        .map(|n| (n.name.clone(), view(&rt, cluster, &n.name)))
        .collect();
    let host_ids: Vec<String> = views
        .iter()
        .map(|(name, v)| {
            let status = v
                .cluster_status
                .as_ref()
                .unwrap_or_else(|| panic!("{name} has no system_views.cluster_status"));
            let local: Vec<_> = status.iter().filter(|m| m.local).collect();
            assert_eq!(local.len(), 1, "{name}: one local row expected: {status:?}");
            assert_eq!(local[0].peer, ip_of(cluster, name), "{name}'s local row");
            local[0]
                .host_id
                .clone()
                .unwrap_or_else(|| panic!("{name}: local row without host_id"))
        })
        .collect();
    assert_eq!(
        host_ids.iter().collect::<BTreeSet<_>>().len(),
        5,
        "host ids must differ: {host_ids:?}"
    );
    for (name, v) in &views {
        let listed: BTreeSet<IpAddr> = v.peers.iter().map(|p| p.peer).collect();
        let others: BTreeSet<IpAddr> = nodes
            .iter()
            .filter(|n| &n.name != name)
            .map(|n| IpAddr::V4(n.ip))
            .collect();
        assert_eq!(listed, others, "{name}'s system.peers");
        for (i, other) in nodes.iter().enumerate() {
            if &other.name == name {
                continue;
            }
            let p = v.peer(IpAddr::V4(other.ip)).expect("listed");
            assert_eq!(
                p.tokens.len(),
                16,
                "{name} sees {}'s tokens: {p:?}",
                other.name
            );
            assert_eq!(p.data_center.as_deref(), Some("dc1"), "{name}: {p:?}");
            assert_eq!(
                p.rack.as_deref(),
                Some(other.rack.as_str()),
                "{name}: {p:?}"
            );
            assert_eq!(p.host_id.as_ref(), Some(&host_ids[i]), "{name}: {p:?}");
            let m = v.member(IpAddr::V4(other.ip)).expect("in cluster_status");
            assert_eq!(m.code(), "UN", "{name} sees {}: {m:?}", other.name);
        }
    }
    let out = run(with_dir(&["status", "five"]), CLI_TIMEOUT);
    assert!(
        out.success(),
        "status of a converged cluster:\n{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.matches("UN UN UN UN UN").count(),
        5,
        "{}",
        out.stdout
    );

    // kill -9 node3: the four others see it down.
    let generation_before = generations_seen(&rt, cluster, "node3");
    let out = run(with_dir(&["kill", "five", "node3"]), CLI_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    assert_eq!(
        cluster.process_state("node3").ok(),
        Some(ProcessState::Dead)
    );
    let took = rt
        .block_on(cluster.wait_seen("node3", Seen::Down, DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("the four others saw node3 down {took:?} after kill -9");
    let out = run(with_dir(&["status", "five"]), CLI_TIMEOUT);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(3),
        "{}",
        out.describe()
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("node1 "))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("UN UN DN UN UN"),
        "node1's view after the kill: {row}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("node3 ") && l.contains("dead")),
        "{}",
        out.stdout
    );

    // Start node3 again: up everywhere, with a higher generation.
    let out = run(
        with_dir(&["start", "five", "node3", "--timeout", &up_secs]),
        UP_TIMEOUT + CLI_TIMEOUT,
    );
    assert!(out.success(), "start node3:\n{}", out.describe());
    rt.block_on(cluster.wait_seen("node3", Seen::Up, DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    let generation_after = generations_seen(&rt, cluster, "node3");
    for ((observer, before), (_, after)) in generation_before.iter().zip(&generation_after) {
        assert!(
            after > before,
            "{observer} sees node3's generation {after} after the restart, {before} before"
        );
    }

    // A graceful restart works too, and bumps the generation again.
    let out = run(
        with_dir(&["restart", "five", "node3", "--timeout", &up_secs]),
        UP_TIMEOUT + CLI_TIMEOUT,
    );
    assert!(out.success(), "restart node3:\n{}", out.describe());
    let generation_again = generations_seen(&rt, cluster, "node3");
    for ((observer, before), (_, after)) in generation_after.iter().zip(&generation_again) {
        assert!(
            after > before,
            "{observer}: generation {after} after restart, {before} before"
        );
    }

    let out = run(with_dir(&["stop", "five"]), UP_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    for n in &nodes {
        assert_eq!(
            cluster.process_state(&n.name).ok(),
            Some(ProcessState::Stopped),
            "{} after stop",
            n.name
        );
    }
    let out = run(with_dir(&["remove", "five"]), CLI_TIMEOUT);
    assert!(out.success(), "{}", out.describe());
    assert!(!dir.exists(), "{} still exists after remove", dir.display());
}

/// A `ringdb node` outside the cluster manager, killed on drop.
struct Intruder {
    child: Child,
}

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_node_with_a_foreign_certificate_never_joins() {
    let test = "a_node_with_a_foreign_certificate_never_joins";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3], &[]).expect("create cluster");
    let rt = runtime();
    rt.block_on(guard.start(UP_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));

    // Same cluster name, same seeds, an address next to the cluster's: only the CA differs.
    let intruder_ip = Ipv4Addr::from(u32::from(guard.node("node1").expect("node1").ip) + 5);
    let home = guard.tmp().join("intruder");
    let certs = home.join("certs");
    let data = home.join("data");
    for d in [&certs, &data] {
        std::fs::create_dir_all(d).expect("create intruder dirs");
    }
    let foreign_ca = guard.tmp().join("foreign-ca");
    std::fs::create_dir_all(&foreign_ca).expect("create foreign CA dir");
    ringdb_gossip::certs::create_ca(&foreign_ca, "a foreign CA").expect("foreign CA");
    ringdb_gossip::certs::issue(
        &foreign_ca,
        "intruder",
        &[IpAddr::V4(intruder_ip)],
        &["intruder".to_string()],
        &certs,
    )
    .expect("issue the intruder's certificate");
    let seeds: Vec<String> = guard
        .seeds()
        .iter()
        .map(|s| yaml_str(&s.to_string()))
        .collect();
    let path = |p: PathBuf| yaml_str(&p.to_string_lossy());
    let config = format!(
        "cluster_name: {}\nlisten_address: {ip}\nnative_transport_address: {ip}\n\
         storage_port: 7000\nnative_transport_port: 9042\nprometheus_port: 0\n\
         seeds: [{}]\ndata_dir: {}\ninternode_ca: {}\ninternode_cert: {}\ninternode_key: {}\n",
        yaml_str(&guard.name()),
        seeds.join(", "),
        path(data),
        path(certs.join("ca.crt")),
        path(certs.join("intruder.crt")),
        path(certs.join("intruder.key")),
        ip = yaml_str(&intruder_ip.to_string()),
    );
    let config_path = home.join("ringdb.yaml");
    std::fs::write(&config_path, config).expect("write intruder config");
    let log_path = home.join("node.log");
    let child = process::spawn_node(&bin, &config_path, &home, &log_path, "=== intruder ===")
        .expect("spawn the intruder");
    let _intruder = Intruder { child };
    let intruder_addr = std::net::SocketAddr::new(IpAddr::V4(intruder_ip), 9042);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // It serves CQL on its own…
    let deadline = Instant::now() + UP_TIMEOUT;
    while rt.block_on(probe::read_view(intruder_addr)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the intruder never served CQL; its log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // …but after ten seconds of gossip nobody knows it and it knows nobody.
    std::thread::sleep(Duration::from_secs(10));
    let stranger = IpAddr::V4(intruder_ip);
    for n in guard.nodes() {
        let v = view(&rt, &guard, &n.name);
        assert!(
            v.peer(stranger).is_none() && v.member(stranger).is_none(),
            "{} lists the intruder: {v:?}",
            n.name
        );
    }
    let v = rt
        .block_on(probe::read_view(intruder_addr))
        .expect("the intruder's view");
    assert!(
        v.peers.is_empty(),
        "the intruder lists peers: {:?}",
        v.peers
    );
    let members: Vec<IpAddr> = v.cluster_status.iter().flatten().map(|m| m.peer).collect();
    assert!(
        members.iter().all(|ip| *ip == stranger),
        "the intruder knows {members:?}"
    );
    rt.block_on(guard.wait_converged(DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("the cluster itself is still fine: {e}"));

    // Someone said why: the victims refuse the handshake, the intruder sees it refused.
    let mut logs = vec![("intruder".to_string(), log())];
    for n in guard.nodes() {
        logs.push((
            n.name.clone(),
            std::fs::read_to_string(&n.log_path).unwrap_or_default(),
        ));
    }
    let refusals: Vec<String> = logs
        .iter()
        .flat_map(|(who, text)| {
            text.lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    !l.starts_with("=====")
                        && l.contains("handshake")
                        && (l.contains("refused") || l.contains("failed"))
                })
                .map(move |l| format!("{who}: {l}"))
        })
        .collect();
    assert!(
        !refusals.is_empty(),
        "no log line mentions the refused TLS handshake; intruder log:\n{}",
        log()
    );
    eprintln!(
        "{} refusals logged, e.g.\n{}",
        refusals.len(),
        refusals
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_paused_node_is_marked_down_and_comes_back_when_resumed() {
    let test = "a_paused_node_is_marked_down_and_comes_back_when_resumed";
    let Some(bin) = ringdb_bin_or_skip(test) else {
        return;
    };
    let guard = TestCluster::create(test, &bin, &[3], &[]).expect("create cluster");
    let rt = runtime();
    rt.block_on(guard.start(UP_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));

    rt.block_on(guard.pause_node("node2"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        guard.process_state("node2").ok(),
        Some(ProcessState::Paused)
    );
    let took = rt
        .block_on(guard.wait_seen("node2", Seen::Down, DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("node2 seen down {took:?} after SIGSTOP");
    let status = rt.block_on(guard.status());
    let node2 = status
        .iter()
        .find(|s| s.node.name == "node2")
        .expect("node2 in status");
    assert_eq!(node2.process, ProcessState::Paused);
    assert!(node2.view.is_none(), "a paused node is not asked over CQL");

    rt.block_on(guard.resume_node("node2"))
        .unwrap_or_else(|e| panic!("{e}"));
    let took = rt
        .block_on(guard.wait_seen("node2", Seen::Up, DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("node2 seen up again {took:?} after SIGCONT");
    rt.block_on(guard.wait_converged(DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));

    // The nodes are children of this process: a killed one is a zombie until reaped, and must
    // still read as dead.
    rt.block_on(guard.kill_node("node3"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(guard.process_state("node3").ok(), Some(ProcessState::Dead));
    rt.block_on(guard.wait_seen("node3", Seen::Down, DETECT_TIMEOUT))
        .unwrap_or_else(|e| panic!("{e}"));
}

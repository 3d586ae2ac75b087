//! `ringdb cluster …`: the command-line face of the local cluster manager.
//!
//! ```text
//! ringdb cluster create NAME [-n 3 | -n 3:3] [--num-tokens N] [--racks R] [--base-ip IP]
//!                            [--dir DIR] [--set KEY=VALUE]… [--start [--timeout SECS]]
//! ringdb cluster start   NAME [NODE] [--timeout SECS]
//! ringdb cluster stop    NAME [NODE]
//! ringdb cluster restart NAME [NODE] [--timeout SECS]
//! ringdb cluster status  NAME
//! ringdb cluster kill    NAME NODE            (SIGKILL)
//! ringdb cluster pause   NAME NODE            (SIGSTOP)
//! ringdb cluster resume  NAME NODE            (SIGCONT)
//! ringdb cluster logs    NAME NODE [-n LINES] [--path]
//! ringdb cluster add     NAME NODE [--dc DC] [--rack RACK] [--no-start] [--timeout SECS]
//! ringdb cluster partition NAME GROUP / GROUP  (GROUP: nodes and datacenters, comma-separated)
//! ringdb cluster delay   NAME GROUP / GROUP --ms MS
//! ringdb cluster heal    NAME
//! ringdb cluster remove  NAME
//! ringdb cluster list
//! ```
//!
//! Every command but `list` takes `--dir DIR` for a cluster outside `$RINGDB_HOME/clusters`.
//! Progress goes to stderr, results (tables, logs) to stdout. The nodes run the binary of the
//! `ringdb` that started them (this one).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::probe::{self, Observed};
use super::{
    default_cluster_dir, list_clusters, parse_dcs, ringdb_home, Cluster, ClusterSpec, NodeStatus,
    ProcessState,
};

/// Exit status of `status` when not every node is up and seeing the others up.
const EXIT_NOT_ALL_UP: u8 = 3;

/// Which cluster a command acts on.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The cluster's name.
    pub name: String,
    /// The cluster's folder (default: $RINGDB_HOME/clusters/NAME, RINGDB_HOME defaulting to
    /// ~/.ringdb).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl Target {
    fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| default_cluster_dir(&self.name))
    }
}

/// `ringdb cluster create` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: Target,
    /// Nodes: N for one datacenter, N:M:… for several (dc1, dc2, …).
    #[arg(
        short = 'n',
        long = "nodes",
        default_value = "3",
        value_name = "N[:M…]"
    )]
    pub nodes: String,
    /// Vnode tokens per node.
    #[arg(long, default_value_t = 16)]
    pub num_tokens: u32,
    /// Racks per datacenter, assigned round-robin (rack1, rack2, …).
    #[arg(long, default_value_t = super::spec::DEFAULT_RACKS_PER_DC)]
    pub racks: usize,
    /// Address of node1; nodeK gets BASE+K-1 (a loopback address).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub base_ip: Ipv4Addr,
    /// Extra node configuration for every node (repeatable), e.g. --set gossip_interval_ms=100.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Start the cluster once created and wait until it is up.
    #[arg(long)]
    pub start: bool,
    /// Seconds --start may wait for the cluster to come up.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
}

/// `ringdb cluster …` subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// Create a cluster: certificates, configs and data dirs for N nodes on 127.0.0.1….
    Create(CreateArgs),
    /// Start every stopped node (or one) and wait until all running nodes see each other up.
    Start {
        #[command(flatten)]
        target: Target,
        /// Only this node.
        node: Option<String>,
        /// Seconds to wait for the cluster to come up.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Stop every node (or one) gracefully: SIGTERM, SIGKILL after 30 s.
    Stop {
        #[command(flatten)]
        target: Target,
        /// Only this node.
        node: Option<String>,
    },
    /// Stop and start again every node (or one), then wait until the cluster is up.
    Restart {
        #[command(flatten)]
        target: Target,
        /// Only this node.
        node: Option<String>,
        /// Seconds to wait for the cluster to come up.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Show each node: address, dc, rack, process, CQL, and how it sees the others.
    /// Exits 0 when every node runs and sees every node up (UN), 3 otherwise.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Kill a node with SIGKILL (no graceful shutdown).
    Kill {
        #[command(flatten)]
        target: Target,
        node: String,
    },
    /// Pause a node with SIGSTOP (it keeps its sockets but answers nothing).
    Pause {
        #[command(flatten)]
        target: Target,
        node: String,
    },
    /// Resume a paused node with SIGCONT.
    Resume {
        #[command(flatten)]
        target: Target,
        node: String,
    },
    /// Print a node's log (stdout and stderr of all its runs).
    Logs {
        #[command(flatten)]
        target: Target,
        node: String,
        /// Only the last LINES lines.
        #[arg(short = 'n', long = "tail", value_name = "LINES")]
        tail: Option<usize>,
        /// Print the log's path instead (for `tail -f`).
        #[arg(long)]
        path: bool,
    },
    /// Add a node; it joins through the seeds (started unless --no-start).
    Add {
        #[command(flatten)]
        target: Target,
        /// Its name: nodeK gets address BASE+K-1.
        node: String,
        /// Its datacenter (default: node1's).
        #[arg(long)]
        dc: Option<String>,
        /// Its rack (default: the next one round-robin in its datacenter).
        #[arg(long)]
        rack: Option<String>,
        /// Create it but do not start it.
        #[arg(long)]
        no_start: bool,
        /// Seconds to wait for the cluster to come up with the new node.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Decommission a running node: it streams its ranges to the nodes taking them over, leaves
    /// the ring and stops; it is then taken out of the cluster (its folder moves to DIR/gone).
    Decommission {
        #[command(flatten)]
        target: Target,
        node: String,
    },
    /// Remove a dead (killed or stopped) node from the ring: another node copies its ranges
    /// from the surviving replicas to their new owners; it is then taken out of the cluster.
    Removenode {
        #[command(flatten)]
        target: Target,
        node: String,
        /// The running node that runs the removal (default: the first one).
        #[arg(long)]
        via: Option<String>,
    },
    /// Cut the internode traffic between two groups of nodes, both ways (on top of earlier
    /// cuts), e.g. `partition NAME node1,node2 / node3` or `partition NAME dc1 / dc2`. Uses the
    /// packet filter (nftables) where it can, else the nodes' transport hook; says which.
    Partition {
        #[command(flatten)]
        target: Target,
        /// Two groups separated by `/`; a group is node and datacenter names, comma-separated.
        #[arg(required = true, num_args = 1.., value_name = "GROUP / GROUP")]
        groups: Vec<String>,
    },
    /// Make every internode message between two groups arrive MS later, each way (WAN
    /// emulation), e.g. `delay NAME dc1 / dc2 --ms 50`; `--ms 0` removes it.
    Delay {
        #[command(flatten)]
        target: Target,
        /// Two groups separated by `/`.
        #[arg(required = true, num_args = 1.., value_name = "GROUP / GROUP")]
        groups: Vec<String>,
        /// Milliseconds added each way.
        #[arg(long)]
        ms: u64,
    },
    /// Remove every partition and delay.
    Heal {
        #[command(flatten)]
        target: Target,
    },
    /// Kill every node and delete the cluster's folder.
    Remove {
        #[command(flatten)]
        target: Target,
    },
    /// List the clusters under $RINGDB_HOME/clusters.
    List,
}

/// Runs a `ringdb cluster` command.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ClusterCommand::Create(args) => create(args).await,
        ClusterCommand::Start {
            target,
            node,
            timeout,
        } => {
            let cluster = open(&target, true)?;
            let timeout = Duration::from_secs(timeout);
            match node {
                Some(node) => cluster.start_node(&node, timeout).await?,
                None => cluster.start(timeout).await?,
            }
            println!("cluster {} is up", cluster.name());
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Stop { target, node } => {
            let cluster = open(&target, false)?;
            match node {
                Some(node) => cluster.stop_node(&node).await?,
                None => cluster.stop().await?,
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Restart {
            target,
            node,
            timeout,
        } => {
            let cluster = open(&target, true)?;
            let timeout = Duration::from_secs(timeout);
            match node {
                Some(node) => cluster.restart_node(&node, timeout).await?,
                None => {
                    cluster.stop().await?;
                    cluster.start(timeout).await?;
                }
            }
            println!("cluster {} is up", cluster.name());
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Status { target } => {
            let cluster = open(&target, false)?;
            let statuses = cluster.status().await;
            print!("{}", render_status(&cluster, &statuses));
            Ok(if all_up(&statuses) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_ALL_UP)
            })
        }
        ClusterCommand::Kill { target, node } => {
            open(&target, false)?.kill_node(&node).await?;
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Pause { target, node } => {
            open(&target, false)?.pause_node(&node).await?;
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Resume { target, node } => {
            open(&target, false)?.resume_node(&node).await?;
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Logs {
            target,
            node,
            tail,
            path,
        } => {
            let cluster = open(&target, false)?;
            let handle = cluster.node(&node)?;
            if path {
                println!("{}", handle.log_path.display());
            } else if let Some(lines) = tail {
                println!("{}", cluster.log_tail(&node, lines)?);
            } else {
                let mut f = std::fs::File::open(&handle.log_path)
                    .with_context(|| format!("opening {}", handle.log_path.display()))?;
                std::io::copy(&mut f, &mut std::io::stdout().lock()).context("printing the log")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Add {
            target,
            node,
            dc,
            rack,
            no_start,
            timeout,
        } => {
            let cluster = open(&target, true)?;
            let handle = cluster.add_node(&node, dc.as_deref(), rack.as_deref())?;
            if !no_start {
                cluster
                    .start_node(&node, Duration::from_secs(timeout))
                    .await?;
                println!(
                    "{} joined cluster {} on {} ({}/{})",
                    handle.name,
                    cluster.name(),
                    handle.ip,
                    handle.dc,
                    handle.rack
                );
            } else {
                println!(
                    "{} added to cluster {} on {} ({}/{}), not started",
                    handle.name,
                    cluster.name(),
                    handle.ip,
                    handle.dc,
                    handle.rack
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Decommission { target, node } => {
            let cluster = open(&target, false)?;
            let report = cluster.decommission_node(&node).await?;
            print_change(&cluster, &node, "left", &report);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Removenode { target, node, via } => {
            let cluster = open(&target, false)?;
            let report = cluster.removenode(&node, via.as_deref()).await?;
            print_change(&cluster, &node, "was removed from", &report);
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Partition { target, groups } => {
            let cluster = open(&target, false)?;
            let (a, b) = two_groups(&cluster, &groups)?;
            let mechanism = cluster.partition(&a, &b)?;
            println!("partitioned {} / {}: {mechanism}", a.join(","), b.join(","));
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Delay { target, groups, ms } => {
            let cluster = open(&target, false)?;
            let (a, b) = two_groups(&cluster, &groups)?;
            cluster.delay(&a, &b, ms)?;
            println!(
                "delayed {} / {}: +{ms} ms each way (transport hook)",
                a.join(","),
                b.join(",")
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Heal { target } => {
            let cluster = open(&target, false)?;
            cluster.heal()?;
            println!(
                "cluster {} healed: no partition or delay left",
                cluster.name()
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Remove { target } => {
            let cluster = open(&target, false)?;
            let name = cluster.name();
            let dir = cluster.dir().to_path_buf();
            cluster.remove()?;
            println!("removed cluster {name} ({})", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::List => {
            let home = ringdb_home();
            let clusters = list_clusters(&home)?;
            if clusters.is_empty() {
                println!("no clusters in {}", home.join("clusters").display());
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![vec![
                "NAME".to_string(),
                "NODES".to_string(),
                "ALIVE".to_string(),
                "DIR".to_string(),
            ]];
            for c in clusters {
                rows.push(vec![
                    c.name,
                    c.nodes.to_string(),
                    match c.error {
                        Some(e) => format!("? ({e})"),
                        None => c.alive.to_string(),
                    },
                    c.dir.display().to_string(),
                ]);
            }
            print!("{}", table(&rows));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `A / B` (as one or several arguments) as two groups of node names.
fn two_groups(cluster: &Cluster, args: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let joined = args.join(" ");
    let parts: Vec<&str> = joined.split('/').map(str::trim).collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        bail!("expected two groups separated by `/` (e.g. `node1,node2 / node3` or `dc1 / dc2`), got `{joined}`");
    }
    let group = |p: &str| -> anyhow::Result<Vec<String>> {
        let items: Vec<String> = p
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        Ok(cluster.resolve_group(&items.join(","))?)
    };
    Ok((group(parts[0])?, group(parts[1])?))
}

/// One line on what a decommission or removenode did.
fn print_change(
    cluster: &Cluster,
    node: &str,
    what: &str,
    report: &crate::decommission::ChangeReport,
) {
    println!(
        "{node} {what} cluster {}: {} ranges streamed ({} partitions, {}) in {:.1}s",
        cluster.name(),
        report.stream.ranges,
        report.stream.partitions,
        crate::repair::cli::human_bytes(report.stream.bytes),
        report.seconds
    );
}

fn progress() -> super::Progress {
    Arc::new(|message: &str| eprintln!("ringdb cluster: {message}"))
}

/// Opens the cluster a command names; `runs_nodes` makes this binary the one that runs them.
fn open(target: &Target, runs_nodes: bool) -> anyhow::Result<Cluster> {
    let dir = target.dir();
    let cluster = Cluster::open(&dir)?.with_progress(progress());
    if cluster.name() != target.name {
        bail!(
            "{} holds cluster {}, not {}",
            dir.display(),
            cluster.name(),
            target.name
        );
    }
    if runs_nodes {
        let exe = std::env::current_exe().context("finding the ringdb binary")?;
        cluster.set_binary(&exe)?;
    }
    Ok(cluster)
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let dcs = parse_dcs(&args.nodes)?;
    let binary = std::env::current_exe().context("finding the ringdb binary")?;
    let mut spec = ClusterSpec::new(&args.target.name, args.target.dir(), dcs, binary);
    spec.num_tokens = args.num_tokens;
    spec.racks_per_dc = args.racks;
    spec.base_ip = args.base_ip;
    for set in &args.sets {
        let Some((key, value)) = set.split_once('=') else {
            bail!("--set takes KEY=VALUE, got `{set}`");
        };
        spec.extra_config
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    let cluster = Cluster::create(spec)?.with_progress(progress());
    let nodes = cluster.nodes();
    println!(
        "created cluster {} in {}: {} node(s) on {}…{}",
        cluster.name(),
        cluster.dir().display(),
        nodes.len(),
        nodes.first().map(|n| n.ip.to_string()).unwrap_or_default(),
        nodes.last().map(|n| n.ip.to_string()).unwrap_or_default(),
    );
    if args.start {
        cluster.start(Duration::from_secs(args.timeout)).await?;
        println!("cluster {} is up", cluster.name());
    }
    Ok(ExitCode::SUCCESS)
}

/// True when every node runs and the running nodes have converged.
fn all_up(statuses: &[NodeStatus]) -> bool {
    let observed: Vec<Observed> = statuses
        .iter()
        .filter_map(|s| {
            Some(Observed {
                name: s.node.name.clone(),
                ip: std::net::IpAddr::V4(s.node.ip),
                view: s.view.clone()?,
            })
        })
        .collect();
    statuses.iter().all(|s| s.process == ProcessState::Running)
        && observed.len() == statuses.len()
        && probe::check_converged(&observed).is_empty()
}

/// The status table.
fn render_status(cluster: &Cluster, statuses: &[NodeStatus]) -> String {
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| s.to_string()).collect();
    let mut out = format!(
        "cluster {} ({}), {} node(s), seeds {}\n",
        cluster.name(),
        cluster.dir().display(),
        statuses.len(),
        seeds.join(", ")
    );
    let names: Vec<&str> = statuses.iter().map(|s| s.node.name.as_str()).collect();
    let mut rows = vec![vec![
        "NODE".to_string(),
        "ADDRESS".to_string(),
        "DC".to_string(),
        "RACK".to_string(),
        "PROCESS".to_string(),
        "CQL".to_string(),
        format!("VIEW ({})", names.join(" ")),
    ]];
    let mut notes = Vec::new();
    for s in statuses {
        let process = match s.pid {
            Some(pid) => format!("{} ({pid})", s.process),
            None => s.process.to_string(),
        };
        let (cql, view) = match &s.view {
            None => ("-".to_string(), String::new()),
            Some(Err(e)) => {
                notes.push(format!("{}: CQL: {e}", s.node.name));
                ("no".to_string(), String::new())
            }
            Some(Ok(v)) => {
                let view = match &v.cluster_status {
                    Some(_) => statuses
                        .iter()
                        .map(|other| {
                            v.member(std::net::IpAddr::V4(other.node.ip))
                                .map_or("--".to_string(), |m| m.code())
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    None => format!("(no cluster_status; system.peers lists {})", v.peers.len()),
                };
                let strangers: Vec<String> = v
                    .cluster_status
                    .iter()
                    .flatten()
                    .filter(|m| {
                        !statuses
                            .iter()
                            .any(|o| std::net::IpAddr::V4(o.node.ip) == m.peer)
                    })
                    .map(|m| format!("{} ({})", m.peer, m.code()))
                    .collect();
                if !strangers.is_empty() {
                    notes.push(format!(
                        "{} also knows nodes outside this cluster: {}",
                        s.node.name,
                        strangers.join(", ")
                    ));
                }
                ("yes".to_string(), view)
            }
        };
        rows.push(vec![
            s.node.name.clone(),
            s.node.ip.to_string(),
            s.node.dc.clone(),
            s.node.rack.clone(),
            process,
            cql,
            view,
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(
        "VIEW: how each running node's system_views.cluster_status sees every node: \
         U/D up/down; N normal, J joining, L leaving, X left, B boot, S shutdown; -- unknown\n",
    );
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    match cluster.faults() {
        Ok(faults) => {
            for line in faults.describe() {
                out.push_str(&format!("FAULT: {line}\n"));
            }
        }
        Err(e) => out.push_str(&format!("FAULT: cannot read the fault state: {e}\n")),
    }
    out
}

/// Left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClusterCommand,
    }

    fn parse(args: &[&str]) -> ClusterCommand {
        let mut all = vec!["cluster"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn the_synopsis_parses() {
        match parse(&[
            "create",
            "c1",
            "-n",
            "3:3",
            "--num-tokens",
            "8",
            "--base-ip",
            "127.0.5.1",
            "--dir",
            "/tmp/c1",
            "--set",
            "gossip_interval_ms=100",
            "--start",
            "--timeout",
            "90",
        ]) {
            ClusterCommand::Create(a) => {
                assert_eq!(a.target.name, "c1");
                assert_eq!(a.nodes, "3:3");
                assert_eq!(a.num_tokens, 8);
                assert_eq!(a.base_ip, Ipv4Addr::new(127, 0, 5, 1));
                assert_eq!(a.target.dir, Some(PathBuf::from("/tmp/c1")));
                assert_eq!(a.sets, ["gossip_interval_ms=100"]);
                assert!(a.start);
                assert_eq!(a.timeout, 90);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["kill", "c1", "node3", "--dir", "/tmp/c1"]) {
            ClusterCommand::Kill { target, node } => {
                assert_eq!((target.name.as_str(), node.as_str()), ("c1", "node3"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["start", "c1", "node2", "--timeout", "5"]) {
            ClusterCommand::Start { node, timeout, .. } => {
                assert_eq!(node.as_deref(), Some("node2"));
                assert_eq!(timeout, 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["add", "c1", "node4", "--dc", "dc2", "--no-start"]),
            ClusterCommand::Add { no_start: true, .. }
        ));
        assert!(matches!(parse(&["list"]), ClusterCommand::List));
        assert!(matches!(
            parse(&["logs", "c1", "node1", "-n", "20"]),
            ClusterCommand::Logs { tail: Some(20), .. }
        ));
        for cmd in ["stop", "status", "remove", "restart"] {
            parse(&[cmd, "c1"]);
        }
        for cmd in ["pause", "resume", "decommission"] {
            parse(&[cmd, "c1", "node1"]);
        }
        match parse(&["removenode", "c1", "node4", "--via", "node2"]) {
            ClusterCommand::Removenode { node, via, .. } => {
                assert_eq!(node, "node4");
                assert_eq!(via.as_deref(), Some("node2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tables_align() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string(), "C".to_string()],
            vec!["long".to_string(), "x".to_string(), "".to_string()],
        ];
        assert_eq!(table(&rows), "A     BB  C\nlong  x\n");
    }
}

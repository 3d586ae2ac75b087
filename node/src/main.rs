//! `ringdb`: one binary for the node, the shell and the tools around them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use ringdb_node::config::Config;
use ringdb_node::server;

#[derive(Parser)]
#[command(
    name = "ringdb",
    version,
    about = "A peer-to-peer, masterless database that speaks CQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node in the foreground until SIGINT or SIGTERM (SIGHUP reloads its certificates).
    Node {
        /// YAML configuration file (see deploy/ringdb.yaml).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Override a configuration key: --set key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Check the configuration, print it as YAML and exit.
        #[arg(long)]
        check: bool,
    },
    /// Open the CQL shell (speaks the native protocol v4: works against Cassandra too).
    Shell(ShellCli),
    /// Start a throw-away local cluster (3 nodes; 3 + 3 with --dcs 2) with a sample keyspace and
    /// the shell attached to node1; leaving the shell stops and removes the cluster.
    Demo {
        /// Nodes per datacenter.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Datacenters (1 or 2).
        #[arg(long, default_value_t = 1)]
        dcs: usize,
        /// node1's address; nodeK gets the K-th address from there (loopback).
        #[arg(long, default_value = "127.0.0.1")]
        base_ip: std::net::Ipv4Addr,
        /// Leave the cluster running (and its folder) when the shell exits.
        #[arg(long)]
        keep: bool,
    },
    /// Run a local multi-node cluster: create, start, stop, kill, pause, status (like ccm).
    #[command(subcommand)]
    Cluster(ringdb_node::cluster::cli::ClusterCommand),
    /// Jepsen-style test of a local cluster: concurrent clients write and read while faults are
    /// injected (kill, pause, partition, restart); then every acknowledged write is checked at
    /// ALL. Exits 0 when nothing was lost or anomalous, 1 when something was, 2 on error.
    Chaos(ringdb_node::chaos::cli::ChaosArgs),
    /// Make the certificates of internode mutual TLS: a cluster CA, then one certificate per node.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Show the cluster as one node sees it (like `nodetool status [keyspace]`).
    Status {
        /// Show effective ownership for this keyspace: each node's share of the ring it holds
        /// replicas of. Without one: effective ownership when every non-system keyspace has the
        /// same replication, else raw token ownership.
        keyspace: Option<String>,
        /// Node to ask, HOST[:PORT] of its CQL listener.
        #[arg(long, default_value = "127.0.0.1:9042")]
        host: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Seconds allowed to connect and read.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        #[command(flatten)]
        login: ringdb_node::login::LoginArgs,
    },
    /// Repair a node's ranges: compare replicas by Merkle trees, stream what differs (like
    /// `nodetool repair`). Exits non-zero if any range could not be repaired.
    Repair(ringdb_node::repair::cli::RepairArgs),
    /// Make a node leave the ring: it streams its ranges to their new owners, hands over its
    /// hints, turns LEFT and stops (like `nodetool decommission`).
    Decommission {
        /// The node to decommission: its admin API as HOST or HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7199")]
        host: String,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a node gracefully from outside (like `nodetool drain` then a stop): it announces
    /// SHUTDOWN so peers mark it down and hint its writes, stops serving CQL, finishes requests
    /// in flight, flushes storage and exits. For Kubernetes `preStop` hooks and scripts.
    Drain {
        /// The node: its admin API as HOST or HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7199")]
        host: String,
    },
    /// Make a running node read its certificate files again (internode, and client TLS when on)
    /// and use them for new handshakes, without a restart; if any file is invalid nothing
    /// changes and the error names it. SIGHUP to the node process does the same.
    ReloadCerts {
        /// The node: its admin API as HOST or HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7199")]
        host: String,
        /// Print the node's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load generator (like cassandra-stress / latte): prepared writes and reads, token-aware,
    /// closed loop or at a fixed --rate, with HDR latency percentiles, --json and --plot; and
    /// the null server (--null-server, --compare-null) every figure is compared with.
    Bench(Box<ringdb_node::bench::BenchArgs>),
    /// Remove a dead node from the ring: a live node copies the dead one's ranges from the
    /// surviving replicas to their new owners, then takes it off the ring (like `nodetool
    /// removenode`). Do not restart the removed node on its old data directory.
    Removenode {
        /// The live node that runs the removal: its admin API as HOST or HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7199")]
        host: String,
        /// The dead node's host id (`ringdb status` shows it).
        host_id: String,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a cluster CA: DIR/ca.crt and DIR/ca.key (keep the key safe; never overwritten).
    CreateCa {
        /// Directory to write the CA into.
        #[arg(long)]
        dir: PathBuf,
        /// Common name of the CA certificate.
        #[arg(long, default_value = "ringdb cluster CA")]
        name: String,
    },
    /// Issue a node certificate signed by the CA: OUT/NAME.crt, OUT/NAME.key and OUT/ca.crt.
    Issue {
        /// Directory of the CA (made by `create-ca`).
        #[arg(long)]
        ca: PathBuf,
        /// Node name (file names; also a DNS name in the certificate when it is a valid one).
        #[arg(long)]
        name: String,
        /// IP address of the node (repeatable).
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// DNS name of the node (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Directory to write the certificate, its key and a copy of the CA certificate into.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `ringdb shell` arguments, cqlsh-style.
#[derive(clap::Args)]
struct ShellCli {
    /// Server to connect to, HOST[:PORT] (default 127.0.0.1:9042).
    target: Option<String>,
    /// Port, when not given in the target.
    port: Option<u16>,
    /// Keyspace to use after connecting.
    #[arg(short = 'k', long)]
    keyspace: Option<String>,
    /// Run these statements and exit (non-zero exit status if one fails).
    #[arg(short = 'e', long = "execute")]
    execute: Option<String>,
    /// Run the statements in this file and exit (non-zero exit status if one fails).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// User name, for servers with authentication.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password, for servers with authentication.
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Consistency level to start with (default ONE).
    #[arg(long)]
    consistency: Option<String>,
    /// Seconds allowed for each request.
    #[arg(long, value_name = "SECONDS")]
    request_timeout: Option<u64>,
}

impl ShellCli {
    fn into_args(self) -> anyhow::Result<ringdb_cql::shell::ShellArgs> {
        let mut args = ringdb_cql::shell::ShellArgs::default();
        if let Some(port) = self.port {
            args.port = port;
        }
        if let Some(target) = &self.target {
            args.set_target(target).map_err(|e| anyhow::anyhow!(e))?;
        }
        args.keyspace = self.keyspace;
        args.execute = self.execute;
        args.file = self.file;
        args.username = self.username;
        args.password = self.password;
        args.consistency = self.consistency;
        if let Some(secs) = self.request_timeout {
            args.request_timeout = std::time::Duration::from_secs(secs.max(1));
        }
        Ok(args)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Node {
            config,
            sets,
            check,
        } => exit(run_node(config, sets, check)),
        Command::Shell(cli) => {
            let args = match cli.into_args() {
                Ok(a) => a,
                Err(e) => return exit(Err(e)),
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => return exit(Err(e)),
            };
            let status = runtime.block_on(ringdb_cql::shell::run(args));
            ExitCode::from(status.clamp(0, 255) as u8)
        }
        Command::Demo {
            nodes,
            dcs,
            base_ip,
            keep,
        } => exit(run_demo(nodes, dcs, base_ip, keep)),
        Command::Cluster(cmd) => {
            match runtime().and_then(|rt| rt.block_on(ringdb_node::cluster::cli::run(cmd))) {
                Ok(code) => code,
                Err(e) => exit(Err(e)),
            }
        }
        Command::Chaos(args) => {
            init_logging("warn");
            match runtime().and_then(|rt| rt.block_on(ringdb_node::chaos::cli::run(args))) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("ringdb: error: {e:#}");
                    ExitCode::from(ringdb_node::chaos::report::EXIT_ERROR)
                }
            }
        }
        Command::Certs(cmd) => exit(run_certs(cmd)),
        Command::Status {
            keyspace,
            host,
            json,
            timeout,
            login,
        } => exit(run_status(
            &host,
            keyspace.as_deref(),
            json,
            timeout,
            &login,
        )),
        Command::Decommission { host, json } => {
            exit(runtime().and_then(|rt| rt.block_on(ringdb_node::decommission::cli(&host, json))))
        }
        Command::ReloadCerts { host, json } => {
            exit(runtime().and_then(|rt| rt.block_on(ringdb_node::cert_reload::cli(&host, json))))
        }
        Command::Drain { host } => {
            exit(runtime().and_then(|rt| rt.block_on(ringdb_node::decommission::drain_cli(&host))))
        }
        Command::Removenode {
            host,
            host_id,
            json,
        } => exit(
            runtime()
                .and_then(|rt| rt.block_on(ringdb_node::removenode::cli(&host, &host_id, json))),
        ),
        Command::Bench(args) => {
            init_logging("warn");
            exit(runtime().and_then(|rt| rt.block_on(ringdb_node::bench::run(*args))))
        }
        Command::Repair(args) => {
            match runtime().and_then(|rt| rt.block_on(ringdb_node::repair::cli::run(args))) {
                Ok(code) => code,
                Err(e) => exit(Err(e)),
            }
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringdb: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ringdb")
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn run_node(config: Option<PathBuf>, sets: Vec<String>, check: bool) -> anyhow::Result<()> {
    let loaded = Config::load(config.as_deref(), std::env::vars(), &sets)?;
    if check {
        let mut shown = loaded.config.clone();
        if shown.auth_superuser_password.is_some() {
            shown.auth_superuser_password = Some(ringdb_node::config::Secret("<hidden>".into()));
        }
        print!("{}", serde_yaml::to_string(&shown)?);
        for w in &loaded.warnings {
            eprintln!("warning: {w}");
        }
        return Ok(());
    }
    init_logging(&loaded.config.log_level);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = runtime()?;
    runtime.block_on(async move {
        let hangups = ringdb_node::cert_reload::Hangups::catch();
        let node = server::start(
            loaded.config,
            server::StartOptions {
                install_metrics: true,
            },
        )
        .await?;
        let (stop_hangups, hangups_stopped) = tokio::sync::watch::channel(false);
        let reloads = tokio::spawn(ringdb_node::cert_reload::reload_on_sighup(
            node.cert_reloader(),
            hangups,
            hangups_stopped,
        ));
        let failure = tokio::select! {
            () = server::wait_for_signal() => {
                tracing::info!("signal received, shutting down");
                None
            }
            () = node.exit_requested() => {
                tracing::info!("asked to stop (drain or decommission): shutting down");
                None
            }
            reason = node.storage_failed() => {
                tracing::error!("shutting down after a storage failure: {reason}");
                Some(reason)
            }
        };
        let _ = stop_hangups.send(true);
        let _ = reloads.await;
        node.shutdown().await;
        match failure {
            // A non-zero status: supervisors see the failure (and may restart the node, which
            // recovers from the storage log or stops again).
            Some(reason) => anyhow::bail!("the node stopped after a storage failure: {reason}"),
            None => Ok(()),
        }
    })
}

fn run_certs(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::CreateCa { dir, name } => {
            let files = ringdb_gossip::certs::create_ca(&dir, &name)?;
            println!("CA certificate: {}", files.cert.display());
            println!("CA private key: {} (keep it secret)", files.key.display());
        }
        CertsCommand::Issue {
            ca,
            name,
            ips,
            dns,
            out,
        } => {
            let files = ringdb_gossip::certs::issue(&ca, &name, &ips, &dns, &out)?;
            println!("node certificate: {}", files.cert.display());
            println!("node private key: {}", files.key.display());
            println!("CA certificate:   {}", files.ca.display());
            println!(
                "configure: internode_ca: {}  internode_cert: {}  internode_key: {}",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            );
        }
    }
    Ok(())
}

fn run_status(
    host: &str,
    keyspace: Option<&str>,
    json: bool,
    timeout: u64,
    login: &ringdb_node::login::LoginArgs,
) -> anyhow::Result<()> {
    let credentials = login.credentials()?;
    let runtime = runtime()?;
    let report = runtime.block_on(ringdb_node::status::fetch(
        host,
        keyspace,
        std::time::Duration::from_secs(timeout.max(1)),
        credentials,
    ))?;
    if json {
        println!("{}", ringdb_node::status::render_json(&report)?);
    } else {
        print!("{}", ringdb_node::status::render_table(&report));
    }
    Ok(())
}

fn run_demo(
    nodes: usize,
    dcs: usize,
    base_ip: std::net::Ipv4Addr,
    keep: bool,
) -> anyhow::Result<()> {
    init_logging("warn");
    let binary = std::env::current_exe().context("finding the ringdb binary")?;
    let status = runtime()?.block_on(ringdb_node::demo::run(ringdb_node::demo::DemoOptions {
        nodes,
        dcs,
        base_ip,
        keep,
        binary,
    }))?;
    if status != 0 {
        anyhow::bail!("the shell exited with status {status}");
    }
    Ok(())
}

//! `ringdb demo`: a throw-away local cluster with the shell attached, the README's first command.
//!
//! It creates a cluster with the local cluster manager ([`crate::cluster`]) in a temporary
//! folder — three nodes by default, three per datacenter with `--dcs 2` — starts it and waits
//! until every node sees every other up, creates a sample keyspace (`NetworkTopologyStrategy`,
//! three replicas per datacenter) with a table and a few rows, prints how to kill a node from
//! another terminal, and opens the shell on node1. Leaving the shell stops the cluster and
//! removes its folder, unless `--keep`, which leaves it running and says how to remove it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringdb_cql::client::{Client, ClientOptions, QueryOptions, NO_VALUES};
use ringdb_cql::message::Consistency;

use crate::cluster::{Cluster, ClusterSpec, Progress};

/// How long the demo waits for its cluster to come up.
pub const UP_TIMEOUT: Duration = Duration::from_secs(120);

/// What `ringdb demo` was asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Nodes per datacenter.
    pub nodes: usize,
    /// Datacenters.
    pub dcs: usize,
    /// node1's address (nodeK gets the K-th one from there).
    pub base_ip: Ipv4Addr,
    /// Leave the cluster running, and its folder, when the shell exits.
    pub keep: bool,
    /// The `ringdb` binary the nodes run.
    pub binary: PathBuf,
}

/// The sample schema and rows, run through node1 once the cluster is up.
fn sample(dcs: usize, nodes: usize) -> Vec<String> {
    let rf = nodes.min(3);
    let replication: Vec<String> = (1..=dcs).map(|i| format!("'dc{i}': {rf}")).collect();
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS demo WITH replication = \
             {{'class': 'NetworkTopologyStrategy', {}}}",
            replication.join(", ")
        ),
        "CREATE TABLE IF NOT EXISTS demo.users (id int PRIMARY KEY, name text, city text)".into(),
        "INSERT INTO demo.users (id, name, city) VALUES (1, 'Ada', 'London')".into(),
        "INSERT INTO demo.users (id, name, city) VALUES (2, 'Grace', 'Arlington')".into(),
        "INSERT INTO demo.users (id, name, city) VALUES (3, 'Edsger', 'Austin')".into(),
    ]
}

/// Runs the demo; returns the shell's exit status.
pub async fn run(options: DemoOptions) -> anyhow::Result<i32> {
    anyhow::ensure!(
        (1..=2).contains(&options.dcs) && (1..=9).contains(&options.nodes),
        "--dcs takes 1 or 2 and --nodes 1 to 9"
    );
    let dir = std::env::temp_dir().join(format!("ringdb-demo-{}", std::process::id()));
    let mut spec = ClusterSpec::new(
        "demo",
        dir.clone(),
        vec![options.nodes; options.dcs],
        options.binary.clone(),
    );
    spec.base_ip = options.base_ip;
    let progress: Progress = Arc::new(|m: &str| eprintln!("ringdb demo: {m}"));
    let cluster = Cluster::create(spec)
        .context("creating the demo cluster")?
        .with_progress(progress);
    let guard = Cleanup {
        cluster: Some(cluster),
        keep: options.keep,
        dir: dir.clone(),
    };
    let cluster = guard.cluster.as_ref().expect("set above");
    let total = options.nodes * options.dcs;
    println!(
        "ringdb demo: starting {total} nodes ({} per datacenter, {} datacenter(s)) from {}; \
         cluster folder {}",
        options.nodes,
        options.dcs,
        options.base_ip,
        dir.display()
    );
    // Ctrl-C while the cluster starts ends the demo here, so that the cleanup still runs (the
    // shell, later, handles Ctrl-C itself).
    tokio::select! {
        started = cluster.start(UP_TIMEOUT) => started.with_context(|| {
            format!(
                "the demo cluster did not come up (another ringdb on {}? try --base-ip 127.0.1.1)",
                options.base_ip
            )
        })?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted while the cluster started"),
    }
    let node1 = cluster.node("node1")?;
    let client = Client::connect(node1.cql_addr, ClientOptions::default())
        .await
        .with_context(|| format!("connecting to node1 at {}", node1.cql_addr))?;
    let quorum = QueryOptions {
        consistency: Consistency::LocalQuorum,
        ..QueryOptions::default()
    };
    for statement in sample(options.dcs, options.nodes) {
        // A replica may learn of the new table a moment after node1 answered the DDL.
        query_retrying(&client, &statement, &quorum).await?;
    }
    let dir_arg = dir.display();
    println!(
        "ringdb demo: all {total} nodes are up (UN); keyspace `demo` (NetworkTopologyStrategy) \
         holds table demo.users with 3 rows.\n\
         \n  In another terminal, see a node go down and the cluster keep serving:\n\
         \n    ringdb cluster status demo --dir {dir_arg}\
         \n    ringdb cluster kill demo node3 --dir {dir_arg}\
         \n    ringdb cluster start demo node3 --dir {dir_arg}\
         \n    ringdb status --host {}\n\
         \n  Try: SELECT * FROM demo.users;\
         \n  Leave the shell (EXIT or Ctrl-D) to {}.\n",
        node1.ip,
        if options.keep {
            "leave the cluster running"
        } else {
            "stop the cluster and remove it"
        }
    );
    drop(client);
    let args = ringdb_cql::shell::ShellArgs::for_address(node1.cql_addr);
    let status = ringdb_cql::shell::run(args).await;
    drop(guard);
    Ok(status)
}

/// Stops and removes the demo cluster when the demo ends, however it ends (unless `keep`).
struct Cleanup {
    cluster: Option<Cluster>,
    keep: bool,
    dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Some(cluster) = self.cluster.take() else {
            return;
        };
        if self.keep {
            println!(
                "ringdb demo: the cluster keeps running in {dir}; \
                 `ringdb cluster remove demo --dir {dir}` stops and deletes it",
                dir = self.dir.display()
            );
            return;
        }
        match cluster.remove() {
            Ok(()) => println!("ringdb demo: cluster stopped and removed"),
            Err(e) => eprintln!("ringdb demo: could not remove {}: {e}", self.dir.display()),
        }
    }
}

/// Runs `statement`, retrying (20 times, 250 ms apart) while it fails: right after a DDL, a
/// replica may not know the new keyspace or table yet.
pub(crate) async fn query_retrying(
    client: &Client,
    statement: &str,
    options: &QueryOptions,
) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match client.query(statement, NO_VALUES, options).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 20 => {
                tracing::debug!(error = %e, %statement, "retrying");
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("running {statement}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_keyspace_replicates_in_every_datacenter() {
        let one = sample(1, 3);
        assert!(
            one[0].contains("'dc1': 3") && !one[0].contains("dc2"),
            "{}",
            one[0]
        );
        let two = sample(2, 3);
        assert!(two[0].contains("'dc1': 3, 'dc2': 3"), "{}", two[0]);
        assert!(sample(1, 1)[0].contains("'dc1': 1"));
    }
}

//! Kill-to-down time on a real cluster: five `ringdb node` processes on loopback addresses, made
//! by `ringdb_node::cluster`. Each round SIGKILLs one node, measures the time until every other
//! node's `system_views.cluster_status` shows it down (polled every 50 ms, so figures are exact to
//! about 50 ms plus one CQL round trip), then starts it again and measures the time until all see
//! it up again. Victims rotate over the non-seed nodes.
//!
//! ```text
//! cargo bench -p ringdb-tests --bench membership                 # 5 nodes, 5 rounds
//! cargo bench -p ringdb-tests --bench membership -- --rounds 10 --nodes 5 --set gossip_interval_ms=100
//! ```
//!
//! Needs the release binary (`cargo build --release -p ringdb-node`, or `RINGDB_BIN`); prints
//! `SKIPPED` without it. Prints the machine it ran on.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringdb_node::cluster::Seen;
use ringdb_tests::{ringdb_bin_or_skip, TestCluster};

const UP_TIMEOUT: Duration = Duration::from_secs(180);
const DETECT_TIMEOUT: Duration = Duration::from_secs(60);

struct Options {
    nodes: usize,
    rounds: usize,
    sets: Vec<(String, String)>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        nodes: 5,
        rounds: 5,
        sets: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nodes" => o.nodes = args.next().context("--nodes N")?.parse()?,
            "--rounds" => o.rounds = args.next().context("--rounds N")?.parse()?,
            "--set" => {
                let kv = args.next().context("--set KEY=VALUE")?;
                let (k, v) = kv.split_once('=').context("--set KEY=VALUE")?;
                o.sets.push((k.to_string(), v.to_string()));
            }
            // `cargo bench` passes --bench; libtest-style filters are ignored.
            _ => {}
        }
    }
    if !(2..=16).contains(&o.nodes) || o.rounds == 0 {
        bail!("--nodes must be in 2..=16 and --rounds at least 1");
    }
    Ok(o)
}

/// The median of sorted durations (the mean of the middle two for an even count).
fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let Some(bin) = ringdb_bin_or_skip("membership bench") else {
        return Ok(());
    };
    let o = options()?;
    let sets: Vec<(&str, &str)> = o
        .sets
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let guard = TestCluster::create("membership-bench", &bin, &[o.nodes], &sets)?;
    let result = measure(&guard, &o);
    if result.is_err() {
        eprintln!("{}", guard.log_tails(40));
    }
    result
}

fn measure(guard: &TestCluster, o: &Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(guard.start(UP_TIMEOUT))?;
    println!(
        "membership bench: {} nodes up in {}; machine: {}; config overrides: {:?}",
        o.nodes,
        ms(started.elapsed()),
        ringdb_tests::machine(),
        o.sets
    );
    let victims: Vec<String> = guard
        .nodes()
        .into_iter()
        .filter(|n| !n.seed)
        .map(|n| n.name)
        .collect();
    let mut downs = Vec::new();
    let mut ups = Vec::new();
    for round in 0..o.rounds {
        let victim = &victims[round % victims.len()];
        let t0 = Instant::now();
        rt.block_on(guard.kill_node(victim))?;
        rt.block_on(guard.wait_seen(victim, Seen::Down, DETECT_TIMEOUT))?;
        let down = t0.elapsed();
        let t1 = Instant::now();
        rt.block_on(guard.start_node(victim, UP_TIMEOUT))?;
        let up = t1.elapsed();
        println!(
            "round {}: kill -9 {victim} -> all {} others see it down in {}; restart -> converged in {}",
            round + 1,
            o.nodes - 1,
            ms(down),
            ms(up)
        );
        downs.push(down);
        ups.push(up);
    }
    downs.sort();
    ups.sort();
    println!(
        "kill-to-down ({} rounds): median {}, max {}, min {}",
        downs.len(),
        ms(median(&downs)),
        ms(downs[downs.len() - 1]),
        ms(downs[0])
    );
    println!(
        "restart-to-converged ({} rounds): median {}, max {}",
        ups.len(),
        ms(median(&ups)),
        ms(ups[ups.len() - 1])
    );
    rt.block_on(guard.stop())?;
    Ok(())
}

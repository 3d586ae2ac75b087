//! `ringdb chaos NAME [--dir DIR] [--duration 60s] [--faults kill,pause,partition,restart]
//! [--cl QUORUM] [--rate N] [--seed S] [--clients C] [--aggressive] [--json FILE]`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use ringdb_cql::message::Consistency;

use super::nemesis::FaultKind;
use super::ChaosOptions;
use crate::cluster::default_cluster_dir;

/// `ringdb chaos` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// The cluster's name (made by `ringdb cluster create`, running).
    pub name: String,
    /// The cluster's folder (default: $RINGDB_HOME/clusters/NAME, RINGDB_HOME defaulting to
    /// ~/.ringdb).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How long the workload runs: 90s, 2m, 1500ms, or seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Faults to inject, comma-separated: kill, pause, partition, restart (or all, none).
    #[arg(long, default_value = "kill,pause,partition,restart")]
    pub faults: String,
    /// Consistency level of every write and read: ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM,
    /// LOCAL_ONE. With a LOCAL_* level each client stays in its datacenter.
    #[arg(long, default_value = "QUORUM")]
    pub cl: String,
    /// Operations per second over all clients (default: as fast as the clients go).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the fault schedule and the workload (default: random; printed to replay a run).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Concurrent clients, each running one operation at a time.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Also inject faults beyond what the consistency level tolerates (a quorum of some replica
    /// set unreachable); operations may then fail, but nothing acknowledged may be lost.
    #[arg(long)]
    pub aggressive: bool,
    /// Write the full history (every operation) and the report to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Test of the checker: switch on a deliberate coordinator bug that acknowledges every N-th
    /// write without writing it (turned off again at the end).
    #[arg(long, hide = true, default_value_t = 0, value_name = "N")]
    pub lose_every_nth_write: u32,
}

impl ChaosArgs {
    /// The options of the run.
    pub fn options(&self) -> anyhow::Result<ChaosOptions> {
        let consistency: Consistency = self.cl.parse().map_err(|e| anyhow!("--cl: {e}"))?;
        let faults = FaultKind::parse_list(&self.faults).map_err(|e| anyhow!("--faults: {e}"))?;
        if let Some(rate) = self.rate {
            anyhow::ensure!(
                rate.is_finite() && rate >= 0.0,
                "--rate takes a number of operations per second (0: no limit)"
            );
        }
        Ok(ChaosOptions {
            name: self.name.clone(),
            dir: self
                .dir
                .clone()
                .unwrap_or_else(|| default_cluster_dir(&self.name)),
            duration: self.duration,
            faults,
            consistency,
            rate: self.rate.filter(|r| *r > 0.0),
            seed: self.seed.unwrap_or_else(|| rand::random::<u32>() as u64),
            clients: self.clients,
            aggressive: self.aggressive,
            json: self.json.clone(),
            lose_every_nth_write: self.lose_every_nth_write,
            binary: Some(std::env::current_exe().context("finding the ringdb binary")?),
        })
    }
}

/// Parses `60s`, `2m`, `1500ms`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 60s, 2m, 1500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (ms, s, m, h)")),
    };
    if !(0.0..1e7).contains(&seconds) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs `ringdb chaos`: the exit status is the report's (0 pass, 1 lost or anomalous, 2 error,
/// 130 interrupted).
pub async fn run(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let options = args.options()?;
    let code = super::run(options).await?;
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn arguments_become_options() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: ChaosArgs,
        }
        let cli = Cli::try_parse_from([
            "chaos",
            "c1",
            "--dir",
            "/tmp/x",
            "--cl",
            "local_quorum",
            "--faults",
            "kill,partition",
            "--seed",
            "42",
            "--lose-every-nth-write",
            "50",
        ])
        .unwrap();
        let o = cli.args.options().unwrap();
        assert_eq!(o.consistency, Consistency::LocalQuorum);
        assert_eq!(o.faults, vec![FaultKind::Kill, FaultKind::Partition]);
        assert_eq!((o.seed, o.lose_every_nth_write), (42, 50));
        assert_eq!(o.dir, PathBuf::from("/tmp/x"));
        assert_eq!(o.duration, Duration::from_secs(60));
        let bad = Cli::try_parse_from(["chaos", "c1", "--cl", "sometimes"]).unwrap();
        assert!(bad.args.options().is_err());
    }
}

//! The report of a run: operation counts, latency percentiles, availability per fault window,
//! the healing phase and the checker's verdict — as text for people and as JSON for tools.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::checker::{Finding, Verdict};
use super::history::{FaultWindow, Op, OpKind, Outcome};

/// Lost writes and anomalies the text report lists (the JSON lists them all).
pub const LISTED: usize = 20;

/// Counts of operations by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
}

impl Counts {
    fn of<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Counts {
        let mut c = Counts::default();
        for op in ops {
            c.attempted += 1;
            match op.outcome {
                Outcome::Ok => c.acknowledged += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Indeterminate => c.indeterminate += 1,
            }
        }
        c
    }

    /// Acknowledged / attempted, in percent (`None` without operations).
    pub fn availability(&self) -> Option<f64> {
        (self.attempted > 0).then(|| 100.0 * self.acknowledged as f64 / self.attempted as f64)
    }
}

/// Latency percentiles of acknowledged operations, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Latency {
        // 1 µs to 1 h at 3 significant digits.
        let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3) else {
            return Latency::default();
        };
        for op in ops {
            let _ = h.record(op.end_us.saturating_sub(op.start_us).max(1));
        }
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Availability inside one fault window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    #[serde(flatten)]
    pub window: FaultWindow,
    /// Operations that overlapped the window.
    pub ops: Counts,
    pub availability: Option<f64>,
    /// The errors of its failed and indeterminate operations, most frequent first (at most 5).
    pub errors: Vec<(String, usize)>,
}

/// Availability over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Availability {
    /// Every operation.
    pub overall: Option<f64>,
    /// Operations that overlapped no fault window.
    pub outside_faults: Option<f64>,
    pub outside_faults_ops: Counts,
    /// Operations that overlapped none of the windows where a quorum of some replica set was
    /// unreachable (`quorum_lost`) — all of them unless `--aggressive`.
    pub excluding_quorum_loss: Option<f64>,
    pub excluding_quorum_loss_ops: Counts,
    pub windows: Vec<WindowReport>,
}

/// How the cluster was brought back and made consistent before the check.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Healing {
    /// Seconds until every node ran, nothing was cut and the cluster had converged.
    pub converged_s: f64,
    /// Whether the run got as far as waiting for hints.
    pub hints_waited: bool,
    /// Seconds until no node held hints (`None`: they did not drain in time).
    pub hints_drained_s: Option<f64>,
    /// Hints still held when the wait ended (-1: unknown, a node did not answer).
    pub hints_left: i64,
    /// One line per node repaired.
    pub repairs: Vec<RepairLine>,
}

/// The repair of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepairLine {
    pub node: String,
    pub ranges: u64,
    pub out_of_sync: u64,
    pub failed: u64,
    pub partitions_streamed: u64,
    pub seconds: f64,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
}

/// What the run was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub cluster: String,
    pub nodes: Vec<(String, String)>,
    pub keyspace: String,
    pub replication: String,
    pub consistency: String,
    pub clients: usize,
    pub rate: Option<f64>,
    pub seed: u64,
    pub faults: Vec<String>,
    pub aggressive: bool,
    pub lose_every_nth_write: u32,
    pub duration_s: f64,
    /// How long the workload actually ran.
    pub ran_s: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub run: RunInfo,
    pub ops: Counts,
    pub writes: Counts,
    pub reads: Counts,
    /// Attempts that retried a write whose outcome was unknown.
    pub write_retries: usize,
    pub latency: Latency,
    pub write_latency: Latency,
    pub read_latency: Latency,
    pub availability: Availability,
    pub healing: Option<Healing>,
    pub verdict: Option<Verdict>,
    /// Number of lost writes (the full list is in `verdict`).
    pub lost: usize,
    /// Number of anomalies (stale reads included).
    pub anomalous: usize,
    /// What stopped the run from completing, if anything did.
    pub error: Option<String>,
    /// PASS, FAIL, ERROR or INTERRUPTED.
    pub result: String,
    pub exit_code: u8,
}

/// Exit status when the checks pass.
pub const EXIT_PASS: u8 = 0;
/// Exit status when a write was lost or a read was anomalous.
pub const EXIT_FAIL: u8 = 1;
/// Exit status when the run could not complete or the check could not be made.
pub const EXIT_ERROR: u8 = 2;

impl Report {
    /// Builds the report from the history (sorted by start), the fault windows and, when the run
    /// got that far, the healing and the verdict.
    pub fn build(
        run: RunInfo,
        ops: &[Op],
        windows: &[FaultWindow],
        healing: Option<Healing>,
        verdict: Option<Verdict>,
        error: Option<String>,
    ) -> Report {
        let ok = |op: &&Op| op.outcome == Outcome::Ok;
        let writes: Vec<&Op> = ops.iter().filter(|o| o.kind == OpKind::Write).collect();
        let reads: Vec<&Op> = ops.iter().filter(|o| o.kind == OpKind::Read).collect();
        let in_any = |op: &Op, only_lost: bool| {
            windows
                .iter()
                .any(|w| (!only_lost || w.quorum_lost) && w.overlaps(op.start_us, op.end_us))
        };
        let outside = Counts::of(ops.iter().filter(|o| !in_any(o, false)));
        let excluding = Counts::of(ops.iter().filter(|o| !in_any(o, true)));
        let window_reports = windows
            .iter()
            .map(|w| {
                let inside: Vec<&Op> = ops
                    .iter()
                    .filter(|o| w.overlaps(o.start_us, o.end_us))
                    .collect();
                let counts = Counts::of(inside.iter().copied());
                WindowReport {
                    window: w.clone(),
                    availability: counts.availability(),
                    ops: counts,
                    errors: top_errors(&inside, 5),
                }
            })
            .collect();
        let (lost, anomalous) = verdict
            .as_ref()
            .map_or((0, 0), |v| (v.lost.len(), v.anomalies.len()));
        let checks_failed = verdict.as_ref().is_some_and(|v| !v.passed());
        let (result, exit_code) = if error.is_some() || verdict.is_none() {
            if checks_failed {
                ("FAIL", EXIT_FAIL)
            } else {
                ("ERROR", EXIT_ERROR)
            }
        } else if lost > 0 || anomalous > 0 {
            ("FAIL", EXIT_FAIL)
        } else if checks_failed {
            // Only unverifiable keys: no verdict on them.
            ("ERROR", EXIT_ERROR)
        } else {
            ("PASS", EXIT_PASS)
        };
        Report {
            run,
            ops: Counts::of(ops),
            writes: Counts::of(writes.iter().copied()),
            reads: Counts::of(reads.iter().copied()),
            write_retries: writes.iter().filter(|o| o.attempt > 1).count(),
            latency: Latency::of(ops.iter().filter(ok)),
            write_latency: Latency::of(writes.iter().copied().filter(ok)),
            read_latency: Latency::of(reads.iter().copied().filter(ok)),
            availability: Availability {
                overall: Counts::of(ops).availability(),
                outside_faults: outside.availability(),
                outside_faults_ops: outside,
                excluding_quorum_loss: excluding.availability(),
                excluding_quorum_loss_ops: excluding,
                windows: window_reports,
            },
            healing,
            verdict,
            lost,
            anomalous,
            error,
            result: result.to_string(),
            exit_code,
        }
    }

    /// The report as `ringdb chaos` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = &self.run;
        let mut per_dc: Vec<(String, usize)> = Vec::new();
        for (_, dc) in &r.nodes {
            match per_dc.iter_mut().find(|(d, _)| d == dc) {
                Some((_, n)) => *n += 1,
                None => per_dc.push((dc.clone(), 1)),
            }
        }
        let dcs: Vec<String> = per_dc.iter().map(|(d, n)| format!("{d}: {n}")).collect();
        out.push_str(&format!(
            "ringdb chaos report — cluster {}, {} nodes ({}), keyspace {} {}\n",
            r.cluster,
            r.nodes.len(),
            dcs.join(", "),
            r.keyspace,
            r.replication
        ));
        out.push_str(&format!(
            "  {} clients at {}, {}; faults: {}{}; seed {} (replay: --seed {}); ran {:.1} s\n",
            r.clients,
            r.consistency,
            match r.rate {
                Some(rate) => format!("{rate} ops/s"),
                None => "full speed".to_string(),
            },
            if r.faults.is_empty() {
                "none".to_string()
            } else {
                r.faults.join(",")
            },
            if r.aggressive { " (aggressive)" } else { "" },
            r.seed,
            r.seed,
            r.ran_s
        ));
        if r.lose_every_nth_write > 0 {
            out.push_str(&format!(
                "  DELIBERATE BUG ON: every {}th write acknowledged without being written\n",
                r.lose_every_nth_write
            ));
        }

        out.push_str("\nOperations      attempted  acknowledged     failed  indeterminate\n");
        for (name, c) in [
            ("writes", self.writes),
            ("reads", self.reads),
            ("total", self.ops),
        ] {
            out.push_str(&format!(
                "  {name:<12}{:>11}{:>14}{:>11}{:>15}\n",
                c.attempted, c.acknowledged, c.failed, c.indeterminate
            ));
        }
        if self.write_retries > 0 {
            out.push_str(&format!(
                "  ({} write attempts were retries of writes with an unknown outcome, same key \
                 and value)\n",
                self.write_retries
            ));
        }

        out.push_str(
            "\nLatency of acknowledged operations (ms)      p50       p99     p99.9       max\n",
        );
        for (name, l) in [
            ("writes", self.write_latency),
            ("reads", self.read_latency),
            ("all", self.latency),
        ] {
            out.push_str(&format!(
                "  {name:<42}{:>7.2}{:>10.2}{:>10.2}{:>10.2}\n",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            ));
        }

        let a = &self.availability;
        out.push_str("\nAvailability (acknowledged / attempted; an operation counts for every window it overlaps)\n");
        out.push_str(&format!(
            "  {:<29}{:>8}  ({} ops)\n",
            "outside fault windows",
            pct(a.outside_faults),
            a.outside_faults_ops.attempted
        ));
        for w in &a.windows {
            let span = format!(
                "{:.1}–{:.1} s",
                w.window.start_us as f64 / 1e6,
                w.window.end_us as f64 / 1e6
            );
            out.push_str(&format!(
                "  {:<29}{:>8}  ({} ops)  {}{}\n",
                format!("window {:>2}  {span}", w.window.index),
                pct(w.availability),
                w.ops.attempted,
                w.window.description,
                if w.window.quorum_lost {
                    "  [quorum of some replica set unreachable]"
                } else {
                    ""
                }
            ));
            for (e, n) in &w.errors {
                out.push_str(&format!("        {n} × {e}\n"));
            }
        }
        out.push_str(&format!(
            "  {:<29}{:>8}  ({} ops)\n",
            "all but quorum-loss windows",
            pct(a.excluding_quorum_loss),
            a.excluding_quorum_loss_ops.attempted
        ));
        out.push_str(&format!(
            "  {:<29}{:>8}  ({} ops)\n",
            "overall",
            pct(a.overall),
            self.ops.attempted
        ));

        if let Some(h) = &self.healing {
            out.push_str("\nHealing\n");
            out.push_str(&format!(
                "  every node running, nothing cut, converged after {:.1} s\n",
                h.converged_s
            ));
            match h.hints_drained_s {
                _ if !h.hints_waited => {}
                Some(s) => out.push_str(&format!("  hints drained after {s:.1} s\n")),
                None if h.hints_left < 0 => out.push_str(
                    "  hints: could not be counted (a node did not answer); repair covers them\n",
                ),
                None => out.push_str(&format!(
                    "  hints did not drain in time ({} left); repair covers them\n",
                    h.hints_left
                )),
            }
            for rep in &h.repairs {
                match &rep.error {
                    Some(e) => out.push_str(&format!("  repair {}: {e}\n", rep.node)),
                    None => out.push_str(&format!(
                        "  repair {}: {} ranges, {} out of sync, {} failed, {} partitions \
                         streamed, {:.1} s\n",
                        rep.node,
                        rep.ranges,
                        rep.out_of_sync,
                        rep.failed,
                        rep.partitions_streamed,
                        rep.seconds
                    )),
                }
            }
        }

        if let Some(v) = &self.verdict {
            out.push_str("\nChecks (every key read back at ALL)\n");
            out.push_str(&format!(
                "  acknowledged writes                 {:>9}\n  found with their value              {:>9}\n",
                v.acknowledged_writes, v.verified
            ));
            out.push_str(&format!(
                "  lost                                {:>9}\n",
                v.lost.len()
            ));
            out.push_str(&format!(
                "  anomalous                           {:>9}  ({} stale reads of {} reads that had to see a write)\n",
                v.anomalies.len(),
                v.stale_reads,
                v.reads_checked_for_staleness
            ));
            out.push_str(&format!(
                "  unknown-outcome writes present      {:>9}\n  unknown-outcome writes absent       {:>9}\n  refused writes absent               {:>9}\n",
                v.indeterminate_present, v.indeterminate_absent, v.failed_absent
            ));
            if !v.unverified.is_empty() {
                out.push_str(&format!(
                    "  keys that could not be read at ALL  {:>9}  (e.g. key {}: {})\n",
                    v.unverified.len(),
                    v.unverified[0].0,
                    v.unverified[0].1
                ));
            }
            list(&mut out, "Lost writes", &v.lost);
            list(&mut out, "Anomalies", &v.anomalies);
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("\nError: {e}\n"));
        }
        out.push_str(&format!(
            "\nResult: {} — {} (exit status {})\n",
            self.result,
            match self.result.as_str() {
                "PASS" => "no acknowledged write lost, no anomalous read".to_string(),
                "FAIL" => format!("{} lost, {} anomalous", self.lost, self.anomalous),
                "INTERRUPTED" => "stopped by Ctrl-C; the cluster was healed".to_string(),
                _ => "the run did not complete, or some keys could not be checked".to_string(),
            },
            self.exit_code
        ));
        out
    }
}

fn list(out: &mut String, title: &str, findings: &[Finding]) {
    if findings.is_empty() {
        return;
    }
    out.push_str(&format!("\n{title} ({}):\n", findings.len()));
    for f in findings.iter().take(LISTED) {
        out.push_str(&format!("  {}\n", f.detail));
    }
    if findings.len() > LISTED {
        out.push_str(&format!(
            "  … and {} more (--json FILE lists them all)\n",
            findings.len() - LISTED
        ));
    }
}

fn pct(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("{p:.2}%"),
        None => "-".to_string(),
    }
}

/// The most frequent errors among `ops` (numbers blanked out so that alike errors group).
fn top_errors(ops: &[&Op], max: usize) -> Vec<(String, usize)> {
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for op in ops {
        if let Some(e) = &op.error {
            // Numbers in the message (not in its `server error 0x1000:` prefix) vary.
            let (prefix, message) = match e.find(": ") {
                Some(i) => e.split_at(i),
                None => ("", e.as_str()),
            };
            let message: String = message
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            let key = format!("{prefix}{}", collapse_hashes(&message));
            *counts.entry(key).or_default() += 1;
        }
    }
    let mut sorted: Vec<(String, usize)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sorted.truncate(max);
    sorted
}

fn collapse_hashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '#' && out.ends_with('#') {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::checker::{Finding, FindingKind};

    fn op(id: usize, kind: OpKind, start_ms: u64, outcome: Outcome, error: Option<&str>) -> Op {
        Op {
            id,
            client: 0,
            kind,
            key: id as i64,
            value: Some(1),
            start_us: start_ms * 1000,
            end_us: start_ms * 1000 + 2000,
            outcome,
            error: error.map(str::to_string),
            coordinator: Some("node1".into()),
            dc: Some("dc1".into()),
            attempt: 1,
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            cluster: "c".into(),
            nodes: vec![("node1".into(), "dc1".into())],
            keyspace: "chaos".into(),
            replication: "{}".into(),
            consistency: "QUORUM".into(),
            clients: 1,
            rate: None,
            seed: 5,
            faults: vec!["kill".into()],
            aggressive: false,
            lose_every_nth_write: 0,
            duration_s: 1.0,
            ran_s: 1.0,
        }
    }

    fn window(index: usize, from_ms: u64, to_ms: u64, quorum_lost: bool) -> FaultWindow {
        FaultWindow {
            index,
            kind: "kill".into(),
            nodes: vec!["node1".into()],
            description: "kill node1".into(),
            start_us: from_ms * 1000,
            end_us: to_ms * 1000,
            quorum_lost,
        }
    }

    #[test]
    fn availability_is_split_by_window() {
        let ops = vec![
            op(0, OpKind::Write, 0, Outcome::Ok, None),
            op(1, OpKind::Read, 10, Outcome::Ok, None),
            op(
                2,
                OpKind::Write,
                100,
                Outcome::Indeterminate,
                Some("timed out after 6s"),
            ),
            op(3, OpKind::Write, 110, Outcome::Ok, None),
            op(
                4,
                OpKind::Read,
                200,
                Outcome::Failed,
                Some("server error 0x1000: need 2, 1 alive"),
            ),
            op(5, OpKind::Read, 300, Outcome::Ok, None),
            // Started just before window 1, still running when it began: counts for it.
            op(6, OpKind::Read, 89, Outcome::Ok, None),
        ];
        let windows = vec![window(1, 90, 150, false), window(2, 190, 210, true)];
        let verdict = Verdict::default();
        let r = Report::build(info(), &ops, &windows, None, Some(verdict), None);
        assert_eq!(r.ops.attempted, 7);
        assert_eq!(r.writes.attempted, 3);
        assert_eq!(r.availability.outside_faults, Some(100.0));
        assert_eq!(r.availability.outside_faults_ops.attempted, 3);
        assert_eq!(r.availability.windows[0].ops.attempted, 3);
        assert_eq!(r.availability.windows[0].ops.indeterminate, 1);
        assert_eq!(r.availability.windows[1].availability, Some(0.0));
        assert_eq!(r.availability.excluding_quorum_loss_ops.attempted, 6);
        assert_eq!(r.availability.excluding_quorum_loss_ops.acknowledged, 5);
        assert_eq!(
            r.availability.windows[0].errors,
            vec![("timed out after #s".to_string(), 1)]
        );
        assert_eq!(
            r.availability.windows[1].errors,
            vec![("server error 0x1000: need #, # alive".to_string(), 1)]
        );
        assert_eq!(r.result, "PASS");
        assert_eq!(r.exit_code, EXIT_PASS);
        assert_eq!(r.latency.count, 5);
        assert!((r.latency.p50_ms - 2.0).abs() < 0.01, "{:?}", r.latency);
        let text = r.render();
        assert!(text.contains("Result: PASS"), "{text}");
        assert!(
            text.contains("[quorum of some replica set unreachable]"),
            "{text}"
        );
    }

    #[test]
    fn lost_writes_fail_the_run_and_are_listed() {
        let lost: Vec<Finding> = (0..25)
            .map(|k| Finding {
                kind: FindingKind::Lost,
                key: k,
                expected: Some(1),
                found: None,
                op: Some(k as usize),
                detail: format!("write of key {k} lost"),
            })
            .collect();
        let verdict = Verdict {
            acknowledged_writes: 100,
            verified: 75,
            lost,
            ..Verdict::default()
        };
        let r = Report::build(info(), &[], &[], None, Some(verdict), None);
        assert_eq!(
            (r.result.as_str(), r.exit_code, r.lost),
            ("FAIL", EXIT_FAIL, 25)
        );
        let text = r.render();
        assert!(text.contains("Lost writes (25):"), "{text}");
        assert!(text.contains("write of key 19 lost"));
        assert!(!text.contains("write of key 20 lost"));
        assert!(text.contains("… and 5 more"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["lost"], 25);
        assert_eq!(json["verdict"]["lost"].as_array().unwrap().len(), 25);
    }

    #[test]
    fn an_interrupted_run_is_an_error() {
        let r = Report::build(info(), &[], &[], None, None, Some("interrupted".into()));
        assert_eq!((r.result.as_str(), r.exit_code), ("ERROR", EXIT_ERROR));
    }
}

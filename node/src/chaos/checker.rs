//! The checker: from the history and a final read of every key at ALL (after healing, hint
//! replay and repair), what was lost and what was anomalous. Pure, so every rule is tested on
//! hand-written histories.
//!
//! Every write has a key of its own and a value of its own, so the rules are simple:
//!
//! 1. **lost**: a write was acknowledged, and the final read at ALL finds no row for its key,
//!    or another value;
//! 2. **anomalous values**: a read (during the run, or the final one) returned a value that no
//!    write ever tried to give that key, or one whose only writes began after the read ended;
//!    or a write that certainly failed (refused before reaching a replica) is present;
//! 3. **stale reads**: where R + W > RF ([`ReadYourWrites`]), a read that began after a write's
//!    acknowledgement returned no row (with `SameDc`, only when both were coordinated in the
//!    same datacenter).
//!
//! Indeterminate writes may be present or absent; both are counted, neither is an error.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::history::{Op, OpKind, Outcome};
use super::model::ReadYourWrites;

/// What the final read at ALL found for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalRead {
    Found(i64),
    Missing,
    /// Every attempt to read it failed; the text is the last error.
    Unreadable(String),
}

/// What kind of problem a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An acknowledged write not found at ALL, or found with another value.
    Lost,
    /// A read returned a value never written to that key.
    UnknownValue,
    /// A read returned a value whose writes all began after the read ended.
    ValueFromTheFuture,
    /// A read that began after a write's acknowledgement did not see it (R + W > RF).
    StaleRead,
    /// The final read found a value never written to that key.
    FinalUnknownValue,
    /// A write refused before reaching any replica is present.
    FailedWritePresent,
}

/// One lost write or one anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub key: i64,
    /// The value written to the key (`None`: the key was never written).
    pub expected: Option<i64>,
    /// What was read (`None`: no row).
    pub found: Option<i64>,
    /// The read operation at fault, or the acknowledged write (lost writes).
    pub op: Option<usize>,
    /// One line for people.
    pub detail: String,
}

/// The checker's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Keys whose write was acknowledged (at least one attempt).
    pub acknowledged_writes: usize,
    /// Of those, found at ALL with their value.
    pub verified: usize,
    /// Acknowledged writes lost.
    pub lost: Vec<Finding>,
    /// Anomalous values and stale reads.
    pub anomalies: Vec<Finding>,
    /// Reads (successful, during the run) that began after an acknowledgement they had to
    /// see, i.e. the reads the stale-read rule applied to.
    pub reads_checked_for_staleness: usize,
    /// Of `anomalies`, how many are stale reads.
    pub stale_reads: usize,
    /// Writes with an unknown outcome (never acknowledged) found at ALL.
    pub indeterminate_present: usize,
    /// Writes with an unknown outcome not found.
    pub indeterminate_absent: usize,
    /// Writes that certainly failed, and are absent as they should be.
    pub failed_absent: usize,
    /// Keys the final read could not read (a verdict is then impossible for them).
    pub unverified: Vec<(i64, String)>,
    /// The rule the stale-read check applied.
    pub read_your_writes: Option<ReadYourWrites>,
}

impl Verdict {
    /// No lost write, no anomaly, every key verified.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.anomalies.is_empty() && self.unverified.is_empty()
    }
}

/// Everything known about the writes of one key.
#[derive(Debug, Default)]
struct KeyWrites {
    value: Option<i64>,
    /// The earliest start of any attempt.
    first_start_us: u64,
    /// (end, coordinator dc, op id) of each acknowledged attempt.
    acks: Vec<(u64, Option<String>, usize)>,
    indeterminate: bool,
}

/// Checks a history against the final reads.
pub fn check(ops: &[Op], finals: &HashMap<i64, FinalRead>, rule: ReadYourWrites) -> Verdict {
    let mut writes: BTreeMap<i64, KeyWrites> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.kind == OpKind::Write) {
        let w = writes.entry(op.key).or_insert_with(|| KeyWrites {
            first_start_us: u64::MAX,
            ..KeyWrites::default()
        });
        w.value = w.value.or(op.value);
        w.first_start_us = w.first_start_us.min(op.start_us);
        match op.outcome {
            Outcome::Ok => w.acks.push((op.end_us, op.dc.clone(), op.id)),
            Outcome::Indeterminate => w.indeterminate = true,
            Outcome::Failed => {}
        }
    }
    let mut verdict = Verdict {
        read_your_writes: Some(rule),
        ..Verdict::default()
    };

    for read in ops
        .iter()
        .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok)
    {
        let w = writes.get(&read.key);
        if let Some(seen) = read.value {
            match w {
                Some(w) if w.value == Some(seen) => {
                    if w.first_start_us > read.end_us {
                        verdict.anomalies.push(Finding {
                            kind: FindingKind::ValueFromTheFuture,
                            key: read.key,
                            expected: w.value,
                            found: Some(seen),
                            op: Some(read.id),
                            detail: format!(
                                "read #{} of key {} ended at {:.1} ms and returned {seen}, first \
                                 written at {:.1} ms",
                                read.id,
                                read.key,
                                ms(read.end_us),
                                ms(w.first_start_us)
                            ),
                        });
                    }
                }
                _ => verdict.anomalies.push(Finding {
                    kind: FindingKind::UnknownValue,
                    key: read.key,
                    expected: w.and_then(|w| w.value),
                    found: Some(seen),
                    op: Some(read.id),
                    detail: format!(
                        "read #{} of key {} returned {seen}, a value never written to it",
                        read.id, read.key
                    ),
                }),
            }
        }
        // The stale-read rule: an acknowledgement before this read began binds it.
        let binding = w.and_then(|w| {
            w.acks
                .iter()
                .filter(|(end, dc, _)| {
                    *end < read.start_us
                        && match rule {
                            ReadYourWrites::Always => true,
                            ReadYourWrites::SameDc => dc.is_some() && *dc == read.dc,
                            ReadYourWrites::Never => false,
                        }
                })
                .min_by_key(|(end, _, _)| *end)
        });
        if let (Some((acked_at, _, write_op)), Some(w)) = (binding, w) {
            verdict.reads_checked_for_staleness += 1;
            if read.value.is_none() {
                verdict.stale_reads += 1;
                verdict.anomalies.push(Finding {
                    kind: FindingKind::StaleRead,
                    key: read.key,
                    expected: w.value,
                    found: None,
                    op: Some(read.id),
                    detail: format!(
                        "read #{} of key {} (via {}) began at {:.1} ms and found no row; write \
                         #{write_op} was acknowledged at {:.1} ms",
                        read.id,
                        read.key,
                        read.coordinator.as_deref().unwrap_or("?"),
                        ms(read.start_us),
                        ms(*acked_at)
                    ),
                });
            }
        }
    }

    for (&key, w) in &writes {
        let Some(value) = w.value else { continue };
        let acked = !w.acks.is_empty();
        if acked {
            verdict.acknowledged_writes += 1;
        }
        let first_ack = w.acks.iter().min_by_key(|(end, _, _)| *end);
        match finals.get(&key) {
            None => verdict.unverified.push((key, "not read back".to_string())),
            Some(FinalRead::Unreadable(e)) => verdict.unverified.push((key, e.clone())),
            Some(FinalRead::Found(v)) if *v == value => {
                if acked {
                    verdict.verified += 1;
                } else if w.indeterminate {
                    verdict.indeterminate_present += 1;
                } else {
                    verdict.anomalies.push(Finding {
                        kind: FindingKind::FailedWritePresent,
                        key,
                        expected: Some(value),
                        found: Some(value),
                        op: None,
                        detail: format!(
                            "key {key} holds {value}, but every write of it was refused"
                        ),
                    });
                }
            }
            Some(found) => {
                let found = match found {
                    FinalRead::Found(v) => Some(*v),
                    _ => None,
                };
                if let Some(other) = found {
                    verdict.anomalies.push(Finding {
                        kind: FindingKind::FinalUnknownValue,
                        key,
                        expected: Some(value),
                        found: Some(other),
                        op: None,
                        detail: format!("key {key} holds {other}, a value never written to it"),
                    });
                }
                if let Some((acked_at, dc, op)) = first_ack {
                    verdict.lost.push(Finding {
                        kind: FindingKind::Lost,
                        key,
                        expected: Some(value),
                        found,
                        op: Some(*op),
                        detail: format!(
                            "write #{op} of key {key} = {value} acknowledged at {:.1} ms (in {}) \
                             {}",
                            ms(*acked_at),
                            dc.as_deref().unwrap_or("?"),
                            match found {
                                Some(other) => format!("but the key holds {other}"),
                                None => "but the key is missing at ALL".to_string(),
                            }
                        ),
                    });
                } else if found.is_none() {
                    if w.indeterminate {
                        verdict.indeterminate_absent += 1;
                    } else {
                        verdict.failed_absent += 1;
                    }
                }
            }
        }
    }
    verdict
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H {
        ops: Vec<Op>,
    }

    impl H {
        fn new() -> H {
            H { ops: Vec::new() }
        }

        #[allow(clippy::too_many_arguments)]
        fn op(
            &mut self,
            kind: OpKind,
            key: i64,
            value: Option<i64>,
            start: u64,
            end: u64,
            outcome: Outcome,
            dc: &str,
        ) -> usize {
            let id = self.ops.len();
            self.ops.push(Op {
                id,
                client: 0,
                kind,
                key,
                value,
                start_us: start,
                end_us: end,
                outcome,
                error: None,
                coordinator: Some(format!("n-{dc}")),
                dc: Some(dc.to_string()),
                attempt: 1,
            });
            id
        }

        fn write(&mut self, key: i64, value: i64, start: u64, end: u64, outcome: Outcome) -> usize {
            self.op(OpKind::Write, key, Some(value), start, end, outcome, "dc1")
        }

        fn read(&mut self, key: i64, seen: Option<i64>, start: u64, end: u64) -> usize {
            self.op(OpKind::Read, key, seen, start, end, Outcome::Ok, "dc1")
        }
    }

    fn finals(list: &[(i64, FinalRead)]) -> HashMap<i64, FinalRead> {
        list.iter().cloned().collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Ok);
        h.read(1, Some(100), 20, 30);
        h.write(2, 200, 5, 15, Outcome::Indeterminate);
        h.write(3, 300, 5, 15, Outcome::Failed);
        h.read(3, None, 20, 30);
        let v = check(
            &h.ops,
            &finals(&[
                (1, FinalRead::Found(100)),
                (2, FinalRead::Missing),
                (3, FinalRead::Missing),
            ]),
            ReadYourWrites::Always,
        );
        assert!(v.passed(), "{v:#?}");
        assert_eq!(v.acknowledged_writes, 1);
        assert_eq!(v.verified, 1);
        assert_eq!(v.indeterminate_absent, 1);
        assert_eq!(v.failed_absent, 1);
        assert_eq!(v.reads_checked_for_staleness, 1);
    }

    #[test]
    fn an_acknowledged_write_missing_or_changed_is_lost() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Ok);
        h.write(2, 200, 0, 10, Outcome::Ok);
        let v = check(
            &h.ops,
            &finals(&[(1, FinalRead::Missing), (2, FinalRead::Found(999))]),
            ReadYourWrites::Always,
        );
        assert!(!v.passed());
        assert_eq!(v.lost.len(), 2, "{v:#?}");
        assert_eq!(v.lost[0].found, None);
        assert_eq!(v.lost[1].found, Some(999));
        // 999 was never written to key 2: an anomaly as well.
        assert_eq!(v.anomalies.len(), 1);
        assert_eq!(v.anomalies[0].kind, FindingKind::FinalUnknownValue);
    }

    #[test]
    fn a_retried_write_counts_once_and_either_attempt_acknowledges_it() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Indeterminate);
        h.write(1, 100, 11, 20, Outcome::Ok);
        let v = check(
            &h.ops,
            &finals(&[(1, FinalRead::Found(100))]),
            ReadYourWrites::Always,
        );
        assert!(v.passed(), "{v:#?}");
        assert_eq!((v.acknowledged_writes, v.verified), (1, 1));
    }

    #[test]
    fn unknown_and_future_values_are_anomalies() {
        let mut h = H::new();
        h.read(5, Some(1), 0, 5); // key 5 is never written
        h.read(6, Some(600), 0, 5); // key 6 is written later
        h.write(6, 600, 10, 20, Outcome::Ok);
        h.write(7, 700, 0, 5, Outcome::Ok);
        h.read(7, Some(701), 10, 12); // another value
        let v = check(
            &h.ops,
            &finals(&[(6, FinalRead::Found(600)), (7, FinalRead::Found(700))]),
            ReadYourWrites::Never,
        );
        let kinds: Vec<FindingKind> = v.anomalies.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![
                FindingKind::UnknownValue,
                FindingKind::ValueFromTheFuture,
                FindingKind::UnknownValue
            ]
        );
        assert!(v.lost.is_empty());
    }

    #[test]
    fn stale_reads_follow_the_rule() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Ok);
        // Concurrent with the write: may miss it.
        h.read(1, None, 5, 12);
        // Began after the acknowledgement: must see it.
        h.read(1, None, 11, 15);
        let f = finals(&[(1, FinalRead::Found(100))]);
        let always = check(&h.ops, &f, ReadYourWrites::Always);
        assert_eq!(always.stale_reads, 1);
        assert_eq!(always.reads_checked_for_staleness, 1);
        assert_eq!(always.anomalies[0].op, Some(2));
        let never = check(&h.ops, &f, ReadYourWrites::Never);
        assert!(never.passed(), "{never:#?}");
    }

    #[test]
    fn same_dc_staleness_binds_only_within_a_datacenter() {
        let mut h = H::new();
        h.op(OpKind::Write, 1, Some(100), 0, 10, Outcome::Ok, "dc1");
        h.op(OpKind::Read, 1, None, 20, 25, Outcome::Ok, "dc2");
        let f = finals(&[(1, FinalRead::Found(100))]);
        assert!(check(&h.ops, &f, ReadYourWrites::SameDc).passed());
        h.op(OpKind::Read, 1, None, 20, 25, Outcome::Ok, "dc1");
        let v = check(&h.ops, &f, ReadYourWrites::SameDc);
        assert_eq!(v.stale_reads, 1);
    }

    #[test]
    fn indeterminate_writes_may_land_but_refused_ones_may_not() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Indeterminate);
        h.write(2, 200, 0, 10, Outcome::Failed);
        let v = check(
            &h.ops,
            &finals(&[(1, FinalRead::Found(100)), (2, FinalRead::Found(200))]),
            ReadYourWrites::Always,
        );
        assert_eq!(v.indeterminate_present, 1);
        assert_eq!(v.anomalies.len(), 1);
        assert_eq!(v.anomalies[0].kind, FindingKind::FailedWritePresent);
    }

    #[test]
    fn unreadable_keys_prevent_a_pass() {
        let mut h = H::new();
        h.write(1, 100, 0, 10, Outcome::Ok);
        let v = check(
            &h.ops,
            &finals(&[(1, FinalRead::Unreadable("timeout".into()))]),
            ReadYourWrites::Always,
        );
        assert!(!v.passed());
        assert_eq!(v.unverified.len(), 1);
        assert!(v.lost.is_empty());
    }
}

//! Consistency math checked against a naive reference on random keyspaces, coordinators, live
//! replica sets and sequences of replica answers.
//!
//! The reference restates the rules of `src/consistency.rs` (a majority is `rf / 2 + 1`; local
//! levels count the coordinator's datacenter; `EACH_QUORUM` counts every replicated datacenter on
//! its own; `ANY` is met by a stored hint) as directly as possible, recounting from scratch after
//! every event instead of keeping counters.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringdb_ring::consistency::{Progress, QuorumTracker, Requirement, Unavailable};
use ringdb_ring::{
    assure_sufficient_live, block_for, ConsistencyLevel, HostId, NetworkTopologyStrategy,
    Replication, SimpleStrategy,
};

const DCS: [&str; 4] = ["dc1", "dc2", "dc3", "dc4"];

fn replication() -> impl Strategy<Value = Replication> {
    prop_oneof![
        (0usize..=6).prop_map(|rf| Replication::Simple(SimpleStrategy { rf })),
        prop::collection::btree_map(prop::sample::select(DCS[..3].to_vec()), 0usize..=5, 0..=3)
            .prop_map(|m| Replication::NetworkTopology(NetworkTopologyStrategy {
                rf_per_dc: m.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            })),
    ]
}

fn level() -> impl Strategy<Value = ConsistencyLevel> {
    prop::sample::select(ConsistencyLevel::ALL_LEVELS.to_vec())
}

fn dc() -> impl Strategy<Value = &'static str> {
    prop::sample::select(DCS.to_vec())
}

fn majority(n: usize) -> usize {
    n / 2 + 1
}

fn total_rf(r: &Replication) -> usize {
    match r {
        Replication::Simple(s) => s.rf,
        Replication::NetworkTopology(n) => n.rf_per_dc.values().sum(),
    }
}

fn is_local(cl: ConsistencyLevel) -> bool {
    use ConsistencyLevel::*;
    matches!(cl, LocalOne | LocalQuorum | LocalSerial)
}

/// Datacenters `EACH_QUORUM` checks separately, with what each needs; `None` when it falls back
/// to a global count (SimpleStrategy, or no datacenter with replicas).
fn naive_each_quorum(r: &Replication) -> Option<BTreeMap<String, usize>> {
    match r {
        Replication::NetworkTopology(n) => {
            let per_dc: BTreeMap<String, usize> = n
                .rf_per_dc
                .iter()
                .filter(|(_, rf)| **rf > 0)
                .map(|(dc, rf)| (dc.clone(), majority(*rf)))
                .collect();
            (!per_dc.is_empty()).then_some(per_dc)
        }
        Replication::Simple(_) => None,
    }
}

fn naive_block_for(cl: ConsistencyLevel, r: &Replication, local: &str) -> usize {
    use ConsistencyLevel::*;
    let total = total_rf(r);
    let local_rf = match r {
        Replication::Simple(s) => s.rf,
        Replication::NetworkTopology(n) => n.rf_per_dc.get(local).copied().unwrap_or(0),
    };
    match cl {
        Any | One | LocalOne => 1,
        Two => 2,
        Three => 3,
        Quorum | Serial => majority(total),
        All => total,
        LocalQuorum | LocalSerial => majority(local_rf),
        EachQuorum => naive_each_quorum(r).map_or(majority(total), |m| m.values().sum()),
    }
}

fn naive_check(
    cl: ConsistencyLevel,
    r: &Replication,
    local: &str,
    live: &[&str],
) -> Result<(), (usize, usize, Option<String>)> {
    if cl == ConsistencyLevel::Any {
        return Ok(());
    }
    let count = |dc: &str| live.iter().filter(|d| **d == dc).count();
    if cl == ConsistencyLevel::EachQuorum {
        if let Some(per_dc) = naive_each_quorum(r) {
            for (dc, need) in per_dc {
                if count(&dc) < need {
                    return Err((need, count(&dc), Some(dc)));
                }
            }
            return Ok(());
        }
    }
    let need = naive_block_for(cl, r, local);
    let (alive, dc) = if is_local(cl) {
        (count(local), Some(local.to_string()))
    } else {
        (live.len(), None)
    };
    if alive < need {
        Err((need, alive, dc))
    } else {
        Ok(())
    }
}

/// One answer fed to a tracker: which target (or a stranger), and whether it failed.
#[derive(Debug, Clone)]
enum Event {
    Ack(usize),
    Failure(usize),
    Hint,
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0usize..10).prop_map(Event::Ack),
            2 => (0usize..10).prop_map(Event::Failure),
            1 => Just(Event::Hint),
        ],
        0..20,
    )
}

proptest! {
    #[test]
    fn block_for_matches_reference(cl in level(), r in replication(), local in dc()) {
        prop_assert_eq!(block_for(cl, &r, local), naive_block_for(cl, &r, local));
    }

    #[test]
    fn availability_matches_reference(
        cl in level(),
        r in replication(),
        local in dc(),
        live in prop::collection::vec(dc(), 0..10),
    ) {
        let got = assure_sufficient_live(cl, &r, local, live.iter().copied());
        let expected = naive_check(cl, &r, local, &live).map_err(|(required, alive, dc)| Unavailable {
            consistency: cl,
            required,
            alive,
            dc,
        });
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn pending_replicas_match_reference(
        cl in level(),
        r in replication(),
        local in dc(),
        pending in prop::collection::vec(dc(), 0..5),
    ) {
        let got = Requirement::for_write(cl, &r, local, pending.iter().copied()).block_for();
        let extra = match cl {
            ConsistencyLevel::Any => 0,
            _ if is_local(cl) => pending.iter().filter(|d| **d == local).count(),
            ConsistencyLevel::EachQuorum => match naive_each_quorum(&r) {
                Some(per_dc) => pending.iter().filter(|d| per_dc.contains_key(**d)).count(),
                None => pending.len(),
            },
            _ => pending.len(),
        };
        prop_assert_eq!(got, naive_block_for(cl, &r, local) + extra);
    }

    #[test]
    fn tracker_matches_reference(
        cl in level(),
        r in replication(),
        local in dc(),
        target_dcs in prop::collection::vec(dc(), 0..8),
        events in events(),
    ) {
        let requirement = Requirement::new(cl, &r, local);
        let host = |i: usize| HostId::from_u128(i as u128 + 1);
        let targets: Vec<(HostId, &str)> = target_dcs.iter().enumerate().map(|(i, dc)| (host(i), *dc)).collect();
        let mut tracker = QuorumTracker::new(requirement, targets.iter().copied());

        // The reference state: first answer per target wins; strangers (index >= targets) ignored.
        let mut answers: Vec<Option<bool>> = vec![None; targets.len()];
        let mut hint = false;
        // Groups: (datacenter filter, need).
        let groups: Vec<(Option<String>, usize)> = if cl == ConsistencyLevel::EachQuorum {
            match naive_each_quorum(&r) {
                Some(per_dc) => per_dc.into_iter().map(|(dc, need)| (Some(dc), need)).collect(),
                None => vec![(None, naive_block_for(cl, &r, local))],
            }
        } else if is_local(cl) {
            vec![(Some(local.to_string()), naive_block_for(cl, &r, local))]
        } else {
            vec![(None, naive_block_for(cl, &r, local))]
        };

        for event in events {
            let progress = match event {
                Event::Ack(i) => {
                    if i < answers.len() && answers[i].is_none() { answers[i] = Some(true); }
                    tracker.on_ack(host(i))
                }
                Event::Failure(i) => {
                    if i < answers.len() && answers[i].is_none() { answers[i] = Some(false); }
                    tracker.on_failure(host(i))
                }
                Event::Hint => {
                    hint = true;
                    tracker.on_hint_stored()
                }
            };
            let in_group = |dc: &Option<String>, i: usize| dc.as_deref().is_none_or(|d| d == target_dcs[i]);
            let count = |dc: &Option<String>, want: Option<bool>| {
                (0..targets.len()).filter(|&i| in_group(dc, i) && answers[i] == want).count()
            };
            let any = cl == ConsistencyLevel::Any;
            let satisfied = (any && hint) || groups.iter().all(|(dc, need)| count(dc, Some(true)) >= *need);
            let failed = !any && groups.iter().any(|(dc, need)| count(dc, Some(true)) + count(dc, None) < *need);
            let expected = if satisfied {
                Progress::Satisfied
            } else if failed {
                Progress::Failed
            } else {
                Progress::Waiting
            };
            prop_assert_eq!(progress, expected);
            prop_assert_eq!(tracker.progress(), expected);

            let block = naive_block_for(cl, &r, local);
            let counted: usize = groups.iter().map(|(dc, need)| count(dc, Some(true)).min(*need)).sum();
            let received = (counted + usize::from(any && hint)).min(block);
            prop_assert_eq!(tracker.received(), received);
            prop_assert_eq!(tracker.block_for(), block);
            prop_assert_eq!(tracker.failures(), answers.iter().filter(|a| **a == Some(false)).count());
            if expected != Progress::Satisfied {
                prop_assert!(tracker.received() < tracker.block_for() || block == 0);
            }
        }
    }
}

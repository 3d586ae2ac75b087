//! The write path: every live replica gets the mutation; the client's answer waits for the
//! consistency level.
//!
//! Mutations are grouped by keyspace and replica set: a group travels as one verb to each of its
//! replicas and is counted by one [`QuorumTracker`]. Groups are coordinated independently and
//! the first failure is the answer, which is all a simple write or an unlogged batch promises. A
//! logged batch over several mutations first goes through the batchlog
//! ([`super::batchlog`]); the groups are then written exactly the same way.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::oneshot;

use ringdb_cql::message::WriteType;
use ringdb_ring::{ConsistencyLevel, HostId, Progress, QuorumTracker, Requirement, Token};

use super::{consistency_level, unavailable, ClusterState, Coordinator};
use crate::executor::datapath::{WriteKind, WriteRequest};
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::Mutation;
use crate::verbs::VerbResponse;

/// Mutations that share a keyspace and a replica set, and what writing them needs.
pub(super) struct WriteGroup {
    /// What the consistency level needs from the group's replicas.
    pub requirement: Requirement,
    /// The group's replicas that are alive: all of them are sent the mutations, and their
    /// answers count toward the level.
    pub live: Vec<HostId>,
    /// Pending replicas that are alive (nodes gaining the range while one joins or leaves):
    /// sent the mutations too, so that they miss nothing, but not counted.
    pub pending: Vec<HostId>,
    /// The group's replicas, pending ones included, that are down: they get hints
    /// ([`super::hints`]).
    pub down: Vec<HostId>,
    /// The mutations.
    pub mutations: Vec<Mutation>,
}

impl Coordinator {
    /// Applies a write at its consistency level. Availability is checked for every group before
    /// anything is sent (batchlog included), so `Unavailable` means nothing was written.
    pub(super) async fn coordinate_write(&self, request: WriteRequest) -> Result<(), ExecError> {
        let WriteRequest {
            mutations,
            consistency,
            kind,
        } = request;
        let cl = consistency_level(consistency)?;
        cl.validate_for_write()
            .map_err(|e| ExecError::Invalid(e.to_string()))?;
        if self.lose_writes.lose_this_one() {
            // The deliberate bug of a test cluster's fault file: acknowledged, never written.
            return Ok(());
        }
        let state = self.state();
        // The batchlog keeps the batch as the executor made it, before grouping.
        let logged: Option<Vec<Mutation>> = (kind == WriteKind::LoggedBatch)
            .then(|| mutations.iter().map(|(_, m)| m.clone()).collect());
        let groups = self.plan_write(&state, cl, consistency, mutations)?;
        match logged {
            Some(batch) => {
                self.write_logged_batch(state, cl, consistency, groups, batch)
                    .await
            }
            None => {
                self.write_groups(&state, consistency, kind.write_type(), groups, None)
                    .await
            }
        }
    }

    /// Groups `mutations` by keyspace and replica set and checks that each group's live
    /// replicas can meet `cl`.
    fn plan_write(
        &self,
        state: &ClusterState,
        cl: ConsistencyLevel,
        consistency: u16,
        mutations: Vec<(String, Mutation)>,
    ) -> Result<Vec<WriteGroup>, ExecError> {
        let mut by_replicas: BTreeMap<(String, Vec<HostId>, Vec<HostId>), Vec<Mutation>> =
            BTreeMap::new();
        let mut placements = HashMap::new();
        for (keyspace, mutation) in mutations {
            let ksp = self.keyspace(state, &keyspace)?;
            let token = Token(mutation.partition.token);
            let replicas = ksp.map.replicas(token);
            let is_replica = if replicas.contains(&self.config.local) {
                "yes"
            } else {
                "no"
            };
            metrics::counter!(m::COORDINATOR_REQUESTS, "op" => "write", "replica" => is_replica)
                .increment(1);
            let key = (keyspace.clone(), replicas.to_vec(), ksp.pending(token));
            placements.entry(keyspace).or_insert(ksp);
            by_replicas.entry(key).or_default().push(mutation);
        }
        let mut groups = Vec::with_capacity(by_replicas.len());
        for ((keyspace, replicas, pending), mutations) in by_replicas {
            let Some(ksp) = placements.get(&keyspace) else {
                continue; // every keyspace grouped above has its placement
            };
            // Pending replicas (gaining the range while a node joins or leaves) get the write
            // too, without counting toward the level: the level is met on today's replicas.
            let requirement = Requirement::new(cl, &ksp.replication, &self.config.dc);
            let (live, mut down): (Vec<HostId>, Vec<HostId>) =
                replicas.iter().copied().partition(|h| state.is_alive(h));
            let (pending, pending_down): (Vec<HostId>, Vec<HostId>) =
                pending.into_iter().partition(|h| state.is_alive(h));
            down.extend(pending_down);
            requirement
                .check_live(live.iter().map(|h| state.dc_of(h)))
                .map_err(|u| unavailable(consistency, u))?;
            if live.is_empty() && !down.iter().any(|h| self.hint_allowed(h)) {
                // ANY with no replica up is acknowledged once a hint is stored; with hints off
                // (or every replica down for longer than the hint window) nothing can take it.
                return Err(unavailable(
                    consistency,
                    ringdb_ring::Unavailable {
                        consistency: cl,
                        required: 1,
                        alive: 0,
                        dc: None,
                    },
                ));
            }
            groups.push(WriteGroup {
                requirement,
                live,
                pending,
                down,
                mutations,
            });
        }
        Ok(groups)
    }

    /// Writes every group at the consistency level, concurrently; the first failure is the
    /// answer. With `completions`, each group reports on its channel, after the answer, whether
    /// every live replica applied it (one sender per group, in order).
    pub(super) async fn write_groups(
        &self,
        state: &ClusterState,
        consistency: u16,
        write_type: WriteType,
        groups: Vec<WriteGroup>,
        completions: Option<Vec<oneshot::Sender<bool>>>,
    ) -> Result<(), ExecError> {
        let mut completions = completions.map(Vec::into_iter);
        let writes: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let completion = completions.as_mut().and_then(Iterator::next);
                self.write_to_replicas(state, consistency, write_type.clone(), group, completion)
            })
            .collect();
        for result in futures::future::join_all(writes).await {
            result?;
        }
        Ok(())
    }

    /// Sends one group to its live replicas and waits for the level, while its down replicas
    /// get hints. `completion`, if given, learns once the level is met whether every live
    /// replica applied the group (the answers after the level are counted in the background);
    /// it is dropped unanswered when the level is not met. Live replicas that do not answer in
    /// time get hints too, whatever the outcome.
    async fn write_to_replicas(
        &self,
        state: &ClusterState,
        consistency: u16,
        write_type: WriteType,
        group: WriteGroup,
        completion: Option<oneshot::Sender<bool>>,
    ) -> Result<(), ExecError> {
        let WriteGroup {
            requirement,
            live,
            pending,
            down,
            mutations,
        } = group;
        let timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        // Hints share the verb's mutations: kept until every replica answered.
        let mutations = Arc::new(mutations);
        let for_hints: Option<Arc<Vec<Mutation>>> =
            self.hints.config().enabled.then(|| mutations.clone());
        let (hinted_tx, mut hinted) = oneshot::channel::<usize>();
        let mut hints_pending = false;
        if let (Some(copy), false, Some(me)) = (&for_hints, down.is_empty(), self.me.upgrade()) {
            hints_pending = true;
            let copy = copy.clone();
            tokio::spawn(async move {
                let stored = me.store_hints(&down, &copy).await;
                let _ = hinted_tx.send(stored);
            });
        }
        let mut tracker =
            QuorumTracker::new(requirement, live.iter().map(|h| (*h, state.dc_of(h))));
        // The tracker counts `live` only; answers of pending replicas change nothing there.
        let targets: Vec<HostId> = live.iter().chain(&pending).copied().collect();
        let (answers_tx, mut answers) = tokio::sync::mpsc::channel(targets.len().max(1));
        self.send_mutations(state, &targets, mutations, timeout, &answers_tx);
        drop(answers_tx);
        let mut answers_open = true;
        let mut outcome = Outcome::default();
        let result = loop {
            let progress = tokio::select! {
                answer = answers.recv(), if answers_open => match answer {
                    Some((host, answer)) => match outcome.record(host, answer) {
                        true => tracker.on_ack(host),
                        false => tracker.on_failure(host),
                    },
                    None => {
                        answers_open = false;
                        tracker.progress()
                    }
                },
                stored = &mut hinted, if hints_pending => {
                    hints_pending = false;
                    match stored {
                        Ok(n) if n > 0 => tracker.on_hint_stored(),
                        _ => tracker.progress(),
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_timeout")
                        .increment(1);
                    break Err(ExecError::WriteTimeout {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        write_type: write_type.as_str().to_string(),
                    });
                }
            };
            match progress {
                Progress::Satisfied => break Ok(()),
                // Everyone answered, no hint is coming, and the level is neither met nor
                // impossible: only ANY without an acknowledgement gets here.
                Progress::Waiting if answers_open || hints_pending => continue,
                Progress::Waiting | Progress::Failed => {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_failure")
                        .increment(1);
                    break Err(ExecError::WriteFailure {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        num_failures: tracker.failures() as i32,
                        write_type: write_type.as_str().to_string(),
                        reasons: outcome.failures.clone(),
                    });
                }
            }
        };
        let completion = completion.filter(|_| result.is_ok());
        self.finish_in_background(answers, targets, outcome, for_hints, completion);
        result
    }

    /// Follows the answers still to come after a write's outcome is decided: reports to
    /// `completion` whether every replica it was `sent` to applied it, and hints those that
    /// never answered (unreachable, or silent until the timeout).
    fn finish_in_background(
        &self,
        mut answers: tokio::sync::mpsc::Receiver<super::Answer>,
        sent: Vec<HostId>,
        mut outcome: Outcome,
        for_hints: Option<Arc<Vec<Mutation>>>,
        completion: Option<oneshot::Sender<bool>>,
    ) {
        if outcome.answered.len() >= sent.len() {
            if let Some(c) = completion {
                let _ = c.send(outcome.applied >= sent.len());
            }
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            // Each send gives up at the write timeout, so the channel closes by then.
            while let Some((host, answer)) = answers.recv().await {
                outcome.record(host, answer);
            }
            if let Some(c) = completion {
                let _ = c.send(outcome.applied >= sent.len());
            }
            if let Some(mutations) = for_hints {
                let silent: Vec<HostId> = sent
                    .iter()
                    .filter(|h| !outcome.answered.contains(h))
                    .copied()
                    .collect();
                if !silent.is_empty() {
                    me.store_hints(&silent, &mutations).await;
                }
            }
        });
    }
}

/// The answers a write got so far.
#[derive(Debug, Default)]
struct Outcome {
    /// Replicas that answered at all (a replica's own error counts: it was reached, and a hint
    /// would fail the same way).
    answered: HashSet<HostId>,
    /// How many applied the write.
    applied: usize,
    /// Why replicas failed it (the first few): they go into the client's error message.
    failures: Vec<String>,
}

impl Outcome {
    /// Records one answer; true when it is an acknowledgement.
    fn record(&mut self, host: HostId, answer: Result<VerbResponse, String>) -> bool {
        if !matches!(answer, Ok(VerbResponse::Applied)) {
            super::note_failure(&mut self.failures, || super::failure_reason(host, &answer));
        }
        match answer {
            Ok(VerbResponse::Applied) => {
                self.answered.insert(host);
                self.applied += 1;
                true
            }
            Ok(other) => {
                tracing::debug!(%host, answer = ?other, "replica failed a write");
                self.answered.insert(host);
                false
            }
            Err(e) => {
                tracing::debug!(%host, error = %e, "replica not reached");
                false
            }
        }
    }
}

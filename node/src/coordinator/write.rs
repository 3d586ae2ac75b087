//! The write path: every live replica gets the mutation; the client's answer waits for the
//! consistency level.
//!
//! Mutations are grouped by keyspace and replica set: a group travels as one verb to each of its
//! replicas and is counted by one [`QuorumTracker`]. Groups are coordinated independently and
//! the first failure is the answer, which is all a simple write or an unlogged batch promises. A
//! logged batch over several mutations first goes through the batchlog
//! ([`super::batchlog`]); the groups are then written exactly the same way.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

use ringdb_cql::message::WriteType;
use ringdb_ring::{ConsistencyLevel, HostId, Progress, QuorumTracker, Requirement, Token};

use super::{consistency_level, unavailable, ClusterState, Coordinator};
use crate::executor::datapath::{WriteKind, WriteRequest};
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::Mutation;
use crate::verbs::{VerbRequest, VerbResponse};

/// Mutations that share a keyspace and a replica set, and what writing them needs.
pub(super) struct WriteGroup {
    /// What the consistency level needs from the group's replicas.
    pub requirement: Requirement,
    /// The group's replicas that are alive: all of them are sent the mutations.
    pub live: Vec<HostId>,
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
        let mut requirements: HashMap<String, Requirement> = HashMap::new();
        let mut by_replicas: BTreeMap<(String, Vec<HostId>), Vec<Mutation>> = BTreeMap::new();
        for (keyspace, mutation) in mutations {
            let ksp = self.keyspace(state, &keyspace)?;
            let replicas = ksp.map.replicas(Token(mutation.partition.token));
            let is_replica = if replicas.contains(&self.config.local) {
                "yes"
            } else {
                "no"
            };
            metrics::counter!(m::COORDINATOR_REQUESTS, "op" => "write", "replica" => is_replica)
                .increment(1);
            let replicas = replicas.to_vec();
            requirements
                .entry(keyspace.clone())
                .or_insert_with(|| Requirement::new(cl, &ksp.replication, &self.config.dc));
            by_replicas
                .entry((keyspace, replicas))
                .or_default()
                .push(mutation);
        }
        let mut groups = Vec::with_capacity(by_replicas.len());
        for ((keyspace, replicas), mutations) in by_replicas {
            let Some(requirement) = requirements.get(&keyspace) else {
                continue; // every keyspace grouped above has its requirement
            };
            let live: Vec<HostId> = replicas
                .iter()
                .filter(|h| state.is_alive(h))
                .copied()
                .collect();
            requirement
                .check_live(live.iter().map(|h| state.dc_of(h)))
                .map_err(|u| unavailable(consistency, u))?;
            if live.is_empty() {
                // ANY with no replica up: acknowledged once a hint is stored, and hints are not
                // implemented yet — say so rather than pretend.
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
                requirement: requirement.clone(),
                live,
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

    /// Sends one group to its live replicas and waits for the level. `completion`, if given,
    /// learns once the level is met whether every live replica applied the group (the answers
    /// after the level are counted in the background); it is dropped unanswered when the level
    /// is not met.
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
            mutations,
        } = group;
        let timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tracker =
            QuorumTracker::new(requirement, live.iter().map(|h| (*h, state.dc_of(h))));
        let mut answers = self.dispatch(state, &live, VerbRequest::Mutate { mutations }, timeout);
        let mut applied = 0;
        loop {
            let progress = match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((host, Ok(VerbResponse::Applied)))) => {
                    applied += 1;
                    tracker.on_ack(host)
                }
                Ok(Some((host, answer))) => {
                    tracing::debug!(%host, ?answer, "replica failed a write");
                    tracker.on_failure(host)
                }
                // Everyone answered and the level is neither met nor impossible: only ANY
                // without an acknowledgement gets here.
                Ok(None) => Progress::Failed,
                Err(_) => {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_timeout")
                        .increment(1);
                    return Err(ExecError::WriteTimeout {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        write_type: write_type.as_str().to_string(),
                    });
                }
            };
            match progress {
                Progress::Satisfied => {
                    if let Some(completion) = completion {
                        report_completion(answers, applied, live.len(), completion);
                    }
                    return Ok(());
                }
                Progress::Waiting => continue,
                Progress::Failed => {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_failure")
                        .increment(1);
                    return Err(ExecError::WriteFailure {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        num_failures: tracker.failures() as i32,
                        write_type: write_type.as_str().to_string(),
                    });
                }
            }
        }
    }
}

/// Tells `completion` whether all `live` replicas applied a write, of which `applied` already
/// did: at once when they all have, else after the remaining answers (each send gives up at the
/// write timeout, so the channel closes by then).
fn report_completion(
    mut answers: tokio::sync::mpsc::Receiver<super::Answer>,
    applied: usize,
    live: usize,
    completion: oneshot::Sender<bool>,
) {
    if applied >= live {
        let _ = completion.send(true);
        return;
    }
    tokio::spawn(async move {
        let mut applied = applied;
        while let Some((_, answer)) = answers.recv().await {
            if !matches!(answer, Ok(VerbResponse::Applied)) {
                break;
            }
            applied += 1;
        }
        let _ = completion.send(applied >= live);
    });
}

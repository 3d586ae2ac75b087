//! The write path: every live replica gets the mutation; the client's answer waits for the
//! consistency level.

use std::collections::BTreeMap;

use ringdb_ring::{HostId, Progress, QuorumTracker, Requirement, Token};

use super::{consistency_level, unavailable, Coordinator};
use crate::executor::ExecError;
use crate::metrics as m;
use crate::storage::Mutation;
use crate::verbs::{VerbRequest, VerbResponse};

impl Coordinator {
    /// Applies `mutations` at `consistency`: mutations with the same replica set travel together,
    /// each set is coordinated independently (an unlogged batch over several partitions is
    /// several writes), and the first failure is the answer. Availability is checked for every
    /// set before anything is sent, so `Unavailable` means nothing was written.
    pub(super) async fn write_mutations(
        &self,
        keyspace: &str,
        mutations: Vec<Mutation>,
        consistency: u16,
    ) -> Result<(), ExecError> {
        let cl = consistency_level(consistency)?;
        cl.validate_for_write()
            .map_err(|e| ExecError::Invalid(e.to_string()))?;
        let state = self.state();
        let ksp = self.keyspace(&state, keyspace)?;
        let mut groups: BTreeMap<Vec<HostId>, Vec<Mutation>> = BTreeMap::new();
        for mutation in mutations {
            let replicas = ksp.map.replicas(Token(mutation.partition.token));
            let is_replica = if replicas.contains(&self.config.local) {
                "yes"
            } else {
                "no"
            };
            metrics::counter!(m::COORDINATOR_REQUESTS, "op" => "write", "replica" => is_replica)
                .increment(1);
            groups.entry(replicas.to_vec()).or_default().push(mutation);
        }
        let requirement = Requirement::new(cl, &ksp.replication, &self.config.dc);
        let mut plans = Vec::with_capacity(groups.len());
        for (replicas, mutations) in groups {
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
            plans.push((live, mutations));
        }
        let writes = plans.into_iter().map(|(live, mutations)| {
            self.write_to_replicas(&state, requirement.clone(), consistency, live, mutations)
        });
        for result in futures::future::join_all(writes).await {
            result?;
        }
        Ok(())
    }

    async fn write_to_replicas(
        &self,
        state: &super::ClusterState,
        requirement: Requirement,
        consistency: u16,
        live: Vec<HostId>,
        mutations: Vec<Mutation>,
    ) -> Result<(), ExecError> {
        let timeout = self.config.write_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tracker =
            QuorumTracker::new(requirement, live.iter().map(|h| (*h, state.dc_of(h))));
        let mut answers = self.dispatch(state, &live, VerbRequest::Mutate { mutations }, timeout);
        loop {
            let progress = match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some((host, Ok(VerbResponse::Applied)))) => tracker.on_ack(host),
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
                        write_type: "SIMPLE".into(),
                    });
                }
            };
            match progress {
                Progress::Satisfied => return Ok(()),
                Progress::Waiting => continue,
                Progress::Failed => {
                    metrics::counter!(m::COORDINATOR_ERRORS, "kind" => "write_failure")
                        .increment(1);
                    return Err(ExecError::WriteFailure {
                        consistency,
                        received: tracker.received() as i32,
                        block_for: tracker.block_for() as i32,
                        num_failures: tracker.failures() as i32,
                        write_type: "SIMPLE".into(),
                    });
                }
            }
        }
    }
}

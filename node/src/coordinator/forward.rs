//! Cross-datacenter write forwarding: a write crosses the WAN once per remote datacenter.
//!
//! For each remote datacenter that holds two replicas or more of a write, the coordinator
//! sends [`VerbRequest::MutateForward`] to one of them (picked at random, to spread the load),
//! naming the others. That node applies the mutations (its answer is its own
//! acknowledgement) and sends [`VerbRequest::MutateAndAck`] to each of the others over its
//! local network; each of those applies and acknowledges **straight to the coordinator** with
//! [`VerbRequest::ForwardAck`]. The coordinator counts every acknowledgement toward the
//! consistency level as if it had written to each replica itself.
//!
//! Failure handling:
//! - the forwarding node cannot be reached (or fails): the coordinator sends to the others
//!   directly, so one dead node never costs a datacenter's acknowledgements;
//! - an acknowledgement that does not come by the write timeout counts as a replica that did
//!   not answer (the write path then hints it, as for any silent replica);
//! - an acknowledgement for an unknown id (late, after the timeout) is ignored.
//!
//! A datacenter with a single replica of the write gets a plain [`VerbRequest::Mutate`]: there
//! is nothing to save.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::IndexedRandom;
use tokio::sync::{mpsc, Notify};

use ringdb_ring::HostId;

use super::{remote_call, Answer, ClusterState, Coordinator};
use crate::storage::Mutation;
use crate::verbs::{self, ReplicaError, VerbRequest, VerbResponse};

/// Forwarded writes waiting for acknowledgements, by id.
#[derive(Default)]
pub(crate) struct Forwards {
    next_id: AtomicU64,
    /// Acknowledgements received straight from forwarded-to replicas.
    acks: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
}

/// Replicas of a forwarded write, with their internode addresses.
type Hosts = Vec<(HostId, SocketAddr)>;

/// One forwarded write: where its answers go and who has yet to acknowledge.
struct Waiting {
    answers: mpsc::Sender<Answer>,
    hosts: Hosts,
    done: Arc<Notify>,
}

impl Forwards {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the hosts still waiting out of forwarded write `id` (all of them, for the direct
    /// fallback or the timeout), with its answer channel.
    fn take_rest(&self, id: u64) -> Option<(mpsc::Sender<Answer>, Hosts)> {
        self.lock().remove(&id).map(|w| (w.answers, w.hosts))
    }

    /// Records `from`'s acknowledgement of `id`; false when nothing waited for it.
    fn acknowledge(&self, id: u64, from: SocketAddr, answer: Result<VerbResponse, String>) -> bool {
        let mut waiting = self.lock();
        let Some(w) = waiting.get_mut(&id) else {
            return false;
        };
        let Some(at) = w.hosts.iter().position(|(_, addr)| *addr == from) else {
            return false;
        };
        let (host, _) = w.hosts.swap_remove(at);
        self.acks.fetch_add(1, Ordering::Relaxed);
        // The channel has room for one answer per host of the write: this never waits.
        let _ = w.answers.try_send((host, answer));
        if w.hosts.is_empty() {
            let w = waiting.remove(&id).expect("present");
            w.done.notify_one();
        }
        true
    }

    /// How many forwarded writes wait (for tests).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.lock().len()
    }

    /// How many forwarded acknowledgements arrived (for tests).
    #[cfg(test)]
    pub(crate) fn acks(&self) -> u64 {
        self.acks.load(Ordering::Relaxed)
    }
}

impl Coordinator {
    /// Sends `mutations` to `targets`, answering on `tx` (room for one answer per target):
    /// directly to the local datacenter's replicas and to remote datacenters holding a single
    /// replica, through one forwarding node to each remote datacenter holding more.
    pub(super) fn send_mutations(
        &self,
        state: &ClusterState,
        targets: &[HostId],
        mutations: Arc<Vec<Mutation>>,
        timeout: Duration,
        tx: &mpsc::Sender<Answer>,
    ) {
        let mut direct: Vec<HostId> = Vec::new();
        let mut remote: HashMap<&str, Vec<HostId>> = HashMap::new();
        for host in targets {
            let dc = state.dc_of(host);
            if dc == self.config.dc || *host == self.config.local {
                direct.push(*host);
            } else {
                remote.entry(dc).or_default().push(*host);
            }
        }
        let me_addr = state.addr_of(&self.config.local);
        for (_, hosts) in remote {
            match (hosts.len(), me_addr) {
                (2.., Some(reply_to)) => {
                    self.forward(state, hosts, mutations.clone(), reply_to, timeout, tx)
                }
                _ => direct.extend(hosts),
            }
        }
        if !direct.is_empty() {
            self.send_to(
                state,
                &direct,
                VerbRequest::Mutate { mutations },
                timeout,
                tx,
            );
        }
    }

    /// Writes to one remote datacenter's `hosts` through one of them.
    fn forward(
        &self,
        state: &ClusterState,
        hosts: Vec<HostId>,
        mutations: Arc<Vec<Mutation>>,
        reply_to: SocketAddr,
        timeout: Duration,
        tx: &mpsc::Sender<Answer>,
    ) {
        let with_addr: Vec<(HostId, SocketAddr)> = hosts
            .iter()
            .filter_map(|h| state.addr_of(h).map(|a| (*h, a)))
            .collect();
        let (Some(me), Some(transport), true) = (
            self.me.upgrade(),
            self.transport.get().cloned(),
            with_addr.len() == hosts.len(),
        ) else {
            // Not connected, or a replica without an address: the plain path reports it.
            self.send_to(
                state,
                &hosts,
                VerbRequest::Mutate { mutations },
                timeout,
                tx,
            );
            return;
        };
        let via = *with_addr
            .choose(&mut rand::rng())
            .expect("two hosts or more");
        let rest: Vec<(HostId, SocketAddr)> =
            with_addr.into_iter().filter(|(h, _)| *h != via.0).collect();
        let id = self.forwards.next_id.fetch_add(1, Ordering::Relaxed);
        let request = VerbRequest::MutateForward {
            mutations: mutations.clone(),
            forward_to: rest.iter().map(|(_, a)| *a).collect(),
            reply_to,
            id,
        };
        let done = Arc::new(Notify::new());
        self.forwards.lock().insert(
            id,
            Waiting {
                answers: tx.clone(),
                hosts: rest,
                done: done.clone(),
            },
        );
        metrics::counter!(crate::metrics::FORWARDED_WRITES).increment(1);
        let tx = tx.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let answer = match verbs::encode(&request) {
                Ok(body) => remote_call(&transport, via.1, body, timeout).await,
                Err(e) => Err(e),
            };
            let forwarded = matches!(answer, Ok(VerbResponse::Applied));
            let _ = tx.send((via.0, answer)).await;
            if !forwarded {
                // The forwarder failed or was never reached: write to the others directly.
                if let Some((tx, rest)) = me.forwards.take_rest(id) {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let hosts: Vec<HostId> = rest.iter().map(|(h, _)| *h).collect();
                    me.send_to(
                        &me.state(),
                        &hosts,
                        VerbRequest::Mutate { mutations },
                        left,
                        &tx,
                    );
                }
                return;
            }
            tokio::select! {
                _ = done.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    if let Some((tx, rest)) = me.forwards.take_rest(id) {
                        for (host, _) in rest {
                            let _ = tx
                                .send((host, Err("no acknowledgement of the forwarded write in time".into())))
                                .await;
                        }
                    }
                }
            }
        });
    }

    /// Answers the forwarding verbs: [`VerbRequest::MutateForward`] on a forwarding node,
    /// [`VerbRequest::MutateAndAck`] on the replicas it forwards to, and
    /// [`VerbRequest::ForwardAck`] on the coordinator.
    pub async fn handle_forwarding(&self, from: SocketAddr, request: VerbRequest) -> VerbResponse {
        let timeout = self.config.write_timeout;
        match request {
            VerbRequest::MutateForward {
                mutations,
                forward_to,
                reply_to,
                id,
            } => {
                if let Some(transport) = self.transport.get() {
                    let onward = VerbRequest::MutateAndAck {
                        mutations: mutations.clone(),
                        reply_to,
                        id,
                    };
                    match verbs::encode(&onward) {
                        Ok(body) => {
                            for addr in forward_to {
                                let (transport, body) = (transport.clone(), body.clone());
                                tokio::spawn(async move {
                                    if let Err(e) =
                                        remote_call(&transport, addr, body, timeout).await
                                    {
                                        tracing::debug!(%addr, error = %e, "forwarded write not delivered");
                                    }
                                });
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot forward a write"),
                    }
                }
                self.replica
                    .handle(&VerbRequest::Mutate { mutations })
                    .await
            }
            VerbRequest::MutateAndAck {
                mutations,
                reply_to,
                id,
            } => {
                let applied = self
                    .replica
                    .handle(&VerbRequest::Mutate { mutations })
                    .await;
                let error = match &applied {
                    VerbResponse::Applied => None,
                    VerbResponse::Error(e) => Some(e.clone()),
                    other => Some(ReplicaError::Storage(format!(
                        "unexpected answer {other:?}"
                    ))),
                };
                let ack = VerbRequest::ForwardAck { id, error };
                match (self.transport.get(), verbs::encode(&ack)) {
                    (Some(transport), Ok(body)) => {
                        if let Err(e) = remote_call(transport, reply_to, body, timeout).await {
                            tracing::debug!(%reply_to, error = %e, "acknowledgement of a forwarded write not delivered");
                        }
                    }
                    (_, Err(e)) => {
                        tracing::warn!(error = %e, "cannot acknowledge a forwarded write")
                    }
                    (None, _) => {}
                }
                applied
            }
            VerbRequest::ForwardAck { id, error } => {
                let answer = Ok(match error {
                    None => VerbResponse::Applied,
                    Some(e) => VerbResponse::Error(e),
                });
                if !self.forwards.acknowledge(id, from, answer) {
                    tracing::trace!(%from, id, "late or unknown forwarded-write acknowledgement");
                }
                VerbResponse::Applied
            }
            other => VerbResponse::Error(ReplicaError::BadRequest(format!(
                "{} is not a forwarding verb",
                other.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ringdb_ring::ConsistencyLevel;

    use super::super::testing::{insert, value_of, TestCluster};
    use crate::executor::datapath::{WriteKind, WriteRequest};
    use crate::executor::ExecError;
    use crate::schema::TableDef;

    const TIMEOUT: Duration = Duration::from_secs(2);
    const TABLE: &str = "CREATE TABLE t (k int PRIMARY KEY, v text)";
    const TWO_DCS: &str = "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}";
    const RACKS: [&str; 6] = ["r1", "r2", "r3", "dc2:r1", "dc2:r2", "dc2:r3"];

    async fn write(
        cluster: &TestCluster,
        table: &TableDef,
        k: i32,
        cl: ConsistencyLevel,
    ) -> Result<(), ExecError> {
        cluster.nodes[0]
            .coordinator
            .coordinate_write(WriteRequest {
                mutations: vec![("ks".into(), insert(table, k, "forwarded", 10))],
                consistency: cl.code(),
                kind: WriteKind::Simple,
            })
            .await
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_remote_datacenter_gets_one_message_and_every_replica_acknowledges() {
        let cluster = TestCluster::start(&RACKS, TIMEOUT).await;
        let table = cluster.create_table_with(TWO_DCS, TABLE);
        // Warm the connections so that the count below is about the write only.
        write(&cluster, &table, 0, ConsistencyLevel::All)
            .await
            .expect("warm-up");
        let coordinator = &cluster.nodes[0].coordinator;
        let acks = coordinator.forwards.acks();
        // ALL needs the acknowledgement of every replica of dc2: the forwarder answers the
        // coordinator's one message, the two others acknowledge straight to the coordinator.
        write(&cluster, &table, 1, ConsistencyLevel::All)
            .await
            .expect("ALL over two datacenters");
        assert_eq!(
            coordinator.forwards.acks() - acks,
            2,
            "direct acknowledgements"
        );
        for node in &cluster.nodes {
            assert_eq!(
                value_of(&*node.engine, &table, 1).as_deref(),
                Some("forwarded")
            );
        }
        eventually("no forwarded write waits", || {
            coordinator.forwards.pending() == 0
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_forwarder_does_not_cost_the_datacenter_its_acknowledgements() {
        let cluster = TestCluster::start(&RACKS, TIMEOUT).await;
        let table = cluster.create_table_with(TWO_DCS, TABLE);
        // dc2's first node dies; the coordinator still believes it alive, so it may be chosen
        // to forward. EACH_QUORUM needs two of dc2's three every time.
        cluster.cut_off(3).await;
        for k in 0..16 {
            write(&cluster, &table, k, ConsistencyLevel::EachQuorum)
                .await
                .unwrap_or_else(|e| panic!("write {k} at EACH_QUORUM: {e:?}"));
        }
        for k in 0..16 {
            for i in [4, 5] {
                assert_eq!(
                    value_of(&*cluster.nodes[i].engine, &table, k).as_deref(),
                    Some("forwarded"),
                    "node {i}, key {k}"
                );
            }
        }
    }
}

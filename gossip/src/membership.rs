//! The membership task: the one owner of the gossip state machine.
//!
//! [`Membership::start`] spawns a task that drives a [`Gossiper`] with real time and the real
//! transport. It `select!`s over three inputs — the gossiper's next timeout, gossip messages from
//! the transport's [`Channel::Gossip`] queue, and commands from the rest of the node (set an
//! application state, shut down) — and after each step drains the gossiper's outputs: messages go
//! to [`Transport::send`] (one-way, bounded per-peer queues that drop the oldest), events go to a
//! `broadcast` channel, and the cluster view is republished as an immutable snapshot on a `watch`
//! channel. Readers (system tables, `ringdb status`, the CQL server's event pushes, later the
//! coordinator) never lock the state machine: they read the latest `Arc<ClusterView>`.
//!
//! Messages that fail to decode are dropped and counted; they never reach the state machine.
//! Shutdown announces `SHUTDOWN` to every live peer (so they mark this node down at once instead
//! of waiting for the failure detector), gives the transport a moment to deliver it, and stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::protocol::{GossipConfig, GossipMessage, Gossiper, MembershipEvent};
use crate::state::{AppStateKey, ClusterView, Endpoint, Generation, NodeStatus};
use crate::transport::{self, Channel, Inbound, Transport};

/// Membership events kept for slow subscribers; a subscriber that lags further loses the oldest
/// (and should re-read the view, which is always complete).
pub const EVENT_BUFFER: usize = 1024;

/// Commands queued to the task; senders wait when it is full (they are rare: state changes).
const COMMAND_QUEUE: usize = 64;

/// Everything the membership task starts from.
pub struct MembershipConfig {
    /// Protocol settings (cluster name, interval, seeds, failure detector).
    pub gossip: GossipConfig,
    /// This node's internode address.
    pub local: Endpoint,
    /// This process's generation (higher than any the node used before).
    pub generation: Generation,
    /// Application states published from the start.
    pub initial_states: Vec<(AppStateKey, String)>,
    /// Seed of the gossiper's random choices.
    pub rng_seed: u64,
}

enum Command {
    SetAppState(AppStateKey, String),
    SetPeerStatus(Endpoint, NodeStatus, oneshot::Sender<Result<(), String>>),
    Shutdown(oneshot::Sender<()>),
}

/// Counters of the membership task.
#[derive(Debug, Default)]
pub struct MembershipStats {
    /// Gossip messages received and applied.
    pub messages_in: AtomicU64,
    /// Gossip messages handed to the transport.
    pub messages_out: AtomicU64,
    /// Gossip bytes handed to the transport.
    pub bytes_out: AtomicU64,
    /// Inbound messages that did not decode (dropped).
    pub malformed: AtomicU64,
}

/// A handle on the membership task. Cheap to clone.
#[derive(Clone)]
pub struct Membership {
    view: watch::Receiver<Arc<ClusterView>>,
    events: broadcast::Sender<MembershipEvent>,
    commands: mpsc::Sender<Command>,
    stats: Arc<MembershipStats>,
    local: Endpoint,
    generation: Generation,
}

impl Membership {
    /// Starts the task. `inbound` is the transport's gossip queue.
    pub fn start(
        config: MembershipConfig,
        transport: Transport,
        inbound: mpsc::Receiver<Inbound>,
    ) -> (Membership, JoinHandle<()>) {
        let now = Instant::now();
        let mut gossiper = Gossiper::new(
            config.local,
            config.generation,
            config.gossip,
            config.rng_seed,
            now,
        );
        for (key, value) in config.initial_states {
            gossiper.set_app_state(key, value);
        }
        // Initial local state changes are not news to anyone.
        while gossiper.poll_event().is_some() {}
        let (view_tx, view_rx) = watch::channel(Arc::new(gossiper.view()));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let stats = Arc::new(MembershipStats::default());
        let handle = Membership {
            view: view_rx,
            events: events.clone(),
            commands,
            stats: stats.clone(),
            local: config.local,
            generation: config.generation,
        };
        let task = Driver {
            gossiper,
            transport,
            inbound,
            commands: commands_rx,
            view: view_tx,
            events,
            stats,
        };
        (handle, tokio::spawn(task.run()))
    }

    /// This node's internode address.
    pub fn local(&self) -> Endpoint {
        self.local
    }

    /// This process's gossip generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The latest cluster view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    /// A receiver that sees every new cluster view.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Membership events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.events.subscribe()
    }

    /// The task's counters.
    pub fn stats(&self) -> &MembershipStats {
        &self.stats
    }

    /// Publishes a new value of one of this node's application states (a no-op when unchanged).
    pub async fn set_app_state(&self, key: AppStateKey, value: impl Into<String>) {
        let _ = self
            .commands
            .send(Command::SetAppState(key, value.into()))
            .await;
    }

    /// Publishes `status` on behalf of `endpoint`, a peer that is down
    /// ([`crate::protocol::Gossiper::set_peer_status`]); the change is in the view once this
    /// returns `Ok`.
    pub async fn set_peer_status(
        &self,
        endpoint: Endpoint,
        status: NodeStatus,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SetPeerStatus(endpoint, status, tx))
            .await
            .map_err(|_| "gossip has stopped".to_string())?;
        rx.await.map_err(|_| "gossip has stopped".to_string())?
    }

    /// Announces `SHUTDOWN` to the live peers and stops the task; returns once the announcement
    /// was handed to the transport (or after `timeout`).
    pub async fn shutdown(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

struct Driver {
    gossiper: Gossiper,
    transport: Transport,
    inbound: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<Command>,
    view: watch::Sender<Arc<ClusterView>>,
    events: broadcast::Sender<MembershipEvent>,
    stats: Arc<MembershipStats>,
}

impl Driver {
    async fn run(mut self) {
        tracing::info!(
            local = %self.gossiper.local(),
            generation = self.gossiper.generation(),
            "gossip started"
        );
        loop {
            let deadline = tokio::time::Instant::from_std(self.gossiper.next_timeout());
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    self.gossiper.handle_tick(Instant::now());
                }
                inbound = self.inbound.recv() => {
                    let Some(inbound) = inbound else {
                        tracing::info!("transport closed; gossip stops");
                        return;
                    };
                    self.receive(inbound);
                }
                command = self.commands.recv() => match command {
                    Some(Command::SetAppState(key, value)) => {
                        self.gossiper.set_app_state(key, value);
                    }
                    Some(Command::SetPeerStatus(endpoint, status, done)) => {
                        let result = self.gossiper.set_peer_status(endpoint, status);
                        self.flush();
                        let _ = done.send(result);
                    }
                    Some(Command::Shutdown(done)) => {
                        self.gossiper.announce_shutdown(Instant::now());
                        self.flush();
                        tracing::info!("announced shutdown to live peers; gossip stops");
                        let _ = done.send(());
                        return;
                    }
                    // Every handle is gone: nobody can ask for anything any more.
                    None => return,
                },
            }
            self.flush();
        }
    }

    fn receive(&mut self, inbound: Inbound) {
        let from = Endpoint(inbound.from);
        match transport::decode::<GossipMessage>(&inbound.body) {
            Ok(message) => {
                self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                self.gossiper.handle_message(Instant::now(), from, message);
            }
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, error = %e, "dropping a malformed gossip message");
            }
        }
    }

    /// Hands queued messages to the transport, publishes the new view and then the events.
    fn flush(&mut self) {
        while let Some((to, message)) = self.gossiper.poll_transmit() {
            match transport::encode(&message) {
                Ok(body) => {
                    self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_out
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    self.transport.send(to.0, Channel::Gossip, body);
                }
                Err(e) => tracing::warn!(%to, error = %e, "cannot encode a gossip message"),
            }
        }
        // The view first, then the events: a subscriber that reads the view when it gets an
        // event must see the state that event is about, never an older one.
        let view = self.gossiper.view();
        self.view.send_if_modified(|current| {
            if **current == view {
                false
            } else {
                *current = Arc::new(view);
                true
            }
        });
        while let Some(event) = self.gossiper.poll_event() {
            log_event(&event);
            let _ = self.events.send(event);
        }
    }
}

fn log_event(event: &MembershipEvent) {
    match event {
        MembershipEvent::Discovered(e) => tracing::info!(endpoint = %e, "discovered node"),
        MembershipEvent::Up(e) => tracing::info!(endpoint = %e, "node is up"),
        MembershipEvent::Down(e) => tracing::warn!(endpoint = %e, "node is down"),
        MembershipEvent::Restarted {
            endpoint,
            generation,
        } => tracing::info!(%endpoint, generation, "node restarted"),
        MembershipEvent::StateChanged { endpoint, keys } => {
            tracing::debug!(%endpoint, ?keys, "node state changed")
        }
        MembershipEvent::Removed(e) => tracing::info!(endpoint = %e, "node removed"),
    }
}

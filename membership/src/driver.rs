//! Runs chitchat for one node: publishes its own keys and turns the gossip state into a
//! [`ClusterView`] that readers get through a watch channel.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chitchat::transport::Transport;
use chitchat::{
    Chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::persist::{self, FailStatic};
use crate::records::{self, NODE_KEY, NodeRecord, NodeStatus, RECORD_VERSION, ServiceRecord};
use crate::view::{self, ClusterView, NodeSnapshot};

/// Gossip and failure-detection tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipSettings {
    /// Nodes with another cluster id ignore each other.
    pub cluster_id: String,
    /// Time between gossip rounds.
    pub interval: Duration,
    /// Failure-detector threshold. chitchat's phi is the time since the last heartbeat divided
    /// by the mean heartbeat inter-arrival time, so a member is declared dead after about
    /// `phi_threshold × mean`. Heartbeats arrive directly and through relays, every 0.4 to 0.7
    /// gossip intervals in practice, so the default 16 with a 500 ms interval declares death
    /// after 3 to 6 s and rides out stalls (GC, SIGSTOP) of 2 s.
    pub phi_threshold: f64,
    /// Heartbeat intervals remembered per peer.
    pub sampling_window: usize,
    /// Heartbeat gaps longer than this are not learned from (a stall is not the norm).
    pub max_interval: Duration,
    /// Prior for the heartbeat interval before samples arrive.
    pub initial_interval: Duration,
    /// How long a dead member is remembered before its state is dropped.
    pub dead_node_grace: Duration,
    /// How long deleted keys are remembered.
    pub tombstone_grace: Duration,
}

impl Default for GossipSettings {
    fn default() -> Self {
        let interval = Duration::from_millis(500);
        Self {
            cluster_id: "murmur".into(),
            interval,
            phi_threshold: 16.0,
            sampling_window: 1000,
            max_interval: Duration::from_secs(10),
            // A cautious prior: until real samples arrive, assume slow heartbeats.
            initial_interval: interval * 2,
            dead_node_grace: Duration::from_secs(10 * 60),
            tombstone_grace: Duration::from_secs(60 * 60),
        }
    }
}

/// Everything needed to join the mesh.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// This node's name.
    pub name: String,
    /// Incarnation number; must grow on every start.
    pub generation: u64,
    /// Advertised QUIC address (also the gossip address).
    pub mesh_addr: SocketAddr,
    /// Admin API address to publish, if reachable by others.
    pub admin_addr: Option<SocketAddr>,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Seed addresses (`host:port`).
    pub seeds: Vec<String>,
    /// Gossip tuning.
    pub gossip: GossipSettings,
    /// Where the last-known view is kept; `None` disables fail-static.
    pub view_file: Option<PathBuf>,
    /// How long persisted entries are served beside gossip once a peer is back.
    pub fail_static_warmup: Duration,
    /// How often the view is rebuilt even when membership did not change.
    pub refresh: Duration,
}

/// Why membership could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// chitchat refused to start.
    #[error("gossip could not start: {0}")]
    Start(String),
    /// A value could not be encoded.
    #[error(transparent)]
    Record(#[from] records::RecordError),
}

/// A running membership: gossip plus the published view.
pub struct Membership {
    handle: ChitchatHandle,
    view_rx: watch::Receiver<Arc<ClusterView>>,
    record: Mutex<NodeRecord>,
    refresher: JoinHandle<()>,
    keys: GossipKeys,
}

/// Writes this node's own gossip keys, and nothing else: a small `Clone` handle for a task that
/// publishes a value of its own (a traffic summary, rate-limit demand) beside the membership.
#[derive(Clone)]
pub struct GossipKeys {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    /// Wakes the view refresher, so this node's own view shows the change at once.
    kick: Arc<tokio::sync::Notify>,
}

impl GossipKeys {
    /// Sets one of this node's keys.
    pub async fn set(&self, key: &str, value: &str) {
        self.chitchat.lock().await.self_node_state().set(key, value);
        self.kick.notify_one();
    }

    /// Deletes one of this node's keys.
    pub async fn delete(&self, key: &str) {
        self.chitchat.lock().await.self_node_state().delete(key);
        self.kick.notify_one();
    }
}

impl std::fmt::Debug for GossipKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipKeys").finish_non_exhaustive()
    }
}

impl Membership {
    /// Joins the mesh over `transport`.
    pub async fn start(
        config: MembershipConfig,
        transport: &dyn Transport,
    ) -> Result<Self, MembershipError> {
        let record = NodeRecord {
            version: RECORD_VERSION,
            name: config.name.clone(),
            mesh_addr: config.mesh_addr,
            admin_addr: config.admin_addr,
            labels: config.labels.clone(),
            status: NodeStatus::Serving,
        };
        let initial = vec![(NODE_KEY.to_owned(), records::encode(&record)?)];
        let handle = spawn_chitchat(chitchat_config(&config), initial, transport)
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        let persisted = config
            .view_file
            .as_deref()
            .and_then(persist::load)
            .map(|v| persist::mark_stale(v, &config.name));
        let first = persisted.clone().unwrap_or_else(|| ClusterView {
            self_name: config.name.clone(),
            ..ClusterView::default()
        });
        let (view_tx, view_rx) = watch::channel(Arc::new(first));
        let kick = Arc::new(tokio::sync::Notify::new());
        let refresher = tokio::spawn(refresh_loop(Refresher {
            chitchat: handle.chitchat(),
            self_name: config.name.clone(),
            view_tx,
            fail_static: FailStatic::new(persisted, config.fail_static_warmup),
            view_file: config.view_file.clone(),
            every: config.refresh,
            kick: kick.clone(),
        }));
        let keys = GossipKeys {
            chitchat: handle.chitchat(),
            kick,
        };
        Ok(Self {
            handle,
            view_rx,
            record: Mutex::new(record),
            refresher,
            keys,
        })
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view_rx.borrow().clone()
    }

    /// A receiver of every new view.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_rx.clone()
    }

    /// This node's gossip identity.
    pub fn chitchat_id(&self) -> &ChitchatId {
        self.handle.chitchat_id()
    }

    /// Publishes (or updates) this node's instance of `service`.
    pub async fn publish_service(
        &self,
        service: &str,
        record: &ServiceRecord,
    ) -> Result<(), MembershipError> {
        let key = records::service_key(service, &self.handle.chitchat_id().node_id);
        self.set_key(&key, &records::encode(record)?).await;
        Ok(())
    }

    /// Withdraws this node's instance of `service`.
    pub async fn withdraw_service(&self, service: &str) {
        let key = records::service_key(service, &self.handle.chitchat_id().node_id);
        self.delete_key(&key).await;
    }

    /// Resolves when chitchat's gossip task has ended (it panicked or stopped): from then on
    /// the view no longer changes. A node should exit so that its supervisor restarts it.
    pub fn gossip_ended(&self) -> impl std::future::Future<Output = String> + use<> {
        let watcher = self.handle.termination_watcher();
        async move {
            match watcher.await {
                Ok(()) => "gossip stopped".to_owned(),
                Err(e) => format!("gossip failed: {e}"),
            }
        }
    }

    /// Incarnations chitchat holds, live and dead: each costs an entry in every digest it sends.
    pub async fn known_incarnations(&self) -> usize {
        self.handle.with_chitchat(|c| c.node_states().len()).await
    }

    /// This node's status as it publishes it.
    pub fn status(&self) -> NodeStatus {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
    }

    /// Changes this node's status and tells peers at once.
    pub async fn set_status(&self, status: NodeStatus) -> Result<(), MembershipError> {
        let value = {
            let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
            record.status = status;
            records::encode(&*record)?
        };
        self.set_key(NODE_KEY, &value).await;
        self.announce().await;
        Ok(())
    }

    /// Sets one of this node's keys.
    pub async fn set_key(&self, key: &str, value: &str) {
        self.keys.set(key, value).await;
    }

    /// Deletes one of this node's keys.
    pub async fn delete_key(&self, key: &str) {
        self.keys.delete(key).await;
    }

    /// A handle that writes this node's keys (see [`GossipKeys`]).
    pub fn keys(&self) -> GossipKeys {
        self.keys.clone()
    }

    /// The shared chitchat state, for services that run beside the driver (policy).
    pub fn chitchat(&self) -> Arc<tokio::sync::Mutex<Chitchat>> {
        self.handle.chitchat()
    }

    /// Runs `f` on the chitchat state (briefly: gossip waits meanwhile).
    pub async fn with_chitchat<T>(&self, f: impl FnMut(&mut Chitchat) -> T) -> T {
        self.handle.with_chitchat(f).await
    }

    /// Gossips with every live peer now instead of waiting for the next rounds.
    pub async fn announce(&self) {
        let me = self.handle.chitchat_id().clone();
        let peers: Vec<SocketAddr> = self
            .handle
            .with_chitchat(|c| {
                c.live_nodes()
                    .filter(|id| **id != me)
                    .map(|id| id.gossip_advertise_addr)
                    .collect()
            })
            .await;
        for addr in peers {
            let _ = self.handle.gossip(addr);
        }
    }

    /// Leaves on purpose: peers mark this node left (not failed) within a round trip. Waits
    /// `linger` for the news to travel, then stops gossiping.
    pub async fn leave(&self, linger: Duration) {
        if let Err(e) = self.set_status(NodeStatus::Left).await {
            warn!(error = %e, "could not announce leaving");
        }
        tokio::time::sleep(linger / 2).await;
        self.announce().await;
        tokio::time::sleep(linger / 2).await;
        self.handle.abort();
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // Dropping the chitchat handle stops gossip; the view stops with it.
        self.refresher.abort();
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", self.handle.chitchat_id())
            .finish_non_exhaustive()
    }
}

fn chitchat_config(config: &MembershipConfig) -> ChitchatConfig {
    let g = &config.gossip;
    ChitchatConfig {
        chitchat_id: ChitchatId::new(config.name.clone(), config.generation, config.mesh_addr),
        cluster_id: g.cluster_id.clone(),
        gossip_interval: g.interval,
        listen_addr: config.mesh_addr,
        seed_nodes: config.seeds.clone(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: g.phi_threshold,
            sampling_window_size: g.sampling_window,
            max_interval: g.max_interval,
            initial_interval: g.initial_interval,
            dead_node_grace_period: g.dead_node_grace,
        },
        marked_for_deletion_grace_period: g.tombstone_grace,
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    }
}

struct Refresher {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    self_name: String,
    view_tx: watch::Sender<Arc<ClusterView>>,
    fail_static: FailStatic,
    view_file: Option<PathBuf>,
    every: Duration,
    kick: Arc<tokio::sync::Notify>,
}

async fn refresh_loop(mut r: Refresher) {
    let mut live_watch = r.chitchat.lock().await.live_nodes_watcher();
    let mut tick = tokio::time::interval(r.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = live_watch.changed() => if changed.is_err() { return },
            () = r.kick.notified() => {}
        }
        let snapshots = snapshot(&r.chitchat).await;
        let live = view::build(&r.self_name, &snapshots);
        let next = r.fail_static.apply(live, Instant::now());
        if **r.view_tx.borrow() == next {
            continue;
        }
        let next = Arc::new(next);
        if let Some(path) = &r.view_file {
            let (path, v) = (path.clone(), Arc::clone(&next));
            let saved = tokio::task::spawn_blocking(move || persist::save(&path, &v)).await;
            if let Ok(Err(e)) = saved {
                warn!(error = %e, "could not persist the cluster view");
            }
        }
        debug!(members = next.members.len(), "cluster view changed");
        r.view_tx.send_replace(next);
    }
}

async fn snapshot(chitchat: &tokio::sync::Mutex<Chitchat>) -> Vec<NodeSnapshot> {
    let c = chitchat.lock().await;
    let live: HashSet<&ChitchatId> = c.live_nodes().collect();
    c.node_states()
        .iter()
        .map(|(id, state)| NodeSnapshot {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            live: live.contains(id),
            // Only what the view reads: policy documents and other large values stay put.
            kvs: state
                .key_values()
                .filter(|(k, _)| view::reads_key(k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect()
}

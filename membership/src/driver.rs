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
use murmur_transport::gossip::pack::HEARTBEAT_STEP;
use murmur_transport::tls::TlsState;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::persist::{self, FailStatic, LastGood};
use crate::records::{self, NODE_KEY, NodeRecord, NodeStatus, RECORD_VERSION, ServiceRecord};
use crate::trust::liveness::{heartbeat, stepped_heartbeat};
use crate::trust::signed::{self, HEAD_KEY};
use crate::trust::{GuardStats, Horizon, OwnKeys, SignError, TrustGuard};
use crate::view::{self, ClusterView, NodeSnapshot, RemoteView};

/// How often this node moves its own heartbeat on (it counts microseconds since start, in
/// steps of this tick).
const HEARTBEAT_TICK: Duration = Duration::from_micros(HEARTBEAT_STEP);

/// Gossip and failure-detection tuning.
#[derive(Clone, Debug, PartialEq)]
pub struct GossipSettings {
    /// Nodes with another cluster id ignore each other.
    pub cluster_id: String,
    /// Time between gossip rounds.
    pub interval: Duration,
    /// Failure-detector threshold. chitchat's phi is the time since the last heartbeat divided
    /// by the mean heartbeat inter-arrival time, so a member is declared dead after about
    /// `phi_threshold × mean`, plus the time the last heartbeat took to arrive. The default 16
    /// with a 500 ms interval declares death after about 6 to 8 s (simulated at 100 to 200
    /// nodes) and rides out stalls (GC, SIGSTOP) of 2 s.
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
    /// How often a node signs its head record again; a member silent for three of these is
    /// no longer kept alive by relayed heartbeats (see [`crate::trust::liveness`]).
    pub head_interval: Duration,
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
            head_interval: Duration::from_secs(30),
        }
    }
}

/// What proves this node's gossip and checks everyone else's: the node's TLS state (its key,
/// its certificate, the trust bundle) and the guard its gossip transport runs every message
/// through.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The node's credentials.
    pub tls: Arc<TlsState>,
    /// The guard to give the transport.
    pub guard: Arc<TrustGuard>,
}

impl Trust {
    /// The trust of a node with credentials `tls` and gossip settings `gossip`.
    pub fn new(tls: Arc<TlsState>, gossip: &GossipSettings) -> Self {
        let guard = TrustGuard::new(tls.clone(), Horizon::new(gossip.head_interval));
        Self { tls, guard }
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
    /// The node's credentials and gossip guard.
    pub trust: Trust,
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
    /// A value could not be signed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A running membership: gossip plus the published view.
pub struct Membership {
    handle: ChitchatHandle,
    view_rx: watch::Receiver<Arc<ClusterView>>,
    record: Mutex<NodeRecord>,
    refresher: JoinHandle<()>,
    life: JoinHandle<()>,
    keys: GossipKeys,
    guard: Arc<TrustGuard>,
    /// Other cells, laid over the view of this one (`crate::cells` writes it).
    remote: watch::Sender<Arc<RemoteView>>,
}

/// Writes this node's own gossip keys, and nothing else: a small `Clone` handle for a task that
/// publishes a value of its own (a traffic summary, rate-limit demand) beside the membership.
#[derive(Clone)]
pub struct GossipKeys {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    own: Arc<OwnKeys>,
    /// Wakes the view refresher, so this node's own view shows the change at once.
    kick: Arc<tokio::sync::Notify>,
}

impl GossipKeys {
    /// Sets one of this node's keys (signed; a no-op when it holds the value already).
    pub async fn set(&self, key: &str, value: &str) {
        let done = self.own.set(&mut *self.chitchat.lock().await, key, value);
        self.report(key, done);
    }

    /// Withdraws one of this node's keys: readers no longer see it.
    pub async fn delete(&self, key: &str) {
        let done = self.own.withdraw(&mut *self.chitchat.lock().await, key);
        self.report(key, done);
    }

    /// Runs `f` with the chitchat state locked and the writer of this node's keys, for a task
    /// that rewrites several keys at once (the policy service's custody; the view does not
    /// read those keys, so it is not woken).
    pub async fn with_own<T>(&self, f: impl FnOnce(&mut Chitchat, &OwnKeys) -> T) -> T {
        f(&mut *self.chitchat.lock().await, &self.own)
    }

    /// A handle that wakes the view refresher: for a task that learns of a change before the
    /// next refresh would (a custodian, of a service record arriving by gossip).
    pub fn refresher(&self) -> Arc<tokio::sync::Notify> {
        self.kick.clone()
    }

    fn report(&self, key: &str, done: Result<bool, SignError>) {
        match done {
            Ok(true) => self.kick.notify_one(),
            Ok(false) => {}
            Err(e) => warn!(%key, error = %e, "gossip key not published"),
        }
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
        let persisted = config
            .view_file
            .as_deref()
            .and_then(persist::load)
            .map(|v| persist::mark_stale(v, &config.name));
        let mut cc = chitchat_config(&config);
        if let Some(view) = &persisted {
            // After a stop of the whole mesh the configured seeds may be the last to come back:
            // every member known before the stop is worth a try.
            let known = persist::known_peers(view, &config.name);
            if !known.is_empty() {
                info!(
                    peers = known.len(),
                    "members known before the stop are tried as seeds"
                );
            }
            for addr in known {
                let addr = addr.to_string();
                if !cc.seed_nodes.contains(&addr) {
                    cc.seed_nodes.push(addr);
                }
            }
        }
        let own = Arc::new(OwnKeys::new(
            config.trust.tls.clone(),
            cc.chitchat_id.clone(),
        ));
        let node = records::encode(&record)?;
        let initial = own.initial(&[(NODE_KEY, &node), (HEAD_KEY, "1")])?;
        let handle = spawn_chitchat(cc, initial, transport)
            .await
            .map_err(|e| MembershipError::Start(e.to_string()))?;
        config.trust.guard.attach(handle.chitchat());
        let life = tokio::spawn(life_loop(
            handle.chitchat(),
            own.clone(),
            config.gossip.head_interval,
        ));
        let first = persisted.clone().unwrap_or_else(|| ClusterView {
            self_name: config.name.clone(),
            ..ClusterView::default()
        });
        let (view_tx, view_rx) = watch::channel(Arc::new(first));
        let kick = Arc::new(tokio::sync::Notify::new());
        let (remote, remote_rx) = watch::channel(Arc::new(RemoteView::default()));
        let refresher = tokio::spawn(refresh_loop(Refresher {
            chitchat: handle.chitchat(),
            self_name: config.name.clone(),
            view_tx,
            newcomers: Newcomers::default(),
            // Two heartbeats arrive within a few gossip rounds; past this, silence is death.
            join_grace: (config.gossip.interval * 10).max(Duration::from_secs(3)),
            last_good: persisted
                .as_ref()
                .map(|v| {
                    let mut good = LastGood::default();
                    good.learn(v);
                    good
                })
                .unwrap_or_default(),
            fail_static: FailStatic::new(persisted, config.fail_static_warmup),
            view_file: config.view_file.clone(),
            every: config.refresh,
            kick: kick.clone(),
            remote: remote_rx,
        }));
        let keys = GossipKeys {
            chitchat: handle.chitchat(),
            own,
            kick,
        };
        Ok(Self {
            handle,
            view_rx,
            record: Mutex::new(record),
            refresher,
            life,
            keys,
            guard: config.trust.guard,
            remote,
        })
    }

    /// Replaces what this node knows of other cells: the view shows it on top of this cell's
    /// own members and endpoints (see [`view::overlay`]).
    pub fn set_remote(&self, remote: RemoteView) {
        self.remote.send_if_modified(|cur| {
            if **cur == remote {
                return false;
            }
            *cur = Arc::new(remote);
            true
        });
    }

    /// The current view.
    pub fn view(&self) -> Arc<ClusterView> {
        self.view_rx.borrow().clone()
    }

    /// A receiver of every new view.
    pub fn watch(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view_rx.clone()
    }

    /// What the gossip guard refused so far.
    pub fn guard_stats(&self) -> GuardStats {
        self.guard.stats()
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

    /// Notifies `wake` whenever a key under `prefix` changes in this layer (written here or
    /// received by gossip), as long as the handle is kept.
    pub async fn notify_on(
        &self,
        prefix: &str,
        wake: &Arc<tokio::sync::Notify>,
    ) -> chitchat::ListenerHandle {
        notify_on(&self.chitchat(), prefix, wake).await
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

    /// Gossips with `addr` now, whether or not it is a member yet (chitchat seeds only from
    /// the list it started with; the cell layer learns custodians of other cells later).
    pub fn gossip_with(&self, addr: SocketAddr) {
        let _ = self.handle.gossip(addr);
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
        self.life.abort();
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

/// Keeps this node's heartbeat counting microseconds since start, and signs its head record
/// again every `head_interval` (after following a certificate rotation, if any).
async fn life_loop(
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    own: Arc<OwnKeys>,
    head_interval: Duration,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(HEARTBEAT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_head = started + head_interval;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let mut c = chitchat.lock().await;
        let state = c.self_node_state();
        state.try_set_heartbeat(heartbeat(stepped_heartbeat(now.duration_since(started))));
        if now < next_head {
            continue;
        }
        next_head = now + head_interval;
        let hb = u64::from(state.heartbeat());
        if let Err(e) = own
            .follow_rotation(&mut c)
            .and_then(|_| own.set(&mut c, HEAD_KEY, &hb.to_string()))
        {
            warn!(error = %e, "cannot sign the head record");
        }
    }
}

struct Refresher {
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    self_name: String,
    view_tx: watch::Sender<Arc<ClusterView>>,
    newcomers: Newcomers,
    /// How long a member learned of and never live yet shows as joining.
    join_grace: Duration,
    last_good: LastGood,
    fail_static: FailStatic,
    view_file: Option<PathBuf>,
    every: Duration,
    kick: Arc<tokio::sync::Notify>,
    remote: watch::Receiver<Arc<RemoteView>>,
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
            changed = r.remote.changed() => if changed.is_err() { return },
        }
        let snapshots = snapshot(&r.chitchat, &mut r.newcomers, r.join_grace).await;
        let remote = r.remote.borrow_and_update().clone();
        let live = view::overlay(view::build(&r.self_name, &snapshots), &remote);
        let next = r.fail_static.apply(live, Instant::now());
        if **r.view_tx.borrow() == next {
            continue;
        }
        let next = Arc::new(next);
        r.last_good.learn(&next);
        if let Some(path) = &r.view_file {
            let (path, v) = (path.clone(), r.last_good.to_save(&next));
            let saved = tokio::task::spawn_blocking(move || persist::save(&path, &v)).await;
            if let Ok(Err(e)) = saved {
                warn!(error = %e, "could not persist the cluster view");
            }
        }
        debug!(members = next.members.len(), "cluster view changed");
        r.view_tx.send_replace(next);
    }
}

/// Incarnations this node has learned of and whether each was ever live: a new member is
/// `joining`, not `dead`, for a moment after it is first heard of.
#[derive(Debug, Default)]
struct Newcomers {
    first_seen: std::collections::HashMap<ChitchatId, (Instant, bool)>,
}

impl Newcomers {
    /// Whether `id` counts as joining now; remembers what it saw.
    fn joining(&mut self, id: &ChitchatId, live: bool, now: Instant, grace: Duration) -> bool {
        let entry = self.first_seen.entry(id.clone()).or_insert((now, false));
        entry.1 |= live;
        !entry.1 && now.duration_since(entry.0) < grace
    }

    /// Forgets incarnations chitchat no longer holds.
    fn retain(&mut self, keep: impl Fn(&ChitchatId) -> bool) {
        self.first_seen.retain(|id, _| keep(id));
    }
}

async fn snapshot(
    chitchat: &tokio::sync::Mutex<Chitchat>,
    newcomers: &mut Newcomers,
    grace: Duration,
) -> Vec<NodeSnapshot> {
    let c = chitchat.lock().await;
    let live: HashSet<&ChitchatId> = c.live_nodes().collect();
    let now = Instant::now();
    newcomers.retain(|id| c.node_state(id).is_some());
    c.node_states()
        .iter()
        .map(|(id, state)| NodeSnapshot {
            name: id.node_id.to_string(),
            generation: id.generation_id,
            addr: id.gossip_advertise_addr,
            live: live.contains(id),
            joining: newcomers.joining(id, live.contains(id), now, grace),
            // Only what the view reads: policy documents and other large values stay put.
            // Values were verified before chitchat stored them; withdrawn keys are gone.
            kvs: state
                .key_values()
                .filter(|(k, _)| view::reads_key(k))
                .filter_map(|(k, v)| Some((k.to_owned(), signed::body(v)?.to_owned())))
                .collect(),
        })
        .collect()
}

/// [`Membership::notify_on`] for a chitchat state held directly.
pub async fn notify_on(
    chitchat: &tokio::sync::Mutex<Chitchat>,
    prefix: &str,
    wake: &Arc<tokio::sync::Notify>,
) -> chitchat::ListenerHandle {
    let wake = wake.clone();
    chitchat
        .lock()
        .await
        .subscribe_event(prefix, move |_| wake.notify_one())
}

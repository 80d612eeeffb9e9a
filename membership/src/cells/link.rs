//! [`CellLink`]: the task that connects one node's cell to the others.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::Transport;
use murmur_transport::tls::TlsState;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::cache::Cache;
use super::directory::{self, Age, Ageing, Directory, Freshness};
use super::publish::{self, Stamper};
use super::rank;
use super::silence::Silence;
use super::summary::{self, Custodian};
use crate::driver::{GossipSettings, Membership, MembershipConfig, Trust};
use crate::trust::TrustGuard;
use crate::view::MemberState;

/// The cell of a node that names none. A mesh of only this cell runs no [`CellLink`].
pub const DEFAULT_CELL: &str = "default";
/// The cluster id of the top layer (cells use `murmur/<cell>`, the default cell `murmur`).
pub const TOP_CLUSTER_ID: &str = "murmur-top";
/// The cluster id of `cell`'s own gossip: `murmur` for [`DEFAULT_CELL`] (a single-cell mesh
/// is unchanged), `murmur/<cell>` otherwise (a node configured into another cell is refused).
pub fn cluster_id(cell: &str) -> String {
    if cell == DEFAULT_CELL {
        "murmur".to_owned()
    } else {
        format!("murmur/{cell}")
    }
}

/// Whether a node of `cell` with these top-layer seeds runs a [`CellLink`]: not in a
/// single-cell mesh (the default cell and no seeds), where nothing changes.
pub fn runs_link(cell: &str, top_seeds: &[String]) -> bool {
    cell != DEFAULT_CELL || !top_seeds.is_empty()
}

/// Least time between two steps of a link woken by changes.
const MIN_STEP_GAP: Duration = Duration::from_millis(50);

/// The label a top-layer member carries with its cell.
pub const CELL_LABEL: &str = "cell";

/// How the cell layer behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSettings {
    /// This node's cell.
    pub cell: String,
    /// Custodians per cell (ranked; the first live one acts, the others stand by).
    pub custodians: usize,
    /// A standby custodian acts once every custodian ranked ahead of it has not moved its
    /// heartbeat for this long, before the failure detector drops it (see `silence`).
    pub takeover: Duration,
    /// Gossip settings of the top layer (cluster id [`TOP_CLUSTER_ID`]).
    pub top: GossipSettings,
    /// How often the link looks at the view, publishes and bridges.
    pub tick: Duration,
    /// How long a node must stay ranked before it joins the top layer. A node whose view of
    /// its cell is still filling (at start, after a partition) ranks itself among the few
    /// members it knows; without this, every node of a cell starting at once joins the top
    /// layer for a moment (200 instances at 200 nodes, measured in the simulator).
    pub hold: Duration,
    /// How long a custodian that is no longer ranked stays in the top layer (handovers
    /// overlap instead of leaving a gap).
    pub linger: Duration,
    /// How often the acting custodian renews its cell's beacon.
    pub beacon_every: Duration,
    /// When other cells' summaries turn stale and expire.
    pub ageing: Ageing,
}

impl CellSettings {
    /// The defaults for `cell`, the top layer gossiping like `cell_gossip` does.
    pub fn new(cell: impl Into<String>, cell_gossip: &GossipSettings) -> Self {
        Self {
            cell: cell.into(),
            custodians: rank::DEFAULT_CUSTODIANS,
            // Five rounds: a live member's heartbeat reaches the standby several times a round
            // (directly and through relays), so five quiet rounds mean a dead or stalled one.
            takeover: cell_gossip.interval * 5,
            top: GossipSettings {
                cluster_id: TOP_CLUSTER_ID.into(),
                ..cell_gossip.clone()
            },
            // Short: a change crosses two ticks (publish, bridge) on its way to another cell,
            // and a tick with nothing new costs a version check per member.
            tick: Duration::from_millis(250),
            // Six rounds at the 500 ms default: a view filling from the seeds has most of its
            // members by then, and a standby custodian is already in the top layer.
            hold: cell_gossip.interval * 6,
            linger: Duration::from_secs(10),
            beacon_every: Duration::from_secs(5),
            ageing: Ageing {
                stale_after: Duration::from_secs(20),
                expire_after: Duration::from_secs(300),
            },
        }
    }
}

/// Makes the transport of a top-layer instance. A custodian joins the top layer with a fresh
/// instance (and generation) each time it becomes one, so it asks for a fresh transport.
pub trait TopTransport: Send + Sync + 'static {
    /// A transport whose received messages pass `guard` before chitchat sees them.
    fn transport(&self, guard: Arc<TrustGuard>) -> Box<dyn Transport>;
}

/// A [`TopTransport`] handing out clones of one transport (in-memory networks, where the
/// top layer listens at an address of its own and no guard runs).
#[derive(Clone, Debug)]
pub struct SharedTransport<T>(pub T);

impl<T: Transport + Clone + 'static> TopTransport for SharedTransport<T> {
    fn transport(&self, _guard: Arc<TrustGuard>) -> Box<dyn Transport> {
        Box::new(self.0.clone())
    }
}

/// What a [`CellLink`] needs besides the membership of its cell.
#[derive(Clone)]
pub struct CellLinkConfig {
    /// Behaviour.
    pub settings: CellSettings,
    /// Where this node's top-layer gossip listens (with QUIC channels: its mesh address).
    pub top_addr: SocketAddr,
    /// Top-layer seeds (`host:port`), besides the custodians other cells' summaries name.
    pub top_seeds: Vec<String>,
    /// The node's credentials (the top layer signs and checks like the cell layer).
    pub tls: Arc<TlsState>,
    /// The top layer's transport.
    pub transport: Arc<dyn TopTransport>,
}

impl std::fmt::Debug for CellLinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellLinkConfig")
            .field("settings", &self.settings)
            .field("top_addr", &self.top_addr)
            .field("top_seeds", &self.top_seeds)
            .finish_non_exhaustive()
    }
}

/// What the link is doing, for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CellStatus {
    /// This node's cell.
    pub cell: String,
    /// The cell's custodians as this node ranks them, best first.
    pub custodians: Vec<String>,
    /// This node publishes its cell and bridges the others in.
    pub acting: bool,
    /// This node is in the top layer (a custodian, or lingering after being one).
    pub in_top: bool,
    /// Other cells known (stale ones included, expired ones not).
    pub cells: usize,
}

/// State shared between the handle and its task.
#[derive(Default)]
struct Shared {
    top: Mutex<Option<Arc<Membership>>>,
    policy_digest: Mutex<[u8; 32]>,
}

/// Runs the cell layer of one node (see the module documentation of `crate::cells`).
pub struct CellLink {
    shared: Arc<Shared>,
    status: watch::Receiver<CellStatus>,
    task: JoinHandle<()>,
}

impl CellLink {
    /// Starts the link of the node whose cell membership is `membership`. The cell's name must
    /// pass [`super::summary::valid_cell`] (check it with the configuration): other cells
    /// refuse summaries of a cell named otherwise.
    pub fn start(config: CellLinkConfig, membership: Arc<Membership>) -> Self {
        if !summary::valid_cell(&config.settings.cell) {
            warn!(cell = %config.settings.cell, "cell name other cells will refuse");
        }
        let shared = Arc::new(Shared::default());
        let (status_tx, status) = watch::channel(CellStatus {
            cell: config.settings.cell.clone(),
            ..CellStatus::default()
        });
        let link = Link {
            name: membership.chitchat_id().node_id.to_string(),
            config,
            membership,
            shared: shared.clone(),
            status: status_tx,
            top: None,
            fresh: Freshness::default(),
            stamper: Stamper::default(),
            published: BTreeMap::new(),
            bridged: BTreeMap::new(),
            last_beacon: None,
            last_generation: 0,
            cell_cache: Cache::default(),
            top_cache: Cache::default(),
            last_seed_try: None,
            known: Directory::default(),
            ages: BTreeMap::new(),
            ranked_since: None,
            silence: Silence::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
        };
        let task = tokio::spawn(link.run());
        Self {
            shared,
            status,
            task,
        }
    }

    /// What the link is doing now.
    pub fn status(&self) -> CellStatus {
        self.status.borrow().clone()
    }

    /// A receiver of every change of [`CellLink::status`].
    pub fn watch_status(&self) -> watch::Receiver<CellStatus> {
        self.status.clone()
    }

    /// The top-layer membership while this node is in it (to bridge policy documents, say).
    pub fn top(&self) -> Option<Arc<Membership>> {
        self.shared
            .top
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the policy digest the next summaries carry.
    pub fn set_policy_digest(&self, digest: [u8; 32]) {
        *self
            .shared
            .policy_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = digest;
    }

    /// Stops the link; a custodian leaves the top layer, waiting `linger` for the news to
    /// travel.
    pub async fn shutdown(self, linger: Duration) {
        self.task.abort();
        let top = self.top();
        if let Some(top) = top {
            top.leave(linger).await;
        }
    }
}

impl Drop for CellLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for CellLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellLink")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

/// This node's place in the top layer.
struct Top {
    membership: Arc<Membership>,
    /// Set once the node is no longer ranked: when it leaves.
    leaving_at: Option<Instant>,
    /// What wakes the link between ticks while it is in the top layer (dropped on leaving).
    _events: Vec<chitchat::ListenerHandle>,
}

struct Link {
    name: String,
    config: CellLinkConfig,
    membership: Arc<Membership>,
    shared: Arc<Shared>,
    status: watch::Sender<CellStatus>,
    top: Option<Top>,
    fresh: Freshness,
    stamper: Stamper,
    /// Keys this node wrote in the top layer (its cell's summary).
    published: BTreeMap<String, String>,
    /// Keys this node wrote in its cell (other cells' summaries).
    bridged: BTreeMap<String, String>,
    last_beacon: Option<Instant>,
    last_generation: u64,
    cell_cache: Cache,
    top_cache: Cache,
    last_seed_try: Option<Instant>,
    /// Other cells as last read, until they expire.
    known: Directory,
    /// How old each of `known`'s cells was judged at the last tick.
    ages: BTreeMap<String, Age>,
    /// Since when this node has been ranked without a break.
    ranked_since: Option<Instant>,
    /// Heartbeats of the custodians ranked ahead of this node.
    silence: Silence,
    /// Wakes the link before its next tick (see [`Link::listen`]).
    wake: Arc<tokio::sync::Notify>,
}

/// Milliseconds since the epoch: the wall clock read once, moved on by the monotonic clock of
/// the runtime (summaries stamped by one node never go back when the wall clock is stepped,
/// and a simulator's paused clock drives stamps and ages alike).
pub fn wall_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(u64, Instant)> = std::sync::OnceLock::new();
    let (wall, at) = *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (wall, Instant::now())
    });
    let since = Instant::now().saturating_duration_since(at).as_millis();
    wall.saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
}

impl Link {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut view = self.membership.watch();
        let wake = self.wake.clone();
        loop {
            // A custodian also steps as soon as its view or the other cells' summaries change:
            // a change crossing cells waits for no tick on its way (publish, bridge).
            let in_top = self.top.is_some();
            tokio::select! {
                _ = tick.tick() => {}
                () = wake.notified() => {}
                changed = view.changed(), if in_top => if changed.is_err() { return },
            }
            self.step().await;
            // However often things change, at most one step per gap: changes wait in the cache.
            tokio::time::sleep(MIN_STEP_GAP).await;
        }
    }

    /// Event subscriptions of a custodian: another cell's summary changing in the top layer
    /// wakes the link; a service record of its own cell arriving by gossip wakes the view
    /// refresher (the new view then wakes the link).
    async fn listen(&self, top: &Membership) -> Vec<chitchat::ListenerHandle> {
        let on_top = top.notify_on(crate::records::CELL_PREFIX, &self.wake).await;
        let refresher = self.membership.keys().refresher();
        let on_cell = self
            .membership
            .notify_on(crate::records::SERVICE_PREFIX, &refresher)
            .await;
        vec![on_top, on_cell]
    }

    async fn step(&mut self) {
        let now = Instant::now();
        let wall = wall_ms();
        let s = self.config.settings.clone();
        let view = self.membership.view();
        let live: Vec<&str> = view
            .members
            .values()
            .filter(|m| m.state == MemberState::Alive && !m.stale)
            .map(|m| m.name.as_str())
            .collect();
        let ranked: Vec<String> = rank::custodians(&s.cell, &live, s.custodians)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let ranked_here = ranked.contains(&self.name);
        if ranked_here {
            self.ranked_since.get_or_insert(now);
        } else {
            self.ranked_since = None;
        }
        // Whose copies of other cells this node reads in its cell: the custodians and the next
        // best ranked (one that was outranked a moment ago), not any member.
        let readers: Vec<String> = rank::custodians(&s.cell, &live, 2 * s.custodians.max(1))
            .into_iter()
            .map(str::to_owned)
            .collect();

        // What this cell knows of the others, from the bridging custodian's namespace: read,
        // and the view rebuilt, only when a summary or an age changed.
        let ahead: Vec<String> = if ranked_here {
            ranked
                .iter()
                .take_while(|n| **n != self.name)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (cell_cache, silence) = (&mut self.cell_cache, &mut self.silence);
        self.membership
            .with_chitchat(|c| {
                cell_cache.refresh(c);
                silence.observe(c, &ahead, now);
            })
            .await;
        // The first ranked acts; a standby too once every one ahead of it is silent.
        let acting = ranked_here
            && ahead
                .iter()
                .all(|n| self.silence.silent(n, now, s.takeover));
        let (mut changed, mut renewed) =
            cell_cache.read_changes(&mut self.known, &s.cell, wall, Some(&readers));
        let seeds = custodian_addrs(&self.known);
        let settled = self
            .ranked_since
            .is_some_and(|since| now.duration_since(since) >= s.hold);
        self.follow_rank(ranked_here, settled, now, seeds).await;
        if let Some(top) = &self.top {
            let cache = &mut self.top_cache;
            top.membership.with_chitchat(|c| cache.refresh(c)).await;
            let (read, beacon) = cache.read_changes(&mut self.known, &s.cell, wall, None);
            changed |= read;
            renewed |= beacon;
        }
        // Cells stay known until they expire, whoever carried them last: a custodian's death
        // leaves no gap while the next one takes over.
        let ages = directory::judge_all(&self.known, &mut self.fresh, now, wall, s.ageing);
        self.known
            .cells
            .retain(|c, _| ages.get(c).is_some_and(|a| *a != Age::Expired));
        changed |= ages != self.ages;
        self.ages = ages;

        if acting && self.top.is_some() {
            self.publish(&view, &ranked, wall, now).await;
            let known = std::mem::take(&mut self.known);
            self.bridge(&known, changed || renewed).await;
            self.seed_from(&known, now);
            self.known = known;
        } else {
            self.withdraw_all().await;
        }

        if changed {
            self.membership
                .set_remote(directory::remote_view(&self.known, &self.ages));
        }
        let cells = self.known.cells.len();
        self.status.send_if_modified(|st| {
            let next = CellStatus {
                cell: s.cell.clone(),
                custodians: ranked.clone(),
                acting: acting && self.top.is_some(),
                in_top: self.top.is_some(),
                cells,
            };
            if *st == next {
                return false;
            }
            *st = next;
            true
        });
    }

    /// Joins the top layer when ranked for `hold` (`settled`), leaves it `linger` after no
    /// longer being ranked.
    async fn follow_rank(
        &mut self,
        ranked: bool,
        settled: bool,
        now: Instant,
        seeds: Vec<SocketAddr>,
    ) {
        match (&mut self.top, ranked) {
            (Some(top), true) => top.leaving_at = None,
            (Some(top), false) => {
                let at = *top
                    .leaving_at
                    .get_or_insert(now + self.config.settings.linger);
                if now >= at {
                    self.leave_top().await;
                }
            }
            (None, true) if settled => self.join_top(seeds).await,
            (None, _) => {}
        }
    }

    async fn join_top(&mut self, known_custodians: Vec<SocketAddr>) {
        let s = &self.config.settings;
        let generation = wall_ms().max(self.last_generation.saturating_add(1));
        let mut seeds = self.config.top_seeds.clone();
        for addr in known_custodians {
            let addr = addr.to_string();
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
        }
        let own = self.config.top_addr.to_string();
        seeds.retain(|a| *a != own);
        let trust = Trust::new(self.config.tls.clone(), &s.top);
        let transport = self.config.transport.transport(trust.guard.clone());
        let config = MembershipConfig {
            name: self.name.clone(),
            generation,
            mesh_addr: self.config.top_addr,
            admin_addr: None,
            labels: BTreeMap::from([(CELL_LABEL.to_owned(), s.cell.clone())]),
            seeds,
            gossip: s.top.clone(),
            view_file: None,
            fail_static_warmup: Duration::ZERO,
            refresh: s.tick,
            trust,
        };
        match Membership::start(config, &*transport).await {
            Ok(m) => {
                info!(cell = %s.cell, generation, "joined the top layer as a custodian");
                self.last_generation = generation;
                let m = Arc::new(m);
                let events = self.listen(&m).await;
                *self
                    .shared
                    .top
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(m.clone());
                self.top = Some(Top {
                    membership: m,
                    leaving_at: None,
                    _events: events,
                });
                self.stamper.reset();
                self.published.clear();
                self.last_beacon = None;
                self.top_cache = Cache::default();
            }
            // The transport may still hold the previous instance's address: next tick.
            Err(e) => warn!(error = %e, "could not join the top layer"),
        }
    }

    async fn leave_top(&mut self) {
        let Some(top) = self.top.take() else { return };
        *self
            .shared
            .top
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        info!(cell = %self.config.settings.cell, "left the top layer");
        // Leaving marks this instance left at the others; its summary loses to the acting
        // custodian's newer one.
        let linger = self.config.settings.tick;
        tokio::spawn(async move { top.membership.leave(linger).await });
        self.published.clear();
        self.top_cache = Cache::default();
    }

    /// Publishes this cell's summary in the top layer: shards and header when the content
    /// changed, the beacon every `beacon_every`.
    async fn publish(
        &mut self,
        view: &crate::view::ClusterView,
        ranked: &[String],
        wall: u64,
        now: Instant,
    ) {
        let Some(top) = &self.top else { return };
        let s = &self.config.settings;
        let custodians = custodian_list(
            &top.membership,
            &s.cell,
            ranked,
            &self.name,
            self.config.top_addr,
        );
        let digest = *self
            .shared
            .policy_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let content = publish::summarize(&s.cell, view, custodians, digest);
        if self.stamper.is_reset() {
            let max = directory::max_stamp(wall);
            self.stamper
                .floor(self.top_cache.newest_stamp(&s.cell, max));
        }
        let (stamp, changed) = self.stamper.stamp(&content, wall);
        let mut writes: Vec<(String, String)> = Vec::new();
        if changed {
            match publish::values(&content, stamp) {
                Ok(v) => writes = v,
                Err(e) => warn!(error = %e, "cell summary not published"),
            }
        }
        let beacon_due = self
            .last_beacon
            .is_none_or(|at| now.duration_since(at) >= s.beacon_every);
        if changed || beacon_due {
            match summary::encode_beacon(&s.cell, wall.max(stamp)) {
                Ok(b) => writes.push((summary::beacon_key(&s.cell), b)),
                Err(e) => warn!(error = %e, "cell beacon not published"),
            }
            self.last_beacon = Some(now);
        }
        if writes.is_empty() {
            return;
        }
        let keep: BTreeSet<String> = if changed {
            let mut k: BTreeSet<String> = writes.iter().map(|(k, _)| k.clone()).collect();
            k.insert(summary::beacon_key(&s.cell));
            k
        } else {
            self.published.keys().cloned().collect()
        };
        apply(&top.membership, &mut self.published, writes, &keep).await;
    }

    /// Writes every other cell's summary that is not expired into this node's namespace in its
    /// cell, and withdraws what it wrote before that is gone. Nothing to do when no summary,
    /// beacon or age changed since the last time, unless this node has only just begun to bridge.
    async fn bridge(&mut self, dir: &Directory, changed: bool) {
        if !changed && !self.bridged.is_empty() {
            return;
        }
        let mut writes = Vec::new();
        for (cell, s) in &dir.cells {
            if matches!(self.ages.get(cell), Some(Age::Expired) | None) {
                continue;
            }
            writes.extend(s.raw.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let keep: BTreeSet<String> = writes.iter().map(|(k, _)| k.clone()).collect();
        let membership = self.membership.clone();
        apply(&membership, &mut self.bridged, writes, &keep).await;
    }

    async fn withdraw_all(&mut self) {
        if !self.bridged.is_empty() {
            let membership = self.membership.clone();
            apply(&membership, &mut self.bridged, Vec::new(), &BTreeSet::new()).await;
        }
        if let Some(top) = &self.top
            && !self.published.is_empty()
        {
            let m = top.membership.clone();
            apply(&m, &mut self.published, Vec::new(), &BTreeSet::new()).await;
            self.stamper.reset();
        }
    }

    /// A custodian alone in the top layer asks the custodians other cells name, every few
    /// seconds (chitchat only seeds from the list it started with).
    fn seed_from(&mut self, dir: &Directory, now: Instant) {
        let Some(top) = &self.top else { return };
        if self
            .last_seed_try
            .is_some_and(|at| now.duration_since(at) < self.config.settings.beacon_every)
        {
            return;
        }
        let view = top.membership.view();
        let alone = !view
            .members
            .values()
            .any(|m| m.name != self.name && m.state == MemberState::Alive);
        if !alone {
            return;
        }
        self.last_seed_try = Some(now);
        for addr in custodian_addrs(dir) {
            if addr != self.config.top_addr {
                debug!(%addr, "asking another cell's custodian");
                top.membership.gossip_with(addr);
            }
        }
    }
}

/// The custodians to name in the header: the ranked ones this node sees in the top layer (with
/// their top-layer addresses), this node first if it is among them.
fn custodian_list(
    top: &Membership,
    cell: &str,
    ranked: &[String],
    me: &str,
    my_addr: SocketAddr,
) -> Vec<Custodian> {
    let view = top.view();
    ranked
        .iter()
        .take(summary::MAX_CUSTODIANS)
        .filter_map(|name| {
            if name == me {
                return Some(Custodian {
                    name: name.clone(),
                    top_addr: my_addr,
                });
            }
            let m = view.members.get(name)?;
            let same_cell = m.labels.get(CELL_LABEL).map(String::as_str) == Some(cell);
            (same_cell && m.state == MemberState::Alive).then(|| Custodian {
                name: name.clone(),
                top_addr: m.mesh_addr,
            })
        })
        .collect()
}

/// Top-layer addresses of the custodians other cells' summaries name.
fn custodian_addrs(dir: &Directory) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = dir
        .cells
        .values()
        .flat_map(|s| s.header.custodians.iter().map(|c| c.top_addr))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Writes `writes` in `m`'s own namespace and withdraws every key in `written` not in `keep`;
/// `written` then holds what is published.
async fn apply(
    m: &Membership,
    written: &mut BTreeMap<String, String>,
    writes: Vec<(String, String)>,
    keep: &BTreeSet<String>,
) {
    let gone: Vec<String> = written
        .keys()
        .filter(|k| !keep.contains(*k))
        .cloned()
        .collect();
    let fresh: Vec<(String, String)> = writes
        .into_iter()
        .filter(|(k, v)| written.get(k) != Some(v))
        .collect();
    if gone.is_empty() && fresh.is_empty() {
        return;
    }
    let keys = m.keys();
    let results = keys
        .with_own(|c, own| {
            let mut errors = Vec::new();
            for (k, v) in &fresh {
                if let Err(e) = own.set(c, k, v) {
                    errors.push((k.clone(), e.to_string()));
                }
            }
            for k in &gone {
                if let Err(e) = own.withdraw(c, k) {
                    errors.push((k.clone(), e.to_string()));
                }
            }
            errors
        })
        .await;
    for (k, e) in results {
        warn!(key = %k, error = %e, "cell value not written");
    }
    for k in gone {
        written.remove(&k);
    }
    written.extend(fresh);
}

//! What a node of a fully simulated cell does about the top layer, as the design has it: every
//! node ranks the cell's live members by rendezvous hashing; ranks below `k` run a top-layer
//! instance; rank 0 publishes the cell's summary there (from its own view, throttled) and
//! bridges the other cells' summaries and policy documents into the cell (as its own keys).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use murmur_membership::trust::signed;
use murmur_membership::{ClusterView, GossipKeys, MemberState, Membership};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::summary::{self, CELL_PREFIX, POLICY_PREFIX};
use super::top::{TopLayer, top_addr};
use crate::cluster::host_addr;

/// What the custodians bridge into their cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bridge {
    /// Every other cell's whole summary: heads, shards and policy documents.
    Directory,
    /// Heads and policy documents only; a node would pull the shards of services it calls.
    HeadsOnly,
}

/// Custody settings of a cell.
#[derive(Clone, Copy, Debug)]
pub struct Custody {
    /// Cell number.
    pub cell: usize,
    /// Custodians per cell.
    pub k: usize,
    /// At most one summary publication per this long.
    pub publish_min: Duration,
    /// The head is published again this often without a change.
    pub head_every: Duration,
    /// What is bridged into the cell.
    pub bridge: Bridge,
    /// A node acts on its ranking only this long after it started, once its view has filled.
    pub warmup: Duration,
}

/// Rendezvous score of `name` in cell `cell` (higher ranks first).
pub fn score(cell: usize, name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    ("cell", cell, name).hash(&mut h);
    h.finish()
}

/// The first `k` of `names` by rendezvous score in cell `cell`.
pub fn rank<'a>(cell: usize, names: impl IntoIterator<Item = &'a str>, k: usize) -> Vec<&'a str> {
    let mut v: Vec<&str> = names.into_iter().collect();
    v.sort_by_key(|n| std::cmp::Reverse(score(cell, n)));
    v.truncate(k);
    v
}

/// Something a node did about custody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Started its top-layer instance.
    TopStarted,
    /// Stopped it.
    TopStopped,
    /// Became the publisher and bridge (rank 0).
    Publishing,
}

/// Every custody act of every node, timed.
#[derive(Clone, Debug, Default)]
pub struct Log(Arc<Mutex<Vec<(Instant, usize, Act)>>>);

impl Log {
    fn push(&self, host: usize, act: Act) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), host, act));
    }

    /// Acts so far.
    pub fn acts(&self) -> Vec<(Instant, usize, Act)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The top-layer instances running in full cells, by host: for probes.
#[derive(Clone, Debug, Default)]
pub struct Running(Arc<Mutex<BTreeMap<usize, Arc<Membership>>>>);

impl Running {
    /// Instances now.
    pub fn all(&self) -> Vec<(usize, Arc<Membership>)> {
        let g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        g.iter().map(|(h, m)| (*h, m.clone())).collect()
    }

    fn set(&self, host: usize, m: Option<Arc<Membership>>) {
        let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match m {
            Some(m) => g.insert(host, m),
            None => g.remove(&host),
        };
    }
}

/// Starts the custody task of host `host`, whose cell-layer node is `node`.
pub fn spawn(
    host: usize,
    node: &Membership,
    top: TopLayer,
    custody: Custody,
    log: Log,
    running: Running,
) -> JoinHandle<()> {
    let task = Task {
        host,
        name: node.chitchat_id().node_id.to_string(),
        views: node.watch(),
        keys: node.keys(),
        top,
        custody,
        log,
        running,
    };
    tokio::spawn(task.run())
}

struct Task {
    host: usize,
    name: String,
    views: watch::Receiver<Arc<ClusterView>>,
    keys: GossipKeys,
    top: TopLayer,
    custody: Custody,
    log: Log,
    running: Running,
}

/// What rank 0 runs.
struct Duty {
    publisher: JoinHandle<()>,
    bridge: JoinHandle<()>,
}

impl Drop for Duty {
    fn drop(&mut self) {
        self.publisher.abort();
        self.bridge.abort();
    }
}

impl Task {
    async fn run(mut self) {
        let mut instance: Option<Arc<Membership>> = None;
        let mut duty: Option<Duty> = None;
        tokio::time::sleep(self.custody.warmup).await;
        loop {
            if self.views.has_changed().is_err() {
                // The node was killed.
                break;
            }
            let view = self.views.borrow_and_update().clone();
            let alive = view
                .members
                .values()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.name.as_str());
            let custodians = rank(self.custody.cell, alive, self.custody.k);
            let my_rank = custodians.iter().position(|n| *n == self.name);
            if my_rank.is_some() && instance.is_none() {
                instance = self.start_top().await;
            }
            if my_rank.is_none() && instance.is_some() {
                duty = None;
                self.stop_top(&mut instance);
            }
            match (my_rank, &instance, &duty) {
                (Some(0), Some(top), None) => {
                    self.log.push(self.host, Act::Publishing);
                    duty = Some(self.duty(top.clone()));
                }
                (Some(r), _, Some(_)) if r > 0 => duty = None,
                _ => {}
            }
            if self.views.changed().await.is_err() {
                break;
            }
        }
        // The node is gone (killed): its top-layer instance dies with it.
        drop(duty);
        self.stop_top(&mut instance);
    }

    async fn start_top(&self) -> Option<Arc<Membership>> {
        // A previous instance of this host may still hold the address.
        self.top.net().kill(top_addr(host_addr(self.host)));
        match self.top.start(self.host).await {
            Ok(m) => {
                let m = Arc::new(m);
                self.running.set(self.host, Some(m.clone()));
                self.log.push(self.host, Act::TopStarted);
                Some(m)
            }
            Err(e) => {
                eprintln!("custody of host {}: {e:#}", self.host);
                None
            }
        }
    }

    fn stop_top(&self, instance: &mut Option<Arc<Membership>>) {
        if instance.take().is_some() {
            self.running.set(self.host, None);
            self.top.net().kill(top_addr(host_addr(self.host)));
            self.log.push(self.host, Act::TopStopped);
        }
    }

    fn duty(&self, top: Arc<Membership>) -> Duty {
        let publisher = tokio::spawn(publish(
            self.top.clone(),
            top.clone(),
            self.views.clone(),
            self.custody,
            self.name.clone(),
        ));
        let bridge = tokio::spawn(bridge(top, self.keys.clone(), self.custody));
        Duty { publisher, bridge }
    }
}

/// Publishes the cell's summary from this node's view: changed shards at most once per
/// `publish_min`, the head when the member count changes or every `head_every`.
async fn publish(
    clock: TopLayer,
    top: Arc<Membership>,
    mut views: watch::Receiver<Arc<ClusterView>>,
    custody: Custody,
    name: String,
) {
    let mut shards: HashMap<String, String> = HashMap::new();
    let mut members = usize::MAX;
    let mut next_head = Instant::now();
    loop {
        let view = views.borrow_and_update().clone();
        let stamp = clock.now_ms();
        for (service, endpoints) in &view.services {
            let mut eps = endpoints.clone();
            eps.sort_by(|a, b| a.node.cmp(&b.node));
            let body = summary::shard_body(&eps);
            if shards.get(service) != Some(&body) {
                let key = summary::shard_key(custody.cell, service);
                top.set_key(&key, &summary::stamped(stamp, &name, &body))
                    .await;
                shards.insert(service.clone(), body);
            }
        }
        let alive = view.count(MemberState::Alive);
        if alive != members || Instant::now() >= next_head {
            members = alive;
            next_head = Instant::now() + custody.head_every;
            let head = summary::head_body(alive, shards.len());
            top.set_key(
                &summary::head_key(custody.cell),
                &summary::stamped(stamp, &name, &head),
            )
            .await;
        }
        tokio::time::sleep(custody.publish_min).await;
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            () = tokio::time::sleep_until(next_head) => {}
        }
    }
}

/// Newest value seen per key, waiting to be bridged.
#[derive(Default)]
struct Pending {
    values: Mutex<HashMap<String, String>>,
    wake: Notify,
}

impl Pending {
    fn offer(&self, key: &str, value: &str, cell: &str, bridge: Bridge) {
        let own = summary::cell_of_key(key) == Some(cell);
        let wanted = key.starts_with(POLICY_PREFIX)
            || (key.starts_with(CELL_PREFIX)
                && (bridge == Bridge::Directory || key.ends_with("/head")));
        let Some(body) = signed::body(value) else {
            return;
        };
        if own || !wanted {
            return;
        }
        let mut g = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = g
            .get(key)
            .is_none_or(|old| stamp(old) <= stamp(body));
        if newer {
            g.insert(key.to_owned(), body.to_owned());
            drop(g);
            self.wake.notify_one();
        }
    }

    fn take(&self) -> HashMap<String, String> {
        std::mem::take(&mut *self.values.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn stamp(body: &str) -> u64 {
    summary::stamp_of(body).map_or(0, |(s, _)| s)
}

/// Copies other cells' summaries (newest stamp per key) from the top layer into the cell.
async fn bridge(top: Arc<Membership>, cell_keys: GossipKeys, custody: Custody) {
    let pending = Arc::new(Pending::default());
    let cell = summary::cell_name(custody.cell);
    let mut handles = Vec::new();
    for prefix in [CELL_PREFIX, POLICY_PREFIX] {
        let (p, c) = (pending.clone(), cell.clone());
        let handle = top
            .with_chitchat(|cc| {
                let (p, c) = (p.clone(), c.clone());
                cc.subscribe_event(prefix, move |ev| {
                    p.offer(&format!("{prefix}{}", ev.key), ev.value, &c, custody.bridge);
                })
            })
            .await;
        handles.push(handle);
        // What the top layer held before this node became the bridge.
        top.with_chitchat(|cc| {
            for state in cc.node_states().values() {
                for (k, v) in state.key_values() {
                    if k.starts_with(prefix) {
                        pending.offer(k, v, &cell, custody.bridge);
                    }
                }
            }
        })
        .await;
    }
    let mut bridged: HashMap<String, u64> = HashMap::new();
    loop {
        for (key, body) in pending.take() {
            let s = stamp(&body);
            if bridged.get(&key).is_some_and(|old| *old >= s) {
                continue;
            }
            cell_keys.set(&key, &body).await;
            bridged.insert(key, s);
        }
        pending.wake.notified().await;
    }
}

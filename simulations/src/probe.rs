//! Observers of what every node knows, timed in virtual time.
//!
//! They read the real state: the views [`Membership`](murmur_membership::Membership)
//! publishes, chitchat's key-change events and its live-node watcher. Each records the instant
//! a node learned something, so a measurement has the resolution of the event itself, not of a
//! polling period.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chitchat::{ChitchatId, ListenerHandle};
use murmur_membership::MemberState;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::Cluster;

/// When each node (by index) first did something.
#[derive(Clone, Debug, Default)]
pub struct Arrivals(Arc<Mutex<HashMap<usize, Instant>>>);

impl Arrivals {
    fn record(&self, node: usize) {
        self.record_at(node, Instant::now());
    }

    /// Records that `node` had it at `at`, unless it is already recorded.
    pub fn record_at(&self, node: usize, at: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(node)
            .or_insert(at);
    }

    /// Arrival time per node.
    pub fn per_node(&self) -> HashMap<usize, Instant> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many nodes have.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no node has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delays from `start`, sorted.
    pub fn delays_since(&self, start: Instant) -> Vec<Duration> {
        let mut d: Vec<Duration> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|t| t.saturating_duration_since(start))
            .collect();
        d.sort();
        d
    }

    /// Waits until `count` nodes have, or `deadline`; true if they have.
    pub async fn wait_for(&self, count: usize, deadline: Instant) -> bool {
        let step = Duration::from_millis(10);
        while self.len() < count {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(step).await;
        }
        true
    }
}

/// Records when each up node first sees `alive` members alive in its view.
pub fn view_reaches(cluster: &Cluster, alive: usize) -> (Arrivals, JoinSet<()>) {
    let arrivals = Arrivals::default();
    let mut tasks = JoinSet::new();
    for i in cluster.up() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        let mut rx = node.watch();
        let a = arrivals.clone();
        tasks.spawn(async move {
            if rx
                .wait_for(|v| v.count(MemberState::Alive) >= alive)
                .await
                .is_ok()
            {
                a.record(i);
            }
        });
    }
    (arrivals, tasks)
}

/// Records when each up node first holds `key` (on any node's state).
pub struct KeyWatch {
    /// Arrival per node.
    pub arrivals: Arrivals,
    _handles: Vec<ListenerHandle>,
}

impl KeyWatch {
    /// Subscribes every up node to `key`.
    pub async fn install(cluster: &Cluster, key: &str) -> Self {
        let arrivals = Arrivals::default();
        let mut handles = Vec::new();
        for i in cluster.up() {
            let Some(node) = cluster.node(i) else {
                continue;
            };
            let a = arrivals.clone();
            let wanted = key.to_owned();
            let handle = node
                .with_chitchat(|c| {
                    let a = a.clone();
                    // The prefix also matches longer keys: keep the exact one.
                    c.subscribe_event(wanted.clone(), move |ev| {
                        if ev.key.is_empty() {
                            a.record(i);
                        }
                    })
                })
                .await;
            handles.push(handle);
        }
        Self {
            arrivals,
            _handles: handles,
        }
    }
}

/// Records, per observer, when `subject` leaves its live set.
pub async fn dropped_from_live(cluster: &Cluster, subject: &ChitchatId) -> (Arrivals, JoinSet<()>) {
    let arrivals = Arrivals::default();
    let mut tasks = JoinSet::new();
    for i in cluster.up() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        if node.chitchat_id() == subject {
            continue;
        }
        let mut rx = node.with_chitchat(|c| c.live_nodes_watcher()).await;
        let (a, subject) = (arrivals.clone(), subject.clone());
        tasks.spawn(async move {
            if rx
                .wait_for(|live| !live.contains_key(&subject))
                .await
                .is_ok()
            {
                a.record(i);
            }
        });
    }
    (arrivals, tasks)
}

/// Records when each up node's chitchat live set (itself included) first has `count` nodes.
pub async fn live_reaches(cluster: &Cluster, count: usize) -> (Arrivals, JoinSet<()>) {
    let arrivals = Arrivals::default();
    let mut tasks = JoinSet::new();
    for i in cluster.up() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        let mut rx = node.with_chitchat(|c| c.live_nodes_watcher()).await;
        let a = arrivals.clone();
        tasks.spawn(async move {
            if rx.wait_for(|live| live.len() >= count).await.is_ok() {
                a.record(i);
            }
        });
    }
    (arrivals, tasks)
}

/// One observer declaring one subject dead.
#[derive(Clone, Debug)]
pub struct Death {
    /// Who declared.
    pub observer: usize,
    /// Whom (by chitchat identity).
    pub subject: ChitchatId,
    /// When.
    pub at: Instant,
}

/// Records every transition of a node out of some observer's live set.
#[derive(Clone, Debug, Default)]
pub struct DeathLog(Arc<Mutex<Vec<Death>>>);

impl DeathLog {
    /// Starts watching every up node.
    pub async fn install(cluster: &Cluster) -> (Self, JoinSet<()>) {
        let log = Self::default();
        let mut tasks = JoinSet::new();
        for i in cluster.up() {
            let Some(node) = cluster.node(i) else {
                continue;
            };
            let mut rx = node.with_chitchat(|c| c.live_nodes_watcher()).await;
            let log = log.clone();
            tasks.spawn(async move {
                let mut live: HashSet<ChitchatId> =
                    rx.borrow_and_update().keys().cloned().collect();
                while rx.changed().await.is_ok() {
                    let now: HashSet<ChitchatId> = rx.borrow_and_update().keys().cloned().collect();
                    let at = Instant::now();
                    let mut g = log.0.lock().unwrap_or_else(PoisonError::into_inner);
                    for gone in live.difference(&now) {
                        g.push(Death {
                            observer: i,
                            subject: gone.clone(),
                            at,
                        });
                    }
                    drop(g);
                    live = now;
                }
            });
        }
        (log, tasks)
    }

    /// Every death recorded so far.
    pub fn deaths(&self) -> Vec<Death> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

//! One cluster of N nodes: join convergence, gossip bandwidth, propagation of a new key and
//! detection of killed nodes, measured in that order on the same cluster.

use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::{Bandwidth, Reach, measure_bandwidth, policy_value, up_addrs};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{LinkModel, NetConfig, SimNet};
use crate::probe::{self, KeyWatch};

/// What to run.
#[derive(Clone, Debug)]
pub struct ScalePlan {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip settings of every node.
    pub gossip: GossipSettings,
    /// Every link.
    pub link: LinkModel,
    /// Seed of the network's randomness.
    pub seed: u64,
    /// A gossip fanout below chitchat's (see [`NetConfig::syn_fanout`]).
    pub syn_fanout: Option<usize>,
    /// Gossip packed as nodes pack it between each other (see [`NetConfig::packed`]).
    pub packed: bool,
    /// Give up on join convergence after this long.
    pub join_deadline: Duration,
    /// Quiet time after convergence, before measuring.
    pub settle: Duration,
    /// Bandwidth window.
    pub bandwidth_window: Duration,
    /// New keys to propagate, one after the other.
    pub propagation_trials: usize,
    /// Nodes to kill, one after the other.
    pub detection_trials: usize,
    /// Give up on one propagation or detection after this long.
    pub trial_deadline: Duration,
}

impl ScalePlan {
    /// A plan with the given size, settings and seed, and windows that suit its size.
    pub fn new(nodes: usize, gossip: GossipSettings, seed: u64) -> Self {
        Self {
            nodes,
            gossip,
            link: LinkModel::default(),
            seed,
            syn_fanout: None,
            packed: false,
            join_deadline: Duration::from_secs(120),
            settle: Duration::from_secs(2),
            bandwidth_window: Duration::from_secs(5),
            propagation_trials: 5,
            detection_trials: 3,
            trial_deadline: Duration::from_secs(60),
        }
    }
}

/// One kill and when the others noticed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detection {
    /// Nodes watching.
    pub observers: usize,
    /// Sorted detection delays of the observers that noticed before the deadline.
    pub delays: Vec<Duration>,
}

/// Everything measured on one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScaleResult {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// Network seed.
    pub seed: u64,
    /// From the last node's start until each view lists every node alive.
    pub join: Reach,
    /// Steady-state traffic.
    pub bandwidth: Bandwidth,
    /// One per new key.
    pub propagation: Vec<Reach>,
    /// One per killed node.
    pub detection: Vec<Detection>,
    /// Virtual time simulated.
    pub virtual_s: f64,
    /// Wall-clock time it took.
    pub wall_s: f64,
}

impl ScaleResult {
    /// Every observer's detection delay, over all kills, sorted.
    pub fn detection_delays(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = self
            .detection
            .iter()
            .flat_map(|d| d.delays.clone())
            .collect();
        all.sort();
        all
    }
}

/// Runs the plan (inside a paused runtime, see [`super::run_virtual`]).
pub async fn run(plan: &ScalePlan) -> anyhow::Result<ScaleResult> {
    let wall = std::time::Instant::now();
    let t0 = Instant::now();
    let net = SimNet::new(NetConfig {
        link: plan.link,
        seed: plan.seed,
        syn_fanout: plan.syn_fanout,
        packed: plan.packed,
        ..NetConfig::default()
    })?;
    let mut cluster = Cluster::start(
        net.clone(),
        ClusterSpec::new(plan.nodes, plan.gossip.clone()),
    )
    .await?;
    let started = Instant::now();
    let (arrivals, tasks) = probe::view_reaches(&cluster, plan.nodes);
    arrivals
        .wait_for(plan.nodes, started + plan.join_deadline)
        .await;
    drop(tasks);
    let join = Reach::from_delays(&arrivals.delays_since(started), plan.nodes);
    tokio::time::sleep(plan.settle).await;
    let bandwidth = measure_bandwidth(&net, &up_addrs(&cluster), plan.bandwidth_window).await;
    let mut propagation = Vec::new();
    for trial in 0..plan.propagation_trials {
        propagation.push(propagate(&cluster, plan, trial as u64).await);
        tokio::time::sleep(plan.gossip.interval * 2).await;
    }
    let mut detection = Vec::new();
    for _ in 0..plan.detection_trials {
        detection.push(detect(&mut cluster, plan).await);
    }
    Ok(ScaleResult {
        nodes: plan.nodes,
        interval: plan.gossip.interval,
        seed: plan.seed,
        join,
        bandwidth,
        propagation,
        detection,
        virtual_s: Instant::now().duration_since(t0).as_secs_f64(),
        wall_s: wall.elapsed().as_secs_f64(),
    })
}

/// A random node writes a new policy key; when does every node hold it?
pub async fn propagate(cluster: &Cluster, plan: &ScalePlan, trial: u64) -> Reach {
    let up = cluster.up();
    let origin = up[cluster.net.random_below(up.len())];
    let key = format!("policy/route/trial-{trial}");
    let watch = KeyWatch::install(cluster, &key).await;
    let start = Instant::now();
    if let Some(node) = cluster.node(origin) {
        node.set_key(&key, &policy_value(plan.seed ^ trial)).await;
    }
    watch.arrivals.record_at(origin, start);
    watch
        .arrivals
        .wait_for(up.len(), start + plan.trial_deadline)
        .await;
    Reach::from_delays(&watch.arrivals.delays_since(start), up.len())
}

/// Kills a random non-seed node; when does each other node stop listing it as live?
pub async fn detect(cluster: &mut Cluster, plan: &ScalePlan) -> Detection {
    let candidates: Vec<usize> = cluster.up().into_iter().filter(|i| *i >= 3).collect();
    if candidates.is_empty() {
        return Detection::default();
    }
    let victim = candidates[cluster.net.random_below(candidates.len())];
    let subject = cluster.slots[victim].chitchat_id();
    let (arrivals, tasks) = probe::dropped_from_live(cluster, &subject).await;
    let observers = cluster.up().len() - 1;
    let start = Instant::now();
    cluster.kill(victim);
    arrivals
        .wait_for(observers, start + plan.trial_deadline)
        .await;
    drop(tasks);
    Detection {
        observers,
        delays: arrivals.delays_since(start),
    }
}

/// Detection delays over all observers of all kills: median, 99th percentile and maximum.
/// An observer that never noticed counts as infinitely late, so a quantile it would fall in is
/// `None`.
pub fn detection_summary(result: &ScaleResult) -> Reach {
    let population = result.detection.iter().map(|d| d.observers).sum();
    Reach::from_delays(&result.detection_delays(), population)
}

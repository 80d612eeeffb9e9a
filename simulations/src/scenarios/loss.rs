//! False deaths: a converged cluster where nobody dies, under message loss for a fixed window.
//! Every node that leaves some observer's live set is a false death.

use std::collections::HashSet;
use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::{Bandwidth, measure_bandwidth, up_addrs};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{LinkModel, NetConfig, SimNet};
use crate::probe::{self, DeathLog};

/// What to run.
#[derive(Clone, Debug)]
pub struct LossPlan {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip settings.
    pub gossip: GossipSettings,
    /// Loss probability on every link during the window.
    pub loss: f64,
    /// Network seed.
    pub seed: u64,
    /// Loss-free time after convergence, so failure detectors have history (as in a cluster
    /// that has been running before the network degrades).
    pub warmup: Duration,
    /// How long the loss lasts (and false deaths are counted).
    pub window: Duration,
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossResult {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// Loss probability.
    pub loss: f64,
    /// Network seed.
    pub seed: u64,
    /// Window length (virtual seconds).
    pub window_s: f64,
    /// The cluster converged before the loss began.
    pub converged: bool,
    /// Times any observer dropped any node from its live set.
    pub false_deaths: usize,
    /// Distinct (observer, subject) pairs among them.
    pub pairs: usize,
    /// Distinct subjects some observer thought dead.
    pub subjects: usize,
    /// Distinct observers that thought some node dead.
    pub observers: usize,
    /// Smallest live-set size any node had at a one-second sample (itself included).
    pub min_live: usize,
    /// Traffic during the window.
    pub bandwidth: Bandwidth,
}

/// Runs the plan.
pub async fn run(plan: &LossPlan) -> anyhow::Result<LossResult> {
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        ..NetConfig::default()
    })?;
    let cluster = Cluster::start(
        net.clone(),
        ClusterSpec::new(plan.nodes, plan.gossip.clone()),
    )
    .await?;
    let started = Instant::now();
    let (arrivals, tasks) = probe::view_reaches(&cluster, plan.nodes);
    let converged = arrivals
        .wait_for(plan.nodes, started + Duration::from_secs(120))
        .await;
    drop(tasks);
    tokio::time::sleep(plan.warmup).await;
    let (log, tasks) = DeathLog::install(&cluster).await;
    net.set_default_link(LinkModel {
        loss: plan.loss,
        ..LinkModel::default()
    })?;
    let sampler = min_live_sampler(&cluster, plan.window);
    let addrs = up_addrs(&cluster);
    let bandwidth = measure_bandwidth(&net, &addrs, plan.window);
    let (min_live, bandwidth) = tokio::join!(sampler, bandwidth);
    drop(tasks);
    let deaths = log.deaths();
    let pairs: HashSet<_> = deaths
        .iter()
        .map(|d| (d.observer, d.subject.clone()))
        .collect();
    Ok(LossResult {
        nodes: plan.nodes,
        interval: plan.gossip.interval,
        loss: plan.loss,
        seed: plan.seed,
        window_s: plan.window.as_secs_f64(),
        converged,
        false_deaths: deaths.len(),
        pairs: pairs.len(),
        subjects: deaths
            .iter()
            .map(|d| d.subject.clone())
            .collect::<HashSet<_>>()
            .len(),
        observers: deaths
            .iter()
            .map(|d| d.observer)
            .collect::<HashSet<_>>()
            .len(),
        min_live,
        bandwidth,
    })
}

async fn min_live_sampler(cluster: &Cluster, window: Duration) -> usize {
    let end = Instant::now() + window;
    let mut min = usize::MAX;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in cluster.up() {
            if let Some(node) = cluster.node(i) {
                min = min.min(node.with_chitchat(|c| c.live_nodes().count()).await);
            }
        }
    }
    min
}

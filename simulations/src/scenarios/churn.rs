//! Long churn: nodes crash and come back with a new generation, one after another, for a long
//! time. Tracks what every node holds: live and dead members, node states, keys, the digest
//! size and the traffic, to show whether state stays bounded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::{GossipSettings, MemberState};
use tokio::time::Instant;

use super::up_addrs;
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{NetConfig, SimNet, Traffic};
use crate::probe;
use crate::stats;

/// What to run.
#[derive(Clone, Debug)]
pub struct ChurnPlan {
    /// Hosts.
    pub nodes: usize,
    /// Gossip settings.
    pub gossip: GossipSettings,
    /// Network seed.
    pub seed: u64,
    /// Total churn time.
    pub duration: Duration,
    /// One host crashes every `every`, and comes back (new generation) `every` later.
    pub every: Duration,
    /// Sampling period.
    pub sample: Duration,
}

/// The cluster at one instant (means are over the nodes that are up).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChurnSample {
    /// Virtual seconds since churn began.
    pub t_s: f64,
    /// Nodes up.
    pub up: usize,
    /// Restarts so far.
    pub restarts: usize,
    /// Live-set size (itself included).
    pub live_mean: f64,
    /// Dead incarnations remembered.
    pub dead_mean: f64,
    /// ... most on any node.
    pub dead_max: usize,
    /// Node states held (live and dead incarnations).
    pub states_mean: f64,
    /// ... most on any node.
    pub states_max: usize,
    /// Keys held over all node states.
    pub keys_mean: f64,
    /// Members in the view (one per name).
    pub view_members_mean: f64,
    /// Members alive in the view.
    pub view_alive_mean: f64,
    /// Mean `Syn` (digest) size since the previous sample.
    pub syn_mean: f64,
    /// Bytes sent per node per second since the previous sample.
    pub sent_mean: f64,
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChurnResult {
    /// Hosts.
    pub nodes: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// Network seed.
    pub seed: u64,
    /// Seconds between crashes.
    pub every_s: f64,
    /// Dead-node grace period.
    pub grace_s: f64,
    /// Samples in time order.
    pub samples: Vec<ChurnSample>,
}

/// Runs the plan.
pub async fn run(plan: &ChurnPlan) -> anyhow::Result<ChurnResult> {
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        ..NetConfig::default()
    })?;
    let mut cluster = Cluster::start(
        net.clone(),
        ClusterSpec::new(plan.nodes, plan.gossip.clone()),
    )
    .await?;
    let (arrivals, tasks) = probe::view_reaches(&cluster, plan.nodes);
    arrivals
        .wait_for(plan.nodes, Instant::now() + Duration::from_secs(120))
        .await;
    drop(tasks);

    let start = Instant::now();
    let end = start + plan.duration;
    let (mut next_churn, mut next_sample) = (start, start);
    let mut down: Option<usize> = None;
    let mut restarts = 0;
    let mut last = (start, net.traffic());
    let mut samples = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep_until(next_churn.min(next_sample)).await;
        let now = Instant::now();
        if now >= next_churn {
            if let Some(i) = down.take() {
                cluster.restart(i).await?;
                restarts += 1;
            }
            let candidates: Vec<usize> = cluster.up().into_iter().filter(|i| *i >= 3).collect();
            if !candidates.is_empty() {
                let victim = candidates[net.random_below(candidates.len())];
                cluster.kill(victim);
                down = Some(victim);
            }
            next_churn += plan.every;
        }
        if now >= next_sample {
            let traffic = net.traffic();
            let mut s = sample(&cluster, &last.1, &traffic, now.duration_since(last.0)).await;
            s.t_s = now.duration_since(start).as_secs_f64();
            s.restarts = restarts;
            samples.push(s);
            last = (now, traffic);
            next_sample += plan.sample;
        }
    }
    Ok(ChurnResult {
        nodes: plan.nodes,
        interval: plan.gossip.interval,
        seed: plan.seed,
        every_s: plan.every.as_secs_f64(),
        grace_s: plan.gossip.dead_node_grace.as_secs_f64(),
        samples,
    })
}

async fn sample(
    cluster: &Cluster,
    before: &HashMap<SocketAddr, Traffic>,
    after: &HashMap<SocketAddr, Traffic>,
    elapsed: Duration,
) -> ChurnSample {
    let mut live = Vec::new();
    let mut dead = Vec::new();
    let mut states = Vec::new();
    let mut keys = Vec::new();
    let mut members = Vec::new();
    let mut alive = Vec::new();
    for i in cluster.up() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        let (l, d, s, k) = node
            .with_chitchat(|c| {
                let keys: usize = c.node_states().values().map(|n| n.num_key_values()).sum();
                (
                    c.live_nodes().count(),
                    c.dead_nodes().count(),
                    c.node_states().len(),
                    keys,
                )
            })
            .await;
        live.push(l as f64);
        dead.push(d as f64);
        states.push(s as f64);
        keys.push(k as f64);
        let view = node.view();
        members.push(view.members.len() as f64);
        alive.push(view.count(MemberState::Alive) as f64);
    }
    let (mut syn_msgs, mut syn_bytes, mut sent) = (0u64, 0u64, Vec::new());
    let secs = elapsed.as_secs_f64().max(1e-9);
    for addr in up_addrs(cluster) {
        let a = after.get(&addr).copied().unwrap_or_default();
        let b = before.get(&addr).copied().unwrap_or_default();
        let syn = a.sent[0].since(&b.sent[0]);
        syn_msgs += syn.msgs;
        syn_bytes += syn.bytes;
        sent.push(a.sent_total().since(&b.sent_total()).bytes as f64 / secs);
    }
    ChurnSample {
        up: live.len(),
        live_mean: stats::mean(&live),
        dead_mean: stats::mean(&dead),
        dead_max: dead.iter().fold(0.0_f64, |m, v| m.max(*v)) as usize,
        states_mean: stats::mean(&states),
        states_max: states.iter().fold(0.0_f64, |m, v| m.max(*v)) as usize,
        keys_mean: stats::mean(&keys),
        view_members_mean: stats::mean(&members),
        view_alive_mean: stats::mean(&alive),
        syn_mean: if syn_msgs == 0 {
            f64::NAN
        } else {
            syn_bytes as f64 / syn_msgs as f64
        },
        sent_mean: stats::mean(&sent),
        ..ChurnSample::default()
    }
}

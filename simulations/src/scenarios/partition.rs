//! Partition and heal: the cluster splits in two halves long enough for each side to declare
//! the other dead; each side writes a key meanwhile; then the network heals. How long until
//! every node lists every node live again, and holds both keys?

use std::collections::HashSet;
use std::time::Duration;

use chitchat::ChitchatId;
use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::{Reach, policy_value};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{NetConfig, SimNet};
use crate::probe::{self, KeyWatch};

/// What to run.
#[derive(Clone, Debug)]
pub struct PartitionPlan {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip settings.
    pub gossip: GossipSettings,
    /// Network seed.
    pub seed: u64,
    /// How long the halves stay apart.
    pub hold: Duration,
    /// Give up on healing after this long.
    pub deadline: Duration,
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionResult {
    /// Cluster size.
    pub nodes: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// Network seed.
    pub seed: u64,
    /// Partition length (virtual seconds).
    pub hold_s: f64,
    /// Share of nodes that, just before the heal, listed no node of the other half as live.
    pub split_seen: f64,
    /// After the heal: when each node listed all nodes live again.
    pub members: Reach,
    /// After the heal: when each node held both keys written during the partition.
    pub keys: Reach,
}

/// Runs the plan.
pub async fn run(plan: &PartitionPlan) -> anyhow::Result<PartitionResult> {
    let n = plan.nodes;
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        ..NetConfig::default()
    })?;
    let cluster = Cluster::start(net.clone(), ClusterSpec::new(n, plan.gossip.clone())).await?;
    let (arrivals, tasks) = probe::view_reaches(&cluster, n);
    arrivals
        .wait_for(n, Instant::now() + Duration::from_secs(120))
        .await;
    drop(tasks);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let half = n / 2;
    let addrs: Vec<_> = cluster.slots.iter().map(|s| s.addr).collect();
    net.partition(&[addrs[..half].to_vec(), addrs[half..].to_vec()]);
    let left = KeyWatch::install(&cluster, "policy/route/left").await;
    let right = KeyWatch::install(&cluster, "policy/route/right").await;
    tokio::time::sleep(plan.hold / 2).await;
    let writers = [
        (cluster.net.random_below(half), "policy/route/left", &left),
        (
            half + cluster.net.random_below(n - half),
            "policy/route/right",
            &right,
        ),
    ];
    for (i, key, watch) in writers {
        if let Some(node) = cluster.node(i) {
            node.set_key(key, &policy_value(plan.seed ^ i as u64)).await;
            watch.arrivals.record_at(i, Instant::now());
        }
    }
    tokio::time::sleep(plan.hold / 2).await;
    let split_seen = split_seen(&cluster, half).await;

    net.heal();
    let healed = Instant::now();
    let (live, tasks) = probe::live_reaches(&cluster, n).await;
    let deadline = healed + plan.deadline;
    live.wait_for(n, deadline).await;
    left.arrivals.wait_for(n, deadline).await;
    right.arrivals.wait_for(n, deadline).await;
    drop(tasks);
    Ok(PartitionResult {
        nodes: n,
        interval: plan.gossip.interval,
        seed: plan.seed,
        hold_s: plan.hold.as_secs_f64(),
        split_seen,
        members: Reach::from_delays(&live.delays_since(healed), n),
        keys: both_keys(&left, &right, healed, n),
    })
}

/// Share of nodes that see nobody from the other half as live.
async fn split_seen(cluster: &Cluster, half: usize) -> f64 {
    let mut blind = 0;
    for i in cluster.up() {
        let Some(node) = cluster.node(i) else {
            continue;
        };
        let other_side: HashSet<ChitchatId> = cluster
            .slots
            .iter()
            .enumerate()
            .filter(|(j, _)| (*j < half) != (i < half))
            .map(|(_, s)| s.chitchat_id())
            .collect();
        let seen = node
            .with_chitchat(|c| c.live_nodes().filter(|id| other_side.contains(id)).count())
            .await;
        if seen == 0 {
            blind += 1;
        }
    }
    blind as f64 / cluster.up().len().max(1) as f64
}

fn both_keys(left: &KeyWatch, right: &KeyWatch, healed: Instant, n: usize) -> Reach {
    let l = left.arrivals.per_node();
    let r = right.arrivals.per_node();
    let mut delays: Vec<Duration> = l
        .iter()
        .filter_map(|(node, tl)| r.get(node).map(|tr| (*tl).max(*tr)))
        .map(|t| t.saturating_duration_since(healed))
        .collect();
    delays.sort();
    Reach::from_delays(&delays, n)
}

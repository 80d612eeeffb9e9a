//! Digest size against entries, and what chitchat does when a digest nears one message.

use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::phantom::{Naming, Phantom, phantom, plant};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{Kind, LinkModel, NetConfig, SimNet, Traffic};
use crate::probe;

/// Measured `Syn` size against digest entries, for one naming.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DigestPoint {
    /// Naming of the planted entries.
    pub naming: &'static str,
    /// Entries in the digest (nodes known, live or dead).
    pub entries: usize,
    /// Mean encoded `Syn` size (compressed digest, protocol V1).
    pub syn_bytes: f64,
}

/// Grows one node's state to each of `sizes` entries and measures the `Syn` it sends.
pub async fn digest_sizes(
    gossip: GossipSettings,
    naming: Naming,
    sizes: &[usize],
    seed: u64,
) -> anyhow::Result<Vec<DigestPoint>> {
    let net = SimNet::new(NetConfig {
        seed,
        ..NetConfig::default()
    })?;
    let cluster = pair(&net, &gossip).await?;
    let addr = cluster.slots[0].addr;
    // Node 0 talks to nobody: its peer would learn the planted entries from its digests and
    // could crash on them (see `delta_budget_edge`); only the sizes of its attempts matter.
    net.partition(&[vec![addr], vec![cluster.slots[1].addr]]);
    let mut planted = 0;
    let mut points = Vec::new();
    for &size in sizes {
        let target = size.saturating_sub(2);
        let batch: Vec<Phantom> = (planted..target)
            .map(|k| phantom(&net, naming, 2, k))
            .collect();
        plant(&cluster, 0, &batch).await;
        planted = planted.max(target);
        tokio::time::sleep(gossip.interval * 2).await;
        let before = net.traffic().get(&addr).copied().unwrap_or_default();
        tokio::time::sleep(gossip.interval * 10).await;
        let after = net.traffic().get(&addr).copied().unwrap_or_default();
        points.push(DigestPoint {
            naming: naming.label(),
            entries: planted + 2,
            syn_bytes: attempted_syn(&before, &after),
        });
    }
    Ok(points)
}

async fn pair(net: &SimNet, gossip: &GossipSettings) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start(net.clone(), ClusterSpec::new(2, gossip.clone())).await?;
    let (a, tasks) = probe::view_reaches(&cluster, 2);
    a.wait_for(2, Instant::now() + Duration::from_secs(30))
        .await;
    drop(tasks);
    Ok(cluster)
}

/// Which way the messages flow once a grown node and its small peer are reconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The small peer's messages reach the grown node (not the reverse).
    ToGrown,
    /// Both ways, as in normal gossip.
    BothWays,
}

/// One case of the delta-budget edge.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeCase {
    /// Which way messages flowed.
    pub direction: Direction,
    /// Digest entries of the grown node.
    pub entries: usize,
    /// Its attempted `Syn` size.
    pub syn_bytes: f64,
    /// Length of each observation window (seconds).
    pub window_s: f64,
    /// `Syn` messages the grown node sent in the window before reconnection.
    pub sent_before: u64,
    /// Of its `Syn` messages in that window, those refused as oversize.
    pub refused_before: u64,
    /// Panics once reconnected.
    pub panics: u64,
    /// `Syn` attempts of the grown node in the window after reconnection (zero: its gossip
    /// task is gone).
    pub grown_after: u64,
    /// `Syn` attempts of the small node in that window.
    pub small_after: u64,
}

/// The cases of the delta-budget edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeResult {
    /// One one-way case, then several two-way cases (a race: which node dies first).
    pub cases: Vec<EdgeCase>,
}

/// The `Syn` size at which a node can still send its digest but has under 100 bytes left
/// for a delta when it answers: `Syn` = digest + 12 bytes; the answer's delta room is
/// 65 503 − digest; chitchat asserts it is at least 100.
const EDGE_TARGET: f64 = 65_460.0;
const EDGE_LOW: f64 = 65_416.0;
/// Two-way cases, each on its own pair and seed.
const TWO_WAY_CASES: u64 = 5;

/// chitchat answers a `Syn` with its own digest plus a delta in the room left in one message,
/// and asserts that room is at least 100 bytes. A node whose digest is within 100 bytes of the
/// limit (or over it) therefore panics in its gossip task on the first `Syn` it receives. On a
/// fresh pair each time, one node, cut off, is grown until its `Syn` is just under the limit;
/// then messages flow to it only, or both ways.
pub async fn delta_budget_edge(gossip: GossipSettings, seed: u64) -> anyhow::Result<EdgeResult> {
    let mut cases = vec![edge_case(&gossip, seed, Direction::ToGrown).await?];
    for k in 1..=TWO_WAY_CASES {
        cases.push(edge_case(&gossip, seed.wrapping_add(k), Direction::BothWays).await?);
    }
    Ok(EdgeResult { cases })
}

async fn edge_case(
    gossip: &GossipSettings,
    seed: u64,
    direction: Direction,
) -> anyhow::Result<EdgeCase> {
    let net = SimNet::new(NetConfig {
        seed,
        ..NetConfig::default()
    })?;
    let cluster = pair(&net, gossip).await?;
    let (grown, small) = (cluster.slots[0].addr, cluster.slots[1].addr);
    let cut = LinkModel {
        loss: 1.0,
        ..LinkModel::default()
    };
    net.set_link(grown, small, cut)?;
    net.set_link(small, grown, cut)?;
    let (base, _) = syn_window(&net, gossip, grown).await;
    let (mut planted, mut size, mut last) = (0usize, base, (0, 0));
    for _ in 0..12 {
        if size >= EDGE_LOW {
            break;
        }
        let per_entry = if planted == 0 {
            9.0
        } else {
            (size - base) / planted as f64
        };
        let add = ((EDGE_TARGET - size) / per_entry).floor().max(1.0) as usize;
        let batch: Vec<Phantom> = (planted..planted + add)
            .map(|k| phantom(&net, Naming::Sequential, 2, k))
            .collect();
        plant(&cluster, 0, &batch).await;
        planted += add;
        (size, last) = syn_window(&net, gossip, grown).await;
    }
    let panics_before = super::panics_now();
    net.set_link(small, grown, LinkModel::default())?;
    if direction == Direction::BothWays {
        net.set_link(grown, small, LinkModel::default())?;
    }
    tokio::time::sleep(gossip.interval * 20).await;
    let before = net.traffic();
    tokio::time::sleep(gossip.interval * 10).await;
    let after = net.traffic();
    let tries = |addr: SocketAddr| {
        let (b, a) = (
            before.get(&addr).copied().unwrap_or_default(),
            after.get(&addr).copied().unwrap_or_default(),
        );
        let k = Kind::Syn as usize;
        a.sent[k].since(&b.sent[k]).msgs + a.oversize[k].since(&b.oversize[k]).msgs
    };
    Ok(EdgeCase {
        direction,
        entries: planted + 2,
        syn_bytes: size,
        window_s: (gossip.interval * 10).as_secs_f64(),
        sent_before: last.0,
        refused_before: last.1,
        panics: super::panics_now() - panics_before,
        grown_after: tries(grown),
        small_after: tries(small),
    })
}

/// Waits two rounds, then watches `addr` for ten: its mean attempted `Syn` size, and how many
/// `Syn`s it sent and had refused.
async fn syn_window(net: &SimNet, gossip: &GossipSettings, addr: SocketAddr) -> (f64, (u64, u64)) {
    tokio::time::sleep(gossip.interval * 2).await;
    let t0 = net.traffic().get(&addr).copied().unwrap_or_default();
    tokio::time::sleep(gossip.interval * 10).await;
    let t1 = net.traffic().get(&addr).copied().unwrap_or_default();
    let k = Kind::Syn as usize;
    let counts = (
        t1.sent[k].since(&t0.sent[k]).msgs,
        t1.oversize[k].since(&t0.oversize[k]).msgs,
    );
    (attempted_syn(&t0, &t1), counts)
}

/// Mean size of the `Syn` messages a node tried to send, sent or refused.
pub fn attempted_syn(before: &Traffic, after: &Traffic) -> f64 {
    let k = Kind::Syn as usize;
    let sent = after.sent[k].since(&before.sent[k]);
    let refused = after.oversize[k].since(&before.oversize[k]);
    let msgs = sent.msgs + refused.msgs;
    if msgs == 0 {
        return f64::NAN;
    }
    (sent.bytes + refused.bytes) as f64 / msgs as f64
}

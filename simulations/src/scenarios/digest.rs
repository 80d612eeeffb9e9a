//! Digest size against entries, and what chitchat does when a digest nears one message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::phantom::{Naming, Phantom, phantom, plant};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{Kind, NetConfig, SimNet, Traffic};
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

/// A node whose own digest leaves less than 100 bytes for a delta, before and after a peer's
/// `Syn` reaches it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeResult {
    /// Digest entries of the grown node.
    pub entries: usize,
    /// Its attempted `Syn` size.
    pub syn_bytes: f64,
    /// Length of each observation window (seconds).
    pub window_s: f64,
    /// `Syn` messages it sent in the window before it hears from its peer.
    pub sent_before: u64,
    /// `Syn` messages refused as oversize in that window.
    pub refused_before: u64,
    /// `Syn` attempts of the grown node in the same window after.
    pub attempts_after: u64,
    /// `Syn` attempts of its peer in that window.
    pub peer_attempts_after: u64,
}

/// The `Syn` size at which a node can still send its digest but has under 100 bytes left
/// for a delta when it answers: `Syn` = digest + 12 bytes; the answer's delta room is
/// 65 503 − digest; chitchat asserts it is at least 100.
const EDGE_TARGET: f64 = 65_460.0;
const EDGE_LOW: f64 = 65_416.0;

/// chitchat answers a `Syn` with its own digest plus a delta in the room left in one message,
/// and asserts that room is at least 100 bytes. A node whose digest is within 100 bytes of
/// the limit (or over it) therefore panics in its gossip task on the first `Syn` it receives.
/// This grows one node of a pair, cut off from its peer, until its `Syn` is just below the
/// limit, then heals the cut.
pub async fn delta_budget_edge(gossip: GossipSettings, seed: u64) -> anyhow::Result<EdgeResult> {
    let net = SimNet::new(NetConfig {
        seed,
        ..NetConfig::default()
    })?;
    let cluster = pair(&net, &gossip).await?;
    let (a, b) = (cluster.slots[0].addr, cluster.slots[1].addr);
    net.partition(&[vec![a], vec![b]]);
    let window = gossip.interval * 10;
    let measure = |net: SimNet| async move {
        tokio::time::sleep(gossip.interval * 2).await;
        let t0 = net.traffic();
        tokio::time::sleep(window).await;
        (t0, net.traffic())
    };
    let syn_of = |t: &(Traffic, Traffic)| attempted_syn(&t.0, &t.1);
    let at = |m: &(HashMap<SocketAddr, Traffic>, HashMap<SocketAddr, Traffic>), addr| {
        let get = |t: &HashMap<SocketAddr, Traffic>| t.get(&addr).copied().unwrap_or_default();
        (get(&m.0), get(&m.1))
    };
    let mut last = at(&measure(net.clone()).await, a);
    let base = syn_of(&last);
    let (mut planted, mut size) = (0usize, base);
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
        last = at(&measure(net.clone()).await, a);
        size = syn_of(&last);
    }
    net.heal();
    let after = measure(net.clone()).await;
    let k = Kind::Syn as usize;
    let tries = |t: &(Traffic, Traffic)| {
        t.1.sent[k].since(&t.0.sent[k]).msgs + t.1.oversize[k].since(&t.0.oversize[k]).msgs
    };
    Ok(EdgeResult {
        entries: planted + 2,
        syn_bytes: size,
        window_s: window.as_secs_f64(),
        sent_before: last.1.sent[k].since(&last.0.sent[k]).msgs,
        refused_before: last.1.oversize[k].since(&last.0.oversize[k]).msgs,
        attempts_after: tries(&at(&after, a)),
        peer_attempts_after: tries(&at(&after, b)),
    })
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

//! Where chitchat stops: its digest (one entry per known node incarnation, live or recently
//! dead) travels whole in every `Syn` and `SynAck`, and one message holds at most 65 507 bytes.
//!
//! A small real cluster's digest is grown with planted dead incarnations (see
//! [`super::phantom`]) in small steps, as a real cluster's grows one node at a time, until
//! something gives; then the run watches what the nodes do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::time::Instant;

use super::phantom::{Naming, Phantom, phantom, plant};
use super::{digest::attempted_syn, panics_now};
use crate::cluster::{Cluster, ClusterSpec};
use crate::net::{Kind, NetConfig, SimNet, Traffic};
use crate::probe;

/// What to run.
#[derive(Clone, Debug)]
pub struct WallPlan {
    /// Real nodes.
    pub real: usize,
    /// Gossip settings.
    pub gossip: GossipSettings,
    /// Network seed.
    pub seed: u64,
    /// Entries planted at once first (below the limit, to get close quickly).
    pub first_batch: usize,
    /// Entries planted per step after the first.
    pub batch: usize,
    /// Time between steps.
    pub batch_every: Duration,
    /// Never plant more than this.
    pub max_phantoms: usize,
    /// How long to watch after planting stops.
    pub observe: Duration,
    /// Sampling period.
    pub sample: Duration,
}

/// The cluster at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WallSample {
    /// Virtual seconds since planting began.
    pub t_s: f64,
    /// Entries planted so far.
    pub phantoms: usize,
    /// Mean size of the `Syn` messages the real nodes tried to send since the last sample.
    pub syn_bytes: f64,
    /// Messages refused as oversize since the last sample, all real nodes.
    pub refused: u64,
    /// Messages delivered since the last sample, all real nodes.
    pub delivered: u64,
    /// Real nodes that tried to send anything since the last sample (their gossip runs).
    pub gossiping: usize,
    /// Mean live-set size (itself included) over the nodes still gossiping; a node whose
    /// gossip task died keeps a frozen live set, which is left out.
    pub live_mean: f64,
    /// Panics inside nodes so far.
    pub panics: u64,
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WallResult {
    /// Real nodes.
    pub real: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// Dead-node grace period (seconds).
    pub grace_s: f64,
    /// Network seed.
    pub seed: u64,
    /// Entries planted per step.
    pub batch: usize,
    /// First refused message: (seconds, entries planted, attempted `Syn` size).
    pub refused_at: Option<(f64, usize, f64)>,
    /// First panic inside a node: (seconds, entries planted, attempted `Syn` size).
    pub panic_at: Option<(f64, usize, f64)>,
    /// When the gossiping nodes' mean live set fell below half of them.
    pub collapsed_s: Option<f64>,
    /// When every gossiping node saw every gossiping node live again, after a collapse.
    pub recovered_s: Option<f64>,
    /// Samples in time order.
    pub samples: Vec<WallSample>,
}

impl WallResult {
    /// Real nodes still gossiping at the end.
    pub fn gossiping_at_end(&self) -> usize {
        self.samples.last().map_or(0, |s| s.gossiping)
    }
}

/// Runs the plan.
pub async fn run(plan: &WallPlan) -> anyhow::Result<WallResult> {
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        ..NetConfig::default()
    })?;
    let spec = ClusterSpec::new(plan.real, plan.gossip.clone());
    let cluster = Cluster::start(net.clone(), spec).await?;
    let (a, tasks) = probe::view_reaches(&cluster, plan.real);
    a.wait_for(plan.real, Instant::now() + Duration::from_secs(60))
        .await;
    drop(tasks);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let mut result = WallResult {
        real: plan.real,
        interval: plan.gossip.interval,
        grace_s: plan.gossip.dead_node_grace.as_secs_f64(),
        seed: plan.seed,
        batch: plan.batch,
        ..WallResult::default()
    };
    let start = Instant::now();
    let panics_before = panics_now();
    let (mut planted, mut planting) = (0, true);
    let mut next_batch = start;
    let mut stop_at = start + Duration::from_secs(24 * 3600);
    let mut last = net.traffic();
    let mut next_sample = start + plan.sample;
    while Instant::now() < stop_at {
        let now = Instant::now();
        if planting && now >= next_batch {
            let size = if planted == 0 {
                plan.first_batch
            } else {
                plan.batch
            };
            let batch: Vec<Phantom> = (planted..planted + size)
                .map(|k| phantom(&net, Naming::Sequential, plan.real, k))
                .collect();
            for i in 0..cluster.slots.len() {
                plant(&cluster, i, &batch).await;
            }
            planted += size;
            next_batch += plan.batch_every;
        }
        if now >= next_sample {
            let traffic = net.traffic();
            let mut s = wall_sample(&cluster, &last, &traffic).await;
            s.t_s = now.duration_since(start).as_secs_f64();
            s.phantoms = planted;
            s.panics = panics_now() - panics_before;
            if note_events(&mut result, &s) || (planting && planted >= plan.max_phantoms) {
                // Something gave (or nothing will): stop growing and watch.
                if planting {
                    planting = false;
                    stop_at = now + plan.observe;
                }
            }
            result.samples.push(s);
            last = traffic;
            next_sample += plan.sample;
        }
        let next = if planting {
            next_batch.min(next_sample)
        } else {
            next_sample
        };
        tokio::time::sleep_until(next).await;
    }
    Ok(result)
}

/// Records first refusals, panics, collapse and recovery; true when the digest hit the limit.
fn note_events(result: &mut WallResult, s: &WallSample) -> bool {
    let at = (s.t_s, s.phantoms, s.syn_bytes);
    if s.refused > 0 && result.refused_at.is_none() {
        result.refused_at = Some(at);
    }
    if s.panics > 0 && result.panic_at.is_none() {
        result.panic_at = Some(at);
    }
    let hit = result.refused_at.is_some() || result.panic_at.is_some();
    let alive = s.gossiping as f64;
    if hit && result.collapsed_s.is_none() && (s.gossiping == 0 || s.live_mean < alive / 2.0) {
        result.collapsed_s = Some(s.t_s);
    }
    if result.collapsed_s.is_some()
        && result.recovered_s.is_none()
        && s.gossiping > 0
        && s.live_mean >= alive - 0.5
    {
        result.recovered_s = Some(s.t_s);
    }
    hit
}

async fn wall_sample(
    cluster: &Cluster,
    before: &HashMap<SocketAddr, Traffic>,
    after: &HashMap<SocketAddr, Traffic>,
) -> WallSample {
    let mut s = WallSample::default();
    let (mut syn_before, mut syn_after) = (Traffic::default(), Traffic::default());
    let mut live = 0usize;
    for (i, slot) in cluster.slots.iter().enumerate() {
        let a = after.get(&slot.addr).copied().unwrap_or_default();
        let b = before.get(&slot.addr).copied().unwrap_or_default();
        let k = Kind::Syn as usize;
        for (acc, t) in [(&mut syn_before, &b), (&mut syn_after, &a)] {
            acc.sent[k].msgs += t.sent[k].msgs;
            acc.sent[k].bytes += t.sent[k].bytes;
            acc.oversize[k].msgs += t.oversize[k].msgs;
            acc.oversize[k].bytes += t.oversize[k].bytes;
        }
        let refused: u64 = a
            .oversize
            .iter()
            .zip(&b.oversize)
            .map(|(x, y)| x.since(y).msgs)
            .sum();
        s.refused += refused;
        s.delivered += a.received.since(&b.received).msgs;
        if a.sent_total().since(&b.sent_total()).msgs + refused == 0 {
            continue;
        }
        s.gossiping += 1;
        if let Some(node) = cluster.node(i) {
            live += node.with_chitchat(|c| c.live_nodes().count()).await;
        }
    }
    s.syn_bytes = attempted_syn(&syn_before, &syn_after);
    s.live_mean = if s.gossiping == 0 {
        f64::NAN
    } else {
        live as f64 / s.gossiping as f64
    };
    s
}

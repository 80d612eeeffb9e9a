//! Failures in a cells run: a crash inside the full cell, its publishing custodian killed, and
//! the whole cell cut from the rest of the mesh and healed.

use std::time::Duration;

use tokio::time::Instant;

use murmur_membership::cells::{summary as msummary, wall_ms};

use super::phases::{all_fresh, instances, live_at_least, publishers};
use super::summary::cell_name;
use super::{Mesh, watch};
use crate::probe::{self, Arrivals, KeyWatch};
use crate::scenarios::{Bandwidth, Reach, bandwidth_between, policy_value};

/// The publishing custodian of the full cell killed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Handover {
    /// The killed custodian's rank-1 peer started publishing, after the kill (seconds).
    pub takeover_s: Option<f64>,
    /// Over the other cells' publishers: when each held a head of the full cell written by the
    /// new publisher.
    pub published: Reach,
    /// The next-ranked node started its top-layer instance (seconds after the kill).
    pub new_custodian_s: Option<f64>,
    /// Over the full cell's nodes: when each listed every other cell fresh after the kill.
    pub refed: Reach,
    /// Largest share of (node, other cell) pairs marked stale in the 15 s after the kill.
    pub stale_peak: f64,
    /// Ordinary nodes' traffic in the 15 s after the kill (the new bridge rewrites the
    /// directory into the cell).
    pub burst: Bandwidth,
}

/// The full cell cut from the rest, then healed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionOutcome {
    /// How long the cut lasted (seconds).
    pub hold_s: f64,
    /// When every node of the full cell held only stale heads of the other cells (seconds
    /// after the cut; a head is stale `stale_after` after it was written).
    pub all_stale_s: Option<f64>,
    /// Nodes of the full cell still holding every other cell's (stale) summary at the end of
    /// the cut: the view of the others is kept, only marked.
    pub kept_remote: usize,
    /// Fewest live members any node of the full cell listed during the cut.
    pub min_alive: usize,
    /// A key written inside the full cell during the cut, over its nodes.
    pub inside: Reach,
    /// After the heal, over the full cell's nodes: when each held fresh heads of every cell.
    pub fresh_again: Reach,
    /// After the heal, over every top-layer instance: when each listed all instances live.
    pub top_again: Reach,
}

/// Kills a random ordinary node of the full cell; when do the others drop it from their live set?
pub async fn detect(mesh: &mut Mesh) -> Reach {
    let custodians = mesh.custodians();
    let candidates: Vec<usize> = mesh
        .cell_up()
        .into_iter()
        .filter(|i| *i >= 3 && !custodians.contains(i))
        .collect();
    let victim = candidates[mesh.net.random_below(candidates.len())];
    let subject = mesh.cell.slots[victim].chitchat_id();
    let (arrivals, tasks) = probe::dropped_from_live(&mesh.cell, &subject).await;
    let observers = mesh.cell_up().len() - 1;
    let start = Instant::now();
    mesh.kill(victim);
    arrivals
        .wait_for(observers, start + mesh.plan.trial_deadline)
        .await;
    drop(tasks);
    Reach::from_delays(&arrivals.delays_since(start), observers)
}

/// Kills the full cell's acting custodian and times the handover.
pub async fn handover(mesh: &mut Mesh) -> Handover {
    let custodians = mesh.custodians();
    let Some((victim, _)) = mesh.links.acting() else {
        return Handover::default();
    };
    let Some(&heir) = custodians.iter().find(|c| **c != victim) else {
        return Handover::default();
    };
    let pubs: Vec<_> = publishers(mesh)
        .into_iter()
        .filter(|(c, _)| *c != 0)
        .collect();
    let refs: Vec<_> = pubs.iter().map(|(c, m)| (*c, &**m)).collect();
    let killed_ms = wall_ms();
    let cell = cell_name(0);
    let wanted: watch::Wanted = std::sync::Arc::new(move |b: &str| {
        msummary::decode_beacon(&cell, b).is_ok_and(|x| x.stamp_ms > killed_ms)
    });
    let seen = watch::matching(&refs, &msummary::beacon_key(&cell_name(0)), wanted).await;
    let ordinary: Vec<_> = mesh
        .cell_up()
        .into_iter()
        .filter(|i| !custodians.contains(i))
        .map(|i| mesh.cell.slots[i].addr)
        .collect();
    let before = mesh.net.traffic();
    let start = Instant::now();
    mesh.kill(victim);
    let cells = mesh.remote_cells();
    let nodes = mesh.cell_up();
    let burst_window = Duration::from_secs(15);
    let refed = Arrivals::default();
    let mut stale_peak: f64 = 0.0;
    while Instant::now() < start + burst_window {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut stale = 0;
        for i in &nodes {
            if let Some(n) = mesh.cell.node(*i) {
                stale += watch::judged(n, &cells).1;
            }
            if all_fresh(mesh, *i, &cells) {
                refed.record_at(*i, Instant::now());
            }
        }
        stale_peak = stale_peak.max(stale as f64 / (nodes.len() * cells.len()).max(1) as f64);
    }
    seen.arrivals
        .wait_for(pubs.len(), start + mesh.plan.trial_deadline)
        .await;
    let after = mesh.net.traffic();
    let acts = mesh.links.acts();
    let first = |node: usize, pred: fn(&super::link::Act) -> bool| {
        acts.iter()
            .find(|a| a.at >= start && a.node == node && pred(a))
            .map(|a| a.at.duration_since(start).as_secs_f64())
    };
    let next = mesh
        .custodians()
        .into_iter()
        .find(|h| *h != heir && *h != victim);
    Handover {
        takeover_s: first(heir, |a| a.acting),
        published: Reach::from_delays(&seen.arrivals.delays_since(start), pubs.len()),
        new_custodian_s: next.and_then(|h| first(h, |a| a.in_top)),
        refed: Reach::from_delays(&refed.delays_since(start), nodes.len()),
        stale_peak,
        burst: bandwidth_between(&before, &after, &ordinary, burst_window, Duration::ZERO),
    }
}

/// Cuts the full cell (both layers) from the rest for `hold`, then heals.
pub async fn partition(mesh: &Mesh, hold: Duration) -> PartitionOutcome {
    let inside: Vec<_> = mesh
        .cell
        .slots
        .iter()
        .map(|s| s.addr)
        .chain(
            mesh.links
                .tops()
                .iter()
                .map(|(h, _)| super::phases::top_of(*h)),
        )
        .collect();
    let cells = mesh.remote_cells();
    let nodes = mesh.cell_up();
    let start = Instant::now();
    mesh.net.partition(&[inside]);
    let mut out = PartitionOutcome {
        hold_s: hold.as_secs_f64(),
        min_alive: usize::MAX,
        ..PartitionOutcome::default()
    };
    // Halfway through, a key written inside must still reach every node of the cell.
    let key = "policy/route/during-cut";
    let mut inside_watch: Option<(KeyWatch, Instant)> = None;
    while Instant::now() < start + hold {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all_stale = nodes.iter().all(|i| {
            mesh.cell
                .node(*i)
                .is_some_and(|n| watch::judged(n, &cells).1 == cells.len())
        });
        if all_stale && out.all_stale_s.is_none() {
            out.all_stale_s = Some(Instant::now().duration_since(start).as_secs_f64());
        }
        for i in &nodes {
            if let Some(n) = mesh.cell.node(*i) {
                out.min_alive = out
                    .min_alive
                    .min(n.view().count(murmur_membership::MemberState::Alive));
            }
        }
        if inside_watch.is_none() && Instant::now() >= start + hold / 2 {
            let w = KeyWatch::install(&mesh.cell, key).await;
            let t = Instant::now();
            if let Some(n) = mesh.cell.node(nodes[0]) {
                n.set_key(key, &policy_value(7)).await;
            }
            w.arrivals.record_at(nodes[0], t);
            inside_watch = Some((w, t));
        }
    }
    if let Some((w, t)) = &inside_watch {
        out.inside = Reach::from_delays(&w.arrivals.delays_since(*t), nodes.len());
    }
    out.kept_remote = nodes
        .iter()
        .filter(|i| {
            mesh.cell
                .node(**i)
                .is_some_and(|n| watch::judged(n, &cells).0 == cells.len())
        })
        .count();
    let healed = Instant::now();
    mesh.net.heal();
    let ms = instances(mesh);
    let want = mesh.plan.k * mesh.plan.cells;
    let (top_arrivals, tasks) = live_at_least(&ms, want).await;
    let deadline = healed + Duration::from_secs(60);
    let fresh = Arrivals::default();
    while Instant::now() < deadline && fresh.len() < nodes.len() {
        for i in &nodes {
            if all_fresh(mesh, *i, &cells) {
                fresh.record_at(*i, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    top_arrivals.wait_for(ms.len(), deadline).await;
    drop(tasks);
    out.fresh_again = Reach::from_delays(&fresh.delays_since(healed), nodes.len());
    out.top_again = Reach::from_delays(&top_arrivals.delays_since(healed), ms.len());
    out
}

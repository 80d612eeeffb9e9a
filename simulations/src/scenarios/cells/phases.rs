//! The measurements of a cells run in steady state: convergence of both layers, bandwidth per
//! role, and how fast a change crosses the mesh.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_membership::Membership;
use tokio::task::JoinSet;
use tokio::time::Instant;

use murmur_membership::cells::summary as msummary;

use super::summary::{MARKS_FROM, POLICY_PREFIX, cell_name, shard_has_weight};
use super::top::top_addr;
use super::{Mesh, watch};
use crate::cluster::{host_addr, service, service_of};
use crate::probe::{Arrivals, KeyWatch};
use crate::scenarios::{Bandwidth, Reach, bandwidth_between, thread_cpu};

/// One change and how it spread.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spread {
    /// What changed: "remote service", "policy document" or "local service".
    pub kind: &'static str,
    /// Over the publishing custodian of every cell (real top-layer instances), from the write.
    pub top: Reach,
    /// Over the nodes of the full cell (real), from the write.
    pub cell: Reach,
    /// Over every node of the mesh: the full cell's real arrivals, and for each stub cell its
    /// custodian's real arrival plus each of the full cell's measured in-cell delays.
    pub all: Reach,
    /// In-cell delays of this trial: from the full cell's custodian to each of its nodes.
    pub in_cell: Vec<Duration>,
}

/// The publishing custodian's instance of every cell, indexed by cell.
pub fn publishers(mesh: &Mesh) -> Vec<(usize, Arc<Membership>)> {
    let mut v: Vec<(usize, Arc<Membership>)> = mesh
        .stubs
        .iter()
        .map(|s| (s.cell, s.instances[0].clone()))
        .collect();
    if let Some((_, m)) = mesh.links.acting() {
        v.push((0, m));
    }
    v
}

/// Every top-layer instance running.
pub fn instances(mesh: &Mesh) -> Vec<Arc<Membership>> {
    let mut v: Vec<Arc<Membership>> = mesh
        .stubs
        .iter()
        .flat_map(|s| s.instances.iter().cloned())
        .collect();
    v.extend(mesh.links.tops().into_iter().map(|(_, m)| m));
    v
}

/// Records when each instance's live set first has `count` members.
pub async fn live_at_least(ms: &[Arc<Membership>], count: usize) -> (Arrivals, JoinSet<()>) {
    let arrivals = Arrivals::default();
    let mut tasks = JoinSet::new();
    for (i, m) in ms.iter().enumerate() {
        let mut rx = m.with_chitchat(|c| c.live_nodes_watcher()).await;
        let a = arrivals.clone();
        tasks.spawn(async move {
            if rx.wait_for(|live| live.len() >= count).await.is_ok() {
                a.record_at(i, Instant::now());
            }
        });
    }
    (arrivals, tasks)
}

/// Waits until every top-layer instance lists k × cells live instances.
pub async fn top_converged(mesh: &Mesh, started: Instant, deadline: Instant) -> Reach {
    let want = mesh.plan.k * mesh.plan.cells;
    // The full cell's custodians start once its views have settled.
    while mesh.links.tops().len() < mesh.plan.k && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ms = instances(mesh);
    let (arrivals, tasks) = live_at_least(&ms, want).await;
    arrivals.wait_for(ms.len(), deadline).await;
    drop(tasks);
    Reach::from_delays(&arrivals.delays_since(started), ms.len())
}

/// Waits until every node of the full cell lists every other cell, fresh.
pub async fn bridged(mesh: &Mesh, started: Instant, deadline: Instant) -> Reach {
    let cells = mesh.remote_cells();
    let nodes = mesh.cell_up();
    let arrivals = Arrivals::default();
    while Instant::now() < deadline {
        for i in &nodes {
            if all_fresh(mesh, *i, &cells) {
                arrivals.record_at(*i, Instant::now());
            }
        }
        if arrivals.len() >= nodes.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Reach::from_delays(&arrivals.delays_since(started), nodes.len())
}

/// How many nodes of the full cell have been in the top layer so far.
pub fn top_joiners(mesh: &Mesh) -> usize {
    let joined: std::collections::BTreeSet<usize> = mesh
        .links
        .acts()
        .iter()
        .filter(|a| a.in_top)
        .map(|a| a.node)
        .collect();
    joined.len()
}

/// What the full cell's nodes sent over the bandwidth window, by role.
pub struct Sent {
    /// Every node that is not a custodian.
    pub ordinary: Bandwidth,
    /// Of those, the cell's seeds (every member's seeds; chitchat adds a Syn to one now and
    /// then, so they answer more Syns than the others).
    pub seeds: Bandwidth,
    /// Of those, the nodes that are not seeds.
    pub others: Bandwidth,
    /// The custodians, cell layer.
    pub custodian_cell: Bandwidth,
    /// Every top-layer instance, top layer.
    pub custodian_top: Bandwidth,
}

/// Traffic per ordinary node (all, seeds, the others), per custodian (cell layer) and per
/// top-layer instance over the plan's window. CPU is the run's CPU time per simulated process.
pub async fn bandwidth(mesh: &Mesh) -> Sent {
    let custodians = mesh.custodians();
    let ordinary: Vec<usize> = mesh
        .cell_up()
        .into_iter()
        .filter(|i| !custodians.contains(i))
        .collect();
    let addrs = |nodes: &[usize]| -> Vec<SocketAddr> {
        nodes.iter().map(|i| mesh.cell.slots[*i].addr).collect()
    };
    let (seeds, others): (Vec<usize>, Vec<usize>) =
        ordinary.iter().partition(|i| mesh.cell.is_seed(**i));
    let (seeds, others) = (addrs(&seeds), addrs(&others));
    let ordinary = addrs(&ordinary);
    let cust = addrs(&custodians);
    let tops = mesh.top_addrs();
    let window = mesh.plan.bandwidth_window;
    let before = mesh.net.traffic();
    let cpu0 = thread_cpu();
    tokio::time::sleep(window).await;
    let cpu = thread_cpu().saturating_sub(cpu0);
    let after = mesh.net.traffic();
    let processes = (mesh.cell_up().len() + tops.len()).max(1) as u32;
    let per = |n: usize| cpu / processes * n as u32;
    let of = |nodes: &[SocketAddr], cpu| bandwidth_between(&before, &after, nodes, window, cpu);
    Sent {
        ordinary: of(&ordinary, per(ordinary.len())),
        seeds: of(&seeds, Duration::ZERO),
        others: of(&others, Duration::ZERO),
        custodian_cell: of(&cust, Duration::ZERO),
        custodian_top: of(&tops, Duration::ZERO),
    }
}

/// A stub cell changes a shard (or writes a policy document); when does each cell's
/// custodian, and each node of the full cell, hold it?
pub async fn remote(mesh: &Mesh, trial: usize, policy: bool) -> Spread {
    let stub = &mesh.stubs[mesh.net.random_below(mesh.stubs.len())];
    let svc = service_of(mesh.net.random_below(mesh.plan.cell_size));
    let nodes = cell_nodes(mesh);
    let pubs = publishers(mesh);
    let cell = cell_name(stub.cell);
    let marker = 10 * MARKS_FROM + trial as u32;
    let (key, wanted): (String, watch::Wanted) = if policy {
        (
            format!("{POLICY_PREFIX}trial-{trial}"),
            std::sync::Arc::new(|_: &str| true),
        )
    } else {
        let (c, s) = (cell.clone(), svc.clone());
        (
            msummary::shard_key(&cell, &svc),
            std::sync::Arc::new(move |b: &str| shard_has_weight(&c, &s, b, marker)),
        )
    };
    let top_watch = watch::matching(&as_refs(&pubs), &key, wanted.clone()).await;
    let cell_watch = watch::matching(&nodes, &key, wanted).await;
    let start = Instant::now();
    if policy {
        stub.write_policy(&key[POLICY_PREFIX.len()..], trial as u64)
            .await;
    } else {
        stub.mark(&svc, marker);
    }
    top_watch.arrivals.record_at(stub.cell, start);
    let deadline = start + mesh.plan.trial_deadline;
    top_watch.arrivals.wait_for(pubs.len(), deadline).await;
    cell_watch.arrivals.wait_for(nodes.len(), deadline).await;
    let tops = top_watch.arrivals.per_node();
    let cells = cell_watch.arrivals.per_node();
    let in_cell: Vec<Duration> = match tops.get(&0) {
        Some(b) => cells
            .values()
            .map(|a| a.saturating_duration_since(*b))
            .collect(),
        None => Vec::new(),
    };
    let own: Vec<Duration> = cells.values().map(|a| a.duration_since(start)).collect();
    let others: Vec<Duration> = tops
        .iter()
        .filter(|(c, _)| **c != 0)
        .map(|(_, t)| t.duration_since(start))
        .collect();
    Spread {
        kind: if policy {
            "policy document"
        } else {
            "remote service"
        },
        top: Reach::from_delays(&top_watch.arrivals.delays_since(start), pubs.len()),
        cell: Reach::from_delays(&cell_watch.arrivals.delays_since(start), nodes.len()),
        all: model_all(mesh, &own, &others, &sorted(in_cell.clone())),
        in_cell: sorted(in_cell),
    }
}

/// An ordinary node of the full cell changes its instance's weight; when does each cell's
/// custodian hold the new shard, and each node of the full cell the new record?
pub async fn local(mesh: &Mesh, trial: usize, earlier: &[Spread]) -> Spread {
    let custodians = mesh.custodians();
    let candidates: Vec<usize> = mesh
        .cell_up()
        .into_iter()
        .filter(|i| !custodians.contains(i))
        .collect();
    let origin = candidates[mesh.net.random_below(candidates.len())];
    let svc = service_of(origin);
    let node_name = mesh.cell.slots[origin].name.clone();
    let nodes = cell_nodes(mesh);
    let pubs: Vec<(usize, Arc<Membership>)> = publishers(mesh)
        .into_iter()
        .filter(|(c, _)| *c != 0)
        .collect();
    let marker = MARKS_FROM + trial as u32;
    let shard = msummary::shard_key(&cell_name(0), &svc);
    let (c, s, n) = (cell_name(0), svc.clone(), node_name.clone());
    let wanted: watch::Wanted = std::sync::Arc::new(move |b: &str| {
        msummary::decode_shard(&c, &s, b).is_ok_and(|sh| {
            sh.instances
                .iter()
                .any(|i| i.node == n && i.weight == marker)
        })
    });
    let top_watch = watch::matching(&as_refs(&pubs), &shard, wanted).await;
    let record_key = murmur_membership::records::service_key(&svc, &node_name);
    let cell_watch = KeyWatch::install(&mesh.cell, &record_key).await;
    let start = Instant::now();
    if let Some(node) = mesh.cell.node(origin) {
        let mut record = service();
        record.weight = marker;
        let _ = node.publish_service(&svc, &record).await;
    }
    cell_watch.arrivals.record_at(origin, start);
    let deadline = start + mesh.plan.trial_deadline;
    top_watch.arrivals.wait_for(pubs.len(), deadline).await;
    cell_watch.arrivals.wait_for(nodes.len(), deadline).await;
    let own = cell_watch.arrivals.delays_since(start);
    let others = top_watch.arrivals.delays_since(start);
    // The other cells' own bridges: the in-cell delays measured in the remote trials.
    let in_cell: Vec<Duration> = earlier.iter().flat_map(|s| s.in_cell.clone()).collect();
    Spread {
        kind: "local service",
        top: Reach::from_delays(&others, pubs.len()),
        cell: Reach::from_delays(&own, nodes.len()),
        all: model_all(mesh, &own, &others, &sorted(in_cell)),
        in_cell: Vec::new(),
    }
}

/// Every node of the mesh: `own` (the full cell's real delays) and, per other cell reached at
/// its custodian after `t`, `t + d` for each in-cell delay `d` (the full cell's, scaled to
/// the cell size). Cells never reached count as never reached.
fn model_all(mesh: &Mesh, own: &[Duration], others: &[Duration], in_cell: &[Duration]) -> Reach {
    let size = mesh.plan.cell_size;
    let population = size * mesh.plan.cells;
    let mut all: Vec<Duration> = own.to_vec();
    if !in_cell.is_empty() {
        for t in others {
            for k in 0..size {
                // Nearest rank of the k-th node among the measured in-cell delays.
                let d = in_cell[(k * in_cell.len() / size).min(in_cell.len() - 1)];
                all.push(*t + d);
            }
        }
    }
    all.sort();
    Reach::from_delays(&all, population)
}

/// Whether node `i` lists every cell of `cells`, none stale.
pub fn all_fresh(mesh: &Mesh, i: usize, cells: &[String]) -> bool {
    mesh.cell
        .node(i)
        .is_some_and(|n| watch::judged(n, cells) == (cells.len(), 0))
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

fn cell_nodes(mesh: &Mesh) -> Vec<(usize, &Membership)> {
    mesh.cell_up()
        .into_iter()
        .filter_map(|i| Some((i, mesh.cell.node(i)?)))
        .collect()
}

fn as_refs(v: &[(usize, Arc<Membership>)]) -> Vec<(usize, &Membership)> {
    v.iter().map(|(i, m)| (*i, &**m)).collect()
}

/// The top-layer address of full-cell node `i`.
pub fn top_of(i: usize) -> std::net::SocketAddr {
    top_addr(host_addr(i))
}

//! Cells: one or a few cells of real nodes, the rest of the mesh modelled by its custodians.
//!
//! Real: every node of the full cell (cell 0) is a [`Membership`] in its own chitchat cluster
//! (`murmur/c000`), and runs the custody logic of [`custody`]: ranking by rendezvous hashing
//! over its own view, a top-layer instance on ranks below k, rank 0 publishing the cell's
//! summary from its view and bridging the others' into the cell. Every top-layer instance,
//! the full cell's and the stub cells', is a real [`Membership`] in cluster `murmur/top`.
//! Stubbed: the other cells' members; their custodians publish the summary of a synthetic cell
//! of the same shape, one shard changing every few seconds ([`top::StubCell`]).

pub mod custody;
pub mod summary;
pub mod top;
pub mod watch;

mod faults;
mod phases;

use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::GossipSettings;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::custody::{Bridge, Custody};
use self::top::{StubCell, StubPace, TopLayer, top_addr};
use super::{Bandwidth, Reach};
use crate::cluster::{Cluster, ClusterSpec, host_addr, host_name};
use crate::net::{NetConfig, SimNet};
use crate::probe;

pub use faults::{Handover, PartitionOutcome};
pub use phases::Spread;

/// What to run.
#[derive(Clone, Debug)]
pub struct CellsPlan {
    /// Cells in all (one full, the rest stubs).
    pub cells: usize,
    /// Nodes per cell.
    pub cell_size: usize,
    /// Custodians per cell.
    pub k: usize,
    /// Gossip settings of both layers (each with its own cluster id).
    pub gossip: GossipSettings,
    /// Seed.
    pub seed: u64,
    /// How the stub cells change.
    pub pace: StubPace,
    /// At most one publication per this long.
    pub publish_min: Duration,
    /// A head older than this is stale.
    pub stale_after: Duration,
    /// What custodians bridge into their cell.
    pub bridge: Bridge,
    /// Give up on convergence after this long.
    pub join_deadline: Duration,
    /// Quiet time before measuring.
    pub settle: Duration,
    /// Bandwidth window.
    pub bandwidth_window: Duration,
    /// Trials of each kind of propagation (0: bandwidth only).
    pub trials: usize,
    /// Kill an ordinary node, then the publishing custodian.
    pub kills: bool,
    /// Cut the full cell from the rest this long, then heal (`None`: no partition).
    pub partition: Option<Duration>,
    /// Give up on one trial after this long.
    pub trial_deadline: Duration,
}

impl CellsPlan {
    /// `cells` cells of `cell_size` nodes, k = 2, at `gossip`'s interval, everything measured.
    pub fn new(cells: usize, cell_size: usize, gossip: GossipSettings, seed: u64) -> Self {
        Self {
            cells,
            cell_size,
            k: 2,
            gossip,
            seed,
            pace: StubPace {
                churn_every: Duration::from_secs(5),
                head_every: Duration::from_secs(10),
            },
            publish_min: Duration::from_secs(1),
            stale_after: Duration::from_secs(30),
            bridge: Bridge::Directory,
            join_deadline: Duration::from_secs(120),
            settle: Duration::from_secs(5),
            bandwidth_window: Duration::from_secs(10),
            trials: 3,
            kills: true,
            partition: Some(Duration::from_secs(45)),
            trial_deadline: Duration::from_secs(30),
        }
    }

    /// Nodes simulated in the mesh as a whole.
    pub fn total_nodes(&self) -> usize {
        self.cells * self.cell_size
    }
}

/// Everything measured.
#[derive(Clone, Debug, Default)]
pub struct CellsResult {
    /// Cells.
    pub cells: usize,
    /// Nodes per cell.
    pub cell_size: usize,
    /// Custodians per cell.
    pub k: usize,
    /// Gossip interval.
    pub interval: Duration,
    /// What was bridged.
    pub bridge: String,
    /// Seed.
    pub seed: u64,
    /// The full cell: every view lists every member alive.
    pub cell_join: Reach,
    /// The top layer: every instance lists all 2 × cells instances live.
    pub top_join: Reach,
    /// Every node of the full cell holds a head of every other cell.
    pub bridged: Reach,
    /// Ordinary nodes of the full cell.
    pub ordinary: Bandwidth,
    /// The full cell's custodians, cell layer.
    pub custodian_cell: Bandwidth,
    /// Every top-layer instance, top layer.
    pub custodian_top: Bandwidth,
    /// Propagation trials.
    pub spreads: Vec<Spread>,
    /// Detection of an ordinary node's crash inside the full cell.
    pub detection: Option<Reach>,
    /// The publishing custodian killed.
    pub handover: Option<Handover>,
    /// The full cell cut from the rest, then healed.
    pub partition: Option<PartitionOutcome>,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

impl CellsResult {
    /// Mean bytes per second a custodian sends: its cell-layer and top-layer traffic.
    pub fn custodian_sent(&self) -> f64 {
        self.custodian_cell.sent_mean + self.custodian_top.sent_mean
    }
}

/// The running mesh.
pub struct Mesh {
    /// The network.
    pub net: SimNet,
    /// The full cell.
    pub cell: Cluster,
    /// The top layer.
    pub top: TopLayer,
    /// The stub cells (cells 1..).
    pub stubs: Vec<StubCell>,
    /// Custody acts of the full cell's nodes.
    pub log: custody::Log,
    /// The full cell's top-layer instances.
    pub running: custody::Running,
    /// Custody tasks.
    pub tasks: JoinSet<()>,
    /// Newest head of every cell at every full-cell node.
    pub heads: watch::HeadBook,
    /// The plan.
    pub plan: CellsPlan,
}

impl Mesh {
    /// Full-cell node indices that are up.
    pub fn cell_up(&self) -> Vec<usize> {
        self.cell.up()
    }

    /// Every top-layer address running now (stubs and the full cell's custodians).
    pub fn top_addrs(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self
            .stubs
            .iter()
            .flat_map(|s| s.hosts.iter().map(|h| top_addr(host_addr(*h))))
            .collect();
        v.extend(
            self.running
                .all()
                .iter()
                .map(|(h, _)| top_addr(host_addr(*h))),
        );
        v
    }

    /// The full cell's current custodians (hosts) by rank, as its live members rank them.
    pub fn custodians(&self) -> Vec<usize> {
        let up = self.cell.up();
        let names: Vec<String> = up.iter().map(|i| host_name(*i)).collect();
        custody::rank(0, names.iter().map(String::as_str), self.plan.k)
            .into_iter()
            .filter_map(|n| up.iter().copied().find(|i| host_name(*i) == n))
            .collect()
    }

    /// Names of the stub cells.
    pub fn remote_cells(&self) -> Vec<String> {
        (1..self.plan.cells).map(summary::cell_name).collect()
    }
}

/// Starts the mesh: the full cell, its custody tasks, the stub cells.
pub async fn start(plan: &CellsPlan) -> anyhow::Result<Mesh> {
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        ..NetConfig::default()
    })?;
    let stub_custodians: Vec<Vec<usize>> = (1..plan.cells)
        .map(|c| {
            let first = c * plan.cell_size;
            let names: Vec<String> = (first..first + plan.cell_size).map(host_name).collect();
            custody::rank(c, names.iter().map(String::as_str), plan.k)
                .iter()
                .filter_map(|n| n.strip_prefix("node-")?.parse().ok())
                .collect()
        })
        .collect();
    let seeds: Vec<usize> = stub_custodians
        .iter()
        .take(3)
        .filter_map(|h| h.first().copied())
        .collect();
    let top = TopLayer::new(net.clone(), &plan.gossip, &seeds);
    let mut stubs = Vec::new();
    for (c, hosts) in stub_custodians.into_iter().enumerate() {
        let c = c + 1;
        stubs.push(
            StubCell::start(
                &top,
                c,
                c * plan.cell_size,
                plan.cell_size,
                hosts,
                plan.pace,
            )
            .await?,
        );
    }
    let mut spec = ClusterSpec::new(
        plan.cell_size,
        GossipSettings {
            cluster_id: format!("murmur/{}", summary::cell_name(0)),
            ..plan.gossip.clone()
        },
    );
    // A node rebuilds its view every gossip interval, as the node does.
    spec.refresh = plan.gossip.interval;
    let cell = Cluster::start(net.clone(), spec).await?;
    let nodes: Vec<(usize, &murmur_membership::Membership)> = (0..plan.cell_size)
        .filter_map(|i| Some((i, cell.node(i)?)))
        .collect();
    let heads = watch::HeadBook::install(&nodes).await;
    drop(nodes);
    let mut mesh = Mesh {
        net,
        cell,
        top,
        stubs,
        log: custody::Log::default(),
        running: custody::Running::default(),
        tasks: JoinSet::new(),
        heads,
        plan: plan.clone(),
    };
    for i in 0..plan.cell_size {
        spawn_custody(&mut mesh, i);
    }
    Ok(mesh)
}

/// Starts the custody task of full-cell node `i` (after a start or restart).
pub fn spawn_custody(mesh: &mut Mesh, i: usize) {
    let Some(node) = mesh.cell.node(i) else {
        return;
    };
    let custody = Custody {
        cell: 0,
        k: mesh.plan.k,
        publish_min: mesh.plan.publish_min,
        head_every: mesh.plan.pace.head_every,
        bridge: mesh.plan.bridge,
        warmup: (mesh.plan.gossip.interval * 6).max(Duration::from_secs(3)),
    };
    let handle = custody::spawn(
        i,
        node,
        mesh.top.clone(),
        custody,
        mesh.log.clone(),
        mesh.running.clone(),
    );
    mesh.tasks.spawn(async move {
        let _ = handle.await;
    });
}

/// Runs the plan (inside a paused runtime, see [`super::run_virtual`]).
pub async fn run(plan: &CellsPlan) -> anyhow::Result<CellsResult> {
    let wall = std::time::Instant::now();
    let t0 = Instant::now();
    let mut mesh = start(plan).await?;
    let mut r = CellsResult {
        cells: plan.cells,
        cell_size: plan.cell_size,
        k: plan.k,
        interval: plan.gossip.interval,
        bridge: format!("{:?}", plan.bridge),
        seed: plan.seed,
        ..CellsResult::default()
    };
    let started = Instant::now();
    let deadline = started + plan.join_deadline;
    let (arrivals, tasks) = probe::view_reaches(&mesh.cell, plan.cell_size);
    arrivals.wait_for(plan.cell_size, deadline).await;
    drop(tasks);
    r.cell_join = Reach::from_delays(&arrivals.delays_since(started), plan.cell_size);
    r.top_join = phases::top_converged(&mesh, started, deadline).await;
    r.bridged = phases::bridged(&mesh, started, deadline).await;
    tokio::time::sleep(plan.settle).await;
    (r.ordinary, r.custodian_cell, r.custodian_top) = phases::bandwidth(&mesh).await;
    for trial in 0..plan.trials {
        r.spreads.push(phases::remote(&mesh, trial, false).await);
        r.spreads.push(phases::remote(&mesh, trial, true).await);
        r.spreads.push(phases::local(&mesh, trial, &r.spreads).await);
    }
    if plan.kills {
        r.detection = Some(faults::detect(&mut mesh).await);
        r.handover = Some(faults::handover(&mut mesh).await);
    }
    if let Some(hold) = plan.partition {
        r.partition = Some(faults::partition(&mesh, hold).await);
    }
    r.virtual_s = Instant::now().duration_since(t0).as_secs_f64();
    r.wall_s = wall.elapsed().as_secs_f64();
    Ok(r)
}

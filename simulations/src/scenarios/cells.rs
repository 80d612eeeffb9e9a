//! Cells: one cell of real nodes, the rest of the mesh modelled by its custodians.
//!
//! Real: every node of the full cell (cell `c000`) is a [`Membership`] in its own chitchat
//! cluster (`murmur/c000`) with the real `murmur_membership::cells::CellLink` beside it:
//! custodian ranking, top-layer instances, publishing, bridging, stale marking and expiry.
//! Every top-layer instance, the full cell's and the stub cells', is a real [`Membership`] in
//! cluster `murmur-top`, and every summary is encoded by the real summary code. Stubbed: the
//! other cells' members; their first custodian publishes the summary of a synthetic cell of the
//! same shape (one instance's weight changing every few seconds), the second only gossips
//! ([`top::StubCell`]); and policy documents are carried into the cell by the harness, not by
//! the policy engine ([`link`]).

pub mod link;
pub mod summary;
pub mod top;
pub mod watch;

mod faults;
mod phases;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use murmur_membership::cells::{self as mcells, CellSettings, rank};
use murmur_membership::{GossipSettings, Membership};
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::link::Links;
use self::top::{StubCell, StubPace, TopLayer, top_addr};
use super::{Bandwidth, Reach};
use crate::cluster::{Cluster, ClusterSpec, host_addr, host_name};
use crate::net::{NetConfig, SimNet};
use crate::probe;

pub use faults::{Handover, PartitionOutcome};
pub use phases::Spread;

/// How long each node's bytes sent are averaged over, unless a plan says otherwise.
pub const BANDWIDTH_WINDOW: Duration = Duration::from_secs(10);
/// How long after the directory is bridged the bandwidth window opens, unless a plan says
/// otherwise.
pub const SETTLE: Duration = Duration::from_secs(5);

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
    /// A gossip fanout below chitchat's, in both layers (see [`NetConfig::syn_fanout`]).
    pub syn_fanout: Option<usize>,
    /// Gossip packed as nodes pack it between each other (see [`NetConfig::packed`]).
    pub packed: bool,
    /// How the stub cells change.
    pub pace: StubPace,
    /// How often a cell link looks, publishes and bridges.
    pub tick: Duration,
    /// A summary whose beacon did not move on for this long is stale.
    pub stale_after: Duration,
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
        let defaults = CellSettings::new("c000", &gossip);
        Self {
            cells,
            cell_size,
            k: 2,
            gossip,
            seed,
            syn_fanout: None,
            packed: true,
            pace: StubPace {
                churn_every: Duration::from_secs(5),
                beacon_every: defaults.beacon_every,
            },
            tick: defaults.tick,
            stale_after: defaults.ageing.stale_after,
            join_deadline: Duration::from_secs(120),
            settle: SETTLE,
            bandwidth_window: BANDWIDTH_WINDOW,
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
    /// Seed.
    pub seed: u64,
    /// The full cell: every view lists every member alive.
    pub cell_join: Reach,
    /// The top layer: every instance lists all 2 × cells instances live.
    pub top_join: Reach,
    /// Every node of the full cell lists every other cell, fresh.
    pub bridged: Reach,
    /// Nodes of the full cell that were in the top layer at some point before the traffic
    /// was measured (the ranked custodians, and any node ranked for a while as the cell formed).
    pub top_joiners: usize,
    /// Most nodes of the full cell acting at once from the bandwidth window to the kills (1
    /// when no standby took over from a live custodian).
    pub most_acting: usize,
    /// Ordinary nodes of the full cell.
    pub ordinary: Bandwidth,
    /// Of those, the cell's seeds.
    pub seeds: Bandwidth,
    /// Of those, the nodes that are not seeds.
    pub others: Bandwidth,
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
    /// The stub cells' top layer.
    pub top: TopLayer,
    /// The stub cells (cells 1..).
    pub stubs: Vec<StubCell>,
    /// The full cell's cell links.
    pub links: Links,
    /// The full cell's nodes that are up, shared with the policy carrier.
    pub up: Arc<Mutex<BTreeMap<usize, Arc<Membership>>>>,
    /// Tasks beside the nodes.
    pub tasks: JoinSet<()>,
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
            self.links
                .tops()
                .iter()
                .map(|(h, _)| top_addr(host_addr(*h))),
        );
        v
    }

    /// The full cell's custodians (nodes) by rank, as its live members rank them.
    pub fn custodians(&self) -> Vec<usize> {
        let up = self.cell.up();
        let names: Vec<String> = up.iter().map(|i| host_name(*i)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        rank::custodians(&summary::cell_name(0), &refs, self.plan.k)
            .into_iter()
            .filter_map(|n| up.iter().copied().find(|i| host_name(*i) == n))
            .collect()
    }

    /// Names of the stub cells.
    pub fn remote_cells(&self) -> Vec<String> {
        (1..self.plan.cells).map(summary::cell_name).collect()
    }

    /// Crashes full-cell node `i` and its cell link.
    pub fn kill(&mut self, i: usize) {
        self.links.kill(i, &self.net);
        self.up
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&i);
        self.cell.kill(i);
    }
}

/// Starts the mesh: the stub cells, the full cell and its cell links.
pub async fn start(plan: &CellsPlan) -> anyhow::Result<Mesh> {
    let net = SimNet::new(NetConfig {
        seed: plan.seed,
        syn_fanout: plan.syn_fanout,
        packed: plan.packed,
        ..NetConfig::default()
    })?;
    let stub_custodians: Vec<Vec<usize>> = (1..plan.cells)
        .map(|c| {
            let first = c * plan.cell_size;
            let names: Vec<String> = (first..first + plan.cell_size).map(host_name).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            rank::custodians(&summary::cell_name(c), &refs, plan.k)
                .iter()
                .filter_map(|n| n.strip_prefix("node-")?.parse().ok())
                .collect()
        })
        .collect();
    // Top-layer seeds: the first custodians of the first three stub cells.
    let seed_addrs: Vec<SocketAddr> = stub_custodians
        .iter()
        .take(3)
        .filter_map(|h| h.first())
        .map(|h| top_addr(host_addr(*h)))
        .collect();
    net.add_seeds(seed_addrs.iter().copied());
    let seeds: Vec<String> = seed_addrs.iter().map(SocketAddr::to_string).collect();
    let mut settings = CellSettings::new(summary::cell_name(0), &plan.gossip);
    settings.custodians = plan.k;
    settings.tick = plan.tick;
    settings.beacon_every = plan.pace.beacon_every;
    settings.ageing.stale_after = plan.stale_after;
    let top = TopLayer::new(net.clone(), settings.top.clone(), seeds.clone());
    let mut stubs = Vec::new();
    for (c, hosts) in stub_custodians.into_iter().enumerate() {
        let c = c + 1;
        let first = c * plan.cell_size;
        stubs.push(StubCell::start(&top, c, first, plan.cell_size, hosts, plan.pace).await?);
    }
    let mut spec = ClusterSpec::new(
        plan.cell_size,
        GossipSettings {
            cluster_id: mcells::cluster_id(&summary::cell_name(0)),
            ..plan.gossip.clone()
        },
    );
    // A node rebuilds its view every gossip interval, as the node does.
    spec.refresh = plan.gossip.interval;
    let cell = Cluster::start(net.clone(), spec).await?;
    let links = Links::default();
    let mut tasks = JoinSet::new();
    let mut up = BTreeMap::new();
    for i in 0..plan.cell_size {
        if let Some(t) = links.start(&cell, i, &settings, &seeds, &net) {
            tasks.spawn(async move {
                let _ = t.await;
            });
        }
        if let Some(n) = cell.node_arc(i) {
            up.insert(i, n);
        }
    }
    let up = Arc::new(Mutex::new(up));
    tasks.spawn(link::carry_policy(
        links.clone(),
        up.clone(),
        plan.gossip.interval,
    ));
    Ok(Mesh {
        net,
        cell,
        top,
        stubs,
        links,
        up,
        tasks,
        plan: plan.clone(),
    })
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
        seed: plan.seed,
        ..CellsResult::default()
    };
    let started = Instant::now();
    let deadline = started + plan.join_deadline;
    let (arrivals, tasks) = probe::view_reaches(&mesh.cell, plan.cell_size);
    arrivals.wait_for(plan.cell_size, deadline).await;
    drop(tasks);
    r.cell_join = Reach::from_delays(&arrivals.delays_since(started), plan.cell_size);
    let phase = |what: &str| {
        eprintln!(
            "  cells={}: {what} at {:.0} virtual s, {:.0} s wall",
            plan.cells,
            super::since(t0),
            wall.elapsed().as_secs_f64()
        );
    };
    phase("cell joined");
    r.top_join = phases::top_converged(&mesh, started, deadline).await;
    r.bridged = phases::bridged(&mesh, started, deadline).await;
    phase("top layer joined and directory bridged");
    // Nodes ranked for a moment while the cell formed linger in the top layer; traffic is
    // measured once only the ranked custodians are left there.
    while mesh.links.tops().len() > plan.k && Instant::now() < deadline {
        tokio::time::sleep(plan.tick).await;
    }
    r.top_joiners = phases::top_joiners(&mesh);
    let steady = Instant::now();
    tokio::time::sleep(plan.settle).await;
    let sent = phases::bandwidth(&mesh).await;
    (r.ordinary, r.seeds, r.others) = (sent.ordinary, sent.seeds, sent.others);
    (r.custodian_cell, r.custodian_top) = (sent.custodian_cell, sent.custodian_top);
    phase("bandwidth measured");
    for trial in 0..plan.trials {
        r.spreads.push(phases::remote(&mesh, trial, false).await);
        r.spreads.push(phases::remote(&mesh, trial, true).await);
        r.spreads
            .push(phases::local(&mesh, trial, &r.spreads).await);
    }
    r.most_acting = mesh.links.most_acting_since(steady);
    if plan.kills {
        phase("propagation measured");
        r.detection = Some(faults::detect(&mut mesh).await);
        r.handover = Some(faults::handover(&mut mesh).await);
    }
    if let Some(hold) = plan.partition {
        phase("kills measured");
        r.partition = Some(faults::partition(&mesh, hold).await);
    }
    r.virtual_s = Instant::now().duration_since(t0).as_secs_f64();
    r.wall_s = wall.elapsed().as_secs_f64();
    Ok(r)
}

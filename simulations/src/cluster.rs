//! N real membership nodes on one [`SimNet`].
//!
//! Each node is a [`Membership`], exactly what a `murmur` node runs, given the simulated
//! network as its chitchat transport. Nodes look like a real deployment: one per host
//! (`10.x.y.z:7420`), a name, a generation that is a start time in milliseconds, a zone label
//! and one published service instance.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chitchat::ChitchatId;
use murmur_membership::records::{Health, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_membership::{GossipSettings, Membership, MembershipConfig, Trust};
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::TlsState;
use tokio::time::Instant;

use crate::net::SimNet;

/// Mesh port of every simulated host.
pub const MESH_PORT: u16 = 7420;
/// Generations start here (2026-01-01 in ms), plus each node's random age.
const EPOCH_MS: u64 = 1_767_225_600_000;
/// Simulated services; node `i` serves `svc-(i mod SERVICES)`.
const SERVICES: usize = 20;
/// Simulated zones.
const ZONES: usize = 3;

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// Gossip tuning of every node.
    pub gossip: GossipSettings,
    /// The first `seeds` nodes are every node's seeds.
    pub seeds: usize,
    /// Node starts are spread uniformly over this window.
    pub join_window: Duration,
    /// How often each node rebuilds its view without a membership change.
    pub refresh: Duration,
    /// Host number of the first node: node `i` is host `first_host + i` (its name and address),
    /// so that several clusters (cells) share one network without clashing.
    pub first_host: usize,
}

impl ClusterSpec {
    /// `nodes` nodes with `gossip`, three seeds, starts spread over one gossip interval.
    pub fn new(nodes: usize, gossip: GossipSettings) -> Self {
        Self {
            nodes,
            join_window: gossip.interval,
            gossip,
            seeds: 3,
            // Views are rebuilt on every membership change anyway; the periodic rebuild only
            // matters for fail-static, which the simulation does not use.
            refresh: Duration::from_secs(3600),
            first_host: 0,
        }
    }
}

/// One host of the cluster; its node may be down.
pub struct Slot {
    /// Node name.
    pub name: String,
    /// Mesh (and gossip) address.
    pub addr: SocketAddr,
    /// Generation of the current or last incarnation.
    pub generation: u64,
    /// The running node, if up.
    pub node: Option<Arc<Membership>>,
    /// Its credentials (each node signs what it gossips, as a real node does).
    tls: Option<Arc<TlsState>>,
}

impl Slot {
    /// chitchat identity of the current or last incarnation.
    pub fn chitchat_id(&self) -> ChitchatId {
        ChitchatId::new(self.name.clone(), self.generation, self.addr)
    }
}

/// A simulated cluster.
pub struct Cluster {
    /// The network between the nodes.
    pub net: SimNet,
    /// Hosts, by index.
    pub slots: Vec<Slot>,
    spec: ClusterSpec,
    epoch: Instant,
    pki: TestPki,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.slots.len())
            .field("up", &self.up().len())
            .finish_non_exhaustive()
    }
}

/// Address of host `i`: one host per address, as in a real deployment.
pub fn host_addr(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0A00_0000_u32 + 1 + i as u32);
    SocketAddr::new(ip.into(), MESH_PORT)
}

/// Name of host `i`.
pub fn host_name(i: usize) -> String {
    format!("node-{i:05}")
}

impl Cluster {
    /// Starts `spec.nodes` nodes on `net`, spread over the join window, and returns once the
    /// last one has started (not once they have converged).
    pub async fn start(net: SimNet, spec: ClusterSpec) -> anyhow::Result<Self> {
        let mut offsets: Vec<(Duration, usize)> = (0..spec.nodes)
            .map(|i| {
                let frac = net.random_below(1_000_000) as f64 / 1e6;
                (spec.join_window.mul_f64(frac), i)
            })
            .collect();
        offsets.sort();
        let slots: Vec<Slot> = (0..spec.nodes)
            .map(|i| Slot {
                name: host_name(spec.first_host + i),
                addr: host_addr(spec.first_host + i),
                // Nodes started at different times over the last 30 days.
                generation: EPOCH_MS + net.random_below(30 * 24 * 3_600_000) as u64,
                node: None,
                tls: None,
            })
            .collect();
        net.add_seeds(slots.iter().take(spec.seeds).map(|s| s.addr));
        let mut cluster = Self {
            net,
            slots,
            spec,
            epoch: Instant::now(),
            pki: TestPki::new("sim.mesh"),
        };
        for (offset, i) in offsets {
            tokio::time::sleep_until(cluster.epoch + offset).await;
            cluster.boot(i).await?;
        }
        Ok(cluster)
    }

    /// Indices of the nodes that are up.
    pub fn up(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|i| self.slots[*i].node.is_some())
            .collect()
    }

    /// The running node at `i`.
    pub fn node(&self, i: usize) -> Option<&Membership> {
        self.slots.get(i).and_then(|s| s.node.as_deref())
    }

    /// The running node at `i`, shared (for a task that runs beside it, such as its cell link).
    pub fn node_arc(&self, i: usize) -> Option<Arc<Membership>> {
        self.slots.get(i).and_then(|s| s.node.clone())
    }

    /// The credentials of node `i`, once it has started.
    pub fn tls(&self, i: usize) -> Option<Arc<TlsState>> {
        self.slots.get(i).and_then(|s| s.tls.clone())
    }

    /// Whether node `i` is one of every node's seeds.
    pub fn is_seed(&self, i: usize) -> bool {
        i < self.spec.seeds
    }

    /// The gossip settings of every node.
    pub fn gossip(&self) -> &GossipSettings {
        &self.spec.gossip
    }

    /// Crashes node `i`: no leave, no goodbye; its address stops answering at once.
    pub fn kill(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            // Dropping the membership stops its gossip loop at its next turn; killing the
            // address makes sure nothing it still sends goes out.
            slot.node = None;
            self.net.kill(slot.addr);
        }
    }

    /// Starts node `i` again with a new generation (a restart of the same host).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let elapsed = Instant::now().duration_since(self.epoch).as_millis() as u64;
        let slot = self.slots.get_mut(i).context("no such node")?;
        slot.generation = slot.generation.max(EPOCH_MS + 30 * 24 * 3_600_000) + elapsed + 1;
        self.boot(i).await
    }

    async fn boot(&mut self, i: usize) -> anyhow::Result<()> {
        let seeds = (0..self.spec.seeds.min(self.slots.len()))
            .map(|s| self.slots[s].addr.to_string())
            .collect();
        let slot = self.slots.get_mut(i).context("no such node")?;
        let pki = &self.pki;
        let tls = slot
            .tls
            .get_or_insert_with(|| pki.tls(&pki.node(&slot.name, &[]), Role::Node, &slot.name))
            .clone();
        let config = MembershipConfig {
            trust: Trust::new(tls, &self.spec.gossip),
            name: slot.name.clone(),
            generation: slot.generation,
            mesh_addr: slot.addr,
            admin_addr: None,
            labels: BTreeMap::from([(
                "zone".to_owned(),
                format!("zone-{}", (self.spec.first_host + i) % ZONES),
            )]),
            seeds,
            gossip: self.spec.gossip.clone(),
            view_file: None,
            fail_static_warmup: Duration::from_secs(1),
            refresh: self.spec.refresh,
        };
        let node = Membership::start(config, &self.net)
            .await
            .with_context(|| format!("starting {}", slot.name))?;
        node.publish_service(&service_of(i), &service())
            .await
            .context("publishing a service")?;
        slot.node = Some(Arc::new(node));
        Ok(())
    }
}

/// The service node `i` of a cluster serves.
pub fn service_of(i: usize) -> String {
    format!("svc-{:02}", i % SERVICES)
}

/// The record every simulated instance publishes.
pub fn service() -> ServiceRecord {
    ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Http,
        labels: BTreeMap::from([("version".to_owned(), "v1".to_owned())]),
        weight: 1,
        health: Health::Passing,
        balancer: Default::default(),
    }
}

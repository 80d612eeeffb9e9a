//! The top layer's stub side: the cells that are not simulated in full are modelled by their
//! custodians alone, each a real top-layer [`Membership`] (cluster id `murmur-top`, label
//! `cell`), the first publishing the summary of a synthetic cell with the real summary code
//! (`murmur_membership::cells::publish`), as an acting custodian does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use murmur_membership::cells::publish::{self, Stamper};
use murmur_membership::cells::summary::{self, Custodian};
use murmur_membership::cells::{CELL_LABEL, wall_ms};
use murmur_membership::{ClusterView, GossipSettings, Membership, MembershipConfig, Trust};
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::summary::{POLICY_PREFIX, cell_name, churn, synthetic_view};
use crate::cluster::{host_addr, host_name};
use crate::net::SimNet;

/// Port of the top-layer instance on a custodian's host.
pub const TOP_PORT: u16 = 7421;

/// The top-layer address of a host.
pub fn top_addr(host: SocketAddr) -> SocketAddr {
    SocketAddr::new(host.ip(), TOP_PORT)
}

/// Starts the stub cells' top-layer instances.
#[derive(Clone)]
pub struct TopLayer {
    net: SimNet,
    pki: Arc<TestPki>,
    gossip: GossipSettings,
    seeds: Vec<String>,
}

impl TopLayer {
    /// Instances gossiping with `gossip` (the top layer's settings), seeded by `seeds`.
    pub fn new(net: SimNet, gossip: GossipSettings, seeds: Vec<String>) -> Self {
        Self {
            net,
            pki: Arc::new(TestPki::new("sim.mesh")),
            gossip,
            seeds,
        }
    }

    /// The network.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Starts host `host`'s top-layer instance, a custodian of cell `cell`.
    pub async fn start(&self, host: usize, cell: &str) -> anyhow::Result<Membership> {
        let name = host_name(host);
        let tls = self.pki.tls(&self.pki.node(&name, &[]), Role::Node, &name);
        let addr = top_addr(host_addr(host));
        let config = MembershipConfig {
            trust: Trust::new(tls, &self.gossip),
            name: name.clone(),
            generation: wall_ms(),
            mesh_addr: addr,
            admin_addr: None,
            labels: BTreeMap::from([(CELL_LABEL.to_owned(), cell.to_owned())]),
            seeds: self
                .seeds
                .iter()
                .filter(|s| **s != addr.to_string())
                .cloned()
                .collect(),
            gossip: self.gossip.clone(),
            view_file: None,
            fail_static_warmup: Duration::ZERO,
            refresh: Duration::from_secs(1),
        };
        Membership::start(config, &self.net)
            .await
            .with_context(|| format!("starting the top-layer instance of {name}"))
    }
}

/// How a stub cell behaves.
#[derive(Clone, Copy, Debug)]
pub struct StubPace {
    /// One instance's weight changes this often (a changed shard and header).
    pub churn_every: Duration,
    /// The beacon is renewed this often (the acting custodian's `beacon_every`).
    pub beacon_every: Duration,
}

/// A cell modelled by its custodians only.
pub struct StubCell {
    /// Cell number.
    pub cell: usize,
    /// Custodian hosts, by rank.
    pub hosts: Vec<usize>,
    /// Their top-layer instances.
    pub instances: Vec<Arc<Membership>>,
    view: Arc<Mutex<ClusterView>>,
    changed: Arc<Notify>,
    publisher: JoinHandle<()>,
}

impl Drop for StubCell {
    fn drop(&mut self) {
        self.publisher.abort();
    }
}

impl StubCell {
    /// Starts cell `cell` of `size` hosts from host `first`, with custodians `hosts`.
    pub async fn start(
        top: &TopLayer,
        cell: usize,
        first: usize,
        size: usize,
        hosts: Vec<usize>,
        pace: StubPace,
    ) -> anyhow::Result<Self> {
        let name = cell_name(cell);
        let mut instances = Vec::new();
        for h in &hosts {
            instances.push(Arc::new(top.start(*h, &name).await?));
        }
        let custodians = hosts
            .iter()
            .map(|h| Custodian {
                name: host_name(*h),
                top_addr: top_addr(host_addr(*h)),
            })
            .collect();
        let view = Arc::new(Mutex::new(synthetic_view(first, size)));
        let changed = Arc::new(Notify::new());
        let publisher = tokio::spawn(publish_loop(Publisher {
            net: top.net().clone(),
            me: instances[0].clone(),
            cell: name,
            custodians,
            view: view.clone(),
            changed: changed.clone(),
            pace,
        }));
        Ok(Self {
            cell,
            hosts,
            instances,
            view,
            changed,
            publisher,
        })
    }

    /// The publishing custodian's instance.
    pub fn publisher(&self) -> &Membership {
        &self.instances[0]
    }

    /// Sets the weight of `service`'s first instance to `weight`; published at once.
    pub fn mark(&self, service: &str, weight: u32) {
        let mut v = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = v.services.get_mut(service).and_then(|eps| eps.first_mut()) {
            e.weight = weight;
        }
        drop(v);
        self.changed.notify_one();
    }

    /// Writes a policy document `id` (a value the size of a signed one) at the publisher.
    pub async fn write_policy(&self, id: &str, tag: u64) {
        let body = crate::scenarios::policy_value(tag);
        self.publisher()
            .set_key(&format!("{POLICY_PREFIX}{id}"), &body)
            .await;
    }
}

struct Publisher {
    net: SimNet,
    me: Arc<Membership>,
    cell: String,
    custodians: Vec<Custodian>,
    view: Arc<Mutex<ClusterView>>,
    changed: Arc<Notify>,
    pace: StubPace,
}

async fn publish_loop(p: Publisher) {
    let mut stamper = Stamper::default();
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    // Random phases, so that the cells do not all change in the same round.
    let phase = |every: Duration| every.mul_f64(p.net.random_below(1000) as f64 / 1000.0);
    let mut next_churn = Instant::now() + phase(p.pace.churn_every);
    let mut next_beacon = Instant::now();
    let mut step = 0u32;
    loop {
        let now = Instant::now();
        if now >= next_churn {
            next_churn += p.pace.churn_every;
            step += 1;
            let mut v = p.view.lock().unwrap_or_else(PoisonError::into_inner);
            churn(&mut v, step, |n| p.net.random_below(n));
        }
        let view = p
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let content = publish::summarize(&p.cell, &view, p.custodians.clone(), [0; 32]);
        let wall = wall_ms();
        let (stamp, fresh) = stamper.stamp(&content, wall);
        let mut writes = Vec::new();
        if fresh && let Ok(v) = publish::values(&content, stamp) {
            writes = v;
        }
        if fresh || now >= next_beacon {
            next_beacon = now + p.pace.beacon_every;
            if let Ok(b) = summary::encode_beacon(&p.cell, wall.max(stamp)) {
                writes.push((summary::beacon_key(&p.cell), b));
            }
        }
        for (k, v) in writes {
            if written.get(&k) != Some(&v) {
                p.me.set_key(&k, &v).await;
                written.insert(k, v);
            }
        }
        tokio::select! {
            () = tokio::time::sleep_until(next_churn.min(next_beacon)) => {}
            () = p.changed.notified() => {}
        }
    }
}

//! The top gossip layer: one chitchat instance (a real [`Membership`] with its own cluster id)
//! per custodian, on the custodian's host at port [`TOP_PORT`]; and the stub cells, whose only
//! running parts are their custodians' top-layer instances publishing the cell's summary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use murmur_membership::{Endpoint, GossipSettings, Membership, MembershipConfig, Trust};
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::summary::{self, POLICY_PREFIX};
use crate::cluster::{host_addr, host_name};
use crate::net::SimNet;

/// Port of the top-layer instance on a custodian's host.
pub const TOP_PORT: u16 = 7421;
/// Cluster id of the top layer.
pub const TOP_CLUSTER: &str = "murmur/top";

/// The top-layer address of a host.
pub fn top_addr(host: SocketAddr) -> SocketAddr {
    SocketAddr::new(host.ip(), TOP_PORT)
}

/// Starts top-layer instances.
#[derive(Clone)]
pub struct TopLayer {
    net: SimNet,
    pki: Arc<TestPki>,
    gossip: GossipSettings,
    seeds: Vec<String>,
    epoch: Instant,
}

impl TopLayer {
    /// A top layer on `net` with the cells' gossip settings (its own cluster id), seeded by
    /// the top-layer addresses of `seed_hosts`.
    pub fn new(net: SimNet, gossip: &GossipSettings, seed_hosts: &[usize]) -> Self {
        Self {
            net,
            pki: Arc::new(TestPki::new("sim.mesh")),
            gossip: GossipSettings {
                cluster_id: TOP_CLUSTER.to_owned(),
                ..gossip.clone()
            },
            seeds: seed_hosts
                .iter()
                .map(|h| top_addr(host_addr(*h)).to_string())
                .collect(),
            epoch: Instant::now(),
        }
    }

    /// The network.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// Milliseconds since the top layer was made (the stamp clock; virtual time is shared).
    pub fn now_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    /// Starts host `host`'s top-layer instance.
    pub async fn start(&self, host: usize) -> anyhow::Result<Membership> {
        let name = host_name(host);
        let tls = self
            .pki
            .tls(&self.pki.node(&name, &[]), Role::Node, &name);
        let addr = top_addr(host_addr(host));
        let config = MembershipConfig {
            trust: Trust::new(tls, &self.gossip),
            name: name.clone(),
            // A new generation at every start, as a restarted custodian would have.
            generation: 1 + self.now_ms(),
            mesh_addr: addr,
            admin_addr: None,
            labels: BTreeMap::new(),
            seeds: self.seeds.clone(),
            gossip: self.gossip.clone(),
            view_file: None,
            fail_static_warmup: Duration::from_secs(1),
            refresh: Duration::from_secs(3600),
        };
        Membership::start(config, &self.net)
            .await
            .with_context(|| format!("starting the top-layer instance of {name}"))
    }
}

/// How a stub cell behaves.
#[derive(Clone, Copy, Debug)]
pub struct StubPace {
    /// One shard changes (an endpoint's weight) this often.
    pub churn_every: Duration,
    /// The head is written again this often even without a change.
    pub head_every: Duration,
}

/// A cell modelled by its custodians only: rank 0 publishes the summary of a synthetic cell
/// of the full cells' shape, rank 1 runs its instance and publishes nothing.
pub struct StubCell {
    /// Cell number.
    pub cell: usize,
    /// Custodian hosts, by rank.
    pub hosts: Vec<usize>,
    /// Their top-layer instances.
    pub instances: Vec<Arc<Membership>>,
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
        let mut instances = Vec::new();
        for h in &hosts {
            instances.push(Arc::new(top.start(*h).await?));
        }
        let services = summary::synthetic(first, size);
        let publisher = tokio::spawn(publish_loop(
            top.clone(),
            instances[0].clone(),
            cell,
            services,
            size,
            pace,
        ));
        Ok(Self {
            cell,
            hosts,
            instances,
            publisher,
        })
    }

    /// The publishing custodian's instance.
    pub fn publisher(&self) -> &Membership {
        &self.instances[0]
    }

    /// Writes a policy document `id` (a value the size of a signed one) at the publisher.
    pub async fn write_policy(&self, top: &TopLayer, id: &str, tag: u64) {
        let me = self.publisher().chitchat_id().node_id.clone();
        let body = crate::scenarios::policy_value(tag);
        let value = summary::stamped(top.now_ms(), &me, &body);
        self.publisher()
            .set_key(&format!("{POLICY_PREFIX}{id}"), &value)
            .await;
    }
}

async fn publish_loop(
    top: TopLayer,
    me: Arc<Membership>,
    cell: usize,
    mut services: BTreeMap<String, Vec<Endpoint>>,
    size: usize,
    pace: StubPace,
) {
    let name = me.chitchat_id().node_id.clone();
    let stamp = |body: &str| summary::stamped(top.now_ms(), &name, body);
    for (service, endpoints) in &services {
        me.set_key(
            &summary::shard_key(cell, service),
            &stamp(&summary::shard_body(endpoints)),
        )
        .await;
    }
    let head = summary::head_body(size, services.len());
    me.set_key(&summary::head_key(cell), &stamp(&head)).await;
    // Random phases, so that the cells do not all change in the same round.
    let phase = |every: Duration| every.mul_f64(top.net().random_below(1000) as f64 / 1000.0);
    let mut next_churn = Instant::now() + phase(pace.churn_every);
    let mut next_head = Instant::now() + phase(pace.head_every);
    let mut step = 0u32;
    loop {
        tokio::time::sleep_until(next_churn.min(next_head)).await;
        let now = Instant::now();
        if now >= next_churn {
            next_churn += pace.churn_every;
            step += 1;
            let k = top.net().random_below(services.len());
            if let Some((service, endpoints)) = services.iter_mut().nth(k) {
                let i = top.net().random_below(endpoints.len());
                endpoints[i].weight = 1 + step % 7;
                me.set_key(
                    &summary::shard_key(cell, service),
                    &stamp(&summary::shard_body(endpoints)),
                )
                .await;
            }
        }
        if now >= next_head {
            next_head += pace.head_every;
            me.set_key(&summary::head_key(cell), &stamp(&head)).await;
        }
    }
}

/// Changes one shard of a stub cell now, marking it with `weight`: returns the key and the
/// stamp the new value carries.
pub async fn change_shard(
    top: &TopLayer,
    stub: &StubCell,
    first: usize,
    size: usize,
    service: &str,
    weight: u32,
) -> (String, u64) {
    let mut endpoints = summary::synthetic(first, size)
        .remove(service)
        .unwrap_or_default();
    if let Some(e) = endpoints.first_mut() {
        e.weight = weight;
    }
    let me = stub.publisher().chitchat_id().node_id.clone();
    let stamp = top.now_ms();
    let key = summary::shard_key(stub.cell, service);
    let value = summary::stamped(stamp, &me, &summary::shard_body(&endpoints));
    stub.publisher().set_key(&key, &value).await;
    (key, stamp)
}

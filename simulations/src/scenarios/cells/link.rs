//! The full cell's nodes each run the real [`CellLink`] beside their membership: ranking,
//! joining and leaving the top layer, publishing, bridging, stale marking, all as a node does.
//! Besides, the harness carries policy documents from the top layer into the cell (the node's
//! policy engine does that, and it is not part of this simulation): as the engine does, the
//! acting custodian copies every `pol/` value of the top layer into its own namespace in the
//! cell as soon as one changes there, and at every refresh tick (the gossip interval).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chitchat::ListenerHandle;
use murmur_membership::Membership;
use murmur_membership::cells::{CellLink, CellLinkConfig, CellSettings, SharedTransport};
use murmur_membership::trust::signed;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::summary::POLICY_PREFIX;
use super::top::top_addr;
use crate::cluster::{Cluster, host_addr};
use crate::net::SimNet;

/// A change of one node's cell status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Act {
    /// When.
    pub at: Instant,
    /// Full-cell node.
    pub node: usize,
    /// It publishes and bridges.
    pub acting: bool,
    /// It is in the top layer.
    pub in_top: bool,
}

/// The cell links of the full cell, by node.
#[derive(Clone, Default)]
pub struct Links {
    links: Arc<Mutex<BTreeMap<usize, Arc<CellLink>>>>,
    acts: Arc<Mutex<Vec<Act>>>,
}

impl Links {
    /// Starts node `i`'s link.
    pub fn start(
        &self,
        cluster: &Cluster,
        i: usize,
        settings: &CellSettings,
        seeds: &[String],
        net: &SimNet,
    ) -> Option<JoinHandle<()>> {
        let node = cluster.node_arc(i)?;
        let config = CellLinkConfig {
            settings: settings.clone(),
            top_addr: top_addr(host_addr(i)),
            top_seeds: seeds.to_vec(),
            tls: cluster.tls(i)?,
            transport: Arc::new(SharedTransport(net.clone())),
        };
        let link = Arc::new(CellLink::start(config, node));
        let mut status = link.watch_status();
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(i, link);
        let acts = self.acts.clone();
        Some(tokio::spawn(async move {
            let mut last = (false, false);
            loop {
                let s = status.borrow_and_update().clone();
                if (s.acting, s.in_top) != last {
                    last = (s.acting, s.in_top);
                    acts.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Act {
                            at: Instant::now(),
                            node: i,
                            acting: s.acting,
                            in_top: s.in_top,
                        });
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Stops node `i`'s link at once (its node was killed): its top-layer instance dies too.
    pub fn kill(&self, i: usize, net: &SimNet) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&i);
        net.kill(top_addr(host_addr(i)));
    }

    /// Every link, by node.
    pub fn all(&self) -> Vec<(usize, Arc<CellLink>)> {
        let g = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        g.iter().map(|(i, l)| (*i, l.clone())).collect()
    }

    /// The top-layer instances of the full cell now, by node.
    pub fn tops(&self) -> Vec<(usize, Arc<Membership>)> {
        self.all()
            .into_iter()
            .filter_map(|(i, l)| Some((i, l.top()?)))
            .collect()
    }

    /// The acting custodian's node and top-layer instance, if any.
    pub fn acting(&self) -> Option<(usize, Arc<Membership>)> {
        self.all()
            .into_iter()
            .find(|(_, l)| l.status().acting)
            .and_then(|(i, l)| Some((i, l.top()?)))
    }

    /// Most nodes acting at once at any moment from `from` on (a standby taking over from a
    /// live custodian it thought silent shows here as 2).
    pub fn most_acting_since(&self, from: Instant) -> usize {
        let mut acting = std::collections::BTreeSet::new();
        let mut most = 0;
        for a in self.acts() {
            if a.acting {
                acting.insert(a.node);
            } else {
                acting.remove(&a.node);
            }
            if a.at >= from {
                most = most.max(acting.len());
            }
        }
        most.max(acting.len())
    }

    /// Status changes so far.
    pub fn acts(&self) -> Vec<Act> {
        self.acts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The harness's stand-in for the policy engine's bridge (see the module documentation).
pub async fn carry_policy(
    links: Links,
    cluster_nodes: Arc<Mutex<BTreeMap<usize, Arc<Membership>>>>,
    refresh: Duration,
) {
    let mut written: BTreeMap<(usize, String), String> = BTreeMap::new();
    let wake = Arc::new(Notify::new());
    // The acting top-layer instance whose `pol/` keys wake this task, and the subscription.
    let mut followed: Option<(Arc<Membership>, ListenerHandle)> = None;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(refresh) => {}
        }
        let Some((i, top)) = links.acting() else {
            continue;
        };
        if !followed.as_ref().is_some_and(|(m, _)| Arc::ptr_eq(m, &top)) {
            let handle = top.notify_on(POLICY_PREFIX, &wake).await;
            followed = Some((top.clone(), handle));
        }
        let Some(node) = cluster_nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&i)
            .cloned()
        else {
            continue;
        };
        for (k, v) in policy_values(&top).await {
            let slot = (i, k.clone());
            if written.get(&slot) != Some(&v) {
                node.set_key(&k, &v).await;
                written.insert(slot, v);
            }
        }
    }
}

/// Every `pol/` document body held in `top`'s layer.
async fn policy_values(top: &Membership) -> Vec<(String, String)> {
    top.with_chitchat(|c| {
        let mut v = Vec::new();
        for state in c.node_states().values() {
            for (k, val) in state.key_values() {
                if k.starts_with(POLICY_PREFIX)
                    && let Some(body) = signed::body(val)
                {
                    v.push((k.to_owned(), body.to_owned()));
                }
            }
        }
        v
    })
    .await
}

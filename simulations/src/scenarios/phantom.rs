//! Planted node states: how the digest is grown past what one process can run for real.
//!
//! Running thousands of real nodes in one process is out of reach (each node's failure
//! detector keeps 1 000 samples per peer: N² × 8 KB), so the digest is grown the way it grows
//! in production clusters with churn: by remembered dead incarnations. "Phantom" entries are
//! planted into a real node's chitchat state through chitchat's public
//! `reset_node_state_if_update`, as a node holds the state of a peer it once heard from;
//! chitchat then treats them as dead nodes, gossips them in its digest until half the
//! dead-node grace period has passed, and drops them after the full period. Their heartbeat is
//! 0, so they compress a little better than real entries (the report compares both).

use std::net::{Ipv4Addr, SocketAddr};

use chitchat::{ChitchatId, DeletionStatus, VersionedValue};
use murmur_membership::records::{self, NODE_KEY, NodeRecord, NodeStatus, RECORD_VERSION};

use crate::cluster::{Cluster, MESH_PORT, host_addr, host_name};
use crate::net::SimNet;

/// How phantom nodes are named and addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Like the simulated nodes: `node-00042`, consecutive addresses.
    Sequential,
    /// Like Kubernetes pods: `checkout-7d9f8b6c5d-x2k9p`, random addresses in a /16.
    Pods,
}

impl Naming {
    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sequential => "node-00042",
            Self::Pods => "checkout-7d9f8b6c5d-x2k9p",
        }
    }
}

/// One planted node state: identity and keys.
#[derive(Clone, Debug)]
pub struct Phantom {
    id: ChitchatId,
    kvs: Vec<(String, VersionedValue)>,
}

/// Builds phantom number `k` (numbers start after the real nodes' `base`).
pub fn phantom(net: &SimNet, naming: Naming, base: usize, k: usize) -> Phantom {
    let (name, addr) = match naming {
        Naming::Sequential => (host_name(base + k), host_addr(base + k)),
        Naming::Pods => {
            const SERVICES: [&str; 8] = [
                "checkout", "payments", "catalog", "search", "cart", "users", "orders", "ads",
            ];
            let svc = SERVICES[k % SERVICES.len()];
            // One deployment hash per service, one random suffix per pod.
            let hash = token(crate::stats::derive_seed(k as u64 % 8, "deploy"), 10);
            let pod = token(net.random_below(usize::MAX) as u64, 5);
            let ip = Ipv4Addr::from(0x0A00_0000_u32 + net.random_below(65_536) as u32);
            (
                format!("{svc}-{hash}-{pod}"),
                SocketAddr::new(ip.into(), MESH_PORT),
            )
        }
    };
    let generation = 1_767_225_600_000 + net.random_below(30 * 24 * 3_600_000) as u64;
    let record = NodeRecord {
        version: RECORD_VERSION,
        name: name.clone(),
        mesh_addr: addr,
        admin_addr: None,
        labels: [("zone".to_owned(), format!("zone-{}", k % 3))].into(),
        status: NodeStatus::Serving,
    };
    let value = records::encode(&record).unwrap_or_default();
    let svc_key = records::service_key(&format!("svc-{:02}", k % 20), &name);
    Phantom {
        id: ChitchatId::new(name, generation, addr),
        kvs: vec![
            (NODE_KEY.to_owned(), versioned(value, 1)),
            (svc_key, versioned("AQAAAQE".to_owned(), 2)),
        ],
    }
}

fn versioned(value: String, version: u64) -> VersionedValue {
    VersionedValue {
        value,
        version,
        status: DeletionStatus::Set,
    }
}

fn token(mut x: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| {
            x = crate::stats::derive_seed(x, "token");
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// Plants `phantoms` into node `i`'s chitchat state.
pub async fn plant(cluster: &Cluster, i: usize, phantoms: &[Phantom]) {
    let Some(node) = cluster.node(i) else { return };
    node.with_chitchat(|c| {
        for p in phantoms {
            c.reset_node_state_if_update(&p.id, p.kvs.clone().into_iter(), 2, 0);
        }
    })
    .await;
}

//! Probes of the two layers: when a value reached each node, and how each node's view judges
//! the other cells.

use std::sync::Arc;

use chitchat::ListenerHandle;
use murmur_membership::Membership;
use murmur_membership::trust::signed;
use tokio::time::Instant;

use crate::probe::Arrivals;

/// What a watched value must satisfy (its body, without the signature).
pub type Wanted = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Records when each of `nodes` (by index) first holds `key` with a body `wanted` accepts.
pub async fn matching(nodes: &[(usize, &Membership)], key: &str, wanted: Wanted) -> Watch {
    let arrivals = Arrivals::default();
    let mut handles = Vec::new();
    for (i, node) in nodes {
        let (a, i, w) = (arrivals.clone(), *i, wanted.clone());
        let handle = node
            .with_chitchat(|c| {
                let (a, w) = (a.clone(), w.clone());
                c.subscribe_event(key.to_owned(), move |ev| {
                    if ev.key.is_empty() && signed::body(ev.value).is_some_and(|b| w(b)) {
                        a.record_at(i, Instant::now());
                    }
                })
            })
            .await;
        handles.push(handle);
    }
    Watch {
        arrivals,
        _handles: handles,
    }
}

/// Arrivals of one value.
pub struct Watch {
    /// Per node.
    pub arrivals: Arrivals,
    _handles: Vec<ListenerHandle>,
}

/// Of `cells`, how many `node`'s view lists, and how many of those it marks stale.
pub fn judged(node: &Membership, cells: &[String]) -> (usize, usize) {
    let view = node.view();
    let listed: Vec<_> = cells.iter().filter_map(|c| view.cells.get(c)).collect();
    (listed.len(), listed.iter().filter(|c| c.stale).count())
}

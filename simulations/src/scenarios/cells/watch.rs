//! Probes of the two layers: when a stamped value reached each node, and how fresh each node's
//! newest head of every other cell is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chitchat::ListenerHandle;
use murmur_membership::Membership;
use murmur_membership::trust::signed;
use tokio::time::Instant;

use super::summary::{self, CELL_PREFIX};
use crate::probe::Arrivals;

/// Records when each of `nodes` (by index) first holds `key` with a stamp of at least `min`.
pub async fn stamped(nodes: &[(usize, &Membership)], key: &str, min: u64) -> StampWatch {
    let arrivals = Arrivals::default();
    let mut handles = Vec::new();
    for (i, node) in nodes {
        let (a, i) = (arrivals.clone(), *i);
        let handle = node
            .with_chitchat(|c| {
                let a = a.clone();
                c.subscribe_event(key.to_owned(), move |ev| {
                    let fresh = signed::body(ev.value)
                        .and_then(summary::stamp_of)
                        .is_some_and(|(s, _)| s >= min);
                    if ev.key.is_empty() && fresh {
                        a.record_at(i, Instant::now());
                    }
                })
            })
            .await;
        handles.push(handle);
    }
    StampWatch {
        arrivals,
        _handles: handles,
    }
}

/// Arrivals of one stamped value.
pub struct StampWatch {
    /// Per node.
    pub arrivals: Arrivals,
    _handles: Vec<ListenerHandle>,
}

/// Newest head stamp of each cell, per node.
#[derive(Clone, Default)]
pub struct HeadBook {
    map: Arc<Mutex<HashMap<(usize, String), u64>>>,
    _handles: Arc<Mutex<Vec<ListenerHandle>>>,
}

impl HeadBook {
    /// Watches the heads every node of `nodes` receives.
    pub async fn install(nodes: &[(usize, &Membership)]) -> Self {
        let book = Self::default();
        for (i, node) in nodes {
            let (map, i) = (book.map.clone(), *i);
            let handle = node
                .with_chitchat(|c| {
                    let map = map.clone();
                    c.subscribe_event(CELL_PREFIX, move |ev| {
                        let Some(cell) = ev.key.strip_suffix("/head") else {
                            return;
                        };
                        let Some((s, _)) = signed::body(ev.value).and_then(summary::stamp_of)
                        else {
                            return;
                        };
                        let mut g = map.lock().unwrap_or_else(PoisonError::into_inner);
                        let e = g.entry((i, cell.to_owned())).or_insert(0);
                        *e = (*e).max(s);
                    })
                })
                .await;
            book._handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        book
    }

    /// Nodes of `nodes` that hold a head stamped at or after `min` for every cell of `cells`.
    pub fn fresh(&self, nodes: &[usize], cells: &[String], min: u64) -> usize {
        let g = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        nodes
            .iter()
            .filter(|i| {
                cells
                    .iter()
                    .all(|c| g.get(&(**i, c.clone())).is_some_and(|s| *s >= min))
            })
            .count()
    }

    /// Of the (node, cell) pairs, the share whose newest head is older than `min` (stale).
    pub fn stale_share(&self, nodes: &[usize], cells: &[String], min: u64) -> f64 {
        let g = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stale = 0usize;
        for i in nodes {
            for c in cells {
                if g.get(&(*i, c.clone())).is_none_or(|s| *s < min) {
                    stale += 1;
                }
            }
        }
        stale as f64 / (nodes.len() * cells.len()).max(1) as f64
    }
}

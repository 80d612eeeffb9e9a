//! Policy across cells: a node running its cell's link (a custodian of the cell) merges the
//! documents of both gossip layers into its one store, and fills the gaps in each layer.
//!
//! Documents verify wherever they are copied (operator chain and signature), and the highest
//! stamp wins everywhere, so relaying them needs no trust in the relay. The only question is
//! who carries a copy, and the answer is the one each layer already has: the origin and the
//! rendezvous custodians among the layer's live members. A bridging node adds one rule: it
//! carries a winner in a layer as long as none of that layer's custodians for the document does
//! (a document that came from the other layer has no origin here, and the custodians here learn
//! it only from the bridging node's copy). Once a custodian carries it, the bridge withdraws its
//! own copy. Waiting for a custodian, not for any other copy, keeps two bridges (a cell's two
//! custodians) from taking turns withdrawing.

use std::collections::BTreeMap;
use std::sync::Arc;

use chitchat::Chitchat;

use crate::driver::Membership;
use crate::policy::KEY_PREFIX;
use crate::policy::custody::custodians;
use crate::policy::document::PolicyDocument;
use crate::trust::{OwnKeys, signed};

/// The other layer a bridging node also gossips in: its membership of the top layer among
/// cells' custodians (`crate::cells::CellLink::top`).
#[derive(Clone, Debug)]
pub struct Bridge {
    /// The top-layer membership.
    pub top: Arc<Membership>,
}

impl Bridge {
    /// Whether `self` and `other` are the same top-layer instance (a custodian rejoining the
    /// top layer gets a new one).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.top, &other.top)
    }
}

/// The live members of a layer by name (chitchat counts this node live).
pub(super) fn live_names(c: &Chitchat) -> Vec<String> {
    let mut names: Vec<String> = c.live_nodes().map(|id| id.node_id.to_string()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether this node carries `doc` in a layer whose live members are `live`: as its origin, as
/// one of its `k` custodians, or, when `bridging`, as long as none of those custodians carries
/// this very value.
pub(super) fn carries(
    c: &Chitchat,
    me: &str,
    doc: &PolicyDocument,
    live: &[&str],
    k: usize,
    bridging: bool,
) -> bool {
    if doc.stamp().origin == me {
        return true;
    }
    let keepers = custodians(doc.kind(), doc.name().as_str(), live, k);
    if keepers.contains(&me) {
        return true;
    }
    bridging && !keepers.iter().any(|n| holds(c, n, &doc.key(), doc.value()))
}

/// Whether a live incarnation of `node` (other than this node's own) holds `value` at `key`.
fn holds(c: &Chitchat, node: &str, key: &str, value: &str) -> bool {
    let me = c.self_chitchat_id();
    c.live_nodes()
        .filter(|id| *id != me && &*id.node_id == node)
        .filter_map(|id| c.node_state(id)?.get(key))
        .any(|v| signed::body(v) == Some(value))
}

/// Makes this node's `policy/` keys in `c` hold exactly `desired` (key, value) pairs.
pub(super) fn write(
    c: &mut Chitchat,
    own: &OwnKeys,
    desired: &BTreeMap<String, &str>,
) -> Result<(), crate::trust::SignError> {
    let stale: Vec<String> = c
        .self_node_state()
        .iter_prefix(KEY_PREFIX)
        .filter(|(k, vv)| signed::body(&vv.value).is_some() && !desired.contains_key(*k))
        .map(|(k, _)| k.to_owned())
        .collect();
    for k in stale {
        own.withdraw(c, &k)?;
    }
    for (k, v) in desired {
        // A no-op when the value is already there.
        own.set(c, k, v)?;
    }
    Ok(())
}

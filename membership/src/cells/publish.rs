//! What the acting custodian publishes of its own cell, built from its view: a pure function,
//! and the bookkeeping that gives the header a new stamp only when the content changed.

use std::collections::BTreeMap;

use super::summary::{
    self, Custodian, Header, Instance, MAX_SERVICES_PER_CELL, Shard, SummaryError,
};
use crate::records::RECORD_VERSION;
use crate::view::{ClusterView, MemberState};

/// A cell's summary before it is stamped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    /// The header, `stamp_ms` 0.
    pub header: Header,
    /// The shards, by service.
    pub shards: BTreeMap<String, Shard>,
}

/// The summary of `cell` as `view` (a view of that cell) shows it: the instances of this cell
/// only (not other cells', not persisted ones), at most [`MAX_SERVICES_PER_CELL`] services.
pub fn summarize(
    cell: &str,
    view: &ClusterView,
    custodians: Vec<Custodian>,
    policy_digest: [u8; 32],
) -> Content {
    let members = view
        .members
        .values()
        .filter(|m| !m.stale && matches!(m.state, MemberState::Alive | MemberState::Draining))
        .count();
    let mut shards = BTreeMap::new();
    for (service, eps) in &view.services {
        if shards.len() >= MAX_SERVICES_PER_CELL || !summary::valid_name(service) {
            continue;
        }
        let mut instances: Vec<Instance> = eps
            .iter()
            .filter(|e| e.cell.is_none() && !e.stale)
            .map(|e| Instance {
                node: e.node.to_string(),
                mesh_addr: e.mesh_addr,
                protocol: e.protocol,
                labels: e.labels.clone(),
                weight: e.weight,
                health: e.health,
                balancer: e.balancer,
                draining: e.draining,
            })
            .collect();
        if instances.is_empty() {
            continue;
        }
        instances.sort_by(|a, b| a.node.cmp(&b.node));
        shards.insert(
            service.clone(),
            Shard {
                version: RECORD_VERSION,
                cell: cell.to_owned(),
                service: service.clone(),
                instances,
            },
        );
    }
    Content {
        header: Header {
            version: RECORD_VERSION,
            cell: cell.to_owned(),
            stamp_ms: 0,
            members: u32::try_from(members).unwrap_or(u32::MAX),
            custodians,
            policy_digest,
            services: shards.keys().cloned().collect(),
        },
        shards,
    }
}

/// The key-value pairs of a stamped summary, shards first (chitchat sends a node's values in
/// the order they were written: a reader that has the header has its shards).
pub fn values(content: &Content, stamp_ms: u64) -> Result<Vec<(String, String)>, SummaryError> {
    let cell = &content.header.cell;
    let mut out = Vec::with_capacity(content.shards.len() + 1);
    for (service, shard) in &content.shards {
        out.push((
            summary::shard_key(cell, service),
            summary::encode_shard(shard)?,
        ));
    }
    let header = Header {
        stamp_ms,
        ..content.header.clone()
    };
    out.push((summary::header_key(cell), summary::encode_header(&header)?));
    Ok(out)
}

/// Gives a summary a new stamp when, and only when, its content changed.
#[derive(Debug, Default)]
pub struct Stamper {
    /// The content last stamped.
    last: Option<Content>,
    stamp_ms: u64,
}

impl Stamper {
    /// The stamp for `content` now (`wall_ms`), and whether it is new.
    pub fn stamp(&mut self, content: &Content, wall_ms: u64) -> (u64, bool) {
        if self.last.as_ref() == Some(content) {
            return (self.stamp_ms, false);
        }
        self.stamp_ms = wall_ms.max(self.stamp_ms.saturating_add(1));
        self.last = Some(content.clone());
        (self.stamp_ms, true)
    }

    /// Forgets the content: the next one is stamped anew (after a rejoin, say).
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Whether nothing was stamped since the start or the last [`Stamper::reset`].
    pub fn is_reset(&self) -> bool {
        self.last.is_none()
    }

    /// Stamps from now on are above `ms`: a custodian taking over stamps above what the one
    /// before it published, whatever their clocks say.
    pub fn floor(&mut self, ms: u64) {
        self.stamp_ms = self.stamp_ms.max(ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(members: u32) -> Content {
        Content {
            header: Header {
                version: RECORD_VERSION,
                cell: "c".into(),
                stamp_ms: 0,
                members,
                custodians: vec![],
                policy_digest: [0; 32],
                services: vec![],
            },
            shards: BTreeMap::new(),
        }
    }

    #[test]
    fn a_new_stamp_only_for_new_content_always_above_the_last_and_the_floor() {
        let mut s = Stamper::default();
        assert!(s.is_reset());
        assert_eq!(s.stamp(&content(1), 1000), (1000, true));
        assert_eq!(s.stamp(&content(1), 5000), (1000, false));
        // A clock that went back still gives a newer stamp.
        assert_eq!(s.stamp(&content(2), 10), (1001, true));
        s.reset();
        s.floor(9000);
        assert_eq!(s.stamp(&content(2), 2000), (9001, true));
        s.floor(u64::MAX);
        assert_eq!(s.stamp(&content(3), 2000), (u64::MAX, true));
    }
}

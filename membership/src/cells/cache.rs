//! What a node reads of other cells out of one chitchat instance: the `cell/` values of every
//! namespace, copied only when that namespace changed, and the directory they make, read again
//! only when one did.

use std::collections::HashMap;

use chitchat::{Chitchat, ChitchatId};

use super::directory::Directory;
use super::summary;
use crate::records::CELL_PREFIX;
use crate::trust::signed;

/// The `cell/` values of every namespace of one chitchat instance, copied only when a node's
/// state changed.
#[derive(Default)]
pub(super) struct Cache {
    nodes: HashMap<ChitchatId, (u64, Vec<(String, String)>)>,
    /// The directory of `nodes` (of the owners it was read for), until one of them changes.
    dir: Option<(Option<Vec<String>>, Directory)>,
}

impl Cache {
    pub(super) fn refresh(&mut self, c: &Chitchat) {
        let before = self.nodes.len();
        self.nodes.retain(|id, _| c.node_state(id).is_some());
        if self.nodes.len() != before {
            self.dir = None;
        }
        for (id, state) in c.node_states() {
            let max = state.max_version();
            if self.nodes.get(id).is_some_and(|(v, _)| *v == max) {
                continue;
            }
            self.dir = None;
            let kvs = state
                .key_values()
                .filter(|(k, _)| k.starts_with(CELL_PREFIX))
                .filter_map(|(k, v)| Some((k.to_owned(), signed::body(v)?.to_owned())))
                .collect();
            self.nodes.insert(id.clone(), (max, kvs));
        }
    }

    /// The newest stamp any namespace holds for `cell`'s header, up to `max`.
    pub(super) fn newest_stamp(&self, cell: &str, max: u64) -> u64 {
        let key = summary::header_key(cell);
        self.nodes
            .values()
            .flat_map(|(_, kvs)| kvs.iter().filter(|(k, _)| *k == key))
            .filter_map(|(_, v)| summary::decode_header(cell, v).ok())
            .map(|h| h.stamp_ms)
            .filter(|ms| *ms <= max)
            .max()
            .unwrap_or(0)
    }

    /// The directory of the namespaces of `owners` (all when `None`).
    pub(super) fn directory(
        &mut self,
        own_cell: &str,
        now_ms: u64,
        owners: Option<&[String]>,
    ) -> Directory {
        if let Some((for_owners, dir)) = &self.dir
            && for_owners.as_deref() == owners
        {
            return dir.clone();
        }
        let dir = Directory::read(
            own_cell,
            now_ms,
            self.nodes
                .iter()
                .filter(|(id, _)| owners.is_none_or(|o| o.iter().any(|n| **n == *id.node_id)))
                .map(|(_, (_, kvs))| kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        self.dir = Some((owners.map(<[String]>::to_vec), dir.clone()));
        dir
    }
}

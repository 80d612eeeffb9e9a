//! What a node reads of other cells out of one chitchat instance: the `cell/` values of every
//! namespace, copied only when that namespace changed, and the directory they make, read again
//! only when one of those values did. At 50 cells the directory holds ~20 000 instances: the
//! link must not rebuild it (nor the view made of it) on a tick where nothing changed.

use std::collections::HashMap;

use chitchat::{Chitchat, ChitchatId};

use super::directory::Directory;
use super::summary::{self, CellKey};
use crate::records::CELL_PREFIX;
use crate::trust::signed;

/// The `cell/` values of every namespace of one chitchat instance, copied only when a node's
/// state changed.
#[derive(Default)]
pub(super) struct Cache {
    nodes: HashMap<ChitchatId, (u64, Vec<(String, String)>)>,
    /// The owners the directory was last handed out for, until a `cell/` value other than a
    /// beacon changes.
    read_for: Option<Option<Vec<String>>>,
    /// The owners beacons were last handed out for, until a beacon changes: beacons are renewed
    /// every few seconds by every cell, and only move a summary's age.
    beacons_for: Option<Option<Vec<String>>>,
}

fn is_beacon(key: &str) -> bool {
    matches!(summary::parse_key(key), Some(CellKey::Beacon(_)))
}

/// Whether what was handed out for `slot`'s owners is what `owners` asks for.
fn same_owners(slot: &Option<Option<Vec<String>>>, owners: Option<&[String]>) -> bool {
    slot.as_ref()
        .is_some_and(|for_owners| for_owners.as_deref() == owners)
}

/// Whether `old` and `new` differ in the values `pick` selects.
fn differ(old: &[(String, String)], new: &[(String, String)], pick: impl Fn(&str) -> bool) -> bool {
    let picked = |kv: &&(String, String)| pick(&kv.0);
    !old.iter().filter(picked).eq(new.iter().filter(picked))
}

impl Cache {
    /// Brings `known` up to date with what this cache holds of `owners`' namespaces (all when
    /// `None`): beacons when one changed, summaries when one changed. Returns (a summary was
    /// read, a beacon was renewed).
    pub(super) fn read_changes(
        &mut self,
        known: &mut Directory,
        own_cell: &str,
        now_ms: u64,
        owners: Option<&[String]>,
    ) -> (bool, bool) {
        let mut renewed = false;
        if let Some(beacons) = self.changed_beacons(own_cell, owners) {
            // A beacon of a cell not known (one that expired during a partition, say) brings
            // back a summary this node already read and dropped: read it again.
            if beacons.iter().any(|(c, ..)| !known.cells.contains_key(c)) {
                self.read_for = None;
            }
            known.renew_beacons(beacons);
            renewed = true;
        }
        let Some(dir) = self.changed_directory(own_cell, now_ms, owners) else {
            return (false, renewed);
        };
        known.merge(dir);
        (true, renewed)
    }

    pub(super) fn refresh(&mut self, c: &Chitchat) {
        let before = self.nodes.len();
        self.nodes.retain(|id, _| c.node_state(id).is_some());
        if self.nodes.len() != before {
            self.read_for = None;
            self.beacons_for = None;
        }
        for (id, state) in c.node_states() {
            let max = state.max_version();
            if self.nodes.get(id).is_some_and(|(v, _)| *v == max) {
                continue;
            }
            let kvs: Vec<(String, String)> = state
                .key_values()
                .filter(|(k, _)| k.starts_with(CELL_PREFIX))
                .filter_map(|(k, v)| Some((k.to_owned(), signed::body(v)?.to_owned())))
                .collect();
            self.update(id, max, kvs);
        }
    }

    /// Stores the `cell/` values of `id` at version `max`, forgetting the directory or the
    /// beacons handed out when theirs changed: members write other keys (health, load) far
    /// more often than `cell/` ones.
    fn update(&mut self, id: &ChitchatId, max: u64, kvs: Vec<(String, String)>) {
        match self.nodes.get(id) {
            None => {
                self.read_for = None;
                self.beacons_for = None;
            }
            Some((_, old)) => {
                if differ(old, &kvs, |k| !is_beacon(k)) {
                    self.read_for = None;
                }
                if differ(old, &kvs, is_beacon) {
                    self.beacons_for = None;
                }
            }
        }
        self.nodes.insert(id.clone(), (max, kvs));
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

    /// The directory of the namespaces of `owners` (all when `None`), or `None` when it is the
    /// one handed out last: no `cell/` value of theirs changed and the owners are the same.
    fn changed_directory(
        &mut self,
        own_cell: &str,
        now_ms: u64,
        owners: Option<&[String]>,
    ) -> Option<Directory> {
        if same_owners(&self.read_for, owners) {
            return None;
        }
        let dir = Directory::read(
            own_cell,
            now_ms,
            self.values_of(owners)
                .map(|kvs| kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        );
        self.read_for = Some(owners.map(<[String]>::to_vec));
        self.beacons_for = self.read_for.clone();
        Some(dir)
    }

    /// The `cell/` values of each namespace of `owners` (all when `None`).
    fn values_of<'a>(
        &'a self,
        owners: Option<&'a [String]>,
    ) -> impl Iterator<Item = &'a [(String, String)]> {
        self.nodes
            .iter()
            .filter(move |(id, _)| owners.is_none_or(|o| o.iter().any(|n| **n == *id.node_id)))
            .map(|(_, (_, kvs))| kvs.as_slice())
    }

    /// The beacons (cell, stamp, key, body) of `owners`' namespaces (all when `None`), or `None`
    /// when no beacon changed since they were last handed out.
    fn changed_beacons(
        &mut self,
        own_cell: &str,
        owners: Option<&[String]>,
    ) -> Option<Vec<(String, u64, String, String)>> {
        if same_owners(&self.beacons_for, owners) {
            return None;
        }
        let beacons = self
            .values_of(owners)
            .flatten()
            .filter_map(|(k, v)| match summary::parse_key(k) {
                Some(CellKey::Beacon(c)) if c != own_cell => {
                    let b = summary::decode_beacon(c, v).ok()?;
                    Some((c.to_owned(), b.stamp_ms, k.clone(), v.clone()))
                }
                _ => None,
            })
            .collect();
        self.beacons_for = Some(owners.map(<[String]>::to_vec));
        Some(beacons)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cells::publish::{self, Content};
    use crate::cells::summary::Header;
    use crate::records::RECORD_VERSION;

    fn summary_of(cell: &str, stamp_ms: u64, beacon_ms: u64) -> Vec<(String, String)> {
        let content = Content {
            header: Header {
                version: RECORD_VERSION,
                cell: cell.into(),
                stamp_ms: 0,
                members: 3,
                custodians: vec![],
                policy_digest: [0; 32],
                services: vec![],
            },
            shards: BTreeMap::new(),
        };
        let mut kvs = publish::values(&content, stamp_ms).unwrap();
        kvs.push((
            summary::beacon_key(cell),
            summary::encode_beacon(cell, beacon_ms).unwrap(),
        ));
        kvs.sort();
        kvs
    }

    #[test]
    fn a_summary_is_read_once_a_beacon_only_renews_and_a_dropped_cell_comes_back_with_one() {
        let id = ChitchatId::new("x1".to_owned(), 1, "127.0.0.1:1".parse().unwrap());
        let (mut cache, mut known) = (Cache::default(), Directory::default());
        cache.update(&id, 1, summary_of("a", 1000, 1000));
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (true, true)
        );
        assert_eq!(known.cells["a"].beacon_ms, 1000);
        // Nothing changed: nothing read.
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (false, false)
        );
        // Another key version with the same `cell/` values: nothing read either.
        cache.update(&id, 2, summary_of("a", 1000, 1000));
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (false, false)
        );
        // A new beacon moves the age, without reading the summary again.
        cache.update(&id, 3, summary_of("a", 1000, 2000));
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (false, true)
        );
        assert_eq!(known.cells["a"].beacon_ms, 2000);
        let raw = &known.cells["a"].raw[&summary::beacon_key("a")];
        assert_eq!(summary::decode_beacon("a", raw).unwrap().stamp_ms, 2000);
        // The cell expired here and was dropped; its next beacon brings it back.
        known.cells.clear();
        cache.update(&id, 4, summary_of("a", 1000, 3000));
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (true, true)
        );
        assert_eq!(known.cells["a"].beacon_ms, 3000);
        // A new header is read.
        cache.update(&id, 5, summary_of("a", 4000, 4000));
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, None),
            (true, true)
        );
        assert_eq!(known.cells["a"].header.stamp_ms, 4000);
        // Other owners: read for them.
        let owners = ["x2".to_owned()];
        assert_eq!(
            cache.read_changes(&mut known, "b", 5000, Some(&owners)),
            (true, true)
        );
    }
}

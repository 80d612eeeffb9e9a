//! The last-known cluster view on disk, so a node restarted while every peer is unreachable
//! still routes (fail-static) instead of routing nowhere.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::view::{ClusterView, MemberState};

/// Version of the file format.
const FILE_VERSION: u16 = 1;
/// Views larger than this are not read back (a corrupted or foreign file).
const MAX_FILE_BYTES: u64 = 64 << 20;

/// The file: a view (owned when read, borrowed when written) under a format version.
#[derive(Serialize, Deserialize)]
struct File<V> {
    version: u16,
    view: V,
}

/// Writes `view` atomically (temporary file, fsync, rename).
pub fn save(path: &Path, view: &ClusterView) -> std::io::Result<()> {
    let body = serde_json::to_vec(&File {
        version: FILE_VERSION,
        view,
    })
    .map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Reads a view written by [`save`]; `None` when absent, too large, or of another format.
pub fn load(path: &Path) -> Option<ClusterView> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > MAX_FILE_BYTES {
        return None;
    }
    decode(&fs::read(path).ok()?)
}

/// The contents of a view file, as [`load`] reads them.
fn decode(bytes: &[u8]) -> Option<ClusterView> {
    let file: File<ClusterView> = serde_json::from_slice(bytes).ok()?;
    (file.version == FILE_VERSION).then_some(file.view)
}

/// The file decoder, for the fuzz targets.
#[cfg(fuzzing)]
pub mod fuzzing {
    /// What [`super::load`] makes of a file's bytes.
    pub fn decode(bytes: &[u8]) -> Option<crate::view::ClusterView> {
        super::decode(bytes)
    }
}

/// Marks every member and endpoint of a persisted view as stale (except this node, which is
/// about to publish itself afresh).
pub fn mark_stale(mut view: ClusterView, self_name: &str) -> ClusterView {
    view.members.remove(self_name);
    for m in view.members.values_mut() {
        m.stale = true;
    }
    for eps in view.services.values_mut() {
        eps.retain(|e| e.node != self_name);
        for e in eps.iter_mut() {
            e.stale = true;
        }
    }
    view.services.retain(|_, eps| !eps.is_empty());
    view.stale = true;
    view
}

/// Serves stale entries beside live ones until gossip has had time to bring every reachable
/// member back.
#[derive(Debug)]
pub struct FailStatic {
    stale: Option<ClusterView>,
    warmup: Duration,
    first_peer_at: Option<Instant>,
}

impl FailStatic {
    /// Starts from a persisted view (already [`mark_stale`]d), if any.
    pub fn new(stale: Option<ClusterView>, warmup: Duration) -> Self {
        Self {
            stale,
            warmup,
            first_peer_at: None,
        }
    }

    /// Merges what gossip says (`live`) with what is still worth keeping from disk.
    pub fn apply(&mut self, mut live: ClusterView, now: Instant) -> ClusterView {
        let Some(stale) = &self.stale else {
            return live;
        };
        let has_peer = live.members.keys().any(|n| n != &live.self_name);
        if has_peer && self.first_peer_at.is_none() {
            self.first_peer_at = Some(now);
        }
        if self
            .first_peer_at
            .is_some_and(|t| now.duration_since(t) >= self.warmup)
        {
            self.stale = None;
            return live;
        }
        let mut added = false;
        for (name, member) in &stale.members {
            // Gossip lists a member it has just learned of as dead until its second heartbeat:
            // until gossip says something better than "dead", the disk knows more.
            let known = live
                .members
                .get(name)
                .is_some_and(|m| m.state != MemberState::Dead);
            if known {
                continue;
            }
            added = true;
            live.members.insert(name.clone(), member.clone());
            for eps in live.services.values_mut() {
                eps.retain(|e| &e.node != name);
            }
            for eps in stale.services.values() {
                for e in eps.iter().filter(|e| &e.node == name) {
                    live.services
                        .entry(e.service.clone())
                        .or_default()
                        .push(e.clone());
                }
            }
        }
        live.stale = added;
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_view_loads_back_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("view.json");
        let view = ClusterView {
            self_name: "a".into(),
            stale: true,
            ..ClusterView::default()
        };
        save(&path, &view).unwrap();
        assert_eq!(load(&path), Some(view.clone()));

        let other = serde_json::json!({ "version": 2, "view": view }).to_string();
        fs::write(&path, other).unwrap();
        assert_eq!(load(&path), None);
        fs::write(&path, b"{\"version\":1,\"view\":").unwrap();
        assert_eq!(load(&path), None);
        assert_eq!(load(&dir.path().join("absent")), None);
    }
}

//! The last-known cluster view on disk, so a node restarted while every peer is unreachable
//! still routes (fail-static) instead of routing nowhere.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::view::{ClusterView, Endpoint, Member, MemberState};

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
#[cfg(feature = "fuzzing")]
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

/// What each member of the view last was while it served: kept so that the saved view of a
/// mesh that stopped as a whole (every member `left` on SIGTERM) still lists where each member
/// served, for the next start to try (fail-static).
#[derive(Clone, Debug, Default)]
pub struct LastGood {
    members: std::collections::BTreeMap<String, (Member, Vec<Endpoint>)>,
}

impl LastGood {
    /// Remembers what `view` says of its serving members (a persisted view's own entries
    /// count, so several restarts in a row lose nothing).
    pub fn learn(&mut self, view: &ClusterView) {
        for m in view.members.values() {
            if m.state != MemberState::Alive {
                continue;
            }
            let eps: Vec<Endpoint> = view
                .services
                .values()
                .flatten()
                .filter(|e| e.node.as_str() == m.name)
                .cloned()
                .collect();
            self.members.insert(m.name.clone(), (m.clone(), eps));
        }
        // Only members the view still lists are worth keeping: the set stays bounded.
        self.members
            .retain(|name, _| view.members.contains_key(name));
    }

    /// The view to save: `view`, with every member that no longer serves in it (left, dead)
    /// shown as it last served.
    pub fn to_save(&self, view: &ClusterView) -> ClusterView {
        let mut out = view.clone();
        for (name, (member, eps)) in &self.members {
            let serving = view
                .members
                .get(name)
                .is_some_and(|m| matches!(m.state, MemberState::Alive | MemberState::Draining));
            if serving || name == &view.self_name {
                continue;
            }
            out.members.insert(name.clone(), member.clone());
            for e in eps {
                let list = out.services.entry(e.service.clone()).or_default();
                if !list.iter().any(|x| x.node == e.node) {
                    list.push(e.clone());
                }
            }
        }
        out
    }
}

/// The mesh addresses of the members a persisted view knows (this node excluded): worth trying
/// as seeds when the configured ones are down, whatever state the members were last in.
pub fn known_peers(view: &ClusterView, self_name: &str) -> Vec<std::net::SocketAddr> {
    view.members
        .values()
        .filter(|m| m.name != self_name)
        .map(|m| m.mesh_addr)
        .collect()
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
            // Gossip lists a member it has just learned of as joining until its second
            // heartbeat: until gossip says something better, the disk knows more.
            let known = live
                .members
                .get(name)
                .is_some_and(|m| !matches!(m.state, MemberState::Dead | MemberState::Joining));
            if known {
                continue;
            }
            added = true;
            live.members.insert(name.clone(), member.clone());
            for eps in live.services.values_mut() {
                eps.retain(|e| e.node.as_str() != *name);
            }
            for eps in stale.services.values() {
                for e in eps.iter().filter(|e| e.node.as_str() == *name) {
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
    use crate::records::{Balancer, Health, Protocol};

    fn member(name: &str, state: MemberState) -> Member {
        Member {
            name: name.into(),
            generation: 1,
            mesh_addr: format!("127.0.0.{}:7420", name.len() + 1).parse().unwrap(),
            admin_addr: None,
            labels: Default::default(),
            state,
            services: Vec::new(),
            stale: false,
            extensions: Default::default(),
        }
    }

    fn endpoint(service: &str, node: &str) -> Endpoint {
        Endpoint {
            service: service.into(),
            node: murmur_transport::testing::name(node),
            mesh_addr: "127.0.0.9:7420".parse().unwrap(),
            protocol: Protocol::Http,
            labels: Default::default(),
            weight: 1,
            health: Health::Passing,
            balancer: Balancer::default(),
            draining: false,
            stale: false,
            cell: None,
        }
    }

    fn view(members: &[(&str, MemberState)], services: &[(&str, &str)]) -> ClusterView {
        let mut v = ClusterView {
            self_name: "me".into(),
            ..ClusterView::default()
        };
        for (n, s) in members {
            v.members.insert((*n).into(), member(n, *s));
        }
        for (svc, node) in services {
            v.services
                .entry((*svc).into())
                .or_default()
                .push(endpoint(svc, node));
        }
        v
    }

    #[test]
    fn a_mesh_that_left_as_a_whole_is_saved_as_it_last_served() {
        let mut good = LastGood::default();
        let serving = view(
            &[
                ("me", MemberState::Alive),
                ("b", MemberState::Alive),
                ("c", MemberState::Alive),
            ],
            &[("web", "b"), ("db", "c")],
        );
        good.learn(&serving);
        // Everyone leaves (SIGTERM across the mesh): the live view has no endpoints left.
        let stopping = view(
            &[
                ("me", MemberState::Draining),
                ("b", MemberState::Left),
                ("c", MemberState::Dead),
            ],
            &[],
        );
        good.learn(&stopping);
        let saved = good.to_save(&stopping);
        assert_eq!(saved.members["b"].state, MemberState::Alive);
        assert_eq!(saved.members["c"].state, MemberState::Alive);
        assert_eq!(saved.endpoints("web")[0].node, "b");
        assert_eq!(saved.endpoints("db")[0].node, "c");
        assert_eq!(saved.members["me"].state, MemberState::Draining);
        // At the next start every member known is a seed to try, and its services are served
        // stale until gossip knows better.
        let stale = mark_stale(saved, "me");
        let mut peers = known_peers(&stale, "me");
        peers.sort();
        assert_eq!(peers.len(), 2);
        assert!(stale.stale && stale.endpoints("web")[0].stale);
        // A member gossip no longer lists at all is forgotten.
        good.learn(&view(
            &[("me", MemberState::Alive), ("c", MemberState::Dead)],
            &[],
        ));
        let saved = good.to_save(&view(&[("me", MemberState::Alive)], &[]));
        assert!(!saved.members.contains_key("b"));
    }

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

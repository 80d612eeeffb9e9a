//! The cluster as a node sees it: members deduplicated by name, and the endpoints of every
//! service. Built by a pure function from a snapshot of the gossip state, so the rules (which
//! generation wins, what counts as gone) are tested without any network.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::records::{
    self, Balancer, Health, NODE_KEY, NodeRecord, NodeStatus, Protocol, SERVICE_PREFIX,
    ServiceRecord,
};

/// How a member is doing, as far as this node knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Heard from recently and serving.
    Alive,
    /// Alive, finishing its work; gets no new traffic.
    Draining,
    /// Left on purpose.
    Left,
    /// Not heard from: the failure detector gave up on it.
    Dead,
    /// Just learned of, not yet heard from twice (the failure detector needs two heartbeats
    /// before it judges): gets no traffic yet, but is not dead.
    Joining,
}

/// One member of the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Incarnation (start time in ms); a restart is a new generation.
    pub generation: u64,
    /// Advertised QUIC address.
    pub mesh_addr: SocketAddr,
    /// Admin API address, if published.
    pub admin_addr: Option<SocketAddr>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// State.
    pub state: MemberState,
    /// Services it serves.
    pub services: Vec<String>,
    /// Known only from the persisted view, not (yet) from gossip.
    pub stale: bool,
    /// Values the node publishes under `x/<name>` for readers above this crate (e.g. its
    /// traffic summary), by name without the prefix.
    #[serde(default)]
    pub extensions: BTreeMap<String, String>,
}

/// Prefix of keys this crate carries without interpreting.
pub const EXTENSION_PREFIX: &str = "x/";

/// One instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Service name.
    pub service: String,
    /// Node serving it: a valid node name, checked once when the view is built (or the summary
    /// decoded), so every request's dial uses it as it is.
    pub node: Name,
    /// That node's QUIC address.
    pub mesh_addr: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels of the instance.
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight.
    pub weight: u32,
    /// Health from the serving node's checks.
    pub health: Health,
    /// The balancer the instance asks callers to use.
    pub balancer: Balancer,
    /// The node is draining.
    pub draining: bool,
    /// Known only from the persisted view, or from another cell's summary that stopped being
    /// renewed.
    pub stale: bool,
    /// The cell of the serving node when it is another cell than this node's (learned from
    /// that cell's summary, see `crate::cells`); `None` for an instance of this node's cell.
    #[serde(default)]
    pub cell: Option<String>,
}

impl Endpoint {
    /// Whether new requests may go here: passing checks, and not draining.
    pub fn accepts_new_traffic(&self) -> bool {
        !self.draining && self.health == Health::Passing
    }
}

/// The cluster as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's name.
    pub self_name: String,
    /// Members by name (one entry per name: the newest live incarnation).
    pub members: BTreeMap<String, Member>,
    /// Endpoints of alive and draining members, by service.
    pub services: BTreeMap<String, Vec<Endpoint>>,
    /// Some of this view comes from disk, not from gossip.
    pub stale: bool,
    /// Other cells, by name, as their summaries describe them (empty in a single-cell mesh).
    #[serde(default)]
    pub cells: BTreeMap<String, RemoteCell>,
}

/// Another cell, as its latest summary describes it. Nothing here moves with the cell's
/// beacon: the view changes only when the summary does or the cell turns stale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCell {
    /// Members of the cell (alive or draining) when the summary was made.
    pub members: u32,
    /// The cell's custodians, best ranked first.
    pub custodians: Vec<String>,
    /// Services it exports.
    pub services: usize,
    /// The summary was not renewed for a while: its endpoints may be out of date.
    pub stale: bool,
    /// The digest of the policy documents the cell holds (hex; empty when not published).
    pub policy_digest: String,
}

/// What this node knows of other cells, ready to be laid over the view of its own cell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteView {
    /// Other cells by name.
    pub cells: BTreeMap<String, RemoteCell>,
    /// Their endpoints by service (each with its `cell` set).
    pub services: BTreeMap<String, Vec<Endpoint>>,
}

/// Lays `remote` over a view of this node's own cell. An instance whose node is a routable
/// member here is left out: a node that moved into this cell is reached as a local member, not
/// through the summary of the cell it left. With an empty `remote` the view is unchanged.
pub fn overlay(mut view: ClusterView, remote: &RemoteView) -> ClusterView {
    if remote.cells.is_empty() && remote.services.is_empty() {
        return view;
    }
    let local = |node: &str| {
        view.members.get(node).is_some_and(|m| {
            matches!(
                m.state,
                MemberState::Alive | MemberState::Draining | MemberState::Joining
            )
        })
    };
    let mut extra: Vec<(String, Endpoint)> = Vec::new();
    for (service, eps) in &remote.services {
        for e in eps.iter().filter(|e| !local(e.node.as_str())) {
            extra.push((service.clone(), e.clone()));
        }
    }
    for (service, e) in extra {
        view.services.entry(service).or_default().push(e);
    }
    view.cells.clone_from(&remote.cells);
    view
}

impl ClusterView {
    /// Endpoints of `service` (empty when unknown).
    pub fn endpoints(&self, service: &str) -> &[Endpoint] {
        self.services.get(service).map_or(&[], Vec::as_slice)
    }

    /// Members in a given state.
    pub fn count(&self, state: MemberState) -> usize {
        self.members.values().filter(|m| m.state == state).count()
    }
}

/// What the gossip state says about one incarnation of a node.
#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    /// Node name (chitchat node id).
    pub name: String,
    /// Generation.
    pub generation: u64,
    /// The gossip address of the incarnation (what its values are signed for).
    pub addr: SocketAddr,
    /// Whether the failure detector considers it live.
    pub live: bool,
    /// Never live yet and learned of moments ago: its second heartbeat is on its way.
    pub joining: bool,
    /// Its keys and values (deleted keys excluded; only those [`reads_key`] accepts matter).
    pub kvs: Vec<(String, String)>,
}

/// Whether [`build`] reads the gossip key `key`: the node record, service records, extensions.
pub fn reads_key(key: &str) -> bool {
    key == NODE_KEY || key.starts_with(SERVICE_PREFIX) || key.starts_with(EXTENSION_PREFIX)
}

/// Builds the view from snapshots of every known incarnation.
pub fn build(self_name: &str, nodes: &[NodeSnapshot]) -> ClusterView {
    let mut newest: BTreeMap<&str, &NodeSnapshot> = BTreeMap::new();
    for n in nodes {
        let better = match newest.get(n.name.as_str()) {
            None => true,
            // A live incarnation beats a dead one; among equals, the later generation wins.
            Some(cur) => (n.live, n.generation) > (cur.live, cur.generation),
        };
        if better {
            newest.insert(&n.name, n);
        }
    }
    let mut view = ClusterView {
        self_name: self_name.to_owned(),
        ..ClusterView::default()
    };
    for snap in newest.values() {
        if let Some((member, endpoints)) = member_of(snap) {
            for e in endpoints {
                view.services.entry(e.service.clone()).or_default().push(e);
            }
            view.members.insert(member.name.clone(), member);
        }
    }
    view
}

fn member_of(snap: &NodeSnapshot) -> Option<(Member, Vec<Endpoint>)> {
    let value = snap.kvs.iter().find(|(k, _)| k == NODE_KEY)?;
    // Certificates name only valid node names, so no peer could prove any other: such a member
    // could never be dialled.
    let Ok(node) = Name::parse("node name", &snap.name) else {
        debug!(node = %snap.name.escape_debug(), "member ignored: not a valid node name");
        return None;
    };
    let record: NodeRecord = records::decode(&value.1)
        .map_err(|e| debug!(node = %snap.name, error = %e, "node record ignored"))
        .ok()?;
    if record.name != snap.name {
        debug!(node = %snap.name, claimed = %record.name, "node record names another node");
        return None;
    }
    if record.mesh_addr != snap.addr {
        debug!(node = %snap.name, claimed = %record.mesh_addr, "node record names another address");
        return None;
    }
    let state = match (record.status, snap.live) {
        (NodeStatus::Left, _) => MemberState::Left,
        (_, false) if snap.joining => MemberState::Joining,
        (_, false) => MemberState::Dead,
        (NodeStatus::Draining, true) => MemberState::Draining,
        (NodeStatus::Serving, true) => MemberState::Alive,
    };
    let suffix = format!("/{}", snap.name);
    let mut endpoints = Vec::new();
    for (key, value) in &snap.kvs {
        let Some(service) = key
            .strip_prefix(SERVICE_PREFIX)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        let Ok(rec) = records::decode::<ServiceRecord>(value) else {
            debug!(node = %snap.name, %key, "service record ignored");
            continue;
        };
        endpoints.push(Endpoint {
            service: service.to_owned(),
            node: node.clone(),
            mesh_addr: record.mesh_addr,
            protocol: rec.protocol,
            labels: rec.labels,
            weight: rec.weight,
            health: rec.health,
            balancer: rec.balancer,
            draining: state == MemberState::Draining,
            stale: false,
            cell: None,
        });
    }
    let member = Member {
        name: record.name,
        generation: snap.generation,
        mesh_addr: record.mesh_addr,
        admin_addr: record.admin_addr,
        labels: record.labels,
        state,
        services: endpoints.iter().map(|e| e.service.clone()).collect(),
        stale: false,
        extensions: snap
            .kvs
            .iter()
            .filter(|(_, v)| v.len() <= records::MAX_VALUE_BYTES)
            .filter_map(|(k, v)| Some((k.strip_prefix(EXTENSION_PREFIX)?.to_owned(), v.clone())))
            .collect(),
    };
    let routable = matches!(state, MemberState::Alive | MemberState::Draining);
    Some((member, if routable { endpoints } else { Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{RECORD_VERSION, encode, service_key};

    fn snap(
        name: &str,
        generation: u64,
        live: bool,
        status: NodeStatus,
        services: &[&str],
    ) -> NodeSnapshot {
        let addr: SocketAddr = format!("127.0.0.{}:7420", generation % 250 + 1)
            .parse()
            .unwrap();
        let record = NodeRecord {
            version: RECORD_VERSION,
            name: name.into(),
            mesh_addr: addr,
            admin_addr: None,
            labels: BTreeMap::new(),
            status,
        };
        let mut kvs = vec![(NODE_KEY.to_string(), encode(&record).unwrap())];
        for s in services {
            let rec = ServiceRecord {
                version: RECORD_VERSION,
                protocol: Protocol::Http,
                labels: BTreeMap::new(),
                weight: 1,
                health: Health::Passing,
                balancer: Balancer::P2cEwma,
            };
            kvs.push((service_key(s, name), encode(&rec).unwrap()));
        }
        NodeSnapshot {
            name: name.into(),
            generation,
            addr,
            live,
            joining: false,
            kvs,
        }
    }

    #[test]
    fn newest_live_generation_wins_and_old_ones_never_show() {
        let nodes = [
            snap("a", 1, false, NodeStatus::Serving, &["web"]),
            snap("a", 3, true, NodeStatus::Serving, &["web"]),
            snap("a", 2, true, NodeStatus::Serving, &[]),
        ];
        let v = build("x", &nodes);
        assert_eq!(v.members.len(), 1);
        assert_eq!(v.members["a"].generation, 3);
        assert_eq!(v.members["a"].state, MemberState::Alive);
        assert_eq!(v.endpoints("web").len(), 1);
    }

    #[test]
    fn a_member_learned_of_moments_ago_is_joining_not_dead_and_takes_no_traffic() {
        let mut new = snap("n", 1, false, NodeStatus::Serving, &["web"]);
        new.joining = true;
        let v = build("x", &[new]);
        assert_eq!(v.members["n"].state, MemberState::Joining);
        assert!(v.endpoints("web").is_empty());
    }

    #[test]
    fn a_live_older_generation_beats_a_dead_newer_one() {
        let nodes = [
            snap("a", 5, false, NodeStatus::Serving, &["web"]),
            snap("a", 4, true, NodeStatus::Serving, &["web"]),
        ];
        assert_eq!(build("x", &nodes).members["a"].generation, 4);
    }

    #[test]
    fn dead_and_left_members_have_no_endpoints_and_draining_ones_take_no_new_traffic() {
        let nodes = [
            snap("dead", 1, false, NodeStatus::Serving, &["web"]),
            snap("left", 1, true, NodeStatus::Left, &["web"]),
            snap("drain", 1, true, NodeStatus::Draining, &["web"]),
            snap("ok", 1, true, NodeStatus::Serving, &["web"]),
        ];
        let v = build("x", &nodes);
        assert_eq!(v.members["dead"].state, MemberState::Dead);
        assert_eq!(v.members["left"].state, MemberState::Left);
        let eps: Vec<_> = v
            .endpoints("web")
            .iter()
            .map(|e| (e.node.as_str(), e.accepts_new_traffic()))
            .collect();
        assert_eq!(eps, [("drain", false), ("ok", true)]);
    }

    #[test]
    fn records_that_lie_about_their_node_or_do_not_decode_are_ignored() {
        let mut liar = snap("a", 1, true, NodeStatus::Serving, &[]);
        liar.name = "b".into();
        let mut garbage = snap("c", 1, true, NodeStatus::Serving, &["web"]);
        garbage.kvs.push((service_key("api", "c"), "%%%".into()));
        garbage
            .kvs
            .push((service_key("other", "zzz"), garbage.kvs[1].1.clone()));
        let mut elsewhere = snap("d", 1, true, NodeStatus::Serving, &["web"]);
        elsewhere.addr = "10.9.9.9:7420".parse().unwrap();
        let v = build("x", &[liar, garbage, elsewhere]);
        assert!(!v.members.contains_key("b"));
        assert!(
            !v.members.contains_key("d"),
            "a record must name its own address"
        );
        assert_eq!(v.members["c"].services, ["web"]);
    }

    #[test]
    fn a_member_whose_name_no_certificate_could_hold_is_ignored() {
        let nodes = [
            snap("Upper", 1, true, NodeStatus::Serving, &["web"]),
            snap("two words", 1, true, NodeStatus::Serving, &["web"]),
            snap("ok", 1, true, NodeStatus::Serving, &["web"]),
        ];
        let v = build("x", &nodes);
        assert_eq!(v.members.keys().collect::<Vec<_>>(), ["ok"]);
        let nodes: Vec<_> = v.endpoints("web").iter().map(|e| e.node.as_str()).collect();
        assert_eq!(nodes, ["ok"]);
    }
}

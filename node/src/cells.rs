//! Which cell a node belongs to, and how it reaches the other cells.
//!
//! Members, health and heartbeats gossip only within a cell; each cell's custodians carry its
//! summary and the mesh's policy documents between cells (`murmur_membership::cells`). A node
//! without `cell` and without cell seeds is in the default cell with the link off: a single-cell
//! mesh gossips exactly as before, under the same cluster id.

use std::sync::Arc;
use std::time::Duration;

use murmur_membership::GossipSettings;
use murmur_membership::Membership;
use murmur_membership::cells::{
    CellLink, CellLinkConfig, CellSettings as LinkSettings, CellStatus as LinkStatus, DEFAULT_CELL,
    QuicTopTransport, runs_link,
};
use murmur_membership::policy::PolicySet;
use murmur_membership::policy::service::Bridge;
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::identity::Name;
use murmur_transport::tls::TlsState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Separates the mesh's cluster id from a cell's name in the cell's cluster id. A cell name is a
/// DNS label, so it never holds this character: no cell's id can equal another's or the top
/// layer's.
const CELL_SEPARATOR: char = '/';

/// Suffix of the top layer's cluster id (custodians of every cell): `<mesh>-top`, which no
/// cell of the same mesh (`<mesh>/<cell>`) can have; with the default mesh id, `murmur-top`.
const TOP_SUFFIX: &str = "-top";

/// A node's cell and its way to the other cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellSettings {
    /// The cell's name (a DNS label).
    pub name: String,
    /// Mesh addresses (`host:port`) of nodes in other cells, tried when this node becomes a
    /// custodian and knows no other cell's custodians yet.
    pub seeds: Vec<String>,
    /// Whether the cell link runs: a cell other than the default one, or seeds of other cells.
    pub linked: bool,
    /// The cluster id of the top layer.
    pub top_cluster_id: String,
}

impl CellSettings {
    /// The cell named `name` (the default cell if `None`) of mesh `mesh`, with `seeds` in
    /// other cells.
    pub fn new(name: Option<Name>, seeds: Vec<String>, mesh: &str) -> Self {
        let name = name.map_or_else(|| DEFAULT_CELL.to_owned(), |n| n.as_str().to_owned());
        Self {
            linked: runs_link(&name, &seeds),
            name,
            seeds,
            top_cluster_id: format!("{mesh}{TOP_SUFFIX}"),
        }
    }

    /// Whether this is the default cell.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_CELL
    }

    /// The cluster id the cell's own gossip uses, from the mesh's (`[gossip] cluster_id`): the
    /// mesh's own for the default cell, so a mesh that names no cell is unchanged;
    /// `<mesh>/<cell>` otherwise, so a node configured into the wrong cell is refused at its
    /// first gossip message.
    pub fn cluster_id(&self, mesh: &str) -> String {
        if self.is_default() {
            mesh.to_owned()
        } else {
            format!("{mesh}{CELL_SEPARATOR}{}", self.name)
        }
    }
}

/// What the cell link of a node is started with.
#[derive(Debug)]
pub struct LinkParts {
    /// The cell's gossip settings (the top layer gossips alike, under its own cluster id).
    pub gossip: GossipSettings,
    /// The node's cell membership.
    pub membership: Arc<Membership>,
    /// Its credentials.
    pub tls: Arc<TlsState>,
    /// Its QUIC endpoint.
    pub endpoint: MeshEndpoint,
    /// Where the top layer goes for policy to bridge documents.
    pub bridge: watch::Sender<Option<Bridge>>,
    /// The policy set, whose digest the summary carries.
    pub policy: watch::Receiver<Arc<PolicySet>>,
}

/// A running cell link and the task that follows it.
#[derive(Debug)]
pub struct Linked {
    link: Arc<CellLink>,
    follow: JoinHandle<()>,
}

impl Linked {
    /// The link's status (custodians, whether this node acts), as it changes.
    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.link.watch_status()
    }

    /// Stops following and leaves the top layer, if in it.
    pub async fn shutdown(self, linger: Duration) {
        self.follow.abort();
        let _ = self.follow.await;
        if let Ok(link) = Arc::try_unwrap(self.link) {
            link.shutdown(linger).await;
        }
    }
}

/// Starts the cell link when `settings` asks for one (`None` otherwise: a single-cell mesh
/// runs nothing new).
pub fn start(settings: &CellSettings, parts: LinkParts) -> Option<Linked> {
    if !settings.linked {
        return None;
    }
    let mut link_settings = LinkSettings::new(settings.name.clone(), &parts.gossip);
    link_settings
        .top
        .cluster_id
        .clone_from(&settings.top_cluster_id);
    let config = CellLinkConfig {
        settings: link_settings,
        top_addr: parts.endpoint.advertise_addr(),
        top_seeds: settings.seeds.clone(),
        tls: parts.tls,
        transport: Arc::new(QuicTopTransport {
            endpoint: parts.endpoint,
        }),
    };
    let link = Arc::new(CellLink::start(config, parts.membership));
    let follow = tokio::spawn(follow(link.clone(), parts.bridge, parts.policy));
    Some(Linked { link, follow })
}

/// Hands the top layer to policy whenever this node joins or leaves it, and the policy digest
/// to the summary whenever the set changes.
async fn follow(
    link: Arc<CellLink>,
    bridge: watch::Sender<Option<Bridge>>,
    mut policy: watch::Receiver<Arc<PolicySet>>,
) {
    let mut status = link.watch_status();
    // The top layer is set a moment before the status says so; look again every second.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = status.changed() => if changed.is_err() { return },
            changed = policy.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        link.set_policy_digest(digest_bytes(policy.borrow_and_update().digest()));
        let top = link.top().map(|top| Bridge { top });
        bridge.send_if_modified(|cur| {
            let same = match (cur.as_ref(), top.as_ref()) {
                (Some(a), Some(b)) => a.same(b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                cur.clone_from(&top);
            }
            !same
        });
    }
}

/// The policy set's digest (16 hex digits) as the summary's 32 bytes: its 8 bytes first, the
/// rest zero, so the first 16 hex digits of a cell's published digest read as `murmur policy`
/// shows them.
fn digest_bytes(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2).take(8)) {
        let text = std::str::from_utf8(pair).unwrap_or("");
        *byte = u8::from_str_radix(text, 16).unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(name: &str) -> CellSettings {
        CellSettings::new(
            Some(Name::parse("cell", name).unwrap()),
            Vec::new(),
            "murmur",
        )
    }

    #[test]
    fn no_cell_keeps_the_mesh_cluster_id_and_the_link_off() {
        let s = CellSettings::new(None, Vec::new(), "murmur");
        assert!(s.is_default() && !s.linked);
        assert_eq!(s.cluster_id("murmur"), "murmur");
        assert_eq!(s.top_cluster_id, "murmur-top");
    }

    #[test]
    fn a_named_cell_gossips_under_its_own_id_and_links() {
        let a = cell("eu-1");
        assert!(a.linked && !a.is_default());
        assert_eq!(a.cluster_id("murmur"), "murmur/eu-1");
        assert_ne!(a.cluster_id("murmur"), cell("eu-2").cluster_id("murmur"));
        assert_ne!(a.cluster_id("murmur"), a.top_cluster_id);
        // The default cell named explicitly is the default cell: no link, the mesh's id.
        let d = cell(DEFAULT_CELL);
        assert!(!d.linked && d.is_default());
        assert_eq!(d.cluster_id("prod"), "prod");
    }

    #[test]
    fn seeds_alone_link_the_default_cell() {
        let s = CellSettings::new(None, vec!["10.0.0.9:7420".into()], "prod");
        assert!(s.linked && s.is_default());
        assert_eq!(s.top_cluster_id, "prod-top");
    }

    #[test]
    fn the_policy_digest_leads_the_published_bytes() {
        let b = digest_bytes("00ff10a0b0c0d0e0");
        assert_eq!(b[..8], [0x00, 0xff, 0x10, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0]);
        assert!(b[8..].iter().all(|x| *x == 0));
        assert_eq!(digest_bytes("zz"), [0; 32]);
    }
}

//! The node side of policy: starting the policy service with this node's trust bundle and data
//! directory, the transport-neutral request handler shared by the admin API and the QUIC control
//! stream ([`api`]), and the control stream itself ([`control`]).

pub mod api;
pub mod control;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use murmur_membership::Membership;
use murmur_membership::policy::service::Bridge;
use murmur_membership::policy::{PolicyConfig, PolicyHandle};
use murmur_transport::tls::TlsState;
use tokio::sync::watch;

/// File in the data directory holding the winning set.
pub const FILE: &str = "policies.json";

/// Policy settings of a node (`[policy]` in the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySettings {
    /// Stamps further in the future are refused.
    pub max_skew: Duration,
    /// How long deletes are kept and republished.
    pub tombstone_retention: Duration,
    /// Nodes besides the origin that republish each document.
    pub custodians: usize,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            max_skew: Duration::from_secs(60),
            tombstone_retention: Duration::from_secs(24 * 3600),
            custodians: 3,
        }
    }
}

/// Starts the policy service for node `node`: verifies against the node's live trust bundle (so
/// a reloaded bundle applies at once) and keeps the winning set in `data_dir`; `refresh` is how
/// often it rescans gossip (the gossip interval); while `bridge` holds the top layer of cells,
/// documents are carried across cells too.
pub fn start(
    membership: &Membership,
    bridge: watch::Receiver<Option<Bridge>>,
    tls: Arc<TlsState>,
    node: &str,
    settings: &PolicySettings,
    data_dir: &Path,
    refresh: Duration,
) -> PolicyHandle {
    let mut pc = PolicyConfig::new(node.to_owned(), Arc::new(move || tls.bundle()));
    pc.max_skew = settings.max_skew;
    pc.tombstone_retention = settings.tombstone_retention;
    pc.custodians = settings.custodians;
    pc.file = Some(data_dir.join(FILE));
    pc.refresh = refresh;
    PolicyHandle::start_bridged(membership, pc, bridge)
}

//! The node side of policy: starting the policy service with this node's trust bundle and data
//! directory, the transport-neutral request handler shared by the admin API and the QUIC control
//! stream, and the client the CLI uses to reach either.

pub mod api;
pub mod client;
pub mod control;

use std::sync::Arc;
use std::time::Duration;

use murmur_membership::Membership;
use murmur_membership::policy::{PolicyConfig, PolicyHandle};
use murmur_transport::tls::TlsState;

use crate::config::Config;

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

/// Starts the policy service: verifies against the node's live trust bundle (so a reloaded
/// bundle applies at once) and keeps the winning set in the data directory.
pub fn start(membership: &Membership, config: &Config, tls: Arc<TlsState>) -> PolicyHandle {
    let mut pc = PolicyConfig::new(config.name.to_string(), Arc::new(move || tls.bundle()));
    pc.max_skew = config.policy.max_skew;
    pc.tombstone_retention = config.policy.tombstone_retention;
    pc.custodians = config.policy.custodians;
    pc.file = Some(config.data_dir.join(FILE));
    pc.refresh = config.gossip.interval;
    PolicyHandle::start(membership, pc)
}

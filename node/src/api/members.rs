//! `GET /v1/members`: members as a node sees them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_membership::MemberState;
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/members`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MembersResponse {
    /// The node that answered.
    #[serde(rename = "self")]
    pub self_name: String,
    /// Whether part of the view comes from disk rather than gossip.
    pub stale: bool,
    /// Members, sorted by name.
    pub members: Vec<MemberJson>,
}

/// One member.
#[derive(Debug, Serialize, Deserialize)]
pub struct MemberJson {
    /// Node name.
    pub name: String,
    /// QUIC address.
    pub mesh_addr: SocketAddr,
    /// Admin address, if published.
    pub admin_addr: Option<SocketAddr>,
    /// `alive`, `draining`, `left`, `dead`, or `revoked` (its certificate is revoked: every
    /// node refuses it).
    pub state: String,
    /// Incarnation.
    pub generation: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Services it serves.
    pub services: Vec<String>,
    /// Known only from the persisted view.
    pub stale: bool,
}

/// The JSON name of a member state.
pub fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Draining => "draining",
        MemberState::Left => "left",
        MemberState::Dead => "dead",
        MemberState::Joining => "joining",
    }
}

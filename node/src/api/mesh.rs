//! `GET /v1/mesh`: the whole mesh as a node sees it, in one answer — members with their
//! gossiped traffic, services with their endpoints and health. The dashboard draws this.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_membership::records::{Health, Protocol};
use serde::{Deserialize, Serialize};

use super::traffic::Direction;

/// The answer of `GET /v1/mesh`.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshResponse {
    /// The node that answered.
    pub node: String,
    /// Whether part of the view comes from disk.
    pub stale: bool,
    /// Members with their traffic.
    pub nodes: Vec<MeshNode>,
    /// Services with their endpoints.
    pub services: Vec<MeshService>,
}

/// One member.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshNode {
    /// Name.
    pub name: String,
    /// `alive`, `draining`, `left`, `dead` or `revoked`.
    pub state: String,
    /// QUIC address.
    pub mesh_addr: SocketAddr,
    /// Services it serves.
    pub services: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its traffic over the last minute, as it gossiped it.
    pub calls: Vec<MeshCall>,
    /// Its certificate, as it gossiped it.
    #[serde(default)]
    pub certificate: Option<MeshCert>,
}

/// A member's certificate, as it gossiped it.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshCert {
    /// Serial (hex).
    pub serial: String,
    /// Expiry, seconds since the epoch.
    pub not_after_unix: u64,
    /// Whether it holds a valid issuer credential.
    pub issuer: bool,
    /// How its renewals go: `off`, `waiting`, `renewed`, `no-issuer` or `failing`.
    pub renewal: String,
    /// What deserves attention (near expiry, failing to renew, expired, revoked).
    pub warning: Option<String>,
}

/// Traffic of one node for one service and direction.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshCall {
    /// Direction.
    pub direction: Direction,
    /// Service.
    pub service: String,
    /// Requests per second.
    pub rate: f64,
    /// Share of successful requests.
    pub success_rate: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
}

/// One service.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshService {
    /// Name.
    pub name: String,
    /// Instances.
    pub endpoints: Vec<MeshEndpoint>,
}

/// One instance.
#[derive(Debug, Serialize, Deserialize)]
pub struct MeshEndpoint {
    /// Serving node.
    pub node: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Health.
    pub health: Health,
    /// Whether the node is draining.
    pub draining: bool,
    /// Weight.
    pub weight: u32,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

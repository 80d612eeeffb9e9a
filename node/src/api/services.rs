//! `GET /v1/services`, `POST /v1/services`: every service in the mesh as a node sees it, and
//! runtime registration of local ones.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_membership::records::{Balancer, Health, Protocol};
use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/services`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServicesResponse {
    /// The node that answered.
    #[serde(rename = "self")]
    pub self_name: String,
    /// Services by name.
    pub services: Vec<ServiceJson>,
}

/// One service and its instances.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceJson {
    /// Name.
    pub name: String,
    /// The balancer callers use.
    pub balancer: Balancer,
    /// Instances, by node name.
    pub instances: Vec<InstanceJson>,
}

/// One instance.
#[derive(Debug, Serialize, Deserialize)]
pub struct InstanceJson {
    /// Serving node.
    pub node: String,
    /// Its QUIC address.
    pub mesh_addr: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Weight.
    pub weight: u32,
    /// Health.
    pub health: Health,
    /// The node is draining.
    pub draining: bool,
    /// Whether new requests may go there.
    pub accepts_traffic: bool,
    /// Known only from the persisted view.
    pub stale: bool,
    /// Address of the app, for instances of this node.
    pub local_address: Option<SocketAddr>,
    /// Requests this node has in flight to the instance.
    pub pending: u32,
    /// This node's peak-EWMA latency estimate for the instance, ms (absent before any call).
    pub latency_ms: Option<f64>,
}

/// The body of `POST /v1/services`; also what the node keeps on disk to restore runtime
/// registrations after a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Service name.
    pub name: Name,
    /// Address of the local instance.
    pub address: SocketAddr,
    /// Protocol (default `http`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Weight (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Balancer (default `p2c-ewma`).
    #[serde(default)]
    pub balancer: Option<Balancer>,
}

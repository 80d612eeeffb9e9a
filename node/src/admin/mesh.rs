//! `GET /v1/mesh`: the whole mesh as this node sees it, in one answer — members with their
//! gossiped traffic, services with their endpoints and health. The dashboard draws this.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use murmur_membership::records::{Health, Protocol};
use serde::{Deserialize, Serialize};

use super::http::{Body, json};
use super::members::state_name;
use crate::node::NodeContext;
use crate::telemetry::mesh::{TRAFFIC_EXTENSION, decode};
use crate::telemetry::traffic::Direction;

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
    /// `alive`, `draining`, `left`, `dead`.
    pub state: String,
    /// QUIC address.
    pub mesh_addr: SocketAddr,
    /// Services it serves.
    pub services: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its traffic over the last minute, as it gossiped it.
    pub calls: Vec<MeshCall>,
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

/// Answers `GET /v1/mesh`.
pub fn get(ctx: &NodeContext) -> hyper::Response<Body> {
    let view = ctx.membership.view();
    let nodes = view
        .members
        .values()
        .map(|m| MeshNode {
            name: m.name.clone(),
            state: state_name(m.state).into(),
            mesh_addr: m.mesh_addr,
            services: m.services.clone(),
            labels: m.labels.clone(),
            calls: m
                .extensions
                .get(TRAFFIC_EXTENSION)
                .and_then(|v| decode(v))
                .map(|r| {
                    r.calls
                        .into_iter()
                        .map(|c| MeshCall {
                            direction: c.direction,
                            service: c.service,
                            rate: f64::from(c.rate_milli) / 1000.0,
                            success_rate: f64::from(c.success_permille) / 1000.0,
                            p99_ms: f64::from(c.p99_us) / 1000.0,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let services = view
        .services
        .iter()
        .map(|(name, eps)| MeshService {
            name: name.clone(),
            endpoints: eps
                .iter()
                .map(|e| MeshEndpoint {
                    node: e.node.clone(),
                    protocol: e.protocol,
                    health: e.health,
                    draining: e.draining,
                    weight: e.weight,
                    labels: e.labels.clone(),
                })
                .collect(),
        })
        .collect();
    json(
        200,
        &MeshResponse {
            node: view.self_name.clone(),
            stale: view.stale,
            nodes,
            services,
        },
    )
}

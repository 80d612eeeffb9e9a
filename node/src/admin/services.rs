//! `GET /v1/services`, `POST /v1/services`, `DELETE /v1/services/<name>`: every service in the
//! mesh as this node sees it, and runtime registration of local ones.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use murmur_membership::records::{Balancer, Health, Protocol};
use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::http::{Body, error, json};
use crate::config::ServiceConfig;
use crate::node::NodeContext;
use crate::services::ServiceError;

/// Largest registration body accepted.
const MAX_BODY: usize = 64 * 1024;

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

impl RegisterRequest {
    /// The service this registration describes.
    pub fn to_config(&self) -> ServiceConfig {
        ServiceConfig::with_defaults(
            self.name.clone(),
            self.address,
            self.labels.clone(),
            self.protocol,
            self.weight,
            self.balancer,
        )
    }
}

/// Lists every service the view knows.
pub fn list(ctx: &NodeContext) -> hyper::Response<Body> {
    let view = ctx.membership.view();
    let local = ctx.services.snapshot();
    let services = view
        .services
        .iter()
        .filter(|(_, eps)| !eps.is_empty())
        .map(|(name, eps)| (name, eps, ctx.proxy.balancers.snapshot(name)))
        .map(|(name, eps, loads)| ServiceJson {
            name: name.clone(),
            balancer: eps[0].balancer,
            instances: eps
                .iter()
                .map(|e| InstanceJson {
                    node: e.node.clone(),
                    mesh_addr: e.mesh_addr,
                    protocol: e.protocol,
                    labels: e.labels.clone(),
                    weight: e.weight,
                    health: e.health,
                    draining: e.draining,
                    accepts_traffic: e.accepts_new_traffic(),
                    stale: e.stale,
                    local_address: (e.node == view.self_name)
                        .then(|| local.get(name).map(|s| s.address))
                        .flatten(),
                    pending: loads.iter().find(|l| l.0 == e.node).map_or(0, |l| l.1),
                    latency_ms: loads.iter().find(|l| l.0 == e.node).map(|l| l.2),
                })
                .collect(),
        })
        .collect();
    json(
        200,
        &ServicesResponse {
            self_name: view.self_name.clone(),
            services,
        },
    )
}

/// Registers (or replaces) a local service.
pub async fn register(ctx: &NodeContext, body: Incoming) -> hyper::Response<Body> {
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(400, &format!("cannot read the request: {e}")),
    };
    let req: RegisterRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("invalid registration: {e}")),
    };
    let name = req.name.to_string();
    match ctx
        .services
        .register_runtime(req, &ctx.tls.local_cert(), &ctx.membership)
        .await
    {
        Ok(()) => json(200, &serde_json::json!({ "registered": name })),
        Err(e) => error(status_of(&e), &e.to_string()),
    }
}

/// Deregisters a local service.
pub async fn deregister(ctx: &NodeContext, name: &str) -> hyper::Response<Body> {
    match ctx.services.deregister(name, &ctx.membership).await {
        Ok(()) => json(200, &serde_json::json!({ "deregistered": name })),
        Err(e) => error(status_of(&e), &e.to_string()),
    }
}

fn status_of(e: &ServiceError) -> u16 {
    match e {
        ServiceError::NotInCertificate { .. } => 403,
        ServiceError::Unknown(_) => 404,
        ServiceError::Publish { .. } => 500,
    }
}

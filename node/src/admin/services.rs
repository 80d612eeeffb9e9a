//! `GET /v1/services`, `POST /v1/services`, `DELETE /v1/services/<name>`: every service in the
//! mesh as this node sees it, and runtime registration of local ones.

use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::http::{Body, error, json};
use super::state::AdminState;
use crate::api::services::{InstanceJson, RegisterRequest, ServiceJson, ServicesResponse};
use crate::services::ServiceError;

/// Largest registration body accepted.
const MAX_BODY: usize = 64 * 1024;

/// Lists every service the view knows.
pub fn list(state: &AdminState) -> hyper::Response<Body> {
    let view = state.membership.view();
    let local = state.services.snapshot();
    let services = view
        .services
        .iter()
        .filter(|(_, eps)| !eps.is_empty())
        .map(|(name, eps)| (name, eps, state.balancers.snapshot(name)))
        .map(|(name, eps, loads)| ServiceJson {
            name: name.clone(),
            balancer: eps[0].balancer,
            instances: eps
                .iter()
                .map(|e| InstanceJson {
                    node: e.node.to_string(),
                    mesh_addr: e.mesh_addr,
                    protocol: e.protocol,
                    labels: e.labels.clone(),
                    weight: e.weight,
                    health: e.health,
                    draining: e.draining,
                    accepts_traffic: e.accepts_new_traffic(),
                    stale: e.stale,
                    local_address: (e.node.as_str() == view.self_name)
                        .then(|| local.get(name).map(|s| s.address))
                        .flatten(),
                    pending: loads
                        .iter()
                        .find(|l| l.0 == e.node.as_str())
                        .map_or(0, |l| l.1),
                    latency_ms: loads.iter().find(|l| l.0 == e.node.as_str()).map(|l| l.2),
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
pub async fn register(state: &AdminState, body: Incoming) -> hyper::Response<Body> {
    let bytes = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(400, &format!("cannot read the request: {e}")),
    };
    let req: RegisterRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("invalid registration: {e}")),
    };
    let name = req.name.to_string();
    match state
        .services
        .register_runtime(req, &state.tls.local_cert(), &state.membership)
        .await
    {
        Ok(()) => json(200, &serde_json::json!({ "registered": name })),
        Err(e) => error(status_of(&e), &e.to_string()),
    }
}

/// Deregisters a local service.
pub async fn deregister(state: &AdminState, name: &str) -> hyper::Response<Body> {
    match state.services.deregister(name, &state.membership).await {
        Ok(()) => json(200, &serde_json::json!({ "deregistered": name })),
        Err(e) => error(status_of(&e), &e.to_string()),
    }
}

fn status_of(e: &ServiceError) -> u16 {
    match e {
        ServiceError::NotInCertificate { .. } => 403,
        ServiceError::Unknown(_) => 404,
        ServiceError::Configured(_) => 409,
        ServiceError::Publish { .. } => 500,
    }
}

//! `GET /v1/mesh`: the whole mesh as this node sees it, in one answer — members with their
//! gossiped traffic, services with their endpoints and health. The dashboard draws this.

use std::collections::BTreeMap;

use super::http::{Body, json};
use super::state::AdminState;
use crate::api::members::state_name;
use crate::api::mesh::{MeshCall, MeshCert, MeshEndpoint, MeshNode, MeshResponse, MeshService};
use crate::identity::warnings::{MemberCert, assess};
use crate::telemetry::mesh::{TRAFFIC_EXTENSION, decode};

/// Answers `GET /v1/mesh`.
pub fn get(state: &AdminState) -> hyper::Response<Body> {
    let view = state.membership.view();
    let now_ms = crate::clock::unix_now_ms();
    let certs: BTreeMap<String, MemberCert> = assess(&view, &state.tls.revocations(), now_ms)
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let nodes = view
        .members
        .values()
        .map(|m| MeshNode {
            name: m.name.clone(),
            state: match certs.get(&m.name) {
                Some(c) if c.revoked => "revoked".into(),
                _ => state_name(m.state).into(),
            },
            certificate: certs.get(&m.name).and_then(|c| mesh_cert(c, now_ms)),
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
                    node: e.node.to_string(),
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

fn mesh_cert(c: &MemberCert, now_ms: u64) -> Option<MeshCert> {
    let r = c.record.as_ref()?;
    Some(MeshCert {
        serial: r.serial.clone(),
        not_after_unix: r.not_after_ms / 1000,
        issuer: r.issuer_until_ms.is_some_and(|u| u > now_ms),
        renewal: r.renewal.label().to_owned(),
        warning: c.warning.as_ref().map(|w| w.message()),
    })
}

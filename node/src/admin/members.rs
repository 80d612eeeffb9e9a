//! `GET /v1/members`

use murmur_membership::MemberState;

use super::http::{Body, json};
use super::state::AdminState;
use crate::api::flag;
use crate::api::members::{MemberJson, MembersResponse, state_name};
use crate::identity::warnings::assess;

/// Lists members; those that left only with `all=true`.
pub fn list(state: &AdminState, query: Option<&str>) -> hyper::Response<Body> {
    let all = flag(query, "all");
    let view = state.membership.view();
    let revoked: std::collections::BTreeSet<String> =
        assess(&view, &state.tls.revocations(), crate::clock::unix_now_ms())
            .into_iter()
            .filter(|c| c.revoked)
            .map(|c| c.name)
            .collect();
    let members = view
        .members
        .values()
        .filter(|m| all || m.state != MemberState::Left)
        .map(|m| MemberJson {
            name: m.name.clone(),
            mesh_addr: m.mesh_addr,
            admin_addr: m.admin_addr,
            state: if revoked.contains(&m.name) {
                "revoked".into()
            } else {
                state_name(m.state).into()
            },
            generation: m.generation,
            labels: m.labels.clone(),
            services: m.services.clone(),
            stale: m.stale,
        })
        .collect();
    json(
        200,
        &MembersResponse {
            self_name: view.self_name.clone(),
            stale: view.stale,
            members,
        },
    )
}

//! The policy requests of the admin API, independent of how they arrived (HTTP on the admin
//! port, or a control stream over QUIC). JSON in, JSON out; the JSON types are in
//! [`crate::api::policies`].

use std::sync::Arc;

use murmur_membership::Membership;
use murmur_membership::policy::service::now_ms;
use murmur_membership::policy::{
    ApplyError, ApplyResult, Kind, PolicyDocument, PolicyHandle, PolicyStatus,
};
use serde::Serialize;

use crate::api::flag;
use crate::api::policies::{
    ApplyRequest, ApplyResponse, ApplyResultJson, DocumentJson, PoliciesResponse,
};

/// Largest request body accepted (a batch of signed documents).
pub const MAX_REQUEST: usize = 1 << 20;

/// What the policy endpoints work with.
#[derive(Clone, Debug)]
pub struct PolicyApi {
    /// The policy service.
    pub policy: PolicyHandle,
    /// Gossip, to spread an apply at once rather than at the next round.
    pub membership: Arc<Membership>,
    /// This node's name.
    pub node: String,
}

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Answer {
    fn json<T: Serialize>(status: u16, value: &T) -> Self {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Self { status, body },
            Err(e) => Self::error(500, &format!("cannot encode the answer: {e}")),
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// Answers one policy request.
pub async fn handle(
    api: &PolicyApi,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Answer {
    match (method, path.strip_prefix("/v1/policies")) {
        ("GET", Some("")) => list(&api.policy.status(), flag(query, "all")),
        ("GET", Some(rest)) => match rest.strip_prefix('/').and_then(|r| r.split_once('/')) {
            Some((kind, name)) => get(&api.policy.status(), kind, name),
            None => Answer::error(404, &format!("no such endpoint: {path}")),
        },
        ("POST", Some("")) => apply(api, body).await,
        (_, Some(_)) => Answer::error(405, "method not allowed"),
        (_, None) => Answer::error(404, &format!("no such endpoint: {path}")),
    }
}

fn list(status: &PolicyStatus, all: bool) -> Answer {
    let documents = status
        .winners
        .iter()
        .filter(|d| all || !d.is_tombstone())
        .map(document_json)
        .collect();
    Answer::json(
        200,
        &PoliciesResponse {
            node: status.node.clone(),
            clock: status.clock.read(now_ms()),
            digest: status.effective.digest().to_owned(),
            count: status.effective.len(),
            rejected: status
                .rejected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            rejected_total: status.rejected_total(),
            documents,
        },
    )
}

fn get(status: &PolicyStatus, kind: &str, name: &str) -> Answer {
    let Some(kind) = Kind::parse(kind) else {
        return Answer::error(
            404,
            &format!("unknown kind {kind:?}; the kinds are {}", Kind::all_names()),
        );
    };
    match status
        .winners
        .iter()
        .find(|d| d.kind() == kind && d.name().as_str() == name)
    {
        Some(d) => Answer::json(200, &document_json(d)),
        None => Answer::error(404, &format!("no {kind} named {name:?}")),
    }
}

/// The JSON form of a document.
pub fn document_json(d: &Arc<PolicyDocument>) -> DocumentJson {
    DocumentJson {
        kind: d.kind(),
        name: d.name().to_string(),
        service: d.body().and_then(|b| b.service()).map(|s| s.to_string()),
        stamp: d.stamp().clone(),
        signer: d.signer().to_string(),
        hash: d.short_hash(),
        deleted: d.is_tombstone(),
        body: d
            .body()
            .and_then(|b| serde_json::from_str(&b.to_json()).ok()),
    }
}

async fn apply(api: &PolicyApi, body: &[u8]) -> Answer {
    let req: ApplyRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return Answer::error(400, &format!("not an apply request: {e}")),
    };
    let dry_run = req.dry_run;
    match api.policy.apply(req.documents, dry_run).await {
        Ok(results) => {
            if !dry_run {
                // Push the news now rather than at the next gossip round.
                api.membership.announce().await;
            }
            Answer::json(
                200,
                &ApplyResponse {
                    node: api.node.clone(),
                    dry_run,
                    digest: api.policy.current().digest().to_owned(),
                    results: results.iter().map(result_json).collect(),
                },
            )
        }
        Err(e) => {
            let status = match e {
                ApplyError::Stale { .. } => 409,
                ApplyError::Stopped => 503,
                _ => 400,
            };
            Answer::error(status, &e.to_string())
        }
    }
}

fn result_json(r: &ApplyResult) -> ApplyResultJson {
    ApplyResultJson {
        kind: r.kind,
        name: r.name.clone(),
        outcome: r.outcome.as_str().to_owned(),
        stamp: r.stamp.clone(),
        previous: r.previous.clone(),
    }
}

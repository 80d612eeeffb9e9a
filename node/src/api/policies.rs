//! `/v1/policies`: policy documents, digest, apply — on the admin port and over the control
//! stream alike.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/v1/policies[?all=true]` | [`PoliciesResponse`] |
//! | GET | `/v1/policies/<kind>/<name>` | [`DocumentJson`] |
//! | POST | `/v1/policies` | [`ApplyRequest`] → [`ApplyResponse`] |

use std::collections::BTreeMap;

use murmur_membership::policy::{Hlc, Kind, Stamp};
use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/policies`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoliciesResponse {
    /// The node that answered.
    pub node: String,
    /// Its clock: a new version must be stamped above this.
    pub clock: Hlc,
    /// Digest of the effective set.
    pub digest: String,
    /// Documents in force.
    pub count: usize,
    /// Documents refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// All refusals.
    pub rejected_total: u64,
    /// The documents (with `all=true`, deletes too).
    pub documents: Vec<DocumentJson>,
}

/// One document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DocumentJson {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Service it applies to (none for a delete, a revocation or a token's use).
    pub service: Option<String>,
    /// Stamp.
    pub stamp: Stamp,
    /// Who signed it (an operator; for a token's use, the issuer node).
    pub signer: String,
    /// Content hash (16 hex digits).
    pub hash: String,
    /// Whether it is a delete.
    pub deleted: bool,
    /// The body (none for a delete).
    pub body: Option<serde_json::Value>,
}

/// The body of `POST /v1/policies`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// Signed documents as gossiped (`murmur_membership::policy::sign`).
    pub documents: Vec<String>,
    /// Check and report only.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer of `POST /v1/policies`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// The node that took it.
    pub node: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Digest of the effective set afterwards.
    pub digest: String,
    /// One per document, in order.
    pub results: Vec<ApplyResultJson>,
}

/// What happened to one document.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResultJson {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// `created`, `updated`, `deleted`, `unchanged` or `absent`.
    pub outcome: String,
    /// Stamp of the version handed in.
    pub stamp: Stamp,
    /// Stamp of the version it replaced.
    pub previous: Option<Stamp>,
}

/// Whether `path` is one of the policy endpoints.
pub fn is_policy_path(path: &str) -> bool {
    path == "/v1/policies" || path.starts_with("/v1/policies/")
}

//! The JSON of the admin API and the CLI: every request and answer type, in one place that the
//! node, the CLI, the end-to-end tests and the fuzz targets share. Types only: nothing here
//! knows how a node runs.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/mesh` | [`mesh::MeshResponse`] |
//! | GET | `/v1/members[?all=true]` | [`members::MembersResponse`] |
//! | GET | `/v1/traffic` | [`traffic::TrafficResponse`] |
//! | POST | `/v1/drain` | [`drain::DrainReport`] |
//! | GET | `/v1/status` | [`status::StatusResponse`] |
//! | GET, POST | `/v1/policies[/<kind>/<name>]` | [`policies`] |
//! | GET, POST | `/v1/services` | [`services::ServicesResponse`], [`services::RegisterRequest`] |
//!
//! Also here: the line format of the access log ([`accesslog::AccessLogEntry`]).

pub mod accesslog;
pub mod drain;
pub mod members;
pub mod mesh;
pub mod policies;
pub mod services;
pub mod status;
pub mod traffic;

/// Whether `query` has `key=true` (or `key=1`).
pub fn flag(query: Option<&str>, key: &str) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .any(|(k, v)| k == key && (v == "true" || v == "1"))
}

//! One line of the access log: a JSON object per request, written by the calling node
//! (`direction: "outbound"`) and by the serving node (`"inbound"`) of a service whose requests
//! are logged. Fields a side does not know are `null`.

use serde::{Deserialize, Serialize};

/// One request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessLogEntry {
    /// When the request arrived, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// `outbound` (this node called) or `inbound` (this node's app was called).
    pub direction: String,
    /// The SPIFFE ID of the calling node: this node for `outbound`, the peer's verified
    /// certificate for `inbound`.
    pub caller: String,
    /// The service addressed.
    pub service: String,
    /// The route document taken (`outbound` only).
    pub route: Option<String>,
    /// The node whose instance answered (`-` if none did).
    pub node: String,
    /// Method.
    pub method: String,
    /// Path and query, as the app received it (normalized, rewritten).
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// gRPC status (`UNAVAILABLE`), from the response headers or trailers.
    pub grpc_status: Option<String>,
    /// Request body bytes (`inbound` only: what reached the app).
    pub request_bytes: Option<u64>,
    /// Response body bytes.
    pub response_bytes: u64,
    /// From the request's arrival to the end of its response, milliseconds.
    pub duration_ms: f64,
    /// Retries sent (`outbound` only).
    pub retries: Option<u32>,
    /// The `x-murmur-error` of an answer the mesh made itself.
    pub error: Option<String>,
    /// The W3C trace id, when the request carries a trace context.
    pub trace_id: Option<String>,
    /// The request was cut short: the response did not end normally.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

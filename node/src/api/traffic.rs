//! `GET /v1/traffic`: request rate, success rate and latency per service over the last minute.

use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/traffic`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrafficResponse {
    /// The node that answered.
    pub node: String,
    /// Length of the window, seconds.
    pub window_s: u64,
    /// One entry per direction and service seen.
    pub services: Vec<TrafficSummary>,
}

/// Which side of the mesh a request was seen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the local app to a remote service.
    Outbound,
    /// From a remote caller to the local app.
    Inbound,
}

impl Direction {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// Figures for one direction and service over the window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficSummary {
    /// Direction.
    pub direction: Direction,
    /// Service.
    pub service: String,
    /// Requests in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// Share of requests that did not fail (1.0 when there were none).
    pub success_rate: f64,
    /// Median latency, milliseconds (upper bound of its bucket).
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds (upper bound of its bucket).
    pub p99_ms: f64,
}

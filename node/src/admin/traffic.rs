//! `GET /v1/traffic`: request rate, success rate and latency per service over the last minute.

use serde::{Deserialize, Serialize};

use super::http::{Body, json};
use crate::node::NodeContext;
use crate::telemetry::traffic::{TrafficSummary, WINDOW_SECS};
use crate::telemetry::unix_now;

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

/// Answers `GET /v1/traffic`.
pub fn get(ctx: &NodeContext) -> hyper::Response<Body> {
    json(
        200,
        &TrafficResponse {
            node: ctx.config.name.to_string(),
            window_s: WINDOW_SECS,
            services: ctx.telemetry.traffic.summaries(unix_now()),
        },
    )
}

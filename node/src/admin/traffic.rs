//! `GET /v1/traffic`: request rate, success rate and latency per service over the last minute.

use super::http::{Body, json};
use super::state::AdminState;
use crate::api::traffic::TrafficResponse;
use crate::clock::unix_now;
use crate::telemetry::traffic::WINDOW_SECS;

/// Answers `GET /v1/traffic`.
pub fn get(state: &AdminState) -> hyper::Response<Body> {
    json(
        200,
        &TrafficResponse {
            node: state.node.name.clone(),
            window_s: WINDOW_SECS,
            services: state.telemetry.traffic.summaries(unix_now()),
        },
    )
}

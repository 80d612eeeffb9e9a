//! Each node gossips a small summary of its traffic, so any node can draw the whole mesh: who
//! calls which service, how often, how well. No collector, no control plane.

use std::sync::Arc;
use std::time::Duration;

use murmur_membership::GossipKeys;
use murmur_membership::records::{self, RECORD_VERSION};
use murmur_membership::view::EXTENSION_PREFIX;
use serde::{Deserialize, Serialize};

use super::requests::Telemetry;
use crate::api::traffic::{Direction, TrafficSummary};
use crate::clock::unix_now;

/// Key (without the extension prefix) of the traffic summary.
pub const TRAFFIC_EXTENSION: &str = "traffic";
/// How often the summary is refreshed.
const EVERY: Duration = Duration::from_secs(5);
/// Services per summary: keeps the gossiped value small.
const MAX_ENTRIES: usize = 64;

/// One direction and service in a node's summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Outbound (this node's app calls the service) or inbound (this node serves it).
    pub direction: Direction,
    /// Service.
    pub service: String,
    /// Requests per second × 1000.
    pub rate_milli: u32,
    /// Success rate × 1000.
    pub success_permille: u16,
    /// p99 latency, microseconds.
    pub p99_us: u32,
}

/// A node's gossiped traffic summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRecord {
    /// Record version.
    pub version: u16,
    /// Calls over the last minute.
    pub calls: Vec<CallRecord>,
}

/// The record for these summaries (services idle for the whole window are left out).
pub fn record_of(summaries: &[TrafficSummary]) -> TrafficRecord {
    let calls = summaries
        .iter()
        .filter(|s| s.requests > 0)
        .take(MAX_ENTRIES)
        .map(|s| CallRecord {
            direction: s.direction,
            service: s.service.clone(),
            rate_milli: (s.rate * 1000.0).round() as u32,
            success_permille: (s.success_rate * 1000.0).round() as u16,
            p99_us: (s.p99_ms * 1000.0).round() as u32,
        })
        .collect();
    TrafficRecord {
        version: RECORD_VERSION,
        calls,
    }
}

/// Republishes this node's summary whenever it changes, until the task is dropped.
pub async fn publish_loop(telemetry: Arc<Telemetry>, keys: GossipKeys) {
    let key = format!("{EXTENSION_PREFIX}{TRAFFIC_EXTENSION}");
    let mut last: Option<TrafficRecord> = None;
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let record = record_of(&telemetry.traffic.summaries(unix_now()));
        if last.as_ref() == Some(&record) {
            continue;
        }
        if let Ok(value) = records::encode(&record) {
            keys.set(&key, &value).await;
            last = Some(record);
        }
    }
}

/// Decodes another node's summary, if it published a valid one.
pub fn decode(value: &str) -> Option<TrafficRecord> {
    records::decode(value).ok()
}

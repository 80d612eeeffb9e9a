//! Each node gossips a small summary of its traffic, so any node can draw the whole mesh: who
//! calls which service, how often, how well. No collector, no control plane.

use std::sync::Arc;
use std::time::Duration;

use murmur_membership::GossipKeys;
use murmur_membership::records::{self, RECORD_VERSION};
use murmur_membership::view::EXTENSION_PREFIX;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::requests::{Telemetry, UNKNOWN_SERVICE};
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

/// The record for these summaries: the busiest calls first (services idle for the whole
/// window, and requests for unknown services, are left out).
pub fn record_of(summaries: &[TrafficSummary]) -> TrafficRecord {
    let mut busy: Vec<&TrafficSummary> = summaries
        .iter()
        .filter(|s| s.requests > 0 && s.service != UNKNOWN_SERVICE)
        .collect();
    busy.sort_by(|a, b| b.rate.total_cmp(&a.rate));
    let calls = busy
        .into_iter()
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
        let (value, kept) = fitting(record.clone());
        keys.set(&key, &value).await;
        last = Some(record);
        if kept.is_some() {
            debug!(?kept, "traffic summary cut to fit one gossip value");
        }
    }
}

/// `record` encoded within the gossip value limit: the least busy calls are dropped until it
/// fits (the summary must keep updating, however many services a node calls). Also returns
/// how many calls were kept when some were dropped.
pub fn fitting(mut record: TrafficRecord) -> (String, Option<usize>) {
    let whole = record.calls.len();
    loop {
        match records::encode(&record) {
            Ok(value) => {
                return (
                    value,
                    (record.calls.len() < whole).then_some(record.calls.len()),
                );
            }
            Err(_) if !record.calls.is_empty() => {
                record.calls.pop();
            }
            // An empty record always fits; nothing else can fail.
            Err(_) => return (String::new(), Some(0)),
        }
    }
}

/// Decodes another node's summary, if it published a valid one.
pub fn decode(value: &str) -> Option<TrafficRecord> {
    records::decode(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(service: String, rate: f64) -> TrafficSummary {
        TrafficSummary {
            direction: Direction::Outbound,
            service,
            requests: 10,
            rate,
            success_rate: 1.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
        }
    }

    #[test]
    fn the_summary_always_fits_one_value_and_keeps_the_busiest_calls() {
        // Long service names, many of them, and requests for unknown services.
        let mut all: Vec<TrafficSummary> = (0..200)
            .map(|i| summary(format!("{i:0>150}"), f64::from(i)))
            .collect();
        all.push(summary(UNKNOWN_SERVICE.into(), 1e9));
        let record = record_of(&all);
        assert!(record.calls.iter().all(|c| c.service != UNKNOWN_SERVICE));
        let (value, kept) = fitting(record);
        assert!(value.len() <= records::MAX_BODY_BYTES, "{}", value.len());
        let kept = kept.expect("some calls had to go");
        let back: TrafficRecord = records::decode(&value).unwrap();
        assert_eq!(back.calls.len(), kept);
        assert!(back.calls.len() > 10);
        assert_eq!(back.calls[0].service, format!("{:0>150}", 199));
        let (_, none_dropped) = fitting(record_of(&all[..3]));
        assert_eq!(none_dropped, None);
    }
}

//! The access log line of an inbound request: begun from its head, completed with how it ended.

use std::time::Instant;

use murmur_transport::identity::PeerIdentity;

use crate::api::accesslog::AccessLogEntry;
use crate::api::traffic::Direction;
use crate::proxy::frame::RequestHead;
use crate::proxy::runtime::Proxy;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::trace_id_of;

/// What went back to the caller, for the access log.
#[derive(Debug, Default)]
pub struct Seen {
    /// Response body bytes.
    pub bytes: u64,
    /// The `x-murmur-error` of a reply made here.
    pub error: Option<&'static str>,
    /// Whether the response body is to be watched (the request is logged).
    pub watch: bool,
}

/// The line of one request, as far as its head tells, and when it arrived.
#[derive(Debug)]
pub struct Line {
    arrived: u64,
    entry: AccessLogEntry,
}

impl Line {
    /// Begins the line of `head`, a request from `peer` for `service` on `node`.
    pub fn begin(
        peer: &PeerIdentity,
        service: &str,
        head: &RequestHead,
        traceparent: Option<&str>,
        node: &str,
    ) -> Self {
        let entry = AccessLogEntry {
            direction: Direction::Inbound.as_str().to_owned(),
            caller: peer.id.to_string(),
            service: service.to_owned(),
            node: node.to_owned(),
            method: head.method.clone(),
            path: head.path.clone(),
            request_bytes: head.body.length(),
            trace_id: traceparent.and_then(trace_id_of).map(str::to_owned),
            ..AccessLogEntry::default()
        };
        Self {
            arrived: crate::clock::unix_now_ms(),
            entry,
        }
    }

    /// Completes the line with how the request ended and queues it.
    pub fn finish(self, proxy: &Proxy, outcome: Outcome, seen: &Seen, started: Instant) {
        let mut entry = self.entry;
        (entry.status, entry.grpc_status) = outcome.statuses();
        entry.incomplete = matches!(outcome, Outcome::Error);
        entry.response_bytes = seen.bytes;
        entry.error = seen.error.map(str::to_owned);
        entry.duration_ms = crate::clock::now()
            .saturating_duration_since(started)
            .as_micros() as f64
            / 1000.0;
        proxy.telemetry.access_log.send(self.arrived, entry);
    }
}

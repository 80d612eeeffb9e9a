//! Per-request accounting: the request metric families, and a guard per request that feeds
//! them and the one-minute traffic windows.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use murmur_membership::policy::spec::GrpcCode;
use tokio::time::Instant;

use super::accesslog::AccessLog;
use super::metrics::{Counter, Family, Gauge, Histogram};
use super::stats::{ServiceStats, StatsMap};
use super::traffic::Traffic;
use crate::api::traffic::Direction;
use crate::clock::{unix_now, unix_now_ms};

/// The service label of requests for a service this node does not know (inbound: does not
/// serve; outbound: the mesh does not list): peers and apps can name any service, so labels
/// and traffic windows never take names from them unchecked.
pub const UNKNOWN_SERVICE: &str = "_unknown";

/// Request metrics of a node.
#[derive(Debug)]
pub struct Telemetry {
    /// Finished requests.
    pub requests: Family<Counter>,
    /// Request latency.
    pub duration: Family<Histogram>,
    /// Requests in progress.
    pub in_flight: Family<Gauge>,
    /// Retries sent.
    pub retries: Family<Counter>,
    /// Requests refused by a rate limit.
    pub rate_limited: Family<Counter>,
    /// Requests refused by authorization.
    pub denied: Family<Counter>,
    /// Requests an authorization policy in shadow mode would have refused.
    pub shadow_denied: Family<Counter>,
    /// Timeouts that fired, by kind.
    pub timeouts: Family<Counter>,
    /// Retries refused by the retry budget.
    pub retry_budget_exhausted: Family<Counter>,
    /// Endpoints ejected by outlier detection.
    pub ejections: Family<Counter>,
    /// Requests refused by a circuit's `max_pending`.
    pub overloaded: Family<Counter>,
    /// Faults injected by routes.
    pub faults: Family<Counter>,
    /// Finished requests that took a route, by route.
    pub route_requests: Family<Counter>,
    /// Latency of requests that took a route, by route.
    pub route_duration: Family<Histogram>,
    /// Attempts sent to an instance in another zone than this node's.
    pub cross_zone: Family<Counter>,
    /// Mirrored copies of requests, by what became of them.
    pub mirrored: Family<Counter>,
    /// The access log.
    pub access_log: AccessLog,
    /// Queries the node's DNS answered, by answer.
    pub dns_queries: Family<Counter>,
    /// Connections the capture rules brought, accepted or refused.
    pub captured: Family<Counter>,
    /// Requests for hosts outside the mesh, by kind and decision.
    pub external: Family<Counter>,
    /// Requests the gateway took from outside the mesh, by what it did with them.
    pub gateway_requests: Family<Counter>,
    /// Connections to the gateway that ended before HTTP, by why; and certificate reloads.
    pub gateway_connections: Family<Counter>,
    /// One-minute summaries.
    pub traffic: Traffic,
    /// The handles each service's requests feed, resolved once per service.
    pub stats: StatsMap,
    /// Inbound requests (and TCP connections) in progress, all services together.
    pub inbound_in_flight: AtomicI64,
    /// When the last inbound request started, ms since the Unix epoch (0: never).
    pub last_inbound_ms: AtomicU64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self {
            requests: Family::new(
                "murmur_requests_total",
                "Proxied requests by direction, service, peer node, status class and gRPC status \
                 (a gRPC call is classed by its grpc-status).",
                &[
                    "direction",
                    "service",
                    "peer",
                    "status_class",
                    "grpc_status",
                ],
            ),
            duration: Family::new(
                "murmur_request_duration_seconds",
                "Latency of proxied requests, from first byte in to response head out.",
                &["direction", "service"],
            ),
            in_flight: Family::new(
                "murmur_requests_in_flight",
                "Proxied requests in progress.",
                &["direction", "service"],
            ),
            retries: Family::new("murmur_retries_total", "Retries sent.", &["service"]),
            rate_limited: Family::new(
                "murmur_rate_limited_total",
                "Requests answered 429 by a rate limit.",
                &["service"],
            ),
            denied: Family::new(
                "murmur_denied_total",
                "Requests answered 403 by an authorization policy.",
                &["service", "rule"],
            ),
            shadow_denied: Family::new(
                "murmur_shadow_denied_total",
                "Requests an authorization policy in shadow mode would have denied.",
                &["service", "rule"],
            ),
            timeouts: Family::new(
                "murmur_timeouts_total",
                "Requests answered 504 by a timeout policy, by the timeout that fired.",
                &["service", "timeout"],
            ),
            retry_budget_exhausted: Family::new(
                "murmur_retry_budget_exhausted_total",
                "Retries the retry policy wanted but its budget refused.",
                &["service"],
            ),
            ejections: Family::new(
                "murmur_ejections_total",
                "Endpoints ejected by outlier detection (circuit policy).",
                &["service", "peer"],
            ),
            overloaded: Family::new(
                "murmur_overloaded_total",
                "Requests answered 503 because max_pending requests were in flight.",
                &["service"],
            ),
            faults: Family::new(
                "murmur_faults_injected_total",
                "Faults injected by route policies.",
                &["service", "route", "fault"],
            ),
            route_requests: Family::new(
                "murmur_route_requests_total",
                "Requests that took a route document, by route and status class.",
                &["service", "route", "status_class"],
            ),
            route_duration: Family::new(
                "murmur_route_request_duration_seconds",
                "Latency of requests that took a route document, to the response head.",
                &["service", "route"],
            ),
            cross_zone: Family::new(
                "murmur_cross_zone_requests_total",
                "Requests (attempts) sent to an instance in another zone than this node's, by \
                 the instance's zone.",
                &["service", "zone"],
            ),
            mirrored: Family::new(
                "murmur_mirrored_requests_total",
                "Copies of requests made by a route's mirror: sent (answered), failed, or \
                 skipped (no instance, body not kept, too many in flight).",
                &["service", "route", "outcome"],
            ),
            access_log: AccessLog::default(),
            dns_queries: Family::new(
                "murmur_dns_queries_total",
                "DNS queries answered: vip, nxdomain, nodata (mesh names), forwarded, refused \
                 (no upstream), overloaded, malformed.",
                &["answer"],
            ),
            captured: Family::new(
                "murmur_captured_connections_total",
                "Connections redirected to the node by capture: accepted, or refused (no \
                 service at the address).",
                &["result"],
            ),
            external: Family::new(
                "murmur_external_requests_total",
                "CONNECT and absolute-form requests for hosts outside the mesh.",
                &["kind", "decision"],
            ),
            gateway_requests: Family::new(
                "murmur_gateway_requests_total",
                "Requests the gateway took from outside the mesh: routed to a service, \
                 unknown_host (no route names the host, 404), no_route (no route of the host \
                 matches, 404), bad_host (no usable Host, 400; or a CONNECT, 405), rate_limited (429).",
                &["result"],
            ),
            gateway_connections: Family::new(
                "murmur_gateway_connections_total",
                "Connections to the gateway by outcome: tls (handshake done), \
                 handshake_failed, handshake_timeout, per_ip_cap (closed: the client's \
                 address has its share of connections open), redirected (plain HTTP).",
                &["result"],
            ),
            traffic: Traffic::default(),
            stats: StatsMap::default(),
            inbound_in_flight: AtomicI64::new(0),
            last_inbound_ms: AtomicU64::new(0),
        }
    }
}

impl Telemetry {
    /// Request metrics, with this access log.
    pub fn with_access_log(access_log: AccessLog) -> Self {
        Self {
            access_log,
            ..Self::default()
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP status was sent to the caller.
    Status(u16),
    /// A gRPC call ended with this status (in the response headers or trailers), over this
    /// HTTP status.
    Grpc(u16, GrpcCode),
    /// A TCP connection ended normally.
    Closed,
    /// It failed without a status (connection error, cancelled).
    Error,
}

impl Outcome {
    /// The class of the status: of the HTTP status the gRPC status stands for, for gRPC
    /// (`UNAVAILABLE` is `5xx`).
    pub fn class(self) -> &'static str {
        match self {
            Self::Grpc(_, code) => Self::Status(code.http_status()).class(),
            Self::Status(s) if s < 200 => "1xx",
            Self::Status(s) if s < 300 => "2xx",
            Self::Status(s) if s < 400 => "3xx",
            Self::Status(s) if s < 500 => "4xx",
            Self::Status(_) => "5xx",
            Self::Closed => "closed",
            Self::Error => "error",
        }
    }

    /// Whether it counts as a failure: a 5xx (a gRPC status standing for one), or no answer.
    pub fn failed(self) -> bool {
        match self {
            Self::Grpc(_, code) => code.http_status() >= 500,
            Self::Status(s) => s >= 500,
            Self::Closed => false,
            Self::Error => true,
        }
    }

    /// The HTTP status sent (0 if none) and the gRPC status's name, for the access log.
    pub fn statuses(self) -> (u16, Option<String>) {
        match self {
            Self::Status(s) => (s, None),
            Self::Grpc(s, code) => (s, Some(code.name().to_owned())),
            Self::Closed | Self::Error => (0, None),
        }
    }

    /// The `grpc_status` label: the status's name, empty for other requests.
    fn grpc_label(self) -> &'static str {
        match self {
            Self::Grpc(_, code) => code.name(),
            _ => "",
        }
    }
}

/// Accounts for one request from start to end; dropping it unfinished counts an error.
#[derive(Debug)]
pub struct RequestGuard {
    telemetry: Arc<Telemetry>,
    stats: Arc<ServiceStats>,
    started: Instant,
    /// When the response head went out, if the request is finished later.
    answered: Option<Duration>,
    done: bool,
}

impl Telemetry {
    /// Starts accounting for a request.
    pub fn start(self: &Arc<Self>, direction: Direction, service: &str) -> RequestGuard {
        let stats = self.service_stats(direction, service);
        stats.in_flight.add(1);
        if direction == Direction::Inbound {
            self.inbound_in_flight.fetch_add(1, Ordering::Relaxed);
            self.last_inbound_ms.store(unix_now_ms(), Ordering::Relaxed);
        }
        RequestGuard {
            telemetry: self.clone(),
            stats,
            started: Instant::now(),
            answered: None,
            done: false,
        }
    }

    /// The handles the requests of (`direction`, `service`) feed.
    pub fn service_stats(&self, direction: Direction, service: &str) -> Arc<ServiceStats> {
        self.stats.get(direction, service, || {
            let dir = direction.as_str();
            ServiceStats::new(
                direction,
                service,
                self.in_flight.get(&[dir, service]),
                self.duration.get(&[dir, service]),
                self.traffic.window(direction, service),
            )
        })
    }
}

impl RequestGuard {
    /// The response head went out: latency counts to here, though the request is finished (and
    /// counted) only when its response has ended.
    pub fn answered(&mut self) {
        self.answered = Some(self.started.elapsed());
    }

    /// When the request arrived, on the node's monotonic clock ([`crate::clock::now`]).
    pub fn started(&self) -> std::time::Instant {
        self.started.into_std()
    }

    /// How long since the request arrived.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The service of the request.
    pub fn service(&self) -> &str {
        self.stats.service()
    }

    /// The metrics it is counted in.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// Records the end of the request, served by `peer` (node name, or "-"). Returns the
    /// latency: to the response head.
    pub fn finish(mut self, peer: &str, outcome: Outcome) -> Duration {
        self.done = true;
        self.record(peer, outcome)
    }

    fn record(&self, peer: &str, outcome: Outcome) -> Duration {
        let t = &self.telemetry;
        let s = &self.stats;
        let took = self.answered.unwrap_or_else(|| self.started.elapsed());
        let (class, grpc) = (outcome.class(), outcome.grpc_label());
        s.count(peer, class, grpc, || {
            t.requests
                .get(&[s.direction.as_str(), s.service(), peer, class, grpc])
        });
        s.duration.observe(took);
        if let Some(w) = &s.window {
            w.record(outcome.failed(), took, unix_now());
        }
        took
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.stats.in_flight.add(-1);
        if self.stats.direction == Direction::Inbound {
            self.telemetry
                .inbound_in_flight
                .fetch_sub(1, Ordering::Relaxed);
        }
        if !self.done {
            self.record("-", Outcome::Error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::MAX_CACHED_COUNTERS;

    fn rendered(t: &Telemetry) -> String {
        let mut out = String::new();
        t.requests.render(&mut out);
        t.in_flight.render(&mut out);
        t.duration.render(&mut out);
        out
    }

    #[tokio::test]
    async fn guards_count_in_the_families_and_the_window_through_handles_resolved_once() {
        let t = Arc::new(Telemetry::default());
        let a = t.service_stats(Direction::Inbound, "web");
        assert!(Arc::ptr_eq(&a, &t.service_stats(Direction::Inbound, "web")));
        assert!(!Arc::ptr_eq(
            &a,
            &t.service_stats(Direction::Outbound, "web")
        ));
        for _ in 0..3 {
            t.start(Direction::Inbound, "web")
                .finish("n1", Outcome::Status(200));
        }
        let open = t.start(Direction::Inbound, "web");
        let out = rendered(&t);
        assert!(
            out.contains(
                "murmur_requests_total{direction=\"inbound\",service=\"web\",peer=\"n1\",status_class=\"2xx\"} 3\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("murmur_requests_in_flight{direction=\"inbound\",service=\"web\"} 1\n"),
            "{out}"
        );
        drop(open);
        let out = rendered(&t);
        assert!(
            out.contains("peer=\"-\",status_class=\"error\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("service=\"web\"} 0\n"), "{out}");
        let s = t.traffic.summaries(unix_now());
        let web = s
            .iter()
            .find(|s| s.direction == Direction::Inbound)
            .unwrap();
        assert_eq!(web.requests, 4);
        assert!((web.success_rate - 0.75).abs() < 1e-9);
    }

    #[tokio::test]
    async fn counters_past_the_cache_bound_still_count() {
        let t = Arc::new(Telemetry::default());
        for i in 0..MAX_CACHED_COUNTERS + 10 {
            for _ in 0..2 {
                t.start(Direction::Outbound, "web")
                    .finish(&format!("n{i}"), Outcome::Status(200));
            }
        }
        let out = rendered(&t);
        let last = format!(
            "peer=\"n{}\",status_class=\"2xx\"}} 2\n",
            MAX_CACHED_COUNTERS + 9
        );
        assert!(out.contains(&last), "{out}");
    }
}

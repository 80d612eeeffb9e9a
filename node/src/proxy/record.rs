//! The account of one outbound HTTP request: its metrics, its route's metrics and its access
//! log line. A plain request is counted as soon as its response head goes out, as before. A gRPC
//! call whose status is not in the response head, or a request to be logged, is counted when
//! its response body ends: the status then comes from the trailers, and the log line has the
//! bytes and the whole duration. Latency is always to the response head.

use http::Response;
use http::header::CONTENT_TYPE;
use murmur_membership::policy::spec::GrpcCode;

use super::body::{End, Observed, ProxyBody, Tally, grpc_status};
use super::frame::RequestHead;
use crate::api::accesslog::AccessLogEntry;
use crate::api::traffic::Direction;
use crate::telemetry::requests::RequestGuard;
use crate::telemetry::traceparent::trace_id_of;
use crate::telemetry::{Outcome, Telemetry};

/// What an access log line needs from the request.
#[derive(Debug)]
struct Line {
    arrived_ms: u64,
    caller: String,
    service: String,
    method: String,
    path: String,
    request_bytes: Option<u64>,
    trace_id: Option<String>,
}

/// One outbound request's account.
#[derive(Debug)]
pub struct Record {
    guard: RequestGuard,
    /// The request is a gRPC call: its answer may carry a gRPC status.
    grpc: bool,
    route: Option<String>,
    retries: u32,
    /// Boxed: a request that is not logged carries one pointer.
    line: Option<Box<Line>>,
}

impl Record {
    /// Starts the account of a request for the service its metrics name `label`; `grpc`: it
    /// is a gRPC call.
    pub fn start(telemetry: &std::sync::Arc<Telemetry>, label: &str, grpc: bool) -> Self {
        Self {
            guard: telemetry.start(Direction::Outbound, label),
            grpc,
            route: None,
            retries: 0,
            line: None,
        }
    }

    /// The request for `service` is to be logged: as it came from `caller`, with its trace
    /// context.
    pub fn log(
        &mut self,
        caller: &str,
        service: &str,
        method: &str,
        path: &str,
        traceparent: Option<&str>,
    ) {
        self.line = Some(Box::new(Line {
            arrived_ms: crate::clock::unix_now_ms()
                .saturating_sub(self.guard.elapsed().as_millis() as u64),
            caller: caller.to_owned(),
            service: service.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            request_bytes: None,
            trace_id: traceparent.and_then(trace_id_of).map(str::to_owned),
        }));
    }

    /// When the request arrived.
    pub fn started(&self) -> std::time::Instant {
        self.guard.started()
    }

    /// The path as sent on (normalized, rewritten), for the log line.
    pub fn path(&mut self, path: &str) {
        if let Some(l) = &mut self.line {
            path.clone_into(&mut l.path);
        }
    }

    /// The request head as it is sent on, for the log line.
    pub fn head(&mut self, head: &RequestHead) {
        if let Some(l) = &mut self.line {
            head.path.clone_into(&mut l.path);
            l.request_bytes = head.body.length();
        }
    }

    /// The request took `route`.
    pub fn route(&mut self, route: &str) {
        self.route = Some(route.to_owned());
    }

    /// One more retry was sent.
    pub fn retried(&mut self) {
        self.retries += 1;
    }

    /// Accounts for `resp`, answered by `peer` (or `-`): now, or when its body has ended.
    pub fn finish(mut self, resp: Response<ProxyBody>, peer: &str) -> Response<ProxyBody> {
        let status = resp.status().as_u16();
        // Only a gRPC call has a gRPC answer: other answers are not looked into.
        let grpc = self.grpc
            && resp
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let head_code = grpc.then(|| grpc_status(resp.headers())).flatten();
        if self.line.is_none() && (head_code.is_some() || !grpc) {
            let outcome = outcome(status, head_code, None);
            if self.route.is_none() {
                // The plain path: counted as it always was.
                self.guard.finish(peer, outcome);
            } else {
                self.account(peer, outcome, None, None);
            }
            return resp;
        }
        self.guard.answered();
        let error = self.line.as_ref().and_then(|_| {
            resp.headers()
                .get("x-murmur-error")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        let (parts, body) = resp.into_parts();
        let peer = peer.to_owned();
        let on_end = Box::new(move |tally: Tally| {
            let outcome = outcome(status, head_code, Some(tally));
            self.account(&peer, outcome, Some(tally), error);
        });
        let body = ProxyBody::Observed(Box::new(Observed::new(body, Some(on_end))));
        Response::from_parts(parts, body)
    }

    /// Accounts for a request whose answer ended as `outcome` without a body to watch (an
    /// upgraded connection, when it closes).
    pub fn close(self, peer: &str, outcome: Outcome) {
        self.account(peer, outcome, None, None);
    }

    /// Counts the request, its route, and writes its log line.
    fn account(self, peer: &str, outcome: Outcome, tally: Option<Tally>, error: Option<String>) {
        let telemetry = self.guard.telemetry().clone();
        let service = self.guard.service().to_owned();
        let total = self.guard.elapsed();
        let took = self.guard.finish(peer, outcome);
        if let Some(route) = &self.route {
            let t = &telemetry;
            t.route_requests
                .get(&[&service, route, outcome.class()])
                .inc();
            t.route_duration.get(&[&service, route]).observe(took);
        }
        let Some(line) = self.line else {
            return;
        };
        let (status, grpc) = outcome.statuses();
        let tally = tally.unwrap_or_default();
        telemetry.access_log.send(
            line.arrived_ms,
            AccessLogEntry {
                time: String::new(),
                direction: Direction::Outbound.as_str().to_owned(),
                caller: line.caller,
                service: line.service,
                route: self.route,
                node: peer.to_owned(),
                method: line.method,
                path: line.path,
                status,
                grpc_status: grpc,
                request_bytes: line.request_bytes,
                response_bytes: tally.bytes,
                duration_ms: total.as_micros() as f64 / 1000.0,
                retries: Some(self.retries),
                error,
                trace_id: line.trace_id,
                incomplete: tally.end != End::Complete,
            },
        );
    }
}

/// How a request answered `status` ended: with the gRPC status of its head or trailers, if any;
/// a body that failed midway is an error.
pub fn outcome(status: u16, head: Option<GrpcCode>, tally: Option<Tally>) -> Outcome {
    if tally.is_some_and(|t| t.end == End::Failed) {
        return Outcome::Error;
    }
    match head.or(tally.and_then(|t| t.grpc)) {
        Some(code) => Outcome::Grpc(status, code),
        None => Outcome::Status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_table() {
        let t = |grpc, end| Tally {
            bytes: 3,
            grpc,
            end,
        };
        let unavailable = Some(GrpcCode::Unavailable);
        // (status, head status, tally, expected)
        let cases: &[(u16, Option<GrpcCode>, Option<Tally>, Outcome)] = &[
            (200, None, None, Outcome::Status(200)),
            (
                200,
                unavailable,
                None,
                Outcome::Grpc(200, GrpcCode::Unavailable),
            ),
            (
                200,
                None,
                Some(t(unavailable, End::Complete)),
                Outcome::Grpc(200, GrpcCode::Unavailable),
            ),
            (200, None, Some(t(None, End::Dropped)), Outcome::Status(200)),
            (200, None, Some(t(None, End::Failed)), Outcome::Error),
        ];
        for (status, head, tally, want) in cases {
            assert_eq!(outcome(*status, *head, *tally), *want, "{head:?} {tally:?}");
        }
        assert_eq!(Outcome::Grpc(200, GrpcCode::Unavailable).class(), "5xx");
        assert!(Outcome::Grpc(200, GrpcCode::Unavailable).failed());
        assert!(!Outcome::Grpc(200, GrpcCode::NotFound).failed());
    }
}

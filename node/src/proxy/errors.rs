//! Errors the calling app can act on: a status that says whose fault it is, a body that says
//! what happened, and an `x-murmur-error` header to match on. gRPC callers get the same as a
//! gRPC status (UNAVAILABLE, INVALID_ARGUMENT, ...) so their client libraries report it.
//!
//! Answers made by the serving node (403 from authorization, 429 from a rate limit, 504 when the
//! deadline expires there) are built the same way ([`LocalReply`]) and framed back.

use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::route::RouteError;
use crate::traffic::normalize::PathError;
use crate::traffic::timeout::Fired;

/// Why the outbound proxy answered itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request cannot be routed (bad target, unknown service, no usable instance).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The request path is refused by normalization.
    #[error("the request path is refused: {0}")]
    BadPath(PathError),
    /// The request head is too large to forward.
    #[error("request headers too large: {0}")]
    HeadTooLarge(String),
    /// A request for a host outside the mesh, and `[outbound] external = "deny"`.
    #[error(
        "{host} is outside the mesh, and this node refuses requests for hosts outside it that \
         no `external` document names ([outbound] external = \"deny\")"
    )]
    ExternalDenied {
        /// The host and port asked for.
        host: String,
    },
    /// A host outside the mesh that an `external` document names, called by a node the
    /// document does not allow.
    #[error("{host}: external \"{doc}\" does not allow this node ({caller}) to call it")]
    ExternalCaller {
        /// The host and port asked for.
        host: String,
        /// The document.
        doc: String,
        /// This node.
        caller: String,
    },
    /// A host outside the mesh could not be reached.
    #[error("cannot reach {host} (outside the mesh): {detail}")]
    ExternalFailed {
        /// The host and port asked for.
        host: String,
        /// Why.
        detail: String,
    },
    /// The app's request body broke while it was forwarded (malformed chunked encoding, or the
    /// connection cut mid-body): the app's fault, not the instance's.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// The instance failed after the request was sent.
    #[error("the {service} instance on node {node} failed: {detail}")]
    Upstream {
        /// The service.
        service: String,
        /// The node.
        node: String,
        /// What happened.
        detail: String,
    },
    /// A timeout of the `timeout` policy fired.
    #[error("{message}")]
    Timeout {
        /// Which one.
        fired: Fired,
        /// Which, how long, which document.
        message: String,
    },
    /// The `circuit` policy's cap on pending requests is reached.
    #[error(
        "{service}: {max} requests are already pending from this node (circuit \"{doc}\", \
         max_pending)"
    )]
    Overloaded {
        /// The service.
        service: String,
        /// The cap.
        max: u32,
        /// The document.
        doc: String,
    },
    /// The request went round the mesh too many times: a service's address leads back into a
    /// node's own proxy.
    #[error(
        "the request has gone through {0} mesh proxies: a service's address probably leads back \
         into a node's own proxy (check the [[service]] addresses)"
    )]
    Loop(u32),
    /// A request at the gateway for a host that no route names.
    #[error(
        "no route in the mesh names the host {0:?}: a route document with `match.hosts` \
         exposes a service under a host name"
    )]
    UnknownHost(String),
    /// A request at the gateway that no route naming its host matches.
    #[error("no route for host {host:?} takes {method} {path}")]
    NoGatewayRoute {
        /// The host.
        host: String,
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// A route's fault injection aborted the request.
    #[error("fault injected by route \"{route}\": abort with {status}")]
    Fault {
        /// The route.
        route: String,
        /// The status it answers.
        status: u16,
    },
}

/// A response made by a node rather than by an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// `x-murmur-error` value.
    pub tag: &'static str,
    /// gRPC status code for gRPC callers.
    pub grpc_code: u8,
    /// The text of the body (or of `grpc-message`).
    pub message: String,
    /// More headers (`retry-after`, `x-murmur-timeout`, ...).
    pub extra: Vec<(&'static str, String)>,
}

impl LocalReply {
    /// A reply with no extra headers.
    pub fn new(status: u16, tag: &'static str, grpc_code: u8, message: String) -> Self {
        Self {
            status,
            tag,
            grpc_code,
            message,
            extra: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &'static str, value: String) -> Self {
        self.extra.push((name, value));
        self
    }

    /// `(status, headers, body)`: for gRPC callers a trailers-only response (HTTP 200, the
    /// status in `grpc-status`), else `status` with a plain-text body.
    pub fn parts(&self, grpc: bool) -> (u16, Vec<(HeaderName, HeaderValue)>, String) {
        let mut h: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(4 + self.extra.len());
        let (status, body) = if grpc {
            h.push((CONTENT_TYPE, HeaderValue::from_static("application/grpc")));
            h.push((
                HeaderName::from_static("grpc-status"),
                HeaderValue::from(u16::from(self.grpc_code)),
            ));
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&self.message)) {
                h.push((HeaderName::from_static("grpc-message"), v));
            }
            (200, String::new())
        } else {
            h.push((
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ));
            (self.status, format!("{}\n", self.message))
        };
        h.push((
            HeaderName::from_static("x-murmur-error"),
            HeaderValue::from_static(self.tag),
        ));
        for (name, value) in &self.extra {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.push((HeaderName::from_static(name), v));
            }
        }
        (status, h, body)
    }

    /// The reply as a response of the outbound proxy.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        let (status, headers, body) = self.parts(grpc);
        let mut r = Response::new(if body.is_empty() {
            ProxyBody::Local(None)
        } else {
            ProxyBody::text(body)
        });
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (k, v) in headers {
            r.headers_mut().append(k, v);
        }
        r
    }
}

/// The gRPC status code closest to an HTTP status a node answers with.
pub fn grpc_code(status: u16) -> u8 {
    match status {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 12,
        429 => 8,
        504 => 4,
        502 | 503 => 14,
        _ => 2,
    }
}

impl ProxyError {
    /// The reply for this error.
    pub fn reply(&self) -> LocalReply {
        let (status, tag, code) = match self {
            Self::Route(RouteError::BadTarget(_)) => (400, "bad-target", 3),
            Self::Route(RouteError::Unknown(_) | RouteError::NoVip(_)) => {
                (503, "unknown-service", 14)
            }
            Self::Route(RouteError::NoInstance { .. }) => (503, "no-instance", 14),
            Self::BadPath(_) => (400, "bad-path", 3),
            Self::HeadTooLarge(_) => (431, "head-too-large", 8),
            Self::ExternalDenied { .. } | Self::ExternalCaller { .. } => {
                (403, "external-denied", 7)
            }
            Self::ExternalFailed { .. } => (502, "external-failed", 14),
            Self::Upstream { .. } => (502, "upstream-failed", 14),
            Self::BadBody(_) => (400, "bad-request-body", 3),
            Self::Timeout { .. } => (504, "timeout", 4),
            Self::Overloaded { .. } => (503, "overloaded", 14),
            Self::Fault { status, .. } => (*status, "fault-injected", grpc_code(*status)),
            Self::Loop(_) => (508, "loop-detected", 9),
            Self::UnknownHost(_) => (404, "unknown-host", 12),
            Self::NoGatewayRoute { .. } => (404, "no-route", 12),
        };
        let reply = LocalReply::new(status, tag, code, self.to_string());
        match self {
            Self::Timeout { fired, .. } => reply.with("x-murmur-timeout", fired.as_str().into()),
            _ => reply,
        }
    }

    /// The response to send the app.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        self.reply().response(grpc)
    }
}

/// gRPC's percent-encoding of `grpc-message` (printable ASCII except `%` stays).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_grpc_codes() {
        let unknown = ProxyError::Route(RouteError::Unknown("nope".into()));
        let r = unknown.response(false);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["x-murmur-error"], "unknown-service");
        let g = unknown.response(true);
        assert_eq!(g.status(), 200);
        assert_eq!(g.headers()["grpc-status"], "14");
        assert!(
            g.headers()["grpc-message"]
                .to_str()
                .unwrap()
                .contains("nope")
        );
        let bad = ProxyError::Route(RouteError::BadTarget("x".into()));
        assert_eq!(bad.response(false).status(), 400);
        assert_eq!(percent_encode("a%b\n"), "a%25b%0A");
    }

    #[test]
    fn policy_errors_say_what_fired() {
        // (error, status, x-murmur-error, gRPC code)
        let cases = [
            (
                ProxyError::Timeout {
                    fired: Fired::PerTry,
                    message: "per-try".into(),
                },
                504,
                "timeout",
                "4",
            ),
            (
                ProxyError::Overloaded {
                    service: "web".into(),
                    max: 3,
                    doc: "c".into(),
                },
                503,
                "overloaded",
                "14",
            ),
            (
                ProxyError::Fault {
                    route: "r".into(),
                    status: 418,
                },
                418,
                "fault-injected",
                "2",
            ),
            (
                ProxyError::BadPath(PathError::EncodedSeparator),
                400,
                "bad-path",
                "3",
            ),
        ];
        for (e, status, tag, code) in cases {
            let r = e.response(false);
            assert_eq!(r.status(), status, "{e}");
            assert_eq!(r.headers()["x-murmur-error"], tag);
            assert_eq!(e.response(true).headers()["grpc-status"], code);
        }
        let t = ProxyError::Timeout {
            fired: Fired::Request,
            message: "m".into(),
        };
        assert_eq!(t.response(false).headers()["x-murmur-timeout"], "request");
        let limited = LocalReply::new(429, "rate-limited", 8, "slow down".into())
            .with("retry-after", "2".into());
        let (status, headers, body) = limited.parts(false);
        assert_eq!((status, body.as_str()), (429, "slow down\n"));
        assert!(headers.iter().any(|(k, v)| k == "retry-after" && v == "2"));
    }
}

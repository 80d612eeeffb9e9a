//! Errors the calling app can act on: a status that says whose fault it is, a body that says
//! what happened, and an `x-murmur-error` header to match on. gRPC callers get the same as a
//! gRPC status (UNAVAILABLE, INVALID_ARGUMENT, ...) so their client libraries report it.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

use super::body::ProxyBody;
use super::route::RouteError;

/// Why the outbound proxy answered itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request cannot be routed (bad target, unknown service, no usable instance).
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The request head is too large to forward.
    #[error("request headers too large: {0}")]
    HeadTooLarge(String),
    /// A method this listener does not proxy.
    #[error("{0}")]
    Unsupported(String),
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
}

impl ProxyError {
    /// `(HTTP status, x-murmur-error, gRPC status code)`.
    fn class(&self) -> (StatusCode, &'static str, u8) {
        match self {
            Self::Route(RouteError::BadTarget(_)) => (StatusCode::BAD_REQUEST, "bad-target", 3),
            Self::Route(RouteError::Unknown(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unknown-service", 14)
            }
            Self::Route(RouteError::NoInstance { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "no-instance", 14)
            }
            Self::HeadTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "head-too-large",
                8,
            ),
            Self::Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "unsupported", 12),
            Self::Upstream { .. } => (StatusCode::BAD_GATEWAY, "upstream-failed", 14),
        }
    }

    /// The response to send the app.
    pub fn response(&self, grpc: bool) -> Response<ProxyBody> {
        let (status, tag, grpc_code) = self.class();
        let message = self.to_string();
        let mut resp = if grpc {
            // A trailers-only gRPC response: HTTP 200 with the status in the headers.
            let mut r = Response::new(ProxyBody::Local(None));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from(u16::from(grpc_code)));
            if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
                h.insert("grpc-message", v);
            }
            r
        } else {
            let mut r = Response::new(ProxyBody::text(format!("{message}\n")));
            *r.status_mut() = status;
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        };
        resp.headers_mut()
            .insert("x-murmur-error", HeaderValue::from_static(tag));
        resp
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
}

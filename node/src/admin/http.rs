//! Response helpers for the admin API: JSON bodies and JSON errors.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;

/// The body type of every admin response.
pub type Body = Full<Bytes>;

/// A JSON response.
pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => with_type(status, "application/json", body),
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

/// `{"error": "..."}` with `status`.
pub fn error(status: u16, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message });
    with_type(status, "application/json", body.to_string().into_bytes())
}

/// A plain-text response.
pub fn text(status: u16, body: &str) -> Response<Body> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// A response with a given content type.
pub fn with_type(status: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

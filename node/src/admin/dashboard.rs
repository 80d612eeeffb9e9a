//! `GET /`: the dashboard, one self-contained page (no external assets) that polls `/v1/mesh`.

use super::http::{Body, with_type};

const PAGE: &str = include_str!("dashboard.html");

/// Serves the page.
pub fn get() -> hyper::Response<Body> {
    with_type(200, "text/html; charset=utf-8", PAGE.as_bytes().to_vec())
}

//! A route's actions carried out on the messages of one request: the prefix rewrite and header
//! edits of the request head before it is sent, the header edits of the response head, and the
//! redirect a route answers itself.

use http::header::{CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use murmur_membership::policy::spec::Redirect;

use super::body::ProxyBody;
use super::frame::RequestHead;
use crate::traffic::actions::rewrite_prefix;
use crate::traffic::routes::Route;

/// Rewrites the path and edits the headers of `head` as `route` says.
pub fn request(route: &Route, head: &mut RequestHead) {
    if let Some((from, to)) = &route.rewrite
        && let Some(path) = rewrite_prefix(&head.path, from, to)
    {
        head.path = path;
    }
    if let Some(edits) = &route.request_edits {
        edits.apply(&mut head.headers);
    }
}

/// Edits response header fields as `route` says.
pub fn response(route: &Route, headers: &mut HeaderMap) {
    if let Some(edits) = &route.response_edits {
        edits.apply(headers);
    }
}

/// The redirect `route` answers: its status, `location`, and a line saying so.
pub fn redirect(route: &str, r: &Redirect) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(format!(
        "redirected by route \"{route}\" to {}\n",
        r.location
    )));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
    if let Ok(v) = HeaderValue::from_str(&r.location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::{Kind, PolicyBody};

    use http::HeaderName;

    use super::*;
    use crate::proxy::frame::{BodyKind, FRAME_VERSION};

    fn route(toml: &str) -> Route {
        let v: toml::Value = toml::from_str(toml).unwrap();
        match PolicyBody::from_value(Kind::Route, v).unwrap() {
            PolicyBody::Route(r) => Route::new(&r),
            _ => unreachable!(),
        }
    }

    #[test]
    fn heads_are_rewritten_and_edited() {
        let r = route(
            r#"
name = "r"
service = "web"
match = { path = { prefix = "/api" } }
backends = [{ service = "web" }]
rewrite = { prefix = "/v2" }
request_headers = { set = { x-env = "prod" }, remove = ["x-debug"] }
response_headers = { add = { cache-control = "no-store" } }
"#,
        );
        let mut head = RequestHead {
            version: FRAME_VERSION,
            method: "GET".into(),
            path: "/api/users?page=2".into(),
            authority: "web".into(),
            headers: [
                (
                    HeaderName::from_static("x-debug"),
                    HeaderValue::from_static("1"),
                ),
                (http::header::ACCEPT, HeaderValue::from_static("*/*")),
            ]
            .into_iter()
            .collect(),
            body: BodyKind::Empty,
        };
        request(&r, &mut head);
        assert_eq!(head.path, "/v2/users?page=2");
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.headers["accept"], "*/*");
        assert_eq!(head.headers["x-env"], "prod");
        let mut fields = HeaderMap::new();
        fields.insert("cache-control", HeaderValue::from_static("max-age=60"));
        response(&r, &mut fields);
        let values: Vec<_> = fields.get_all("cache-control").iter().collect();
        assert_eq!(values, ["max-age=60", "no-store"]);
        let resp = redirect(
            "r",
            &Redirect {
                status: 308,
                location: "https://example.com/x".into(),
            },
        );
        assert_eq!(resp.status(), 308);
        assert_eq!(resp.headers()[LOCATION], "https://example.com/x");
    }
}

//! `route`: which route a request takes. Routes of a service are tried by priority (highest
//! first, ties by name); the first whose conditions all hold is taken. A request that came in
//! through a gateway takes only routes naming its host (`match.hosts`), a request from inside
//! the mesh only routes naming none. Pure.

use http::HeaderMap;
use murmur_membership::policy::spec::common::host_matches;
use murmur_membership::policy::spec::{Backend, Fault, Mirror, PathMatch, Redirect, RouteSpec};

use super::actions::{Hashing, HeaderEdits};
use super::matching::{HeaderPattern, PathPattern, method_matches};

/// A route, compiled.
#[derive(Clone, Debug)]
pub struct Route {
    /// Document name.
    pub name: String,
    /// Priority (higher first).
    pub priority: i32,
    /// Host patterns of gateway requests (`match.hosts`); empty: requests from the mesh.
    pub hosts: Vec<String>,
    path: Option<PathPattern>,
    methods: Vec<String>,
    headers: Vec<HeaderPattern>,
    /// Where matching requests go.
    pub backends: Vec<Backend>,
    /// Faults to inject.
    pub fault: Option<Fault>,
    /// Edits of the request's headers.
    pub request_edits: Option<HeaderEdits>,
    /// Edits of the response's headers.
    pub response_edits: Option<HeaderEdits>,
    /// The matched prefix and what replaces it.
    pub rewrite: Option<(String, String)>,
    /// Answered here instead of forwarded.
    pub redirect: Option<Redirect>,
    /// Copies of a share of the requests.
    pub mirror: Option<Mirror>,
    /// Consistent hashing onto the backend's instances.
    pub hash: Option<Hashing>,
}

impl Route {
    /// Compiles a route document.
    pub fn new(spec: &RouteSpec) -> Self {
        let m = &spec.matches;
        let headers: Vec<HeaderPattern> = m.headers.iter().filter_map(HeaderPattern::new).collect();
        // A header condition that does not compile would otherwise be dropped and widen the
        // route; keep the route unmatchable instead (a validated document never gets here).
        let path = if headers.len() == m.headers.len() {
            m.path.as_ref().map(PathPattern::new)
        } else {
            Some(PathPattern::Never)
        };
        Self {
            name: spec.name.to_string(),
            priority: spec.priority,
            hosts: m.hosts.clone(),
            path,
            methods: m.methods.clone(),
            headers,
            backends: spec.backends.clone(),
            fault: spec.fault.clone(),
            request_edits: spec.request_headers.as_ref().map(HeaderEdits::new),
            response_edits: spec.response_headers.as_ref().map(HeaderEdits::new),
            rewrite: match (&m.path, &spec.rewrite) {
                (Some(PathMatch::Prefix(from)), Some(r)) => Some((from.clone(), r.prefix.clone())),
                _ => None,
            },
            redirect: spec.redirect.clone(),
            mirror: spec.mirror.clone(),
            hash: spec.hash.as_ref().and_then(Hashing::new),
        }
    }

    /// Whether the request matches every condition. `host` is the host (lower case, no port)
    /// of a request that came in through a gateway, `None` for one from the mesh.
    pub fn matches(
        &self,
        host: Option<&str>,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> bool {
        self.serves_host(host)
            && self.path.as_ref().is_none_or(|p| p.matches(path))
            && method_matches(&self.methods, method)
            && self.headers.iter().all(|h| h.matches(headers))
    }

    /// Whether the route takes requests for `host` (see [`Route::matches`]).
    pub fn serves_host(&self, host: Option<&str>) -> bool {
        match host {
            None => self.hosts.is_empty(),
            Some(h) => self.hosts.iter().any(|p| host_matches(p, h)),
        }
    }
}

/// Sorts routes in the order they are tried.
pub fn sort(routes: &mut [Route]) {
    routes.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
}

/// The route a request takes, if any (`routes` sorted by [`sort`]).
pub fn select<'r>(
    routes: &'r [Route],
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<&'r Route> {
    routes
        .iter()
        .find(|r| r.matches(host, method, path, headers))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use murmur_membership::policy::{Kind, PolicyBody};

    use super::*;

    fn routes(toml: &str) -> Vec<Route> {
        let table: toml::Table = toml::from_str(toml).unwrap();
        let mut out: Vec<Route> = table["route"]
            .as_array()
            .unwrap()
            .iter()
            .map(
                |v| match PolicyBody::from_value(Kind::Route, v.clone()).unwrap() {
                    PolicyBody::Route(r) => Route::new(&r),
                    _ => unreachable!(),
                },
            )
            .collect();
        sort(&mut out);
        out
    }

    #[test]
    fn the_highest_priority_matching_route_is_taken() {
        let rs = routes(
            r#"
            [[route]]
            name = "all"
            service = "web"
            backends = [{ service = "web" }]

            [[route]]
            name = "testers"
            service = "web"
            priority = 10
            match = { path = { prefix = "/" }, methods = ["GET"], headers = [{ name = "x-tester", exact = "1" }] }
            backends = [{ service = "web", subset = { version = "v2" } }]

            [[route]]
            name = "api"
            service = "web"
            priority = 5
            match = { path = { regex = "/api/v[0-9]+/.*" } }
            backends = [{ service = "api" }]

            [[route]]
            name = "b-same-priority"
            service = "web"
            priority = 5
            backends = [{ service = "web" }]
            "#,
        );
        let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["testers", "api", "b-same-priority", "all"]);
        let mut tester = HeaderMap::new();
        tester.insert("x-tester", HeaderValue::from_static("1"));
        let none = HeaderMap::new();
        // (method, path, headers, route taken)
        let cases: &[(&str, &str, &HeaderMap, &str)] = &[
            ("GET", "/x", &tester, "testers"),
            ("POST", "/x", &tester, "b-same-priority"),
            ("GET", "/api/v1/items", &none, "api"),
            ("GET", "/api/items", &none, "b-same-priority"),
            ("GET", "/api/v1/items", &tester, "testers"),
        ];
        for (m, p, h, want) in cases {
            let got = select(&rs, None, m, p, h).map(|r| r.name.as_str());
            assert_eq!(got, Some(*want), "{m} {p}");
        }
        assert!(select(&rs[..1], None, "POST", "/", &none).is_none());
    }

    #[test]
    fn routes_with_hosts_take_gateway_requests_for_them_and_others_mesh_requests() {
        let rs = routes(
            r#"
            [[route]]
            name = "mesh"
            service = "web"
            backends = [{ service = "web" }]

            [[route]]
            name = "shop-api"
            service = "web"
            priority = 5
            match = { hosts = ["shop.example.com"], path = { prefix = "/api" } }
            backends = [{ service = "api" }]

            [[route]]
            name = "any-shop"
            service = "web"
            match = { hosts = ["*.example.com"] }
            backends = [{ service = "web" }]
            "#,
        );
        let none = HeaderMap::new();
        // (host, path, route taken)
        let cases: &[(Option<&str>, &str, Option<&str>)] = &[
            (None, "/api/x", Some("mesh")),
            (Some("shop.example.com"), "/api/x", Some("shop-api")),
            (Some("shop.example.com"), "/", Some("any-shop")),
            (Some("www.example.com"), "/api/x", Some("any-shop")),
            (Some("example.com"), "/", None),
            (Some("shop.example.org"), "/", None),
        ];
        for (host, path, want) in cases {
            let got = select(&rs, *host, "GET", path, &none).map(|r| r.name.as_str());
            assert_eq!(got, *want, "{host:?} {path}");
        }
    }
}

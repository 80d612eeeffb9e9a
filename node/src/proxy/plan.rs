//! The decision for one outbound request, before any I/O: which route it takes, which backend
//! (service and subset) of the route, which instances may take it, what faults to inject, and
//! which timeouts, retry policy and circuit apply. A pure function of the request, the cluster
//! view, the compiled policy and the random draws it is handed.

use http::HeaderMap;
use murmur_membership::ClusterView;
use murmur_membership::policy::spec::RetrySpec;
use murmur_membership::records::Balancer;
use murmur_membership::view::Endpoint;

use super::route::{RouteError, candidates_in};
use crate::traffic::fault::{self, Injected};
use crate::traffic::timeout::Timeouts;
use crate::traffic::{Circuit, Compiled, routes, split};

/// What the request is, for matching.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// Method.
    pub method: &'a str,
    /// Normalized path, without query.
    pub path: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
}

/// What to do with one request. Borrows from the compiled policy and the view: a request for a
/// service without policy allocates nothing here but the list of candidates.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The service the request goes to (a route's backend may name another one).
    pub target: &'a str,
    /// The route taken, if any.
    pub route: Option<&'a str>,
    /// The balancer of the target's instances.
    pub balancer: Balancer,
    /// The instances that may take it (in the subset, passing, not draining).
    pub endpoints: Vec<&'a Endpoint>,
    /// Faults to inject.
    pub injected: Injected,
    /// Timeouts, if a document sets any.
    pub timeouts: Option<Timeouts>,
    /// The retry policy, if any.
    pub retry: Option<&'a RetrySpec>,
    /// The target's circuit policy, if any.
    pub circuit: Option<&'a Circuit>,
}

/// Decides. `random` is called only when a choice needs it (a split, a fault).
pub fn decide<'a>(
    compiled: &'a Compiled,
    view: &'a ClusterView,
    service: &'a str,
    req: Subject<'_>,
    mut random: impl FnMut() -> u64,
) -> Result<Plan<'a>, RouteError> {
    let policy = compiled.service(service);
    let route = policy.and_then(|p| routes::select(&p.routes, req.method, req.path, req.headers));
    let backend = route.and_then(|r| match r.backends.len() {
        0 | 1 => r.backends.first(),
        _ => split::pick(&r.backends, random()),
    });
    let target = backend.map_or(service, |b| b.service.as_str());
    let subset = backend.map(|b| &b.subset).filter(|s| !s.is_empty());
    let (balancer, endpoints) = candidates_in(view, target, subset)?;
    let injected = route
        .and_then(|r| r.fault.as_ref())
        .map(|f| fault::decide(f, fault::percent_of(random()), fault::percent_of(random())))
        .unwrap_or_default();
    let route_name = route.map(|r| r.name.as_str());
    Ok(Plan {
        target,
        route: route_name,
        balancer,
        endpoints,
        injected,
        timeouts: policy.and_then(|p| p.timeouts_for(route_name)),
        retry: policy.and_then(|p| p.retry_for(route_name)).map(|r| &**r),
        circuit: if target == service {
            policy
        } else {
            compiled.service(target)
        }
        .and_then(|p| p.circuit.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use http::HeaderValue;
    use murmur_membership::records::{Health, Protocol};

    use super::*;
    use crate::traffic::tests::compiled;

    fn ep(service: &str, node: &str, version: &str) -> Endpoint {
        Endpoint {
            service: service.into(),
            node: node.into(),
            mesh_addr: "127.0.0.2:7420".parse().unwrap(),
            protocol: Protocol::Http,
            labels: BTreeMap::from([("version".to_owned(), version.to_owned())]),
            weight: 1,
            health: Health::Passing,
            balancer: Balancer::P2cEwma,
            draining: false,
            stale: false,
        }
    }

    const POLICY: &str = r#"
[[route]]
name = "canary"
service = "web"
backends = [{ service = "web", subset = { version = "v1" }, weight = 90 },
            { service = "web", subset = { version = "v2" }, weight = 10 }]

[[route]]
name = "testers"
service = "web"
priority = 10
match = { headers = [{ name = "x-tester", exact = "1" }] }
backends = [{ service = "web-next" }]
fault = { abort = { status = 503, percent = 100 } }

[[timeout]]
name = "web-timeouts"
service = "web"
route = "testers"
request = "200ms"

[[circuit]]
name = "next-outliers"
service = "web-next"
"#;

    #[test]
    fn plans_table() {
        let c = compiled(POLICY);
        let mut view = ClusterView::default();
        view.services.insert(
            "web".into(),
            vec![ep("web", "n1", "v1"), ep("web", "n2", "v2")],
        );
        view.services
            .insert("web-next".into(), vec![ep("web-next", "n3", "v3")]);
        view.services
            .insert("api".into(), vec![ep("api", "n4", "v1")]);
        let plain = HeaderMap::new();
        let mut tester = HeaderMap::new();
        tester.insert("x-tester", HeaderValue::from_static("1"));
        let subject = |headers| Subject {
            method: "GET",
            path: "/",
            headers,
        };
        // (service, headers, random, target, route, endpoints, abort, timeout doc, circuit)
        type Row<'a> = (
            &'a str,
            &'a HeaderMap,
            u64,
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            Option<u16>,
            Option<&'a str>,
            bool,
        );
        let cases: &[Row<'_>] = &[
            (
                "web",
                &plain,
                0,
                "web",
                Some("canary"),
                &["n1"],
                None,
                None,
                false,
            ),
            (
                "web",
                &plain,
                95,
                "web",
                Some("canary"),
                &["n2"],
                None,
                None,
                false,
            ),
            (
                "web",
                &tester,
                0,
                "web-next",
                Some("testers"),
                &["n3"],
                Some(503),
                Some("web-timeouts"),
                true,
            ),
            ("api", &plain, 0, "api", None, &["n4"], None, None, false),
        ];
        for (service, headers, r, target, route, eps, abort, timeout, circuit) in cases {
            let plan = decide(&c, &view, service, subject(headers), || *r).unwrap();
            assert_eq!(plan.target, *target, "{service}");
            assert_eq!(plan.route, *route);
            let nodes: Vec<&str> = plan.endpoints.iter().map(|e| e.node.as_str()).collect();
            assert_eq!(nodes, *eps);
            assert_eq!(plan.injected.abort, *abort);
            assert_eq!(plan.timeouts.map(|t| t.doc).as_deref(), *timeout);
            assert_eq!(plan.circuit.is_some(), *circuit);
            assert!(plan.retry.is_none());
        }
        // A request with no policy at all draws no random numbers.
        let mut draws = 0;
        decide(&c, &view, "api", subject(&plain), || {
            draws += 1;
            0
        })
        .unwrap();
        assert_eq!(draws, 0);
    }
}

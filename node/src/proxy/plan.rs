//! The decision for one request, before any I/O: which route it takes, which backend (service
//! and subset) of the route, which instances may take it and in what order, the identity each
//! must present, what faults to inject, and which timeouts, retry policy and circuit apply. A
//! pure function of the request, the cluster view, the compiled policy, the balancer's order
//! and the random draws it is handed. HTTP requests and TCP connections alike are decided here;
//! [`super::exchange`] and [`super::upstream`] only carry the plan out.

use http::HeaderMap;
use murmur_membership::ClusterView;
use murmur_membership::policy::spec::RetrySpec;
use murmur_membership::records::Balancer;
use murmur_membership::view::Endpoint;

use super::route::{RouteError, candidates_in};
use crate::balance::Offer;
use crate::traffic::circuit::OutlierConfig;
use crate::traffic::fault::{self, Injected};
use crate::traffic::timeout::Timeouts;
use crate::traffic::{Circuit, Compiled, routes, split};

/// What the request is, for matching.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// An HTTP request: routes, faults, timeouts and retries may apply.
    Http {
        /// Method.
        method: &'a str,
        /// Normalized path, without query.
        path: &'a str,
        /// Headers.
        headers: &'a HeaderMap,
    },
    /// A TCP connection: no route matches it; the service's circuit still orders and ejects.
    Tcp,
}

/// Who must answer an attempt: the node the view names, proven by its certificate, and a
/// certificate that names the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The node (`spiffe://<td>/node/<node>`, server name `<node>.node.<td>`).
    pub node: &'a str,
    /// The service its certificate must name (`<service>.svc.<td>`).
    pub service: &'a str,
}

/// One instance to try.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The instance as the view lists it.
    pub endpoint: &'a Endpoint,
    /// What the peer must prove.
    pub identity: Identity<'a>,
}

/// What to do with one request. Borrows from the compiled policy and the view: a request for a
/// service without policy allocates nothing here but the list of targets.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The service the request goes to (a route's backend may name another one).
    pub target: &'a str,
    /// The route taken, if any.
    pub route: Option<&'a str>,
    /// The instances to try, in the balancer's order (retries go round it again).
    pub targets: Vec<Target<'a>>,
    /// Faults to inject.
    pub injected: Injected,
    /// Timeouts, if a document sets any.
    pub timeouts: Option<Timeouts>,
    /// The retry policy, if any.
    pub retry: Option<&'a RetrySpec>,
    /// The target's circuit policy, if any.
    pub circuit: Option<&'a Circuit>,
}

impl Plan<'_> {
    /// The outlier ejection of the target's circuit, if any.
    pub fn outlier(&self) -> Option<&OutlierConfig> {
        self.circuit.map(|c| &c.outlier)
    }
}

/// Orders the offered instances of a service for one request: the balancer, with its state.
pub trait Order {
    /// Indexes into `offers`, best first; ejected instances are left out (`outlier`).
    fn order(
        &mut self,
        service: &str,
        balancer: Balancer,
        offers: &[Offer<'_>],
        outlier: Option<&OutlierConfig>,
    ) -> Vec<usize>;
}

impl<F> Order for F
where
    F: FnMut(&str, Balancer, &[Offer<'_>], Option<&OutlierConfig>) -> Vec<usize>,
{
    fn order(
        &mut self,
        service: &str,
        balancer: Balancer,
        offers: &[Offer<'_>],
        outlier: Option<&OutlierConfig>,
    ) -> Vec<usize> {
        self(service, balancer, offers, outlier)
    }
}

/// Decides. `random` is called only when a choice needs it (a split, a fault); `order` once.
pub fn decide<'a>(
    compiled: &'a Compiled,
    view: &'a ClusterView,
    service: &'a str,
    subject: Subject<'_>,
    mut random: impl FnMut() -> u64,
    mut order: impl Order,
) -> Result<Plan<'a>, RouteError> {
    let policy = compiled.service(service);
    let route = match subject {
        Subject::Http {
            method,
            path,
            headers,
        } => policy.and_then(|p| routes::select(&p.routes, method, path, headers)),
        Subject::Tcp => None,
    };
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
    let circuit = if target == service {
        policy
    } else {
        compiled.service(target)
    }
    .and_then(|p| p.circuit.as_ref());
    let http = matches!(subject, Subject::Http { .. });
    let offers: Vec<Offer<'_>> = endpoints
        .iter()
        .map(|e| Offer {
            node: &e.node,
            weight: e.weight,
        })
        .collect();
    let targets = order
        .order(target, balancer, &offers, circuit.map(|c| &c.outlier))
        .into_iter()
        .filter_map(|i| endpoints.get(i))
        .map(|e| Target {
            endpoint: e,
            identity: Identity {
                node: &e.node,
                service: target,
            },
        })
        .collect();
    Ok(Plan {
        target,
        route: route_name,
        targets,
        injected,
        timeouts: policy
            .filter(|_| http)
            .and_then(|p| p.timeouts_for(route_name)),
        retry: policy
            .filter(|_| http)
            .and_then(|p| p.retry_for(route_name))
            .map(|r| &**r),
        circuit,
    })
}

/// Whether `view` still lists `node` as an instance of `service`: an attempt after the first
/// skips instances the mesh has given up on since the plan was made.
pub fn still_listed(view: &ClusterView, service: &str, node: &str) -> bool {
    view.endpoints(service).iter().any(|e| e.node == node)
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
        let subject = |headers| Subject::Http {
            method: "GET",
            path: "/",
            headers,
        };
        // The balancer's order, here as offered.
        let as_offered = |_: &str, _: Balancer, o: &[Offer<'_>], _: Option<&OutlierConfig>| {
            (0..o.len()).collect::<Vec<usize>>()
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
            let plan = decide(&c, &view, service, subject(headers), || *r, as_offered).unwrap();
            assert_eq!(plan.target, *target, "{service}");
            assert_eq!(plan.route, *route);
            let nodes: Vec<&str> = plan.targets.iter().map(|t| t.identity.node).collect();
            assert_eq!(nodes, *eps);
            assert!(plan.targets.iter().all(|t| t.identity.service == *target));
            assert_eq!(plan.injected.abort, *abort);
            assert_eq!(plan.timeouts.map(|t| t.doc).as_deref(), *timeout);
            assert_eq!(plan.circuit.is_some(), *circuit);
            assert!(plan.retry.is_none());
        }
        // A request with no policy at all draws no random numbers.
        let mut draws = 0;
        decide(
            &c,
            &view,
            "api",
            subject(&plain),
            || {
                draws += 1;
                0
            },
            as_offered,
        )
        .unwrap();
        assert_eq!(draws, 0);
    }

    #[test]
    fn tcp_takes_no_route_but_keeps_the_circuit_and_the_balancers_order() {
        let c = compiled(POLICY);
        let mut view = ClusterView::default();
        view.services.insert(
            "web-next".into(),
            vec![ep("web-next", "n3", "v3"), ep("web-next", "n5", "v3")],
        );
        view.services.insert(
            "web".into(),
            vec![ep("web", "n1", "v1"), ep("web", "n2", "v2")],
        );
        let reversed = |_: &str, _: Balancer, o: &[Offer<'_>], _: Option<&OutlierConfig>| {
            (0..o.len()).rev().collect::<Vec<usize>>()
        };
        let plan = decide(&c, &view, "web-next", Subject::Tcp, || 0, reversed).unwrap();
        let nodes: Vec<&str> = plan.targets.iter().map(|t| t.identity.node).collect();
        assert_eq!(nodes, ["n5", "n3"]);
        assert!(plan.circuit.is_some() && plan.outlier().is_some());
        // The canary route of web applies to HTTP only: TCP goes to every instance, unsplit.
        let plan = decide(&c, &view, "web", Subject::Tcp, || 95, reversed).unwrap();
        assert_eq!(plan.route, None);
        assert_eq!(plan.targets.len(), 2);
        assert!(plan.timeouts.is_none() && plan.retry.is_none());
        assert_eq!(plan.injected, Injected::default());
    }

    #[test]
    fn instances_left_out_by_the_balancer_are_not_tried() {
        let c = compiled("");
        let mut view = ClusterView::default();
        view.services.insert(
            "api".into(),
            vec![ep("api", "n1", "v1"), ep("api", "n2", "v1")],
        );
        let only_second =
            |_: &str, _: Balancer, _: &[Offer<'_>], _: Option<&OutlierConfig>| vec![1, 7];
        let plan = decide(&c, &view, "api", Subject::Tcp, || 0, only_second).unwrap();
        let nodes: Vec<&str> = plan.targets.iter().map(|t| t.identity.node).collect();
        assert_eq!(
            nodes,
            ["n2"],
            "an index past the offers is dropped, not a panic"
        );
        assert!(still_listed(&view, "api", "n1"));
        assert!(!still_listed(&view, "api", "n9"));
        assert!(!still_listed(&view, "web", "n1"));
    }
}

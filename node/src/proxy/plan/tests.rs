use std::collections::BTreeMap;

use http::HeaderValue;
use murmur_membership::Member;
use murmur_membership::records::{Balancer, Health, Protocol};
use murmur_membership::view::MemberState;

use super::*;
use crate::traffic::tests::compiled;

fn ep(service: &str, node: &str, version: &str) -> Endpoint {
    Endpoint {
        service: service.into(),
        node: murmur_transport::testing::name(node),
        mesh_addr: "127.0.0.2:7420".parse().unwrap(),
        protocol: Protocol::Http,
        labels: BTreeMap::from([("version".to_owned(), version.to_owned())]),
        weight: 1,
        health: Health::Passing,
        balancer: Balancer::P2cEwma,
        draining: false,
        stale: false,
        cell: None,
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

/// The balancer's order, here as offered.
fn as_offered(_: &str, _: Choice, o: &[Offer<'_>], _: Option<&OutlierConfig>) -> Vec<usize> {
    (0..o.len()).collect()
}

fn http(headers: &HeaderMap) -> Subject<'_> {
    Subject::Http {
        host: None,
        method: "GET",
        path: "/",
        headers,
    }
}

fn nodes(plan: &Plan<'_>) -> Vec<String> {
    plan.targets
        .iter()
        .map(|t| t.identity.node.to_string())
        .collect()
}

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
    let caller = Caller::default();
    for (service, headers, r, target, route, eps, abort, timeout, circuit) in cases {
        let plan = decide(&c, &view, service, http(headers), caller, || *r, as_offered).unwrap();
        assert_eq!(plan.target, *target, "{service}");
        assert_eq!(plan.route_name(), *route);
        assert_eq!(nodes(&plan), *eps);
        assert!(plan.targets.iter().all(|t| t.identity.service == *target));
        assert!(plan.targets.iter().all(|t| t.cross_zone.is_none()));
        assert_eq!(plan.injected.abort, *abort);
        assert_eq!(plan.timeouts.map(|t| t.doc).as_deref(), *timeout);
        assert_eq!(plan.circuit.is_some(), *circuit);
        assert!(plan.retry.is_none() && plan.redirect.is_none() && plan.mirror.is_none());
    }
    // A request with no policy at all draws no random numbers.
    let mut draws = 0;
    decide(
        &c,
        &view,
        "api",
        http(&plain),
        caller,
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
    let reversed = |_: &str, _: Choice, o: &[Offer<'_>], _: Option<&OutlierConfig>| {
        (0..o.len()).rev().collect::<Vec<usize>>()
    };
    let caller = Caller {
        logs: true,
        ..Caller::default()
    };
    let plan = decide(&c, &view, "web-next", Subject::Tcp, caller, || 0, reversed).unwrap();
    assert_eq!(nodes(&plan), ["n5", "n3"]);
    assert!(plan.circuit.is_some() && plan.outlier().is_some());
    // The canary route of web applies to HTTP only: TCP goes to every instance, unsplit.
    let plan = decide(&c, &view, "web", Subject::Tcp, caller, || 95, reversed).unwrap();
    assert_eq!(plan.route_name(), None);
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
    let only_second = |_: &str, _: Choice, _: &[Offer<'_>], _: Option<&OutlierConfig>| vec![1, 7];
    let plan = decide(
        &c,
        &view,
        "api",
        Subject::Tcp,
        Caller::default(),
        || 0,
        only_second,
    )
    .unwrap();
    assert_eq!(
        nodes(&plan),
        ["n2"],
        "an index past the offers is dropped, not a panic"
    );
    assert!(still_listed(&view, "api", "n1"));
    assert!(!still_listed(&view, "api", "n9"));
    assert!(!still_listed(&view, "web", "n1"));
}

const ACTIONS: &str = r#"
[[route]]
name = "old-home"
service = "web"
priority = 30
match = { path = { exact = "/old" } }
redirect = { status = 301, location = "https://example.com/new" }

[[route]]
name = "sticky"
service = "web"
priority = 20
match = { headers = [{ name = "x-user", present = true }] }
backends = [{ service = "web" }]
hash = { header = "x-user" }

[[route]]
name = "shadowed"
service = "web"
priority = 10
match = { path = { prefix = "/api" } }
backends = [{ service = "web", subset = { version = "v1" } }]
rewrite = { prefix = "/v2" }
request_headers = { set = { x-env = "prod" } }
mirror = { service = "web-shadow", percent = 10 }

[[accesslog]]
name = "web-log"
service = "web"
sample_percent = 50
"#;

#[test]
fn route_actions_table() {
    let c = compiled(ACTIONS);
    let mut view = ClusterView::default();
    view.services.insert(
        "web".into(),
        vec![ep("web", "n1", "v1"), ep("web", "n2", "v2")],
    );
    view.services
        .insert("web-shadow".into(), vec![ep("web-shadow", "n9", "v1")]);
    let plain = HeaderMap::new();
    let mut user = HeaderMap::new();
    user.insert("x-user", HeaderValue::from_static("alice"));
    let caller = Caller {
        id: "spiffe://murmur.local/node/n0",
        ..Caller::default()
    };
    let mut choices = Vec::new();
    let mut record = |s: &str, c: Choice, o: &[Offer<'_>], _: Option<&OutlierConfig>| {
        choices.push((s.to_owned(), c));
        (0..o.len()).collect::<Vec<usize>>()
    };
    let get = |path| Subject::Http {
        host: None,
        method: "GET",
        path,
        headers: &plain,
    };

    // A redirect: answered here, no instance chosen.
    let plan = decide(&c, &view, "web", get("/old"), caller, || 0, &mut record).unwrap();
    assert_eq!(plan.redirect.map(|r| r.status), Some(301));
    assert!(plan.targets.is_empty());
    // A hashed route: the ring is asked, with the key of the header.
    let plan = decide(
        &c,
        &view,
        "web",
        http(&user),
        caller,
        || u64::MAX,
        &mut record,
    )
    .unwrap();
    assert_eq!(plan.route_name(), Some("sticky"));
    // Mirrored (a draw under 10 %): the shadow's instance is chosen too.
    let plan = decide(&c, &view, "web", get("/api/x"), caller, || 0, &mut record).unwrap();
    let mirror = plan.mirror.as_ref().unwrap();
    assert_eq!(mirror.service, "web-shadow");
    assert_eq!(mirror.target.map(|t| t.identity.node.as_str()), Some("n9"));
    assert_eq!(nodes(&plan), ["n1"]);
    let r = plan.route.unwrap();
    assert_eq!(r.rewrite, Some(("/api".to_owned(), "/v2".to_owned())));
    assert!(r.request_edits.is_some());
    // Not mirrored (a draw over 10 %).
    let plan = decide(
        &c,
        &view,
        "web",
        get("/api/x"),
        caller,
        || u64::MAX,
        &mut record,
    )
    .unwrap();
    assert!(plan.mirror.is_none());
    let key = crate::traffic::actions::hash(b"alice");
    assert_eq!(
        choices,
        [
            (
                "web".to_owned(),
                Choice::Ring {
                    key,
                    load_factor: 1.25
                }
            ),
            ("web-shadow".to_owned(), Choice::Balancer(Balancer::P2cEwma)),
            ("web".to_owned(), Choice::Balancer(Balancer::P2cEwma)),
            ("web".to_owned(), Choice::Balancer(Balancer::P2cEwma)),
        ]
    );
}

#[test]
fn logging_follows_the_document_else_the_configuration() {
    let c = compiled(ACTIONS);
    let configured = Caller {
        logs: true,
        ..Caller::default()
    };
    let quiet = Caller::default();
    // (service, caller, draw, logged): web's document samples 50 %.
    let cases: &[(&str, Caller<'_>, u64, bool)] = &[
        ("web", quiet, 0, true),
        ("web", quiet, u64::MAX, false),
        ("web", configured, u64::MAX, false),
        ("api", configured, 0, true),
        ("api", quiet, 0, false),
    ];
    for (service, caller, draw, want) in cases {
        let policy = c.service(service).map(|p| &**p);
        assert_eq!(
            logs(policy, *caller, || *draw),
            *want,
            "{service} {caller:?}"
        );
    }
}

fn zoned(node: &str, zone: &str, health: Health) -> Endpoint {
    let mut e = ep("web", node, "v1");
    e.health = health;
    e.labels.insert(ZONE_LABEL.into(), zone.into());
    e
}

#[test]
fn callers_prefer_their_zone_and_spill_over_as_it_fails() {
    use Health::{Critical, Passing};
    let c = compiled("");
    let caller = Caller {
        zone: Some("a"),
        ..Caller::default()
    };
    let plain = HeaderMap::new();
    // (zone a's health, draw, expected instances)
    let cases: &[(&[Health], u64, &[&str])] = &[
        (&[Passing, Passing, Passing], 0, &["a1", "a2", "a3"]),
        // Two of three: 95 % stay.
        (&[Passing, Passing, Critical], 0, &["a1", "a2"]),
        (&[Passing, Passing, Critical], u64::MAX, &["b1", "c1"]),
        // One of three: about 48 % stay.
        (&[Passing, Critical, Critical], 0, &["a1"]),
        (&[Passing, Critical, Critical], u64::MAX, &["b1", "c1"]),
        (&[Critical, Critical, Critical], 0, &["b1", "c1"]),
    ];
    for (health, draw, want) in cases {
        let mut eps: Vec<Endpoint> = ["a1", "a2", "a3"]
            .iter()
            .zip(*health)
            .map(|(n, h)| zoned(n, "a", *h))
            .collect();
        eps.push(zoned("b1", "b", Passing));
        let mut c1 = ep("web", "c1", "v1");
        // A zone from the node's labels.
        c1.labels.clear();
        eps.push(c1);
        let mut view = ClusterView::default();
        view.services.insert("web".into(), eps);
        let mut member = Member {
            name: "c1".into(),
            generation: 1,
            mesh_addr: "127.0.0.2:7420".parse().unwrap(),
            admin_addr: None,
            labels: BTreeMap::new(),
            state: MemberState::Alive,
            services: vec!["web".into()],
            stale: false,
            extensions: BTreeMap::new(),
        };
        member.labels.insert(ZONE_LABEL.into(), "c".into());
        view.members.insert("c1".into(), member);
        let plan = decide(&c, &view, "web", http(&plain), caller, || *draw, as_offered).unwrap();
        assert_eq!(nodes(&plan), *want, "{health:?} {draw}");
        let crossing: Vec<Option<&str>> = plan.targets.iter().map(|t| t.cross_zone).collect();
        let expected: Vec<Option<&str>> = want
            .iter()
            .map(|n| match &n[..1] {
                "a" => None,
                z => Some(z),
            })
            .collect();
        assert_eq!(crossing, expected);
    }
}

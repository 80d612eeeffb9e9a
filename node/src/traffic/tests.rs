use std::time::{Duration, Instant};

use murmur_membership::policy::{PolicyBody, parse_file};

use super::*;
use crate::traffic::ratelimit::Admission;

pub(crate) fn bodies(toml: &str) -> Vec<PolicyBody> {
    let mut b = parse_file("test.toml", toml).unwrap();
    b.sort_by(|x, y| (x.kind(), x.name()).cmp(&(y.kind(), y.name())));
    b
}

pub(crate) fn compiled(toml: &str) -> Compiled {
    Compiled::from_bodies(&bodies(toml))
}

const POLICY: &str = r#"
[[route]]
name = "web-canary"
service = "web"
backends = [{ service = "web", subset = { version = "v1" }, weight = 90 },
            { service = "web", subset = { version = "v2" }, weight = 10 }]

[[route]]
name = "web-testers"
service = "web"
priority = 10
match = { headers = [{ name = "x-tester", exact = "1" }] }
backends = [{ service = "web", subset = { version = "v2" } }]

[[timeout]]
name = "a-web-all"
service = "web"
request = "5s"

[[timeout]]
name = "b-web-testers"
service = "web"
route = "web-testers"
request = "200ms"

[[retry]]
name = "web-retry"
service = "web"
statuses = [503]
budget = { ratio = 0.5, min_per_second = 0, window = "1s" }

[[circuit]]
name = "web-outliers"
service = "web"
consecutive_failures = 5
max_pending = 10

[[ratelimit]]
name = "api-global"
service = "api"
rate = 90
scope = "global"

[[ratelimit]]
name = "api-local"
service = "api"
rate = 1000
"#;

#[test]
fn documents_are_grouped_by_service_in_the_order_they_apply() {
    let c = compiled(POLICY);
    let web = c.service("web").unwrap();
    let routes: Vec<&str> = web.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(routes, ["web-testers", "web-canary"]);
    assert_eq!(
        web.timeouts_for(Some("web-testers")).unwrap().doc,
        "b-web-testers"
    );
    assert_eq!(
        web.timeouts_for(Some("web-canary")).unwrap().doc,
        "a-web-all"
    );
    assert_eq!(web.timeouts_for(None).unwrap().doc, "a-web-all");
    assert_eq!(
        web.retry_for(Some("web-canary")).unwrap().name.as_str(),
        "web-retry"
    );
    let circuit = web.circuit.as_ref().unwrap();
    assert_eq!(
        (circuit.outlier.consecutive_failures, circuit.max_pending),
        (5, Some(10))
    );
    let api = c.service("api").unwrap();
    assert!(api.routes.is_empty() && api.retry_for(None).is_none());
    assert_eq!(api.ratelimits.len(), 2);
    assert!(c.service("other").is_none());
    assert!(Compiled::from_bodies(&[]).service("web").is_none());
}

#[test]
fn log_keys_are_bounded_and_each_is_logged_once_per_period() {
    let t = Traffic::fixed(compiled(POLICY), 1);
    assert!(t.should_log("first"));
    assert!(!t.should_log("first"), "once per period");
    for i in 1..state::MAX_LOG_KEYS {
        assert!(t.should_log(&format!("peer said {i}")));
    }
    assert!(
        !t.should_log("one more"),
        "no room until a period has passed"
    );
    assert!(!t.should_log("first"), "the known ones keep their period");
}

#[test]
fn budgets_and_limits_live_in_the_hub_and_follow_shares() {
    let t = Traffic::fixed(compiled(POLICY), 1);
    let now = Instant::now();
    let web = t.service("web").unwrap();
    let spec = web.retry_for(None).unwrap().clone();
    assert!(!t.budget_try_retry(&spec, now), "no reserve, no requests");
    for _ in 0..4 {
        t.budget_request(&spec, now);
    }
    let granted = (0..10).filter(|_| t.budget_try_retry(&spec, now)).count();
    assert_eq!(granted, 2, "half of four requests");

    assert_eq!(
        t.global_limits(|s| s == "api"),
        [("api-global".to_owned(), "api".to_owned())]
    );
    assert!(t.global_limits(|_| false).is_empty());
    t.set_share("api-global", 1.0 / 3.0);
    assert_eq!(t.shares(), [("api-global".to_owned(), 1.0 / 3.0)]);
    let api = t.service("api").unwrap();
    // 90/s at a third: a burst of 30, then refused with a retry-after.
    let admitted = (0..100)
        .filter(|_| {
            t.admit("api", &api.ratelimits, "spiffe://td/node/a", now, || 1.0)
                == Admission::Admitted
        })
        .count();
    assert_eq!(admitted, 30);
    assert_eq!(t.take_arrivals("api-global"), 100);
    assert_eq!(t.take_arrivals("api-global"), 0);
    match t.admit(
        "api",
        &api.ratelimits,
        "x",
        now + Duration::from_millis(10),
        || 1.0,
    ) {
        Admission::Limited { doc, rate, .. } => {
            assert_eq!(doc, "api-global");
            assert!((rate - 30.0).abs() < 1e-9);
        }
        Admission::Admitted => panic!("admitted over the limit"),
    }

    // Before any share is computed, a new limiter takes the share it is given.
    let other = Traffic::fixed(compiled(POLICY), 2);
    let first = (0..100)
        .filter(|_| other.admit("api", &api.ratelimits, "a", now, || 0.5) == Admission::Admitted)
        .count();
    assert_eq!(first, 45);

    let p = t.pending("web");
    let g = p.enter(1).unwrap();
    assert!(t.pending("web").enter(1).is_none());
    drop(g);
    assert!(t.should_log("x") && !t.should_log("x") && t.should_log("y"));
    let (a, b) = (t.random(), t.random());
    assert_ne!(a, b);
    assert!((0.0..1.0).contains(&t.unit()));
}

/// The example in the README's traffic-policy section is a valid policy file.
#[test]
fn the_readme_example_is_valid() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Policy\n")
        .nth(1)
        .expect("README has a policy section");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a toml block");
    let c = compiled(toml);
    let web = c.service("web").unwrap();
    assert_eq!(web.routes.len(), 1);
    assert_eq!(web.authz.len(), 1);
    assert!(web.retry_for(None).is_some() && web.timeouts_for(None).is_some());
}

#[test]
fn a_gateway_host_goes_to_the_service_of_the_first_route_naming_it() {
    let c = compiled(
        r#"
[[route]]
name = "shop-api"
service = "api"
priority = 10
match = { hosts = ["shop.example.com"], path = { prefix = "/api" } }
backends = [{ service = "api" }]

[[route]]
name = "shop-web"
service = "web"
match = { hosts = ["shop.example.com", "*.shop.example.com"], methods = ["GET"] }
backends = [{ service = "web" }]

[[route]]
name = "web-mesh"
service = "web"
priority = 100
backends = [{ service = "web" }]
"#,
    );
    use super::compiled::EdgeTarget::*;
    let h = http::HeaderMap::new();
    // (host, method, path, target)
    let cases = [
        ("shop.example.com", "GET", "/api/items", Service("api")),
        ("shop.example.com", "POST", "/api/items", Service("api")),
        ("shop.example.com", "GET", "/", Service("web")),
        ("eu.shop.example.com", "GET", "/api", Service("web")),
        ("shop.example.com", "POST", "/", NoRoute),
        ("web", "GET", "/", UnknownHost),
        ("other.example.com", "GET", "/", UnknownHost),
    ];
    for (host, method, path, want) in cases {
        assert_eq!(
            c.edge_target(host, method, path, &h),
            want,
            "{host} {method} {path}"
        );
    }
}

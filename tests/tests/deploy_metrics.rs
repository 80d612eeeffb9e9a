//! The shipped alert rules and Grafana dashboard (deploy/prometheus/) read metrics that real
//! nodes export (issue: deploy, acceptance 5). Two nodes carry traffic, so the per-request
//! families have samples; every metric name the rules and the dashboard select must then be in
//! their `/metrics`.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use murmur_tests::promql::{dashboard_queries, exposition_names, metric_names, read_rules};
use murmur_tests::{Cluster, apps::EchoApp, http, netns};

/// Series Prometheus makes itself for every target.
const SYNTHETIC: &[&str] = &["up"];

/// Families that only get samples when a policy acts or a peer misbehaves (a retry, a refusal, a
/// rejected document): for these the test asks for the family's `# TYPE` line, not a sample.
const EVENT_FAMILIES: &[&str] = &[
    "murmur_retries_total",
    "murmur_rate_limited_total",
    "murmur_denied_total",
    "murmur_timeouts_total",
    "murmur_overloaded_total",
    "murmur_ejections_total",
    "murmur_policy_rejected_total",
];

fn deploy_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus")
        .join(rel)
}

/// Names the rules and the dashboard select, and the names the rules record themselves.
fn used_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let rules = read_rules(&deploy_file("murmur-rules.yml"));
    assert_eq!(
        rules.exprs.len(),
        rules.rules,
        "every rule must yield one expression (keep `expr:` on one line or a `|` block)"
    );
    let queries = dashboard_queries(&deploy_file("murmur-dashboard.json"));
    assert!(queries.len() >= 10, "dashboard queries found: {queries:?}");
    let mut used = BTreeSet::new();
    for e in rules.exprs.iter().chain(&queries) {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric in {e:?}");
        used.extend(names);
    }
    (used, rules.recorded)
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_exported_by_a_running_node() {
    let (used, recorded) = used_names();
    netns::run(move || async move {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "app").await;
        let c = Cluster::serving_pair("web", app.addr, "http").await;
        // Successes, and a failure (no node serves "nowhere": 503 from the calling node).
        for (host, want) in [("web", 200), ("web", 200), ("web", 200), ("nowhere", 503)] {
            let r = http::send(
                c.node("n1").outbound(),
                "GET",
                "/m",
                &[("host", host)],
                vec![],
            )
            .await
            .unwrap();
            assert_eq!(r.status, want, "{host}: {}", r.text());
        }
        let mut samples = BTreeSet::new();
        let mut declared = BTreeSet::new();
        for n in ["n1", "n2"] {
            let text = c.node(n).admin_get("/metrics").await.unwrap().text();
            let (s, d) = exposition_names(&text);
            samples.extend(s);
            declared.extend(d);
        }
        let mut missing = Vec::new();
        for name in &used {
            let ok = if SYNTHETIC.contains(&name.as_str()) || recorded.contains(name) {
                true
            } else if EVENT_FAMILIES.contains(&name.as_str()) {
                declared.contains(name)
            } else {
                samples.contains(name)
            };
            if !ok {
                missing.push(name.clone());
            }
        }
        println!(
            "{} metric names used by the rules and dashboard; {} sample names exported",
            used.len(),
            samples.len()
        );
        assert!(
            missing.is_empty(),
            "used by deploy/prometheus but not in /metrics: {missing:?}\nexported: {samples:?}"
        );
        // The per-request families were checked against samples, not declarations.
        for family in [
            "murmur_requests_total",
            "murmur_request_duration_seconds_bucket",
        ] {
            assert!(
                used.contains(family) && samples.contains(family),
                "{family}"
            );
        }
    });
}

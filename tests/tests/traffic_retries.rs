//! Retries end to end against a backend that fails every other request: retries lift the
//! success rate and stay within the budget (20 % + 10/s over 10 s by default); a POST is not
//! retried unless its route's retry policy allows it (issue 6, acceptance 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Instant;

use murmur_tests::apps::{Failing, FlakyApp};
use murmur_tests::traffic::{Done, Req, apply, default_retry_budget, load, metric, pct};
use murmur_tests::{Cluster, netns};

fn ok(done: &[Done]) -> usize {
    done.iter().filter(|d| d.status() == 200).count()
}

#[test]
fn retries_lift_the_success_rate_within_the_budget_and_posts_wait_for_permission() {
    netns::run(|| async {
        let addr = SocketAddr::from((Cluster::ip(3), 8080));
        let app = FlakyApp::start(addr, "web", Failing::EveryOther(503)).await;
        let c = Cluster::serving_pair("web", addr, "http").await;
        let out = c.node("n1").outbound();
        let retries = || metric(&c, "n1", "murmur_retries_total", &[("service", "web")]);

        // Without a policy: half fail.
        let done = load(out, 1000, 4, |_| Req::get("web", "/")).await;
        let base = ok(&done);
        println!(
            "no retry policy: {base} of 1000 succeed ({:.1} %)",
            pct(base, 1000)
        );
        assert!((pct(base, 1000) - 50.0).abs() <= 2.0, "{base}");

        apply(
            &c,
            "n1",
            r#"
[[retry]]
name = "web-retry"
service = "web"
statuses = [503]
"#,
        )
        .await;
        let (hits0, retries0) = (app.count(), retries().await);
        let n = 2000;
        let started = Instant::now();
        let done = load(out, n, 4, |_| Req::get("web", "/")).await;
        let took = started.elapsed();
        let good = ok(&done);
        let sent = retries().await - retries0;
        let extra = app.count() - hits0 - n as u64;
        let exhausted = metric(
            &c,
            "n1",
            "murmur_retry_budget_exhausted_total",
            &[("service", "web")],
        )
        .await;
        let budget = default_retry_budget(n, took);
        println!(
            "retry on 503 (default budget): {good} of {n} succeed ({:.1} %); {sent} retries sent \
             (the app saw {extra} requests beyond the {n}) in {:.1} s, budget {budget}, {exhausted} retries \
             refused by the budget",
            pct(good, n),
            took.as_secs_f64()
        );
        assert_eq!(
            sent as u64, extra,
            "the metric counts what the app received"
        );
        assert!(sent <= budget, "retries {sent} within the budget {budget}");
        assert!(
            exhausted > 0.0,
            "the backend fails more than the budget covers"
        );
        assert!(
            pct(good, n) >= pct(base, 1000) + 5.0,
            "retries lift success: {good}"
        );

        // POST is not idempotent: never retried under this policy.
        let (hits0, posts0, retries0) = (
            app.count(),
            app.posts.load(std::sync::atomic::Ordering::Relaxed),
            retries().await,
        );
        let done = load(out, 200, 4, |i| {
            Req::get("web", "/orders").with("POST", format!("order {i}").as_bytes())
        })
        .await;
        let posted = app.posts.load(std::sync::atomic::Ordering::Relaxed) - posts0;
        println!(
            "200 POSTs, retry policy without non_idempotent: {} succeed, the app saw {posted} \
             POSTs, {} retries",
            ok(&done),
            retries().await - retries0
        );
        assert_eq!(posted, 200);
        assert_eq!(app.count() - hits0, 200);
        assert_eq!(retries().await, retries0);

        // A route for POSTs whose retry policy allows them.
        apply(
            &c,
            "n1",
            r#"
[[route]]
name = "web-posts"
service = "web"
match = { methods = ["POST"] }
backends = [{ service = "web" }]

[[retry]]
name = "web-post-retry"
service = "web"
route = "web-posts"
statuses = [503]
non_idempotent = true
"#,
        )
        .await;
        let posts0 = app.posts.load(std::sync::atomic::Ordering::Relaxed);
        let done = load(out, 200, 4, |i| {
            Req::get("web", "/orders").with("POST", format!("order {i}").as_bytes())
        })
        .await;
        let posted = app.posts.load(std::sync::atomic::Ordering::Relaxed) - posts0;
        let good = ok(&done);
        println!(
            "200 POSTs on a route whose retry policy allows them: {good} succeed, the app saw \
             {posted} POSTs"
        );
        assert!(posted > 200, "POSTs were retried: {posted}");
        assert!(good > 150, "{good}");
        // Each retried POST carried its body again.
        let replayed = done.iter().filter(|d| d.status() == 200).all(|d| {
            d.reply
                .as_ref()
                .unwrap()
                .text()
                .starts_with("web POST /orders")
        });
        assert!(replayed);
    });
}

/// An instance whose app is down refuses before the app sees anything: such a failure is
/// retried whatever the method, and the request body (kept as it was sent) goes again.
#[test]
fn an_instance_refusing_connections_costs_nothing_under_a_retry_policy() {
    netns::run(|| async {
        let up = SocketAddr::from((Cluster::ip(3), 8080));
        let down = SocketAddr::from((Cluster::ip(4), 8080));
        let app = FlakyApp::start(up, "web", Failing::Never).await;
        let mut c = Cluster::new();
        let rr = "balancer = \"round-robin\"";
        c.chain(3, |s| match s.name.as_str() {
            "n2" => s.service_with("web", up, "http", rr),
            // Nothing listens here.
            "n3" => s.service_with("web", down, "http", rr),
            _ => s,
        });
        c.node("n1").wait_instances("web", &["n2", "n3"]).await;
        let out = c.node("n1").outbound();
        let post =
            |i: usize| Req::get("web", "/orders").with("POST", format!("order {i}").as_bytes());

        let done = load(out, 100, 1, post).await;
        let plain = ok(&done);
        let failed = done.iter().find(|d| d.status() != 200).unwrap();
        println!(
            "no retry policy, one of two instances refusing: {plain} of 100 POSTs succeed; a \
             failure: {} {}",
            failed.status(),
            failed.reply.as_ref().unwrap().text().trim()
        );
        assert!((40..=60).contains(&plain), "{plain}");

        apply(
            &c,
            "n1",
            "[[retry]]\nname = \"web-retry\"\nservice = \"web\"\n",
        )
        .await;
        let posts0 = app.posts.load(std::sync::atomic::Ordering::Relaxed);
        let retries0 = metric(&c, "n1", "murmur_retries_total", &[("service", "web")]).await;
        let done = load(out, 100, 1, post).await;
        let retried =
            metric(&c, "n1", "murmur_retries_total", &[("service", "web")]).await - retries0;
        let posted = app.posts.load(std::sync::atomic::Ordering::Relaxed) - posts0;
        println!(
            "retry policy (on_connect_failure by default): {} of 100 POSTs succeed, {retried} \
             retried, the app saw {posted}",
            ok(&done)
        );
        assert_eq!(ok(&done), 100);
        assert_eq!(posted, 100, "each POST reached the app once");
        assert!(retried >= 30.0, "{retried}");
        // The app got every body whole, retried or not.
        for (i, d) in done.iter().enumerate() {
            assert_eq!(
                d.reply.as_ref().unwrap().text(),
                format!("web POST /orders\norder {i}")
            );
        }
    });
}

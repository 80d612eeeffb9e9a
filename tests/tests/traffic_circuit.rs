//! Circuit breaking end to end: one of three instances failing every request is ejected, the
//! success rate once it is out is at least 99.9 %, and it is probed back in after it recovers;
//! the cap on pending requests fails the excess at once (issue 6, acceptance 4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use murmur_tests::apps::{Failing, FlakyApp, SlowApp};
use murmur_tests::traffic::{Req, apply, load, metric, pct};
use murmur_tests::{Cluster, netns, wait_until};

fn app_addr(ip: u8) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), 8080))
}

#[test]
fn a_failing_instance_is_ejected_and_probed_back_after_it_recovers() {
    netns::run(|| async {
        let good1 = FlakyApp::start(app_addr(3), "a", Failing::Never).await;
        let good2 = FlakyApp::start(app_addr(4), "b", Failing::Never).await;
        let bad = FlakyApp::start(app_addr(5), "c", Failing::Always(500)).await;
        // Round robin, so that the recovered instance's share below depends on its standing
        // (ejected or not) and not on latency. Under peak-EWMA, one stall of its node (60 ms,
        // by SIGSTOP, early in the 600 requests) left it 19-31 of them, and a loaded machine
        // stalls that long now and then: the check failed once so (16 of 600).
        let rr = "balancer = \"round-robin\"";
        let mut c = Cluster::new();
        c.chain(4, |s| match s.name.as_str() {
            "n2" => s.service_with("web", app_addr(3), "http", rr),
            "n3" => s.service_with("web", app_addr(4), "http", rr),
            "n4" => s.service_with("web", app_addr(5), "http", rr),
            _ => s,
        });
        c.node("n1")
            .wait_instances("web", &["n2", "n3", "n4"])
            .await;
        let out = c.node("n1").outbound();
        apply(
            &c,
            "n1",
            r#"
[[circuit]]
name = "web-outliers"
service = "web"
consecutive_failures = 5
base_ejection = "3s"
"#,
        )
        .await;

        // Until the bad instance is out: it gets every third request.
        let done = load(out, 300, 4, |_| Req::get("web", "/")).await;
        let failed = done.iter().filter(|d| d.status() != 200).count();
        let ejections = metric(&c, "n1", "murmur_ejections_total", &[("peer", "n4")]).await;
        println!(
            "before ejection: {failed} of 300 failed; the bad instance saw {} requests; \
             ejections of n4: {ejections}",
            bad.count()
        );
        assert_eq!(ejections, 1.0);
        assert!(failed >= 5, "{failed}");

        // Once it is out: 2000 requests, none to it.
        let bad_before = bad.count();
        let done = load(out, 2000, 8, |_| Req::get("web", "/")).await;
        let good = done.iter().filter(|d| d.status() == 200).count();
        println!(
            "once ejected: {good} of 2000 succeeded ({:.2} %); the bad instance saw {} more; \
             good instances served {} and {}",
            pct(good, 2000),
            bad.count() - bad_before,
            good1.count(),
            good2.count()
        );
        assert!(pct(good, 2000) >= 99.9, "{good}");

        // It recovers; after its ejection time a probe finds it healthy and it is back.
        bad.set(Failing::Never);
        let recovered = bad.count();
        let (_, took) = wait_until(
            "the recovered instance to take traffic again",
            Duration::from_secs(40),
            || async {
                let done = load(out, 30, 3, |_| Req::get("web", "/")).await;
                assert!(done.iter().all(|d| d.status() == 200));
                let served = bad.count() - recovered;
                if served >= 5 {
                    Ok(())
                } else {
                    Err(format!("{served} served"))
                }
            },
        )
        .await;
        let done = load(out, 600, 4, |_| Req::get("web", "/")).await;
        let by_c = done
            .iter()
            .filter(|d| d.reply.as_ref().is_ok_and(|r| r.text().starts_with("c ")))
            .count();
        println!(
            "recovered instance back in after {took:?}; it then served {by_c} of 600 ({:.1} %)",
            pct(by_c, 600)
        );
        assert!(done.iter().all(|d| d.status() == 200));
        // Back in, it gets its turn again: a third of the requests.
        assert!(by_c >= 180, "{by_c}");
    });
}

#[test]
fn requests_beyond_max_pending_fail_at_once() {
    netns::run(|| async {
        let app = SlowApp::start(app_addr(3), Duration::from_millis(800)).await;
        let c = Cluster::serving_pair("slow", app_addr(3), "http").await;
        apply(
            &c,
            "n1",
            r#"
[[circuit]]
name = "slow-pending"
service = "slow"
max_pending = 2
"#,
        )
        .await;
        let done = load(c.node("n1").outbound(), 6, 6, |_| Req::get("slow", "/")).await;
        let statuses: Vec<u16> = done.iter().map(|d| d.status()).collect();
        let refused: Vec<_> = done.iter().filter(|d| d.status() == 503).collect();
        println!("6 concurrent requests with max_pending 2: statuses {statuses:?}");
        assert_eq!(refused.len(), 4);
        assert_eq!(done.iter().filter(|d| d.status() == 200).count(), 2);
        let r = refused[0].reply.as_ref().unwrap();
        assert_eq!(r.headers["x-murmur-error"], "overloaded");
        assert!(
            r.text().contains("circuit \"slow-pending\""),
            "{}",
            r.text()
        );
        assert_eq!(app.counts().0, 2, "the app saw only the two admitted");
        assert_eq!(
            metric(&c, "n1", "murmur_overloaded_total", &[("service", "slow")]).await,
            4.0
        );
    });
}

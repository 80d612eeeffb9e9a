//! Routes end to end through real nodes: a 90/10 canary split by version label, header-based
//! routing, a split changed live, and fault injection (issue 6, acceptance 1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::apps::EchoApp;
use murmur_tests::traffic::{Req, apply, load, pct};
use murmur_tests::{Cluster, netns};

fn app_addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

/// n1 calls `web`; n2 serves it as version v1, n3 as version v2.
async fn canary_mesh() -> Cluster {
    let (v1, v2) = (app_addr(3, 8080), app_addr(4, 8080));
    EchoApp::start(v1, "v1").await;
    EchoApp::start(v2, "v2").await;
    let mut c = Cluster::new();
    c.chain(3, |s| match s.name.as_str() {
        "n2" => s.service_with("web", v1, "http", "labels = { version = \"v1\" }"),
        "n3" => s.service_with("web", v2, "http", "labels = { version = \"v2\" }"),
        _ => s,
    });
    c.node("n1").wait_instances("web", &["n2", "n3"]).await;
    c
}

/// `(v1, v2, other)` counts of a run's answers.
fn versions(done: &[murmur_tests::traffic::Done]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for d in done {
        match d.reply.as_ref().map(|r| r.text()) {
            Ok(t) if d.status() == 200 && t.starts_with("v1 ") => counts.0 += 1,
            Ok(t) if d.status() == 200 && t.starts_with("v2 ") => counts.1 += 1,
            _ => counts.2 += 1,
        }
    }
    counts
}

const CANARY: &str = r#"
[[route]]
name = "web-canary"
service = "web"
backends = [{ service = "web", subset = { version = "v1" }, weight = 90 },
            { service = "web", subset = { version = "v2" }, weight = 10 }]

[[route]]
name = "web-testers"
service = "web"
priority = 10
match = { path = { prefix = "/" }, headers = [{ name = "x-tester", exact = "1" }] }
backends = [{ service = "web", subset = { version = "v2" } }]
"#;

#[test]
fn a_90_10_split_lands_near_90_10_and_a_header_rule_sends_everything_to_v2() {
    netns::run(|| async {
        let c = canary_mesh().await;
        let out = c.node("n1").outbound();
        apply(&c, "n2", CANARY).await;

        let started = Instant::now();
        let done = load(out, 2000, 8, |i| Req::get("web", &format!("/item/{i}"))).await;
        let (v1, v2, other) = versions(&done);
        println!(
            "90/10 split over 2000 requests: v1 {v1} ({:.1} %), v2 {v2} ({:.1} %), other {other}, \
             in {:?}",
            pct(v1, 2000),
            pct(v2, 2000),
            started.elapsed()
        );
        assert_eq!(other, 0, "every request answered by v1 or v2");
        // Binomial: sd of the v2 share is 0.67 points; 3 points is 4.5 sd.
        assert!(
            (pct(v2, 2000) - 10.0).abs() <= 3.0,
            "v2 share {}",
            pct(v2, 2000)
        );

        let done = load(out, 300, 4, |_| {
            Req::get("web", "/t").header("x-tester", "1")
        })
        .await;
        let (v1, v2, other) = versions(&done);
        println!("header rule (x-tester: 1), 300 requests: v1 {v1}, v2 {v2}, other {other}");
        assert_eq!((v1, v2, other), (0, 300, 0));
        // A header value that does not match takes the canary split again.
        let done = load(out, 200, 4, |_| {
            Req::get("web", "/t").header("x-tester", "2")
        })
        .await;
        let (v1, v2, _) = versions(&done);
        println!("x-tester: 2, 200 requests: v1 {v1}, v2 {v2}");
        assert!(v1 > 150, "v1 {v1}");

        // The split changes live: the same document, re-applied with other weights.
        apply(
            &c,
            "n3",
            &CANARY
                .replace("weight = 90", "weight = 50")
                .replace("weight = 10", "weight = 50"),
        )
        .await;
        let done = load(out, 1000, 8, |_| Req::get("web", "/")).await;
        let (v1, v2, other) = versions(&done);
        println!("after re-applying as 50/50: v1 {v1}, v2 {v2}, other {other} of 1000");
        assert_eq!(other, 0);
        assert!(
            (pct(v2, 1000) - 50.0).abs() <= 6.0,
            "v2 share {}",
            pct(v2, 1000)
        );
    });
}

#[test]
fn faults_abort_a_share_of_requests_and_delay_others() {
    netns::run(|| async {
        let c = canary_mesh().await;
        let out = c.node("n1").outbound();
        apply(
            &c,
            "n1",
            r#"
[[route]]
name = "web-chaos"
service = "web"
match = { headers = [{ name = "x-chaos", present = true }] }
backends = [{ service = "web", subset = { version = "v1" } }]
fault = { abort = { status = 503, percent = 50 } }

[[route]]
name = "web-slow"
service = "web"
match = { path = { exact = "/slow" } }
backends = [{ service = "web", subset = { version = "v1" } }]
fault = { delay = { duration = "300ms", percent = 100 } }
"#,
        )
        .await;
        let done = load(out, 1000, 8, |_| {
            Req::get("web", "/x").header("x-chaos", "yes")
        })
        .await;
        let aborted: Vec<_> = done.iter().filter(|d| d.status() == 503).collect();
        let ok = done.iter().filter(|d| d.status() == 200).count();
        println!(
            "abort 50 % with 503: {} aborted, {ok} answered by v1, of 1000",
            aborted.len()
        );
        assert_eq!(aborted.len() + ok, 1000);
        assert!((pct(aborted.len(), 1000) - 50.0).abs() <= 6.0);
        let r = aborted[0].reply.as_ref().unwrap();
        assert_eq!(r.headers["x-murmur-error"], "fault-injected");
        assert!(r.text().contains("route \"web-chaos\""), "{}", r.text());
        // Without the header, no fault.
        let done = load(out, 200, 4, |_| Req::get("web", "/x")).await;
        assert!(done.iter().all(|d| d.status() == 200));

        let t = Instant::now();
        let done = load(out, 5, 5, |_| Req::get("web", "/slow")).await;
        let took = t.elapsed();
        println!("delay fault 300 ms: 5 concurrent requests took {took:?}");
        assert!(done.iter().all(|d| d.status() == 200));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        let m = murmur_tests::traffic::metric(
            &c,
            "n1",
            "murmur_faults_injected_total",
            &[("route", "web-slow"), ("fault", "delay")],
        )
        .await;
        assert_eq!(m, 5.0);
    });
}

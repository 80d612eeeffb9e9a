//! Timeouts end to end: a route's request timeout answers 504 long before a slow backend would,
//! naming the timeout, and the deadline travels to the serving node, which cancels the call to
//! its app; per-try timeouts with retries (issue 6, acceptance 2); a caller that goes away
//! cancels the call to the app on the serving node too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::apps::SlowApp;
use murmur_tests::http::send;
use murmur_tests::traffic::{apply, metric};
use murmur_tests::{Cluster, netns, wait_until};

/// n1 calls `slow`; n2 serves it from an app that takes 2 s per request.
async fn slow_mesh() -> (Cluster, SlowApp) {
    let addr = SocketAddr::from((Cluster::ip(3), 8080));
    let app = SlowApp::start(addr, Duration::from_secs(2)).await;
    let c = Cluster::serving_pair("slow", addr, "http").await;
    (c, app)
}

async fn wait_counts(app: &SlowApp, want: (u64, u64, u64)) {
    wait_until(
        &format!("the app to count (started, answered, cancelled) = {want:?}"),
        Duration::from_secs(10),
        || async {
            let got = app.counts();
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await;
}

#[test]
fn a_200ms_route_timeout_answers_504_in_time_and_the_backend_sees_the_cancellation() {
    netns::run(|| async {
        let (c, app) = slow_mesh().await;
        let out = c.node("n1").outbound();
        apply(
            &c,
            "n2",
            r#"
[[route]]
name = "slow-all"
service = "slow"
backends = [{ service = "slow" }]

[[timeout]]
name = "slow-timeouts"
service = "slow"
route = "slow-all"
request = "200ms"
"#,
        )
        .await;

        let started = Instant::now();
        let r = send(out, "GET", "/work", &[("host", "slow")], vec![])
            .await
            .unwrap();
        let took = started.elapsed();
        println!(
            "request timeout 200ms against a 2 s backend: {} after {took:?}: {}",
            r.status,
            r.text().trim()
        );
        assert_eq!(r.status, 504);
        assert!(
            took < Duration::from_millis(1500),
            "504 well before the backend's 2 s: {took:?}"
        );
        assert_eq!(r.headers["x-murmur-error"], "timeout");
        assert_eq!(r.headers["x-murmur-timeout"], "request");
        assert_eq!(
            r.text().trim(),
            "the request timeout (200ms) expired before slow answered (timeout \"slow-timeouts\")"
        );
        // The serving node had the deadline and dropped the call: the app saw its connection
        // close before it could answer.
        wait_counts(&app, (1, 0, 1)).await;
        println!(
            "backend: (started, answered, cancelled) = {:?}",
            app.counts()
        );
        assert_eq!(
            metric(
                &c,
                "n1",
                "murmur_timeouts_total",
                &[("service", "slow"), ("timeout", "request")]
            )
            .await,
            1.0
        );
    });
}

#[test]
fn a_caller_that_goes_away_cancels_the_call_to_the_app_on_the_serving_node() {
    use tokio::io::AsyncWriteExt;
    netns::run(|| async {
        let (c, app) = slow_mesh().await;
        // No timeout anywhere: only the caller's leaving can end the call before 2 s.
        let mut client = tokio::net::TcpStream::connect(c.node("n1").outbound())
            .await
            .unwrap();
        client
            .write_all(b"GET /work HTTP/1.1\r\nhost: slow\r\n\r\n")
            .await
            .unwrap();
        wait_counts(&app, (1, 0, 0)).await;
        let left = Instant::now();
        drop(client);
        wait_counts(&app, (1, 0, 1)).await;
        println!(
            "the app saw the cancellation {:?} after the client left (it would answer after 2 s)",
            left.elapsed()
        );
    });
}

#[test]
fn per_try_timeouts_are_retried_and_each_attempt_is_cancelled_on_the_backend() {
    netns::run(|| async {
        let (c, app) = slow_mesh().await;
        let out = c.node("n1").outbound();
        apply(
            &c,
            "n1",
            r#"
[[timeout]]
name = "slow-tries"
service = "slow"
request = "1500ms"
per_try = "150ms"

[[retry]]
name = "slow-retry"
service = "slow"
statuses = [504]
max_retries = 2
backoff = { base = "10ms", max = "20ms" }
"#,
        )
        .await;
        let started = Instant::now();
        let r = send(out, "GET", "/work", &[("host", "slow")], vec![])
            .await
            .unwrap();
        let took = started.elapsed();
        println!(
            "per-try 150ms, 2 retries: {} after {took:?}: {}",
            r.status,
            r.text().trim()
        );
        assert_eq!(r.status, 504);
        assert_eq!(r.headers["x-murmur-timeout"], "per-try");
        assert!(r.text().contains("per-try timeout (150ms)"), "{}", r.text());
        assert!(took < Duration::from_millis(1500), "{took:?}");
        wait_counts(&app, (3, 0, 3)).await;
        println!(
            "backend: (started, answered, cancelled) = {:?}",
            app.counts()
        );
        assert_eq!(
            metric(&c, "n1", "murmur_retries_total", &[("service", "slow")]).await,
            2.0
        );
    });
}

//! Outbound HTTP through a plan: the exchange, the dial and its typed failures.

use std::time::Duration;

use murmur_membership::records::Protocol;
use murmur_transport::testing::TestPki;

use super::harness::{get, http_app, instance, local, node, nowhere, web_pair};

#[tokio::test]
async fn a_request_reaches_the_app_and_its_answer_comes_back() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let (a, b) = web_pair(&pki, app, "");
    let (status, body) = get(a.outbound().await, "web", "/hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("b-app GET /hello"), "{body}");
    assert!(
        a.requests()
            .contains(r#"direction="outbound",service="web",peer="b",status_class="2xx"} 1"#),
        "{}",
        a.requests()
    );
    assert!(
        b.requests()
            .contains(r#"direction="inbound",service="web",peer="a",status_class="2xx"} 1"#),
        "{}",
        b.requests()
    );
}

#[tokio::test]
async fn an_unreachable_instance_is_passed_over_and_named_when_none_is_left() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let b = node(
        &pki,
        "b",
        &["web"],
        &[local("web", app, Protocol::Http)],
        "",
    );
    let a = node(&pki, "a", &[], &[], "");
    let out = a.outbound().await;
    a.sees(
        "web",
        vec![
            instance("web", "ghost", nowhere()),
            instance("web", "b", b.addr),
        ],
    );
    // Round robin puts the ghost first on every other request: each still reaches b.
    for _ in 0..4 {
        let (status, body) = get(out, "web", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("b-app"), "{body}");
    }
    a.sees("web", vec![instance("web", "ghost", nowhere())]);
    let (status, body) = get(out, "web", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("ghost: cannot reach"), "{body}");
}

#[tokio::test]
async fn a_node_that_is_not_who_the_view_says_gets_nothing() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let (a, b) = web_pair(&pki, app, "");
    let out = a.outbound().await;
    assert_eq!(get(out, "web", "/").await.0, 200);
    // The view now says node c is at b's address: the open connection proves it is b.
    a.sees("web", vec![instance("web", "c", b.addr)]);
    let (status, body) = get(out, "web", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("is spiffe://t.test/node/b, not node c"),
        "{body}"
    );
}

#[tokio::test]
async fn a_node_whose_certificate_lacks_the_service_is_not_sent_it() {
    let pki = TestPki::new("t.test");
    // The view says b serves web, but b's certificate names only api.
    let b = node(&pki, "b", &["api"], &[], "");
    let a = node(&pki, "a", &[], &[], "");
    a.sees("web", vec![instance("web", "b", b.addr)]);
    let (status, body) = get(a.outbound().await, "web", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("b: its certificate does not name service web"),
        "{body}"
    );
    assert!(!b.requests().contains("inbound"), "b saw a request");
}

#[tokio::test]
async fn the_request_timeout_answers_504_and_counts_it() {
    let pki = TestPki::new("t.test");
    let app = http_app("slow", Duration::from_secs(5)).await;
    let policy = "[[timeout]]\nname = \"t\"\nservice = \"web\"\nrequest = \"200ms\"\n";
    let (a, _b) = web_pair(&pki, app, policy);
    let started = std::time::Instant::now();
    let (status, body) = get(a.outbound().await, "web", "/").await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the app's answer was awaited"
    );
    let mut timeouts = String::new();
    a.proxy.telemetry.timeouts.render(&mut timeouts);
    assert!(
        timeouts.contains(r#"service="web",timeout="request"} 1"#),
        "{timeouts}"
    );
}

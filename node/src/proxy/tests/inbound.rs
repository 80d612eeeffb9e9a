//! The serving side: one preamble for HTTP and TCP streams, then the local instance.

use std::time::Duration;

use murmur_membership::records::Protocol;
use murmur_transport::testing::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::{get, http_app, instance, local, node, tcp_echo};

#[tokio::test]
async fn a_node_refuses_a_service_it_does_not_serve_and_the_caller_moves_on() {
    let pki = TestPki::new("t.test");
    let app = http_app("c-app", Duration::ZERO).await;
    // b's certificate allows web, but b runs no instance of it; c does.
    let b = node(&pki, "b", &["web"], &[], "");
    let c = node(
        &pki,
        "c",
        &["web"],
        &[local("web", app, Protocol::Http)],
        "",
    );
    let a = node(&pki, "a", &[], &[], "");
    let out = a.outbound().await;
    a.sees(
        "web",
        vec![instance("web", "b", b.addr), instance("web", "c", c.addr)],
    );
    for _ in 0..4 {
        let (status, body) = get(out, "web", "/").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("c-app"), "{body}");
    }
    a.sees("web", vec![instance("web", "b", b.addr)]);
    let (status, body) = get(out, "web", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("node b does not serve web"), "{body}");
    // The refusal is counted on b, as an inbound error from a of a service b does not know:
    // a peer's made-up names never become labels.
    assert!(
        b.requests()
            .contains(r#"direction="inbound",service="_unknown",peer="a",status_class="error"}"#),
        "{}",
        b.requests()
    );
}

#[tokio::test]
async fn an_http_stream_for_a_tcp_service_is_refused() {
    let pki = TestPki::new("t.test");
    let echo = tcp_echo().await;
    let b = node(&pki, "b", &["db"], &[local("db", echo, Protocol::Tcp)], "");
    let a = node(&pki, "a", &[], &[], "");
    a.sees("db", vec![instance("db", "b", b.addr)]);
    let (status, body) = get(a.outbound().await, "db", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("db is a TCP service"), "{body}");
}

#[tokio::test]
async fn a_tcp_stream_is_refused_when_the_app_is_down_and_carried_when_it_is_up() {
    let pki = TestPki::new("t.test");
    let echo = tcp_echo().await;
    let down = super::harness::nowhere();
    let b = node(&pki, "b", &["db"], &[local("db", down, Protocol::Tcp)], "");
    let c = node(&pki, "c", &["db"], &[local("db", echo, Protocol::Tcp)], "");
    let a = node(&pki, "a", &[], &[], "");
    let port = a.upstream("db").await;
    // b's app is down: b refuses before any byte is copied, and the connection goes to c.
    a.sees(
        "db",
        vec![instance("db", "b", b.addr), instance("db", "c", c.addr)],
    );
    for i in 0..4 {
        let mut s = TcpStream::connect(port).await.unwrap();
        let msg = format!("ping {i}\n");
        s.write_all(msg.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut back))
            .await
            .expect("echo within 10 s")
            .unwrap();
        assert_eq!(back, msg);
    }
    assert!(
        b.requests()
            .contains(r#"direction="inbound",service="db",peer="a",status_class="error"}"#),
        "b never refused: {}",
        b.requests()
    );
}

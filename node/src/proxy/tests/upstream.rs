//! Outbound TCP through a plan: the same decision as HTTP, acknowledged streams.

use std::time::Duration;

use murmur_membership::records::Protocol;
use murmur_transport::testing::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::{instance, local, node, nowhere, tcp_echo};

/// Sends `msg`, half-closes, and reads what comes back (empty when the proxy gave up).
async fn echo(port: std::net::SocketAddr, msg: &str) -> String {
    let mut s = TcpStream::connect(port).await.unwrap();
    s.write_all(msg.as_bytes()).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut back))
        .await
        .expect("an end within 10 s")
        .unwrap_or_default();
    back
}

#[tokio::test]
async fn a_tcp_connection_goes_through_and_both_ends_close_on_their_own() {
    let pki = TestPki::new("t.test");
    let app = tcp_echo().await;
    let b = node(&pki, "b", &["db"], &[local("db", app, Protocol::Tcp)], "");
    let a = node(&pki, "a", &[], &[], "");
    a.sees("db", vec![instance("db", "b", b.addr)]);
    let port = a.upstream("db").await;
    assert_eq!(echo(port, "hello\n").await, "hello\n");
    assert!(
        a.requests()
            .contains(r#"direction="outbound",service="db",peer="b",status_class="closed"} 1"#),
        "{}",
        a.requests()
    );
}

#[tokio::test]
async fn tcp_passes_over_unreachable_and_impostor_instances() {
    let pki = TestPki::new("t.test");
    let app = tcp_echo().await;
    let b = node(&pki, "b", &["db"], &[local("db", app, Protocol::Tcp)], "");
    let rogue = node(&pki, "rogue", &["other"], &[], "");
    let a = node(&pki, "a", &[], &[], "");
    let port = a.upstream("db").await;
    a.sees(
        "db",
        vec![
            instance("db", "ghost", nowhere()),
            instance("db", "rogue", rogue.addr),
            instance("db", "b", b.addr),
        ],
    );
    for i in 0..6 {
        let msg = format!("{i}\n");
        assert_eq!(echo(port, &msg).await, msg);
    }
    assert!(!rogue.requests().contains("inbound"), "rogue saw a stream");
    // With no instance left that may serve it, the connection is closed with nothing copied.
    a.sees("db", vec![instance("db", "rogue", rogue.addr)]);
    assert_eq!(echo(port, "lost\n").await, "");
    assert!(
        a.requests()
            .contains(r#"direction="outbound",service="db",peer="-",status_class="error"} 1"#),
        "{}",
        a.requests()
    );
}

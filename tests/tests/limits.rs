//! 2 000 idle connections through one peer (a database pool behind an `[[upstream]]`) must not
//! make a new request to that peer wait unboundedly: with the default upstream cap the pool
//! cannot take every stream the peer allows and the request succeeds; with a cap above the
//! peer's stream limit the request fails fast, saying why.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::apps::{EchoApp, TcpEcho};
use murmur_tests::{Cluster, NodeSpec, http, netns, wait_until};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const POOL: usize = 2000;

/// n1 calls web and db on n2; n1 has `upstream_limits` for its `[[upstream]]` of db.
async fn mesh(upstream_limits: &str) -> (Cluster, EchoApp, TcpEcho, SocketAddr) {
    let web = EchoApp::start("127.0.1.3:8080".parse().unwrap(), "web").await;
    let db = TcpEcho::start("127.0.1.3:6379".parse().unwrap()).await;
    let port: SocketAddr = "127.0.0.2:6380".parse().unwrap();
    let mut c = Cluster::new();
    let mut n1 = NodeSpec::new("n1", Cluster::ip(2)).upstream("db", port);
    n1.extra_toml.push_str(upstream_limits);
    c.add(n1);
    let seed = c.node("n1").mesh();
    c.add(
        NodeSpec::new("n2", Cluster::ip(3))
            .seed(seed)
            .service("web", web.addr, "http")
            .service("db", db.addr, "tcp"),
    );
    c.node("n1").wait_instances("web", &["n2"]).await;
    c.node("n1").wait_instances("db", &["n2"]).await;
    (c, web, db, port)
}

/// Opens the pool: `POOL` connections that each send one byte and then idle.
async fn pool(port: SocketAddr) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        let mut s = TcpStream::connect(port).await.unwrap();
        let _ = s.write_all(b"x").await;
        conns.push(s);
    }
    // Let every connection reach its stream (or its refusal).
    tokio::time::sleep(Duration::from_secs(3)).await;
    conns
}

/// One request to web through n1, and how long it took.
async fn call_web(c: &Cluster) -> (u16, String, Duration) {
    let started = Instant::now();
    let r = http::send(
        c.node("n1").outbound(),
        "GET",
        "/",
        &[("host", "web")],
        vec![],
    )
    .await
    .unwrap();
    (r.status, r.text(), started.elapsed())
}

#[test]
fn with_the_default_cap_a_pool_of_two_thousand_leaves_requests_to_the_peer_working() {
    netns::run(|| async {
        let (c, _web, _db, port) = mesh("").await;
        let _pool = pool(port).await;
        let (status, text, took) = call_web(&c).await;
        println!("with 2 000 pooled connections: {status} in {took:?}");
        assert_eq!(status, 200, "{text}");
        let metrics = c.node("n1").admin_get("/metrics").await.unwrap().text();
        // 512 held (the default cap), the rest closed at once.
        assert!(
            metrics.contains(&format!(
                "murmur_listener_refused_total{{listener=\"upstream:db\"}} {}",
                POOL - 512
            )),
            "{metrics}"
        );
    });
}

#[test]
fn past_the_peer_s_stream_limit_a_request_fails_fast_and_says_why() {
    netns::run(|| async {
        let limits = "\n[limits.upstream]\nmax_connections = 4000\n";
        let (c, _web, _db, port) = mesh(limits).await;
        let pool = pool(port).await;
        let (status, text, took) = call_web(&c).await;
        println!("with 2 000 pooled connections past the stream limit: {status} in {took:?}");
        assert!(took < Duration::from_secs(5), "waited {took:?}");
        assert_eq!(status, 503, "{text}");
        assert!(text.contains("as many streams"), "{text}");
        let metrics = c.node("n1").admin_get("/metrics").await.unwrap().text();
        assert!(
            !metrics.contains("murmur_quic_streams_exhausted_total 0\n"),
            "{metrics}"
        );
        // The pool closes: requests go through again.
        drop(pool);
        wait_until("web served again", Duration::from_secs(30), || async {
            let (status, text, _) = call_web(&c).await;
            (status == 200)
                .then_some(())
                .ok_or(format!("{status} {text}"))
        })
        .await;
    });
}

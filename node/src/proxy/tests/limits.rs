//! Limits of the data path: a peer out of streams fails a request fast with a clear error, and
//! the local listeners cap their connections and close silent ones.

use std::sync::atomic::Ordering;
use std::time::Duration;

use murmur_membership::records::Protocol;
use murmur_transport::endpoint::QuicSettings;
use murmur_transport::testing::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::harness::{get, http_app, instance, local, node, node_with, tcp_echo};
use crate::listener::ListenerLimits;
use crate::proxy::runtime::External;

/// A TCP connection through `port` that is established end to end (one echo came back).
async fn open_idle(port: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(port).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut one))
        .await
        .expect("an echo within 10 s")
        .unwrap();
    s
}

/// Whether the server closes `s` within `within` (a read sees the end or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_peer_out_of_streams_fails_a_request_fast_with_a_clear_error() {
    let pki = TestPki::new("t.test");
    let (db, web) = (tcp_echo().await, http_app("b-app", Duration::ZERO).await);
    // b lets each peer hold 16 streams at once.
    let b = node_with(
        &pki,
        "b",
        &["db", "web"],
        &[
            local("db", db, Protocol::Tcp),
            local("web", web, Protocol::Http),
        ],
        "",
        QuicSettings {
            max_bidi_streams: 16,
            ..QuicSettings::default()
        },
        External::Allow,
    );
    let a = node_with(
        &pki,
        "a",
        &[],
        &[],
        "",
        QuicSettings {
            stream_wait: Duration::from_millis(300),
            ..QuicSettings::default()
        },
        External::Allow,
    );
    a.sees("db", vec![instance("db", "b", b.addr)]);
    a.sees("web", vec![instance("web", "b", b.addr)]);
    let (db_port, out) = (a.upstream("db").await, a.outbound().await);
    // A pool of idle database connections takes every stream b allows.
    let mut pool = Vec::new();
    for _ in 0..16 {
        pool.push(open_idle(db_port).await);
    }
    let started = Instant::now();
    let (status, body) = get(out, "web", "/").await;
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("as many streams"), "{body}");
    assert!(took < Duration::from_secs(3), "waited {took:?}");
    let exhausted = a
        .proxy
        .endpoint
        .counters()
        .streams_exhausted
        .load(Ordering::Relaxed);
    assert!(exhausted >= 1);
    // Closing pooled connections frees streams: requests go through again. (quinn returns
    // stream credit once more than an eighth of the limit is free: here 3 of 16.)
    pool.truncate(12);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(out, "web", "/").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no stream freed: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_upstream_listener_at_its_cap_closes_the_next_connection_at_once() {
    let pki = TestPki::new("t.test");
    let db = tcp_echo().await;
    let b = node(&pki, "b", &["db"], &[local("db", db, Protocol::Tcp)], "");
    let a = node(&pki, "a", &[], &[], "");
    a.sees("db", vec![instance("db", "b", b.addr)]);
    let limits = ListenerLimits {
        max_connections: 4,
        ..ListenerLimits::UPSTREAM
    };
    let (port, gate) = a.upstream_with("db", limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open_idle(port).await);
    }
    let mut over = TcpStream::connect(port).await.unwrap();
    assert!(closed_within(&mut over, Duration::from_secs(2)).await);
    assert_eq!(gate.stats.refused.load(Ordering::Relaxed), 1);
    assert_eq!(gate.stats.open.load(Ordering::Relaxed), 4);
    // The held connections still work; one closed, one more fits.
    held[0].write_all(b"y").await.unwrap();
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.stats.open.load(Ordering::Relaxed) > 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _fits = open_idle(port).await;
}

#[tokio::test]
async fn silent_and_idle_outbound_connections_are_closed() {
    let pki = TestPki::new("t.test");
    let web = http_app("b-app", Duration::ZERO).await;
    let b = node(
        &pki,
        "b",
        &["web"],
        &[local("web", web, Protocol::Http)],
        "",
    );
    let a = node(&pki, "a", &[], &[], "");
    a.sees("web", vec![instance("web", "b", b.addr)]);
    let limits = ListenerLimits {
        max_connections: 100,
        first_byte_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
    };
    let (out, gate) = a.outbound_with(limits).await;
    // Nothing sent.
    let mut silent = TcpStream::connect(out).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    // Only an HTTP/2 preface.
    let mut preface = TcpStream::connect(out).await.unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut preface, Duration::from_secs(3)).await);
    // A keep-alive connection after one request.
    let mut kept = TcpStream::connect(out).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);
    assert_eq!(gate.stats.first_byte_timeouts.load(Ordering::Relaxed), 1);
    assert_eq!(gate.stats.idle_timeouts.load(Ordering::Relaxed), 2);
    // A slow request is not idling: it is answered.
    let slow = http_app("slow", Duration::from_millis(1500)).await;
    let c = node(
        &pki,
        "c",
        &["slow"],
        &[local("slow", slow, Protocol::Http)],
        "",
    );
    a.sees("slow", vec![instance("slow", "c", c.addr)]);
    let (status, body) = get(out, "slow", "/").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_outbound_port_is_bound_once_per_runtime_and_refused_when_busy() {
    let limits = crate::listener::ListenerSettings::default();
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let listeners = crate::proxy::bind(any, &[], &limits, 2).await.unwrap();
    let port = listeners.outbound.0.first.local_addr().unwrap();
    assert_eq!(listeners.outbound.0.others.len(), 1);
    assert_eq!(listeners.outbound.0.others[0].local_addr().unwrap(), port);
    // Another node's group on the same port, or any other listener there, fails the start.
    let err = crate::proxy::bind(port, &[], &limits, 2).await.unwrap_err();
    assert!(format!("{err:#}").contains("in use"), "{err:#}");
    let err = crate::proxy::bind(port, &[], &limits, 1).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("outbound proxy address"),
        "{err:#}"
    );
}

#[tokio::test]
async fn the_gateway_ports_are_bound_once_per_runtime_and_refused_when_busy() {
    use crate::proxy::gateway::{self, GatewaySettings};
    let settings = |listen, http_listen| GatewaySettings {
        listen,
        http_listen,
        certificates: Vec::new(),
        reload_interval: Duration::from_secs(60),
        max_connections_per_ip: 8,
        rate_per_ip: None,
        limits: ListenerLimits::GATEWAY,
    };
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let bound = gateway::bind(&settings(any, Some(any)), 2).await.unwrap();
    let http = bound.http.as_ref().unwrap();
    for spread in [&bound.tls, http] {
        assert_eq!(spread.others.len(), 1);
        let port = spread.first.local_addr().unwrap();
        assert_eq!(spread.others[0].local_addr().unwrap(), port);
    }
    // Either port taken, by another node's group or any listener, fails the start, naming it.
    let (tls, http) = (
        bound.tls.first.local_addr().unwrap(),
        http.first.local_addr().unwrap(),
    );
    let err = gateway::bind(&settings(tls, None), 2).await.unwrap_err();
    assert!(format!("{err:#}").contains("gateway.listen"), "{err:#}");
    let err = gateway::bind(&settings(any, Some(http)), 2)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("gateway.http_listen"),
        "{err:#}"
    );
}

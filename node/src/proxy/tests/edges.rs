//! Edges found by trying the data path as an attacker or a careless user would: server-wide
//! OPTIONS, credentials in a URL, two Host headers, a malformed chunked body, too many headers,
//! a service pointed at the node's own proxy, TCP ejections, a certificate rotated away from a
//! service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use murmur_membership::records::Protocol;
use murmur_transport::testing::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::harness::{get, http_app, instance, local, node, nowhere, web_pair};

/// Sends `request` as is to `proxy` and returns `(status, whole answer)`.
async fn raw(proxy: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// An app answering with the `Host` it was sent.
async fn host_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(format!(
                        "host={host}"
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn options_asterisk_reaches_the_instance_at_its_own_port() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let (a, _b) = web_pair(&pki, app, "");
    let out = a.outbound().await;
    let (status, text) = raw(
        out,
        b"OPTIONS * HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("b-app OPTIONS *"), "{text}");
}

#[tokio::test]
async fn credentials_in_the_url_do_not_reach_the_app_and_two_hosts_are_refused() {
    let pki = TestPki::new("t.test");
    let app = host_app().await;
    let (a, _b) = web_pair(&pki, app, "");
    let out = a.outbound().await;
    let (status, text) = raw(
        out,
        b"GET http://user:secret@web/x HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("host=web"), "{text}");
    assert!(!text.contains("secret"));
    let (status, text) = raw(
        out,
        b"GET /x HTTP/1.1\r\nHost: web\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("more than one Host"), "{text}");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_app_s_fault_not_the_instance_s() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    // One failure would eject b.
    let policy = "[[circuit]]\nname = \"c\"\nservice = \"web\"\nconsecutive_failures = 1\n";
    let (a, _b) = web_pair(&pki, app, policy);
    let out = a.outbound().await;
    for _ in 0..3 {
        let (status, text) = raw(
            out,
            b"POST /x HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n",
        )
        .await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("request body"), "{text}");
    }
    // b was not blamed: not ejected, and the next request goes there.
    assert_eq!(get(out, "web", "/").await.0, 200);
    let mut metrics = String::new();
    a.proxy.telemetry.ejections.render(&mut metrics);
    assert!(!metrics.contains("peer=\"b\""), "{metrics}");
}

#[tokio::test]
async fn more_than_a_hundred_headers_are_refused_by_the_parser_with_431() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let (a, _b) = web_pair(&pki, app, "");
    let out = a.outbound().await;
    let request = |n: usize| {
        let mut r = String::from("GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n");
        for i in 0..n {
            r.push_str(&format!("x-h{i}: v\r\n"));
        }
        r.push_str("\r\n");
        r
    };
    // hyper's limit, counting Host and Connection: the parser answers before any handler runs.
    assert_eq!(raw(out, request(98).as_bytes()).await.0, 200);
    assert_eq!(raw(out, request(120).as_bytes()).await.0, 431);
}

#[tokio::test]
async fn a_service_pointed_at_the_node_s_own_proxy_is_cut_off_by_the_hop_limit() {
    let pki = TestPki::new("t.test");
    let a = node(&pki, "a", &[], &[], "");
    let out = a.outbound().await;
    // b's instance of "loop" is a's own outbound proxy: every request comes back.
    let b = node(
        &pki,
        "b",
        &["loop"],
        &[local("loop", out, Protocol::Http)],
        "",
    );
    a.sees("loop", vec![instance("loop", "b", b.addr)]);
    let (status, text) = raw(
        out,
        b"GET / HTTP/1.1\r\nHost: loop\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 508, "{text}");
    assert!(text.contains("mesh proxies"), "{text}");
    // Nothing is left running round the loop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut m = String::new();
        a.proxy.telemetry.in_flight.render(&mut m);
        if m.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.ends_with(" 0"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tcp_ejections_are_counted() {
    let pki = TestPki::new("t.test");
    let echo = super::harness::tcp_echo().await;
    let b = node(&pki, "b", &["db"], &[local("db", echo, Protocol::Tcp)], "");
    let a = node(
        &pki,
        "a",
        &[],
        &[],
        "[[circuit]]\nname = \"c\"\nservice = \"db\"\nconsecutive_failures = 2\n",
    );
    a.sees(
        "db",
        vec![
            instance("db", "ghost", nowhere()),
            instance("db", "b", b.addr),
        ],
    );
    let port = a.upstream("db").await;
    for _ in 0..6 {
        let mut s = TcpStream::connect(port).await.unwrap();
        s.write_all(b"x").await.unwrap();
        s.shutdown().await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert_eq!(buf, b"x", "carried by b");
    }
    let mut metrics = String::new();
    a.proxy.telemetry.ejections.render(&mut metrics);
    assert!(
        metrics.contains("murmur_ejections_total{service=\"db\",peer=\"ghost\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_service_rotated_out_of_the_certificate_is_refused_on_older_connections() {
    let pki = TestPki::new("t.test");
    let app = http_app("b-app", Duration::ZERO).await;
    let (a, b) = web_pair(&pki, app, "");
    let out = a.outbound().await;
    assert_eq!(get(out, "web", "/").await.0, 200);
    // b's new certificate names no service; a's connection still carries the old one.
    let paths = pki.node("b", &[]);
    let material = murmur_transport::tls::load_material(&paths, &pki.trust_domain).unwrap();
    b.proxy.endpoint.tls().replace(material).unwrap();
    let (status, body) = get(out, "web", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no longer names web"), "{body}");
    let exhausted = a
        .proxy
        .endpoint
        .counters()
        .streams_exhausted
        .load(Ordering::Relaxed);
    assert_eq!(exhausted, 0);
}

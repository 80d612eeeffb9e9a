//! What unchanged apps send: an HTTP/1.1 upgrade carried over one stream after its `101` (and
//! refused like any request by authorization), CONNECT to TCP and HTTP services and to hosts
//! outside the mesh, and absolute-form requests for hosts outside it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use murmur_membership::records::Protocol;
use murmur_transport::testing::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::harness::{
    Node, get, http_app, instance, local, node, node_with, quic, tcp_echo, wait_for,
};
use crate::proxy::runtime::External;

/// An app that switches to an echo protocol on `Upgrade: echo` (answering with the path it
/// was asked for, then echoing every byte), and answers 200 to anything else.
async fn upgrade_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(
                    |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                        if req.headers().get("upgrade").is_none() {
                            *resp.body_mut() = Full::new(Bytes::from("plain"));
                            return Ok::<_, Infallible>(resp);
                        }
                        let path = req.uri().path().to_owned();
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let mut io = TokioIo::new(on.await.unwrap());
                            io.write_all(format!("hello {path}\n").as_bytes())
                                .await
                                .unwrap();
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                        *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
                        resp.headers_mut()
                            .insert("upgrade", "echo".parse().unwrap());
                        resp.headers_mut()
                            .insert("connection", "upgrade".parse().unwrap());
                        resp.headers_mut()
                            .insert("x-app", "switched".parse().unwrap());
                        Ok(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Node b serves `ws` (the upgrade app) under `policy`, node a calls it: a and b, and a's
/// outbound address. (The CA is returned too: it must outlive the nodes' endpoints.)
async fn ws_mesh(policy: &str) -> (TestPki, Node, Node, SocketAddr) {
    let pki = TestPki::new("t.test");
    let app = upgrade_app().await;
    let b = node(
        &pki,
        "b",
        &["ws"],
        &[local("ws", app, Protocol::Http)],
        policy,
    );
    let a = node(&pki, "a", &[], &[], "");
    let out = a.outbound().await;
    a.sees("ws", vec![instance("ws", "b", b.addr)]);
    (pki, a, b, out)
}

/// Reads a response head: `(status, head text)`.
async fn read_head(s: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("a head within 10 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed inside a head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, text)
}

/// Reads exactly `n` bytes.
async fn read_n(s: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .expect("bytes within 10 s")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

/// Reads the body a head announced with `content-length`.
async fn read_body(s: &mut TcpStream, head: &str) -> String {
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    read_n(s, len).await
}

/// Sends an upgrade request for `host`; returns the status, the head and the connection.
async fn upgrade(proxy: SocketAddr, host: &str) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut s).await;
    (status, head, s)
}

#[tokio::test]
async fn an_upgraded_connection_runs_over_one_stream_after_its_101() {
    let (_pki, a, b, out) = ws_mesh("").await;

    let (status, head, mut s) = upgrade(out, "ws.mesh").await;
    assert_eq!(status, 101, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("upgrade: echo") && lower.contains("connection: upgrade"),
        "{head}"
    );
    assert!(lower.contains("x-app: switched"), "{head}");
    assert_eq!(read_n(&mut s, 12).await, "hello /chat\n");
    for msg in ["ping\n", "a longer message\n"] {
        s.write_all(msg.as_bytes()).await.unwrap();
        assert_eq!(read_n(&mut s, msg.len()).await, msg);
    }
    drop(s);
    // One request each side, counted with its 101 once the connection closed.
    wait_for(|| {
        a.requests()
            .contains(r#"direction="outbound",service="ws",peer="b",status_class="1xx"} 1"#)
            && b.requests()
                .contains(r#"direction="inbound",service="ws",peer="a",status_class="1xx"} 1"#)
    })
    .await;
    // A plain request to the same service still works.
    let (status, body) = get(out, "ws", "/").await;
    assert_eq!((status, body.as_str()), (200, "plain"));
}

#[tokio::test]
async fn authorization_refuses_the_upgrade_request_with_403() {
    let policy = r#"
[[authz]]
name = "ws-authz"
service = "ws"
default = "deny"
rules = [{ name = "ops", action = "allow", callers = [{ spiffe = "spiffe://t.test/node/ops" }] }]
"#;
    let (_pki, _a, _b, out) = ws_mesh(policy).await;
    let (status, head, mut s) = upgrade(out, "ws").await;
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("x-murmur-authz: ws-authz/default"), "{head}");
    // Not switched: the connection speaks HTTP still, and the body says why.
    let body = read_body(&mut s, &head).await;
    assert!(body.contains("denied by authz \"ws-authz\""), "{body}");
}

#[tokio::test]
async fn a_rate_limit_counts_the_upgrade_request() {
    let policy = r#"
[[ratelimit]]
name = "ws-slow"
service = "ws"
rate = 1
per = "1h"
"#;
    let (_pki, _a, _b, out) = ws_mesh(policy).await;
    let (status, head, mut first) = upgrade(out, "ws").await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(read_n(&mut first, 12).await, "hello /chat\n");
    // The upgraded connection is not a stream of requests: it uses one token, however long.
    first.write_all(b"still here\n").await.unwrap();
    assert_eq!(read_n(&mut first, 11).await, "still here\n");
    let (status, head, _) = upgrade(out, "ws").await;
    assert_eq!(status, 429, "{head}");
    assert!(head.contains("x-murmur-ratelimit: ws-slow"), "{head}");
}

#[tokio::test]
async fn an_upgrade_on_a_mirrored_route_is_switched_and_not_copied() {
    let pki = TestPki::new("t.test");
    let app = upgrade_app().await;
    let b = node(&pki, "b", &["ws"], &[local("ws", app, Protocol::Http)], "");
    let policy = r#"
[[route]]
name = "ws-mirrored"
service = "ws"
backends = [{ service = "ws" }]
mirror = { service = "ws", percent = 100 }
"#;
    let a = node(&pki, "a", &[], &[], policy);
    let out = a.outbound().await;
    a.sees("ws", vec![instance("ws", "b", b.addr)]);
    let mirrored = |outcome: &str| {
        let mut text = String::new();
        a.proxy.telemetry.mirrored.render(&mut text);
        text.contains(&format!(
            r#"{{service="ws",route="ws-mirrored",outcome="{outcome}"}} 1"#
        ))
    };

    let (status, head, mut s) = upgrade(out, "ws").await;
    assert_eq!(status, 101, "{head}");
    assert_eq!(read_n(&mut s, 12).await, "hello /chat\n");
    assert!(mirrored("skipped"), "an upgrade is not copied");
    // A plain request on the same route is.
    let (status, body) = get(out, "ws", "/").await;
    assert_eq!((status, body.as_str()), (200, "plain"));
    wait_for(|| mirrored("sent")).await;
}

/// Sends `CONNECT target` and returns the status, head and connection.
async fn connect(proxy: SocketAddr, target: &str) -> (u16, String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let (status, head) = read_head(&mut s).await;
    (status, head, s)
}

#[tokio::test]
async fn connect_tunnels_to_tcp_and_http_services_and_by_virtual_ip() {
    let pki = TestPki::new("t.test");
    let echo = tcp_echo().await;
    let web = http_app("web-app", Duration::ZERO).await;
    let b = node(
        &pki,
        "b",
        &["db", "web"],
        &[
            local("db", echo, Protocol::Tcp),
            local("web", web, Protocol::Http),
        ],
        "",
    );
    let a = node(&pki, "a", &[], &[], "");
    let out = a.outbound().await;
    let mut db = instance("db", "b", b.addr);
    db.protocol = Protocol::Tcp;
    a.sees("db", vec![db]);
    a.sees("web", vec![instance("web", "b", b.addr)]);

    // A TCP service: the 200 comes once b acknowledged, then bytes go through.
    let (status, head, mut s) = connect(out, "db.mesh:6379").await;
    assert_eq!(status, 200, "{head}");
    s.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_n(&mut s, 6).await, "PING\r\n");
    drop(s);

    // An HTTP service: the tunnel's requests are served as HTTP, whatever host they name.
    let vip = a.proxy.vips.borrow().of("web").unwrap().v4.unwrap();
    for target in ["web:80".to_owned(), format!("{vip}:8080")] {
        let (status, head, mut s) = connect(out, &target).await;
        assert_eq!(status, 200, "{target}: {head}");
        s.write_all(b"GET /in HTTP/1.1\r\nHost: whatever\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).await.unwrap();
        assert!(
            rest.starts_with("HTTP/1.1 200") && rest.ends_with("web-app GET /in"),
            "{rest}"
        );
    }
    wait_for(|| {
        a.requests()
            .contains(r#"direction="outbound",service="web",peer="b",status_class="2xx"} 2"#)
    })
    .await;

    // Unknown services are refused with the reason, not tunnelled anywhere.
    let (status, head, _) = connect(out, "nope.mesh:80").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("x-murmur-error: unknown-service"), "{head}");
}

#[tokio::test]
async fn hosts_outside_the_mesh_are_passed_through_or_refused_as_configured() {
    let pki = TestPki::new("t.test");
    let outside = http_app("outside", Duration::ZERO).await;
    let allow = node(&pki, "a", &[], &[], "");
    let deny = node_with(&pki, "d", &[], &[], "", quic(), External::Deny);
    let (allow_out, deny_out) = (allow.outbound().await, deny.outbound().await);

    // CONNECT: allowed, the tunnel reaches the host; denied, a 403 naming host and setting.
    let (status, head, mut s) = connect(allow_out, &outside.to_string()).await;
    assert_eq!(status, 200, "{head}");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert!(rest.ends_with("outside GET /x"), "{rest}");
    let (status, head, mut s) = connect(deny_out, &outside.to_string()).await;
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("x-murmur-error: external-denied"), "{head}");
    let body = read_body(&mut s, &head).await;
    assert!(
        body.contains(&outside.to_string()) && body.contains("[outbound] external = \"deny\""),
        "{body}"
    );

    // Absolute form: the same.
    let url = format!("http://{outside}/abs?q=1");
    let (status, body) = get(allow_out, "ignored", &url).await;
    assert_eq!((status, body.as_str()), (200, "outside GET /abs"));
    let (status, body) = get(deny_out, "ignored", &url).await;
    assert_eq!(status, 403, "{body}");
    let mut out = String::new();
    allow.proxy.telemetry.external.render(&mut out);
    assert!(
        out.contains(r#"kind="connect",decision="allowed"} 1"#),
        "{out}"
    );
    assert!(
        out.contains(r#"kind="http",decision="allowed"} 1"#),
        "{out}"
    );
}

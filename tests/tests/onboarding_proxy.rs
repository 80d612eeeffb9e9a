//! WebSocket and CONNECT through the mesh (issue 13, acceptance 3 and 4): a Python
//! `websockets` client and server talk through the node addressed explicitly and through
//! capture, and an authorization document that denies the caller turns the upgrade into a
//! 403; grpcio with `http_proxy` set (it tunnels with CONNECT) calls a gRPC service; `curl -p
//! -x` reaches an HTTP service; CONNECT to a host outside the mesh passes with
//! `external = "allow"` and gets a 403 naming the host and the setting with "deny".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use murmur_tests::apps::EchoApp;
use murmur_tests::onboarding::{self, client, output, py, run_ok};
use murmur_tests::traffic::{apply, metric};
use murmur_tests::{Cluster, grpc, netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

const DENY_N1: &str = r#"
[[authz]]
name = "ws-authz"
service = "ws"
default = "deny"
rules = [{ name = "ops-only", action = "allow", callers = [{ spiffe = "spiffe://murmur.local/node/ops" }] }]
"#;

#[test]
fn websocket_through_the_mesh_explicitly_and_captured_and_refused_by_authz() {
    netns::run(|| async {
        onboarding::vip_routes();
        let dir = tempfile::tempdir().unwrap();
        let _server = onboarding::ws_echo_server(addr(3, 8765));
        let mut c = Cluster::new();
        c.chain(2, |mut s| {
            if s.name == "n1" {
                s.extra_toml = "\n[dns]\nupstreams = []\n\n[capture]\n".into();
                s
            } else {
                s.service("ws", addr(3, 8765), "http")
            }
        });
        c.node("n1").wait_instances("ws", &["n2"]).await;
        let resolv =
            onboarding::resolv_conf(dir.path(), "resolv.conf", "127.0.0.153".parse().unwrap());

        // Explicit: the client connects to the node's outbound port, the Host header names ws.
        let n1 = c.node("n1").outbound();
        let (host, port) = (n1.ip().to_string(), n1.port().to_string());
        let explicit = py(
            None,
            "ws_client.py",
            &["ws://ws.mesh/explicit", &host, &port],
        );
        assert_eq!(run_ok(&explicit).await, "/explicit hello\n/explicit mesh\n");
        // Captured: an unchanged client, by name.
        let captured = py(Some(&resolv), "ws_client.py", &["ws://ws.mesh/captured"]);
        assert_eq!(run_ok(&captured).await, "/captured hello\n/captured mesh\n");
        println!("WebSocket echo through the mesh: explicit and captured");
        let upgraded = [
            ("direction", "outbound"),
            ("service", "ws"),
            ("status_class", "1xx"),
        ];
        wait_metric(&c, "n1", &upgraded, 2.0).await;
        let inbound = [
            ("direction", "inbound"),
            ("service", "ws"),
            ("status_class", "1xx"),
        ];
        wait_metric(&c, "n2", &inbound, 2.0).await;

        // An authz document that denies n1: the upgrade request itself gets the 403.
        apply(&c, "n2", DENY_N1).await;
        for cmd in [&explicit, &captured] {
            let out = run_ok(cmd).await;
            println!("denied: {}", out.trim());
            assert!(out.starts_with("status 403\n"), "{out}");
            assert!(out.contains("denied by authz \"ws-authz\""), "{out}");
        }
        let denied = metric(&c, "n2", "murmur_denied_total", &[("service", "ws")]).await;
        assert_eq!(denied, 2.0);
    });
}

/// Waits until `node` reports at least `want` requests with `labels`.
async fn wait_metric(c: &Cluster, node: &str, labels: &[(&str, &str)], want: f64) {
    murmur_tests::wait_until(
        &format!("{node} to count {want} {labels:?}"),
        std::time::Duration::from_secs(30),
        || async {
            let got = metric(c, node, "murmur_requests_total", labels).await;
            if got >= want {
                Ok(())
            } else {
                Err(got.to_string())
            }
        },
    )
    .await;
}

#[test]
fn connect_carries_grpcio_and_curl_and_follows_the_external_setting() {
    netns::run(|| async {
        grpc::serve_echo(addr(3, 50051)).await;
        EchoApp::start(addr(3, 8080), "web").await;
        // A server outside the mesh, on a loopback address no service has.
        EchoApp::start(addr(9, 8000), "outside").await;
        let mut c = Cluster::new();
        c.chain(3, |mut s| match s.name.as_str() {
            "n2" => {
                s.service("health", addr(3, 50051), "grpc")
                    .service("web", addr(3, 8080), "http")
            }
            "n3" => {
                s.external = Some("deny");
                s
            }
            _ => s,
        });
        for n in ["n1", "n3"] {
            c.node(n).wait_instances("health", &["n2"]).await;
        }
        let n1 = format!("http://{}", c.node("n1").outbound());
        let n3 = format!("http://{}", c.node("n3").outbound());

        // grpcio tunnels through http_proxy with CONNECT health.mesh:50051.
        let mut call = py(
            None,
            "grpc_call.py",
            &["health.mesh:50051", "through CONNECT"],
        );
        call.env("http_proxy", &n1);
        assert_eq!(run_ok(&call).await.trim(), "echo: through CONNECT");
        let grpc_ok = [
            ("direction", "outbound"),
            ("service", "health"),
            ("status_class", "2xx"),
        ];
        assert_eq!(
            metric(&c, "n1", "murmur_requests_total", &grpc_ok).await,
            1.0
        );

        // curl -p -x: CONNECT web.mesh:80, then plain HTTP inside the tunnel.
        let curl = |proxy: &str, url: &str| {
            client(
                None,
                Path::new("curl"),
                &["-sS", "--max-time", "10", "-p", "-x", proxy, url],
            )
        };
        assert_eq!(
            run_ok(&curl(&n1, "http://web.mesh/tunnel")).await,
            "web GET /tunnel\n"
        );

        // Outside the mesh: allowed through n1, refused by n3 with a 403 that says why.
        let outside = "http://127.0.0.9:8000/far";
        assert_eq!(run_ok(&curl(&n1, outside)).await, "outside GET /far\n");
        let mut code = curl(&n3, outside);
        code.args(["-o", "/dev/null", "-w", "%{http_connect}"]);
        let refused = output(&code).await;
        assert!(!refused.status.success());
        assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
        let body = raw_connect(c.node("n3").outbound(), "127.0.0.9:8000").await;
        println!(
            "external = deny: {}",
            body.lines().last().unwrap_or_default()
        );
        assert!(body.starts_with("HTTP/1.1 403"), "{body}");
        assert!(
            body.contains("127.0.0.9:8000 is outside the mesh")
                && body.contains("[outbound] external = \"deny\""),
            "{body}"
        );
        let external = "murmur_external_requests_total";
        let allowed = metric(
            &c,
            "n1",
            external,
            &[("kind", "connect"), ("decision", "allowed")],
        );
        assert_eq!(allowed.await, 1.0);
        let denied = metric(
            &c,
            "n3",
            external,
            &[("kind", "connect"), ("decision", "denied")],
        );
        assert_eq!(denied.await, 2.0);
    });
}

/// The whole answer to `CONNECT target` (the node closes a refused tunnel's connection).
async fn raw_connect(proxy: SocketAddr, target: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

//! Observability end to end: OTLP traces across two nodes (gRPC and HTTP exporters), traffic
//! unharmed by a dead or stalled collector, Prometheus metrics that promtool accepts and that
//! move with traffic, the dashboard in headless Chromium, and `murmur status` (issue:
//! observability).

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use murmur_tests::load::Load;
use murmur_tests::node::binary;
use murmur_tests::{Cluster, NodeSpec, apps::EchoApp, http, netns, otlp, wait_until};

const LIMIT: Duration = Duration::from_secs(60);

/// An app that remembers the `traceparent` of every request it gets.
async fn trace_app(addr: SocketAddr) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = keep.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        if let Some(tp) = req
                            .headers()
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                        {
                            seen.lock().unwrap().push(tp.to_owned());
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"traced\n",
                        ))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    seen
}

fn telemetry(endpoint: &str, protocol: &str) -> String {
    format!(
        "\n[telemetry]\nendpoint = \"{endpoint}\"\nprotocol = \"{protocol}\"\nservice_name = \"murmur-test\"\n"
    )
}

#[test]
fn a_request_across_two_nodes_is_one_trace_with_the_right_parents() {
    netns::run(|| async {
        let grpc = otlp::grpc_receiver("127.0.0.50:4317".parse().unwrap()).await;
        let httpr = otlp::http_receiver("127.0.0.51:4318".parse().unwrap()).await;
        let app_addr: SocketAddr = "127.0.1.2:8080".parse().unwrap();
        let seen = trace_app(app_addr).await;
        let mut c = Cluster::new();
        // The caller exports over gRPC, the server over HTTP: both exporters in one trace.
        let mut n1 = NodeSpec::new("n1", Cluster::ip(2));
        n1.extra_toml = telemetry("http://127.0.0.50:4317", "grpc");
        c.add(n1);
        let mut n2 = NodeSpec::new("n2", Cluster::ip(3))
            .seed(c.node("n1").mesh())
            .service("web", app_addr, "http");
        n2.extra_toml = telemetry("http://127.0.0.51:4318", "http");
        c.add(n2);
        c.node("n1").wait_instances("web", &["n2"]).await;

        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let reply = http::send(
            c.node("n1").outbound(),
            "GET",
            "/traced",
            &[("host", "web"), ("traceparent", incoming)],
            Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());

        let (spans, took) = wait_until(
            "a client span over gRPC and a server span over HTTP",
            LIMIT,
            || async {
                let client: Vec<_> = grpc.all().into_iter().filter(|s| s.kind == 3).collect();
                let server: Vec<_> = httpr.all().into_iter().filter(|s| s.kind == 2).collect();
                if client.len() == 1 && server.len() == 1 {
                    Ok((client[0].clone(), server[0].clone()))
                } else {
                    Err(format!("{client:?} {server:?}"))
                }
            },
        )
        .await;
        let (client, server) = spans;
        println!("spans exported after {took:?}:\n  client {client:?}\n  server {server:?}");
        assert_eq!(
            client.trace_id, "0af7651916cd43dd8448eb211c80319c",
            "the app's trace is continued"
        );
        assert_eq!(
            client.parent_span_id, "b7ad6b7169203331",
            "the client span's parent is the app's span"
        );
        assert_eq!(server.trace_id, client.trace_id);
        assert_eq!(
            server.parent_span_id, client.span_id,
            "the server span's parent is the client span"
        );
        let got = seen.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let parts: Vec<&str> = got[0].split('-').collect();
        assert_eq!(parts[1], client.trace_id);
        assert_eq!(
            parts[2], server.span_id,
            "the app's parent is the server span"
        );
        println!("the app received traceparent {}", got[0]);
    });
}

/// p50 and p99 of the successful requests' latencies, in ms.
fn percentiles(samples: &[murmur_tests::load::Sample]) -> (f64, f64) {
    let mut t: Vec<f64> = samples
        .iter()
        .filter(|s| s.ok())
        .map(|s| s.took.as_secs_f64() * 1e3)
        .collect();
    t.sort_by(f64::total_cmp);
    let at = |q: f64| {
        t.get(((t.len() as f64 * q) as usize).min(t.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99))
}

#[test]
fn a_dead_or_stalled_collector_never_fails_or_slows_traffic() {
    netns::run(|| async {
        otlp::stalled_receiver("127.0.0.61:4317".parse().unwrap()).await;
        let healthy_receiver = otlp::grpc_receiver("127.0.0.62:4317".parse().unwrap()).await;
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "app").await;
        let mut c = Cluster::new();
        c.add(NodeSpec::new("plain", Cluster::ip(2)));
        let seed = c.node("plain").mesh();
        let mut dead = NodeSpec::new("dead", Cluster::ip(3)).seed(seed);
        dead.extra_toml = telemetry("http://127.0.0.60:4317", "grpc"); // nothing listens there
        c.add(dead);
        let mut stalled = NodeSpec::new("stalled", Cluster::ip(4)).seed(seed);
        stalled.extra_toml = telemetry("http://127.0.0.61:4317", "grpc");
        c.add(stalled);
        let mut healthy = NodeSpec::new("healthy", Cluster::ip(6)).seed(seed);
        healthy.extra_toml = telemetry("http://127.0.0.62:4317", "grpc");
        c.add(healthy);
        c.add(
            NodeSpec::new("server", Cluster::ip(5))
                .seed(seed)
                .service("web", app.addr, "http"),
        );
        for n in ["plain", "healthy", "dead", "stalled"] {
            c.node(n).wait_instances("web", &["server"]).await;
        }
        // plain: no tracing; healthy: exporting to a working collector (the baseline for the
        // cost of spans); dead and stalled: what must not hurt.
        for n in ["plain", "healthy", "dead", "stalled"] {
            // 2 600 requests: more spans than the 2 048 a stalled exporter's queue holds.
            let load = Load::start(c.node(n).outbound(), "web", 500, 4, Duration::from_secs(30));
            wait_until("2 600 requests", LIMIT, || async {
                let k = load.samples().len();
                if k >= 2600 {
                    Ok(())
                } else {
                    Err(k.to_string())
                }
            })
            .await;
            let (summary, samples) = load.stop().await;
            let (p50, p99) = percentiles(&samples);
            let metrics = c.node(n).admin_get("/metrics").await.unwrap().text();
            let counter = |name: &str| {
                metrics
                    .lines()
                    .find(|l| l.starts_with(name))
                    .unwrap_or("")
                    .to_owned()
            };
            println!(
                "{n}: {} of {} ok, p50 {p50:.2} ms, p99 {p99:.2} ms; {} / {}",
                summary.ok,
                summary.total,
                counter("murmur_trace_spans_exported_total"),
                counter("murmur_trace_spans_dropped_total")
            );
            assert!(summary.failures.is_empty(), "{n}: {:?}", summary.failures);
            if n == "stalled" {
                let dropped: f64 = counter("murmur_trace_spans_dropped_total")
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(
                    dropped > 0.0,
                    "a stalled collector must make spans drop, counted"
                );
            }
        }
        assert!(
            !healthy_receiver.all().is_empty(),
            "the healthy collector received nothing"
        );
    });
}

fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_pass_promtool_and_move_with_traffic() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "app").await;
        let mut c = Cluster::new();
        c.add(NodeSpec::new("n1", Cluster::ip(2)));
        c.add(
            NodeSpec::new("n2", Cluster::ip(3))
                .seed(c.node("n1").mesh())
                .service("web", app.addr, "http"),
        );
        c.node("n1").wait_instances("web", &["n2"]).await;
        let before = c.node("n1").admin_get("/metrics").await.unwrap().text();
        for i in 0..50 {
            let r = http::send(
                c.node("n1").outbound(),
                "GET",
                &format!("/m/{i}"),
                &[("host", "web")],
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200);
        }
        let after = c.node("n1").admin_get("/metrics").await.unwrap().text();
        let served = c.node("n2").admin_get("/metrics").await.unwrap().text();
        for (who, text) in [("n1", &after), ("n2", &served)] {
            let mut promtool = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("promtool (Debian package prometheus) is needed: scripts/test installs it");
            std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
            let out = promtool.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool on {who}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out_filter = "direction=\"outbound\",service=\"web\",peer=\"n2\",status_class=\"2xx\"";
        let moved = metric_sum(&after, "murmur_requests_total", out_filter)
            - metric_sum(&before, "murmur_requests_total", out_filter);
        let inbound = metric_sum(
            &served,
            "murmur_requests_total",
            "direction=\"inbound\",service=\"web\",peer=\"n1\"",
        );
        let hist = metric_sum(
            &after,
            "murmur_request_duration_seconds_count",
            "direction=\"outbound\",service=\"web\"",
        );
        println!(
            "promtool: ok on both nodes; outbound 2xx counter moved by {moved}, inbound on n2 {inbound}, histogram count {hist}"
        );
        assert_eq!(moved, 50.0);
        assert_eq!(inbound, 50.0);
        assert!(hist >= 50.0);
        assert_eq!(metric_sum(&after, "murmur_members", "state=\"alive\""), 2.0);
    });
}

#[test]
fn the_dashboard_shows_every_node_and_service_in_headless_chromium() {
    netns::run(|| async {
        let web = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "web").await;
        let api = EchoApp::start("127.0.1.3:8080".parse().unwrap(), "api").await;
        let mut c = Cluster::new();
        c.add(NodeSpec::new("gateway", Cluster::ip(2)));
        let seed = c.node("gateway").mesh();
        c.add(
            NodeSpec::new("web-1", Cluster::ip(3))
                .seed(seed)
                .service("web", web.addr, "http"),
        );
        c.add(
            NodeSpec::new("api-1", Cluster::ip(4))
                .seed(seed)
                .service("api", api.addr, "http"),
        );
        c.node("gateway").wait_instances("web", &["web-1"]).await;
        c.node("gateway").wait_instances("api", &["api-1"]).await;
        // Some traffic, so calls appear (they are gossiped every 5 s).
        for i in 0..40 {
            let svc = if i % 4 == 0 { "api" } else { "web" };
            http::send(
                c.node("gateway").outbound(),
                "GET",
                "/",
                &[("host", svc)],
                Vec::new(),
            )
            .await
            .unwrap();
        }
        wait_until("the gateway's calls to reach the view", LIMIT, || async {
            let m = c.node("web-1").admin_get("/v1/mesh").await?.json();
            let calls = m["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "gateway")
                .map(|n| n["calls"].as_array().map_or(0, Vec::len))
                .unwrap_or(0);
            if calls >= 2 {
                Ok(())
            } else {
                Err(format!("{calls} calls"))
            }
        })
        .await;
        let url = format!("http://{}/", c.node("web-1").admin());
        let profile = c.dir.path().join("chromium");
        let shot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        let flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
            "--window-size=1280,900",
        ];
        let chromium = |extra: &str| {
            let out = Command::new("chromium")
                .args(flags)
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(extra)
                .arg(&url)
                .output()
                .expect("chromium (Debian package chromium) is needed: scripts/test installs it");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let dom = chromium("--dump-dom");
        for node in ["gateway", "web-1", "api-1"] {
            assert!(
                dom.contains(&format!("data-node=\"{node}\"")),
                "node {node} not drawn:\n{dom}"
            );
        }
        for svc in ["web", "api"] {
            assert!(
                dom.contains(&format!("data-service=\"{svc}\"")),
                "service {svc} not drawn"
            );
        }
        assert!(
            dom.contains("data-call=\"gateway-&gt;web\"")
                || dom.contains("data-call=\"gateway->web\""),
            "the gateway's calls are not drawn"
        );
        chromium(&format!("--screenshot={}", shot.display()));
        assert!(
            std::fs::metadata(&shot)
                .map(|m| m.len() > 10_000)
                .unwrap_or(false)
        );
        println!("dashboard rendered; screenshot kept at {}", shot.display());
    });
}

#[test]
fn murmur_status_shows_the_figures_and_warns_of_an_expiring_certificate() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "app").await;
        let mut c = Cluster::new();
        let mut n1 = NodeSpec::new("n1", Cluster::ip(2));
        n1.cert_days = 3;
        c.add(n1);
        c.add(
            NodeSpec::new("n2", Cluster::ip(3))
                .seed(c.node("n1").mesh())
                .service("web", app.addr, "http"),
        );
        c.node("n1").wait_instances("web", &["n2"]).await;
        for _ in 0..20 {
            http::send(
                c.node("n1").outbound(),
                "GET",
                "/",
                &[("host", "web")],
                Vec::new(),
            )
            .await
            .unwrap();
        }
        let status = |admin: SocketAddr| {
            let out = Command::new(binary())
                .args(["status", "--admin", &admin.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let s1 = status(c.node("n1").admin());
        println!("{s1}");
        assert!(s1.contains("spiffe://test.mesh/node/n1"));
        assert!(
            s1.contains("WARNING") && s1.contains("expires in"),
            "no expiry warning:\n{s1}"
        );
        assert!(s1.contains("2 alive"), "{s1}");
        let web = s1
            .lines()
            .find(|l| l.starts_with("web "))
            .unwrap_or_else(|| panic!("no web row:\n{s1}"));
        let cols: Vec<&str> = web.split_whitespace().collect();
        assert_eq!(cols[1], "1/1", "{web}");
        assert_eq!(cols[3], "100.0%", "{web}");
        let s2 = status(c.node("n2").admin());
        assert!(
            !s2.contains("WARNING"),
            "a 90-day certificate must not warn:\n{s2}"
        );
        let top = Command::new(binary())
            .args([
                "top",
                "--admin",
                &c.node("n1").admin().to_string(),
                "--count",
                "1",
            ])
            .output()
            .unwrap();
        let top = String::from_utf8_lossy(&top.stdout);
        assert!(
            top.lines()
                .any(|l| l.starts_with("web") && l.contains("outbound")),
            "{top}"
        );
    });
}

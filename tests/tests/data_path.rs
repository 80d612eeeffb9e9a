//! The data path end to end through real `murmur` processes: HTTP/1.1 and HTTP/2 across the
//! mesh, streamed bodies, errors the app can act on, load balancing, and service registration
//! (issue: data path).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use murmur_tests::apps::{Digest, EchoApp, PatternBody, StreamApp};
use murmur_tests::http::{self, send};
use murmur_tests::node::memory_kib;
use murmur_tests::pki::murmur;
use murmur_tests::{Cluster, NodeSpec, netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;

fn app_addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

/// n1 calls; n2 serves `web` from a [`StreamApp`].
async fn two_nodes() -> Cluster {
    let web = app_addr(3, 8080);
    StreamApp::start(web, "web").await;
    Cluster::serving_pair("web", web, "http").await
}

/// As [`two_nodes`], with `extra` in both nodes' configuration.
async fn configured_pair(extra: &str) -> Cluster {
    let web = app_addr(3, 8080);
    StreamApp::start(web, "web").await;
    let mut c = Cluster::new();
    c.chain(2, |s| {
        let s = NodeSpec {
            extra_toml: extra.to_owned(),
            ..s
        };
        if s.name == "n2" {
            s.service("web", web, "http")
        } else {
            s
        }
    });
    c.node("n1").wait_instances("web", &["n2"]).await;
    c
}

/// Sends `body` (streamed) and reads the response as it arrives; returns status and digest.
async fn stream_exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    upload: u64,
) -> (u16, Digest) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-length", upload.to_string())
        .body(PatternBody::new(upload))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut d = Digest::default();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            d.update(data);
        }
    }
    (status, d)
}

#[test]
fn http1_get_post_and_64_mib_streamed_both_ways() {
    netns::run(|| async {
        let c = two_nodes().await;
        let out = c.node("n1").outbound();

        let r = send(out, "GET", "/hello?x=1", &[("host", "web")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(
            r.text().starts_with("web GET /hello HTTP/1.1"),
            "{}",
            r.text()
        );

        // HTTP proxy style (absolute form) and the .mesh suffix.
        let r = send(out, "GET", "http://web.mesh/abs", &[], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("web GET /abs"), "{}", r.text());

        // Hop-by-hop headers stay on their hop; end-to-end ones travel; Host arrives as sent.
        let r = send(
            out,
            "GET",
            "/headers",
            &[
                ("host", "web"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("x-keep", "2"),
                ("proxy-authorization", "secret"),
            ],
            vec![],
        )
        .await
        .unwrap();
        let text = r.text();
        assert!(
            text.contains("x-keep: 2") && text.contains("host: web"),
            "{text}"
        );
        assert!(
            !text.contains("x-hop") && !text.contains("secret"),
            "{text}"
        );

        // A small POST.
        let body = b"hello mesh".to_vec();
        let mut want = Digest::default();
        want.update(&body);
        let r = send(out, "POST", "/sink", &[("host", "web")], body)
            .await
            .unwrap();
        assert_eq!(r.text(), format!("{} {}", want.len, want.sum));

        // 64 MiB both ways at once (the app streams the upload back), then 64 MiB down.
        let (p1, p2) = (c.node("n1").pid().unwrap(), c.node("n2").pid().unwrap());
        let before = (memory_kib(p1), memory_kib(p2));
        let big = 64 * MIB;
        let started = Instant::now();
        let (status, got) = stream_exchange(out, "POST", "/echo", "web", big).await;
        assert_eq!(status, 200);
        assert_eq!(got, Digest::of_pattern(big), "64 MiB echoed intact");
        let echo_took = started.elapsed();
        let started = Instant::now();
        let (status, got) = stream_exchange(out, "GET", "/source?bytes=67108864", "web", 0).await;
        assert_eq!(status, 200);
        assert_eq!(got, Digest::of_pattern(big), "64 MiB downloaded intact");
        let get_took = started.elapsed();
        let after = (memory_kib(p1), memory_kib(p2));
        println!(
            "64 MiB POST echoed in {echo_took:?}, 64 MiB GET in {get_took:?}; \
             caller node RSS {} -> {} KiB (peak {} -> {}), serving node RSS {} -> {} KiB (peak {} -> {})",
            before.0.0,
            after.0.0,
            before.0.1,
            after.0.1,
            before.1.0,
            after.1.0,
            before.1.1,
            after.1.1
        );
        for (name, b, a) in [("n1", before.0, after.0), ("n2", before.1, after.1)] {
            let growth = a.1.saturating_sub(b.0);
            assert!(
                growth < 24 * 1024,
                "{name}'s peak RSS grew by {growth} KiB while 64 MiB streamed through it"
            );
        }
    });
}

/// `threads = 2` on both nodes: two runtimes each, each with its own endpoint on the mesh port
/// and its own outbound listener on the proxy port (transport, `shard.rs` and
/// `endpoint/steer.rs`). 32 connections with requests in flight at once, spread by the kernel
/// over both, each get their own answers, the peer shows once in the metrics, and 16 MiB
/// streams both ways intact.
#[test]
fn two_threads_carry_concurrent_requests_and_a_streamed_body() {
    netns::run(|| async {
        let c = configured_pair("threads = 2\n").await;
        let out = c.node("n1").outbound();

        let mut tasks = Vec::new();
        for conn in 0..32 {
            tasks.push(tokio::spawn(async move {
                let mut sender = http::connect(out).await.unwrap();
                for i in 0..20 {
                    let path = format!("/c{conn}/r{i}");
                    let r = http::exchange(&mut sender, "web", "GET", &path, &[], vec![])
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200, "{path}: {}", r.text());
                    let want = format!("web GET {path} ");
                    assert!(r.text().starts_with(&want), "{path}: {}", r.text());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Both runtimes of n1 now hold a connection to n2; its transport metrics still name n2
        // once (the exposition format forbids repeating a label set).
        let text = c.node("n1").admin_get("/metrics").await.unwrap().text();
        let rtt = "murmur_quic_rtt_seconds{peer=\"n2\"}";
        assert_eq!(
            text.lines().filter(|l| l.starts_with(rtt)).count(),
            1,
            "{text}"
        );

        let size = 16 * MIB;
        let (status, got) = stream_exchange(out, "POST", "/echo", "web", size).await;
        assert_eq!(status, 200);
        assert_eq!(got, Digest::of_pattern(size), "16 MiB echoed intact");
    });
}

/// A link slower than the nodes and the smallest UDP buffer allowed: packets wait in the link's
/// queue and keep their sender's buffer taken, so the kernel refuses sends for want of space.
/// The sender then waits for room (the mesh socket, `transport/src/endpoint/udp.rs`), and the
/// body arrives intact both ways. On a plain loopback a send is never refused: a packet leaves
/// the buffer as it is sent.
#[test]
fn a_body_streams_intact_over_a_link_that_fills_the_udp_buffer() {
    netns::run(|| async {
        // A token bucket: 200 Mbit/s, with room to queue 200 ms of it rather than drop (and a
        // burst above loopback's 64 KiB packets, which a smaller bucket never lets through).
        let link = "qdisc add dev lo root tbf rate 200mbit burst 256kb latency 200ms";
        let status = std::process::Command::new("tc")
            .args(link.split(' '))
            .status();
        assert!(status.is_ok_and(|s| s.success()), "`tc {link}` failed");
        let c = configured_pair("\n[limits]\nudp_buffer = 65536\n").await;
        let size = 8 * MIB;
        let out = c.node("n1").outbound();
        // About a second at the link's rate; a sender that never resumes shows as a stall.
        let exchange = stream_exchange(out, "POST", "/echo", "web", size);
        let (status, got) = tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .expect("the echo stalled: no progress within 60 s");
        assert_eq!(status, 200);
        assert_eq!(got, Digest::of_pattern(size), "8 MiB echoed intact");
    });
}

#[test]
fn http2_with_prior_knowledge_multiplexes_requests() {
    netns::run(|| async {
        let c = two_nodes().await;
        let stream = tokio::net::TcpStream::connect(c.node("n1").outbound())
            .await
            .unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let mut sender = sender.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("h2 body {i}");
                let req = Request::builder()
                    .method("POST")
                    .uri(format!("http://web.mesh/echo?i={i}"))
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(got, body.as_bytes());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let req = Request::builder()
            .uri("http://web/who")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.clone().send_request(req).await.unwrap();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        // The app speaks HTTP/1.1; the caller spoke HTTP/2 to its node.
        assert!(text.starts_with("web GET /who HTTP/1.1"), "{text}");
        assert!(text.contains("host: web"), "{text}");
        println!("16 concurrent HTTP/2 streams on one connection, all echoed");
    });
}

#[test]
fn errors_are_prompt_and_name_the_problem() {
    netns::run(|| async {
        let web = app_addr(3, 8080);
        StreamApp::start(web, "web").await;
        let mut c = Cluster::new();
        c.chain(2, |s| {
            if s.name == "n2" {
                // `ghost` is served by n2, but nothing listens at its address.
                s.service("web", web, "http")
                    .service("ghost", app_addr(3, 9), "http")
            } else {
                s
            }
        });
        let n1 = c.node("n1");
        n1.wait_instances("ghost", &["n2"]).await;
        let out = n1.outbound();

        let t = Instant::now();
        let r = send(out, "GET", "/", &[("host", "nope")], vec![])
            .await
            .unwrap();
        println!(
            "unknown service: {} in {:?}: {}",
            r.status,
            t.elapsed(),
            r.text().trim()
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.headers["x-murmur-error"], "unknown-service");
        assert!(r.text().contains("nope"), "{}", r.text());

        for (method, body) in [("GET", vec![]), ("POST", b"data".to_vec())] {
            let t = Instant::now();
            let r = send(out, method, "/", &[("host", "ghost")], body)
                .await
                .unwrap();
            println!(
                "no reachable instance ({method}): {} in {:?}: {}",
                r.status,
                t.elapsed(),
                r.text().trim()
            );
            assert_eq!(r.status, 503);
            assert_eq!(r.headers["x-murmur-error"], "no-instance");
            assert!(
                r.text().contains("no reachable instance") && r.text().contains("ghost"),
                "{}",
                r.text()
            );
        }

        // Not a service name.
        let r = send(out, "GET", "/", &[("host", "10.1.2.3")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        // Not HTTP at all.
        let mut s = tokio::net::TcpStream::connect(out).await.unwrap();
        s.write_all(b"GARBAGE\x01\x02 nonsense\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
        // The node still serves.
        let r = send(out, "GET", "/ok", &[("host", "web")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    });
}

/// Sends `total` requests for `host` from `workers` concurrent connections.
async fn load(out: SocketAddr, host: &'static str, total: usize, workers: usize) {
    let mut tasks = Vec::new();
    for w in 0..workers {
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(out).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            for _ in (w..total).step_by(workers) {
                let req = Request::builder()
                    .uri("/lb")
                    .header("host", host)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn load_balancing_avoids_the_slow_instance_and_shares_among_equals() {
    netns::run(|| async {
        let fast_a = EchoApp::start(app_addr(3, 8080), "n2").await;
        let fast_b = EchoApp::start(app_addr(4, 8080), "n3").await;
        let slow =
            EchoApp::start_with_delay(app_addr(5, 8080), "n4", Duration::from_millis(25)).await;
        let rr: Vec<EchoApp> = vec![
            EchoApp::start(app_addr(3, 8081), "n2").await,
            EchoApp::start(app_addr(4, 8081), "n3").await,
        ];
        let lr_a = EchoApp::start(app_addr(3, 8082), "n2").await;
        let lr_b = EchoApp::start(app_addr(4, 8082), "n3").await;
        let mut c = Cluster::new();
        c.chain(4, |s| {
            let ip = s.ip.octets()[3];
            if ip == 2 {
                return s;
            }
            let mut s = s.service("web", app_addr(ip, 8080), "http");
            if ip != 5 {
                s = s
                    .service_with(
                        "rr",
                        app_addr(ip, 8081),
                        "http",
                        "balancer = \"round-robin\"",
                    )
                    .service_with(
                        "lr",
                        app_addr(ip, 8082),
                        "http",
                        "balancer = \"least-request\"",
                    );
            }
            s
        });
        let n1 = c.node("n1");
        n1.wait_instances("web", &["n2", "n3", "n4"]).await;
        n1.wait_instances("rr", &["n2", "n3"]).await;
        n1.wait_instances("lr", &["n2", "n3"]).await;
        let out = n1.outbound();

        load(out, "web", 900, 8).await;
        let (a, b, s) = (fast_a.count(), fast_b.count(), slow.count());
        println!(
            "p2c-ewma, 900 requests from 8 connections: fast n2 {a}, fast n3 {b}, slow (+25 ms) n4 {s}"
        );
        assert_eq!(a + b + s, 900);
        assert!(s * 4 < a.min(b), "the slow instance got too large a share");
        let (lo, hi) = (a.min(b) as f64, a.max(b) as f64);
        assert!(lo / hi > 0.6, "equal instances got unequal shares");

        load(out, "rr", 100, 1).await;
        let (x, y) = (rr[0].count(), rr[1].count());
        println!("round-robin, 100 sequential requests: n2 {x}, n3 {y}");
        assert_eq!((x, y), (50, 50));

        load(out, "lr", 400, 8).await;
        let (x, y) = (lr_a.count(), lr_b.count());
        println!("least-request, 400 requests from 8 connections: n2 {x}, n3 {y}");
        assert_eq!(x + y, 400);
        assert!(
            x.min(y) as f64 / x.max(y) as f64 > 0.6,
            "least-request shares"
        );

        let listing = n1.admin_get("/v1/services").await.unwrap().json();
        let rr_json = listing["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "rr")
            .unwrap()
            .clone();
        assert_eq!(rr_json["balancer"], "round-robin");
    });
}

#[test]
fn services_are_listed_everywhere_and_registered_at_runtime() {
    netns::run(|| async {
        let web = app_addr(3, 8080);
        let api = app_addr(4, 8090);
        StreamApp::start(web, "web").await;
        StreamApp::start(api, "api").await;
        let mut c = Cluster::new();
        c.chain(3, |mut s| {
            match s.name.as_str() {
                "n2" => s = s.service("web", web, "http"),
                // n3's certificate allows `api`, but its config does not serve it yet.
                "n3" => s.cert_services.push("api".into()),
                _ => {}
            }
            s
        });
        for n in ["n1", "n2", "n3"] {
            c.node(n).wait_instances("web", &["n2"]).await;
        }
        let n3_admin = c.node("n3").admin().to_string();
        let table = murmur(&["services", "--admin", &n3_admin]);
        println!("{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("web") && l.contains("n2") && l.contains("http")),
            "{table}"
        );

        // Runtime registration, checked against the certificate.
        let out = murmur(&[
            "service",
            "register",
            "--admin",
            &n3_admin,
            "--name",
            "api",
            "--address",
            &api.to_string(),
            "--label",
            "version=v2",
        ]);
        assert!(out.contains("registered api"), "{out}");
        c.node("n1").wait_instances("api", &["n3"]).await;
        let r = send(
            c.node("n1").outbound(),
            "GET",
            "/x",
            &[("host", "api")],
            vec![],
        )
        .await
        .unwrap();
        assert!(r.text().starts_with("api GET /x"), "{}", r.text());

        let denied = std::process::Command::new(murmur_tests::node::binary())
            .args([
                "service", "register", "--admin", &n3_admin, "--name", "billing",
            ])
            .args(["--address", "127.0.0.4:9999"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&denied.stderr);
        println!("registering an uncertified service: {}", stderr.trim());
        assert!(!denied.status.success());
        assert!(
            stderr.contains("403") && stderr.contains("billing is not in this node's certificate"),
            "{stderr}"
        );

        murmur(&["service", "deregister", "--admin", &n3_admin, "api"]);
        c.node("n1").wait_instances("api", &[]).await;
        let r = send(
            c.node("n1").outbound(),
            "GET",
            "/x",
            &[("host", "api")],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 503);
        let r = http::get(c.node("n2").admin(), "/v1/services")
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    });
}

#[test]
fn a_killed_instance_costs_at_most_a_bounded_wait_and_traffic_moves_on() {
    netns::run(|| async {
        let a = EchoApp::start(app_addr(3, 8080), "n2").await;
        let b = EchoApp::start(app_addr(4, 8080), "n3").await;
        let mut c = Cluster::new();
        c.chain(3, |s| {
            let ip = s.ip.octets()[3];
            if ip == 2 {
                s
            } else {
                s.service("web", app_addr(ip, 8080), "http")
            }
        });
        c.node("n1").wait_instances("web", &["n2", "n3"]).await;
        let out = c.node("n1").outbound();
        load(out, "web", 50, 2).await;
        assert!(
            a.count() > 0 && b.count() > 0,
            "both instances served before the kill"
        );

        c.node_mut("n3")
            .stop_with(nix::sys::signal::Signal::SIGKILL);
        let started = Instant::now();
        let (mut ok, mut failed, mut slowest) = (0, Vec::new(), Duration::ZERO);
        while started.elapsed() < Duration::from_secs(20) {
            let t = Instant::now();
            // The client's own 30 s limit turns a hang into a test failure.
            let r = send(out, "GET", "/", &[("host", "web")], vec![])
                .await
                .unwrap();
            slowest = slowest.max(t.elapsed());
            if r.status == 200 {
                ok += 1;
            } else {
                failed.push((r.status, r.text()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "after SIGKILL of n3: {ok} answered, {} failed {failed:?}, slowest {slowest:?}",
            failed.len()
        );
        assert!(ok > 100, "traffic kept flowing to n2");
        assert!(
            failed.len() <= 2,
            "a dead instance cost more than the requests in flight to it"
        );
        // Once failure detection drops n3, it is gone from the caller's view.
        c.node("n1").wait_instances("web", &["n2"]).await;
    });
}

//! The gateway (issue 19, acceptance 1, 2 and 4): clients outside the mesh reach mesh services
//! over HTTPS by host and path — curl (HTTP/1.1 and HTTP/2), h2load over TLS with ALPN h2, a
//! Python `websockets` client — with the gateway node as the caller the serving node
//! authorizes; an unknown host gets a 404 naming it; a certificate replaced on disk is served
//! without a restart; and a flood of idle and slow connections leaves normal clients served,
//! with the gateway's memory measured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use murmur_tests::apps::StreamApp;
use murmur_tests::gateway::{Flood, Held, WebCa, curl, gateway_toml, hold};
use murmur_tests::node::memory_kib;
use murmur_tests::onboarding::{self, client, output, py, run_ok};
use murmur_tests::traffic::{apply, metric};
use murmur_tests::{Cluster, NodeSpec, netns, wait_until};

fn addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

/// The gateway's HTTPS and plain-HTTP addresses (on n1).
const HTTPS: u16 = 8443;
const HTTP: u16 = 8080;

/// Hosts the mesh exposes: shop (api under /api, web for the rest) and chat (ws).
const ROUTES: &str = r#"
[[route]]
name = "shop-api"
service = "api"
priority = 10
match = { hosts = ["shop.example.test"], path = { prefix = "/api" } }
backends = [{ service = "api" }]

[[route]]
name = "shop-web"
service = "web"
match = { hosts = ["shop.example.test"], methods = ["GET", "POST"] }
backends = [{ service = "web" }]

[[route]]
name = "chat"
service = "ws"
match = { hosts = ["chat.example.test"] }
backends = [{ service = "ws" }]
"#;

/// The files of the gateway's certificates.
struct Certs {
    ca: WebCa,
    shop: (PathBuf, PathBuf),
    chat: (PathBuf, PathBuf),
}

fn certs(dir: &Path) -> Certs {
    let ca = WebCa::new(dir, "web-ca");
    let pair = |name: &str| {
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    };
    let (shop, chat) = (pair("shop"), pair("chat"));
    ca.issue(&["shop.example.test"], &shop.0, &shop.1);
    ca.issue(&["chat.example.test"], &chat.0, &chat.1);
    Certs { ca, shop, chat }
}

/// n1 is the gateway (on 127.0.0.2), n2 serves web, api and ws from apps on 127.0.0.3; the
/// routes are applied. `limits` go in `[limits.gateway]`, `extra` in `[gateway]`. n1 runs two
/// runtimes, so every case here also holds with the gateway's listeners bound once per runtime
/// and its clients served by either (one runtime binds them as any listener).
async fn mesh(certs: &Certs, extra: &str, limits: &str) -> Cluster {
    StreamApp::start(addr(3, 8081), "web").await;
    StreamApp::start(addr(3, 8082), "api").await;
    let mut c = Cluster::new();
    let pairs = [certs.shop.clone(), certs.chat.clone()];
    let table = gateway_toml(addr(2, HTTPS), addr(2, HTTP), &pairs, extra, limits);
    let mut n1 = NodeSpec::new("n1", Cluster::ip(2));
    n1.extra_toml.push_str("threads = 2\n");
    n1.extra_toml.push_str(&table);
    c.add(n1);
    let seed = c.node("n1").mesh();
    c.add(
        NodeSpec::new("n2", Cluster::ip(3))
            .seed(seed)
            .service("web", addr(3, 8081), "http")
            .service("api", addr(3, 8082), "http")
            .service("ws", addr(3, 8765), "http"),
    );
    for s in ["web", "api", "ws"] {
        c.node("n1").wait_instances(s, &["n2"]).await;
    }
    apply(&c, "n1", ROUTES).await;
    wait_status(&certs.ca.file, "/api/ready", "200 2").await;
    c
}

/// Waits until shop's `path` answers `want` ("<status> <version>") through the gateway: a
/// document is in force on a node a moment after the node holds it.
async fn wait_status(ca: &Path, path: &str, want: &str) {
    wait_until(
        &format!("{path} to answer {want}"),
        Duration::from_secs(20),
        || async {
            let out = output(&curl(
                ca,
                client_ip(),
                addr(2, HTTPS),
                "shop.example.test",
                path,
                &[],
            ))
            .await;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.ends_with(want) {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
}

/// The gateway's connections (and certificate reloads) with `result`, as n1 counts them.
async fn connections(c: &Cluster, result: &str) -> f64 {
    let labels = [("result", result)];
    metric(c, "n1", "murmur_gateway_connections_total", &labels).await
}

fn client_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 7])
}

/// `curl` through the gateway as a client at 127.0.0.7; returns (body, "status version").
async fn get(ca: &Path, host: &str, path: &str, args: &[&str]) -> (String, String) {
    let out = run_ok(&curl(ca, client_ip(), addr(2, HTTPS), host, path, args)).await;
    let (body, status) = out.rsplit_once('\n').unwrap();
    (body.to_owned(), status.to_owned())
}

#[test]
fn curl_and_h2load_reach_services_by_host_and_path_and_unknown_hosts_get_404() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        StreamApp::start(addr(3, 8765), "chat").await;
        let c = mesh(&certs, "", "").await;
        let ca = &certs.ca.file;
        let gateway = "murmur_gateway_requests_total";
        let api_ok = [
            ("direction", "outbound"),
            ("service", "api"),
            ("status_class", "2xx"),
        ];
        let results = ["routed", "unknown_host", "no_route"];
        let mut before = Vec::new();
        for r in results {
            before.push(metric(&c, "n1", gateway, &[("result", r)]).await);
        }
        let api_before = metric(&c, "n1", "murmur_requests_total", &api_ok).await;

        // By host and path, HTTP/1.1 and HTTP/2 (ALPN): /api to api, the rest to web.
        let (body, status) = get(ca, "shop.example.test", "/api/items?x=1", &["--http1.1"]).await;
        println!("{status}\n{body}");
        assert_eq!(status, "200 1.1");
        assert!(body.starts_with("api GET /api/items HTTP/1.1\n"), "{body}");
        assert!(body.contains("host: shop.example.test:8443\n"), "{body}");
        assert!(body.contains("x-forwarded-for: 127.0.0.7\n"), "{body}");
        assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
        let (body, status) = get(ca, "shop.example.test", "/home", &["--http2"]).await;
        assert_eq!(status, "200 2");
        assert!(body.starts_with("web GET /home "), "{body}");

        // A host no route names: 404 naming it. A method no route of the host takes: 404.
        let (body, status) = get(
            ca,
            "shop.example.test",
            "/",
            &["-H", "host: nope.example.test"],
        )
        .await;
        println!("{status}\n{body}");
        assert_eq!(status, "404 2");
        assert!(body.contains("\"nope.example.test\""), "{body}");
        let (body, status) = get(ca, "shop.example.test", "/x", &["-X", "DELETE"]).await;
        assert_eq!(status, "404 2");
        assert!(
            body.contains("no route for host \"shop.example.test\""),
            "{body}"
        );

        // The certificate is chosen by SNI: chat's name is served chat's certificate (curl
        // checks it against the name), and chat's route reaches ws.
        let (body, status) = get(ca, "chat.example.test", "/", &[]).await;
        assert_eq!(status, "200 2", "{body}");
        assert!(body.starts_with("chat GET / "), "{body}");

        // h2load over TLS, ALPN h2.
        let h2load = client(
            None,
            Path::new("h2load"),
            &[
                "-n",
                "400",
                "-c",
                "4",
                "-m",
                "8",
                "--connect-to=127.0.0.2:8443",
                "https://shop.example.test:8443/api/load",
            ],
        );
        let report = run_ok(&h2load).await;
        println!("{report}");
        assert!(report.contains("Application protocol: h2"), "{report}");
        assert!(
            report.contains("400 total, 400 started, 400 done, 400 succeeded, 0 failed"),
            "{report}"
        );
        assert!(report.contains("status codes: 400 2xx"), "{report}");

        // Plain HTTP: redirected to HTTPS for a host the mesh serves, 404 for others.
        let redirect = |host: &str| {
            let url = format!("http://127.0.0.2:{HTTP}/x?y=1");
            let header = format!("host: {host}");
            client(
                None,
                Path::new("curl"),
                &[
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{redirect_url}",
                    "-H",
                    &header,
                    &url,
                ],
            )
        };
        assert_eq!(
            run_ok(&redirect("shop.example.test")).await,
            "308 https://shop.example.test:8443/x?y=1"
        );
        assert_eq!(run_ok(&redirect("evil.example.test")).await, "404 ");

        // Accounted like mesh calls, and by what the gateway did.
        let mut counted = Vec::new();
        for (r, was) in results.iter().zip(&before) {
            counted.push(metric(&c, "n1", gateway, &[("result", r)]).await - was);
        }
        assert_eq!(counted, [403.0, 1.0, 1.0], "{results:?}");
        let api = metric(&c, "n1", "murmur_requests_total", &api_ok).await;
        assert_eq!(api - api_before, 401.0);

        // The serving node authorizes the gateway node as the caller: allowed as n1, and
        // refused once only another caller is.
        for (caller, want) in [("n1", "200 2"), ("ops", "403 2")] {
            let doc = format!(
                "[[authz]]\nname = \"api-authz\"\nservice = \"api\"\ndefault = \"deny\"\n\
                 rules = [{{ name = \"only\", action = \"allow\", callers = [{{ spiffe = \
                 \"spiffe://test.mesh/node/{caller}\" }}] }}]\n"
            );
            apply(&c, "n1", &doc).await;
            wait_status(ca, "/api/items", want).await;
            let (body, status) = get(ca, "shop.example.test", "/api/items", &[]).await;
            assert_eq!(status, want, "allowed: {caller}: {body}");
            if caller == "ops" {
                assert!(body.contains("denied by authz \"api-authz\""), "{body}");
            }
        }
    });
}

#[test]
fn a_websocket_client_outside_reaches_a_mesh_websocket_service() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let _server = onboarding::ws_echo_server(addr(3, 8765));
        let c = mesh(&certs, "", "").await;
        let mut ws = py(
            None,
            "ws_client.py",
            &["wss://chat.example.test:8443/room", "127.0.0.2", "8443"],
        );
        ws.env("SSL_CERT_FILE", &certs.ca.file);
        let out = run_ok(&ws).await;
        assert_eq!(out, "/room hello\n/room mesh\n");
        let upgraded = [
            ("direction", "outbound"),
            ("service", "ws"),
            ("status_class", "1xx"),
        ];
        wait_until(
            "the upgrade to be counted",
            Duration::from_secs(10),
            || async {
                let n = metric(&c, "n1", "murmur_requests_total", &upgraded).await;
                if n == 1.0 { Ok(()) } else { Err(n.to_string()) }
            },
        )
        .await;
    });
}

#[test]
fn a_certificate_replaced_on_disk_is_served_without_restart() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        StreamApp::start(addr(3, 8765), "chat").await;
        let c = mesh(&certs, "", "").await;
        let pid = c.node("n1").pid();
        let (_, status) = get(&certs.ca.file, "shop.example.test", "/", &[]).await;
        assert_eq!(status, "200 2");

        // A renewal by another CA: a client that trusts only the new CA fails until the
        // gateway serves the new certificate, then succeeds, from the same process.
        let renewed = WebCa::new(dir.path(), "web-ca-2");
        let fresh = curl(
            &renewed.file,
            client_ip(),
            addr(2, HTTPS),
            "shop.example.test",
            "/",
            &[],
        );
        let before = output(&fresh).await;
        assert!(
            !before.status.success(),
            "the new CA cannot verify the old certificate"
        );
        renewed.issue(&["shop.example.test"], &certs.shop.0, &certs.shop.1);
        let (_, took) = wait_until(
            "the renewed certificate",
            Duration::from_secs(20),
            || async {
                let out = output(&fresh).await;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            },
        )
        .await;
        println!("renewed certificate served after {took:?}");
        assert_eq!(c.node("n1").pid(), pid);
        assert!(
            !output(&curl(
                &certs.ca.file,
                client_ip(),
                addr(2, HTTPS),
                "shop.example.test",
                "/",
                &[]
            ))
            .await
            .status
            .success()
        );
        // chat's certificate is untouched.
        let (_, status) = get(&certs.ca.file, "chat.example.test", "/", &[]).await;
        assert_eq!(status, "200 2");
        assert!(connections(&c, "reloaded").await >= 1.0);

        // A broken pair (a key of another certificate) is refused: the renewed one stays.
        // (A renewal may be caught between its key and its certificate: refused as well, until
        // the certificate follows.)
        let failed_before = connections(&c, "reload_failed").await;
        std::fs::copy(&certs.chat.1, &certs.shop.1).unwrap();
        wait_until(
            "the broken pair to be refused",
            Duration::from_secs(20),
            || async {
                let n = connections(&c, "reload_failed").await;
                if n > failed_before {
                    Ok(())
                } else {
                    Err(n.to_string())
                }
            },
        )
        .await;
        run_ok(&fresh).await;
    });
}

/// Flooding connections per kind, from each flooding address (12 : 4 : 3).
const IDLE: usize = 120;
const SLOW_HANDSHAKES: usize = 40;
const SLOW_HEADS: usize = 30;
/// How long the flood lasts; each flooding connection is opened again when the gateway closes
/// it, at most this many times.
const FLOOD_FOR: Duration = Duration::from_secs(16);
const REOPEN: usize = 20;
/// Longest a flooding connection may stay open: the slowest ones are closed by the gateway's
/// 10 s limits on the handshake and the request head.
const HELD_AT_MOST: Duration = Duration::from_secs(15);

#[test]
fn a_flood_of_idle_and_slow_connections_leaves_normal_clients_served() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        // 256 connections in all; 64 per client address.
        let limits = "max_connections = 256\nfirst_byte_timeout = \"2s\"\nidle_timeout = \"5s\"";
        let c = mesh(&certs, "max_connections_per_ip = 64", limits).await;
        let pid = c.node("n1").pid().unwrap();
        let (_, status) = get(&certs.ca.file, "shop.example.test", "/api/warm", &[]).await;
        assert_eq!(status, "200 2");
        let (baseline, _) = memory_kib(pid);

        // Two flooding addresses, each opening more connections than the listener's cap.
        let deadline = Instant::now() + FLOOD_FOR;
        let mut flooders = Vec::new();
        for source in [IpAddr::from([127, 0, 0, 20]), IpAddr::from([127, 0, 0, 21])] {
            // Interleaved, so that every kind gets in under the address's share.
            let kinds = (0..IDLE + SLOW_HANDSHAKES + SLOW_HEADS).map(|i| match i % 19 {
                0..=11 => Flood::Idle,
                12..=15 => Flood::SlowHandshake,
                _ => Flood::SlowHead,
            });
            for kind in kinds {
                let tls = certs.ca.connector();
                flooders.push(tokio::spawn(async move {
                    let mut ends = Vec::new();
                    for _ in 0..REOPEN {
                        let gateway = addr(2, HTTPS);
                        let held = hold(kind, source, gateway, tls.clone(), HELD_AT_MOST).await;
                        ends.push(held);
                        if held == Held::Open || Instant::now() >= deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    (kind, ends)
                }));
            }
        }

        // A normal client keeps being served meanwhile; the gateway's memory is sampled.
        let mut peak = baseline;
        let mut served = 0;
        while Instant::now() < deadline {
            let (body, status) = get(&certs.ca.file, "shop.example.test", "/api/normal", &[]).await;
            assert_eq!(status, "200 2", "a normal client during the flood: {body}");
            served += 1;
            peak = peak.max(memory_kib(pid).0);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let mut longest = [Duration::ZERO; 3];
        let mut opened = 0;
        for f in flooders {
            let (kind, ends) = f.await.unwrap();
            for end in ends {
                opened += 1;
                match end {
                    Held::Closed(after) => {
                        let i = kind as usize;
                        longest[i] = longest[i].max(after);
                    }
                    Held::Open => {
                        panic!("a {kind:?} connection was still open after {HELD_AT_MOST:?}")
                    }
                    Held::Failed => {}
                }
            }
        }
        let grown_mib = peak.saturating_sub(baseline) / 1024;
        println!(
            "flood: {opened} connections opened; {served} normal requests served; gateway RSS \
             {} MiB before, peak {} MiB (+{grown_mib} MiB); longest held: idle {:?}, slow \
             handshake {:?}, slow head {:?}",
            baseline / 1024,
            peak / 1024,
            longest[0],
            longest[1],
            longest[2]
        );
        assert!(served >= 10, "{served}");
        // What the flood could hold is bounded by the caps, so is what it costs.
        assert!(grown_mib < 64, "the gateway grew by {grown_mib} MiB");
        assert!(connections(&c, "per_ip_cap").await > 0.0);
        assert!(connections(&c, "handshake_timeout").await > 0.0);
        let silent = [("listener", "gateway"), ("reason", "first_byte")];
        assert!(metric(&c, "n1", "murmur_listener_timeouts_total", &silent).await > 0.0);
        assert_eq!(
            metric(
                &c,
                "n1",
                "murmur_listener_refused_total",
                &[("listener", "gateway")]
            )
            .await,
            0.0
        );
    });
}

#[test]
fn one_address_over_its_rate_gets_429_and_others_are_served() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let certs = certs(dir.path());
        let c = mesh(&certs, "rate_per_ip = 5", "").await;
        // 50 requests at once from one address (h2load's, 127.0.0.1): 5 tokens, 5 more a second.
        let h2load = client(
            None,
            Path::new("h2load"),
            &[
                "-n",
                "50",
                "-c",
                "1",
                "--connect-to=127.0.0.2:8443",
                "https://shop.example.test:8443/api/burst",
            ],
        );
        let report = run_ok(&h2load).await;
        let codes = report
            .lines()
            .find_map(|l| l.strip_prefix("status codes: "))
            .unwrap_or_else(|| panic!("{report}"));
        println!("rate_per_ip = 5, 50 requests at once: {codes}");
        let count = |class: &str| -> u64 {
            codes
                .split(", ")
                .find_map(|c| c.strip_suffix(class))
                .and_then(|n| n.trim().parse().ok())
                .unwrap()
        };
        let (ok, limited) = (count(" 2xx"), count(" 4xx"));
        assert_eq!(ok + limited, 50, "{codes}");
        assert!((5..50).contains(&ok), "{codes}");
        assert!(limited > 0, "{codes}");
        let counted = [("result", "rate_limited")];
        let rate_limited = metric(&c, "n1", "murmur_gateway_requests_total", &counted).await;
        assert_eq!(rate_limited, limited as f64);
        // Another address still has its own tokens.
        let (body, status) = get(&certs.ca.file, "shop.example.test", "/api/other", &[]).await;
        assert_eq!(status, "200 2", "{body}");
    });
}

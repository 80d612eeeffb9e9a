//! The admin API takes changes only from its own clients: a cross-origin text/plain POST (what
//! any web page can send without asking), a foreign `Host` (DNS rebinding) and a non-JSON body
//! are refused by every endpoint that changes something, and change nothing. A registration
//! over the API never overrides the config file at the next start.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use murmur_tests::{Cluster, NodeSpec, apps::EchoApp, http, netns, wait_until};

/// Every endpoint that changes something, with a body it would accept.
const MUTATIONS: &[(&str, &str, &str)] = &[
    ("POST", "/v1/drain", "{}"),
    ("POST", "/v1/undrain", "{}"),
    (
        "POST",
        "/v1/services",
        r#"{"name":"web","address":"127.0.0.1:9"}"#,
    ),
    ("DELETE", "/v1/services/web", ""),
    (
        "POST",
        "/v1/policies",
        r#"{"documents":[],"dry_run":false}"#,
    ),
];

/// What a request tries, its headers, and the status it must get.
type Attempt<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

#[test]
fn web_pages_and_foreign_hosts_change_nothing_on_any_mutating_endpoint() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "web").await;
        let mut c = Cluster::new();
        c.add(NodeSpec::new("n1", Cluster::ip(2)).service("web", app.addr, "http"));
        let n1 = c.node("n1");
        n1.wait_instances("web", &["n1"]).await;
        let admin = n1.admin();
        let own = admin.to_string();
        let attempts: [Attempt<'_>; 4] = [
            (
                "cross-origin text/plain POST",
                vec![
                    ("host", own.as_str()),
                    ("origin", "http://evil.example"),
                    ("content-type", "text/plain"),
                ],
                403,
            ),
            (
                "cross-origin JSON",
                vec![
                    ("host", own.as_str()),
                    ("origin", "http://evil.example"),
                    ("content-type", "application/json"),
                ],
                403,
            ),
            (
                "foreign Host",
                vec![
                    ("host", "rebound.example:7422"),
                    ("content-type", "application/json"),
                ],
                421,
            ),
            (
                "non-JSON body",
                vec![
                    ("host", own.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                415,
            ),
        ];
        for (method, path, body) in MUTATIONS {
            for (what, headers, status) in &attempts {
                let r = http::send(admin, method, path, headers, body.as_bytes().to_vec())
                    .await
                    .unwrap();
                assert_eq!(r.status, *status, "{what} {method} {path}: {}", r.text());
            }
        }
        // A foreign Host cannot read either.
        let r = http::send(
            admin,
            "GET",
            "/v1/members",
            &[("host", "rebound.example:7422")],
            vec![],
        )
        .await
        .unwrap();
        assert_eq!(r.status, 421);
        // Nothing changed: still serving, web still served from its configured address.
        assert_eq!(n1.admin_get("/readyz").await.unwrap().status, 200);
        n1.wait_instances("web", &["n1"]).await;
        let services = n1.admin_get("/v1/services").await.unwrap().text();
        assert!(services.contains("127.0.1.2:8080"), "{services}");
        // The CLI's requests pass.
        let out = http::send(
            admin,
            "POST",
            "/v1/drain",
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(out.status, 200, "{}", out.text());
    });
}

#[test]
fn the_config_file_wins_over_registrations_made_over_the_api() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "web").await;
        let mut c = Cluster::new();
        let spec = NodeSpec::new("n1", Cluster::ip(2)).service("web", app.addr, "http");
        c.add(spec);
        let n1 = c.node("n1");
        n1.wait_instances("web", &["n1"]).await;
        let json = [("content-type", "application/json")];
        let register = |body: &'static str| {
            http::send(
                n1.admin(),
                "POST",
                "/v1/services",
                &json,
                body.as_bytes().to_vec(),
            )
        };
        // Re-pointing a configured service over the API is refused, and says why.
        let r = register(r#"{"name":"web","address":"127.0.0.1:9"}"#)
            .await
            .unwrap();
        assert_eq!(r.status, 409, "{}", r.text());
        assert!(r.text().contains("config file"), "{}", r.text());
        // A registration saved before the service came into the file is ignored at start,
        // with a warning naming both.
        let saved = n1.dir.join("data/registrations.json");
        std::fs::write(&saved, r#"[{"name":"web","address":"127.0.0.1:9"}]"#).unwrap();
        c.node_mut("n1").restart();
        let n1 = c.node("n1");
        n1.wait_instances("web", &["n1"]).await;
        wait_until(
            "the log to say the config file wins",
            Duration::from_secs(10),
            || async {
                let log = n1.log_tail(200);
                if log.contains("the config file defines this service and wins") {
                    Ok(())
                } else {
                    Err(log)
                }
            },
        )
        .await;
        let services = n1.admin_get("/v1/services").await.unwrap().text();
        assert!(services.contains("127.0.1.2:8080"), "{services}");
        assert!(!services.contains("127.0.0.1:9"), "{services}");
        let r = http::send(n1.outbound(), "GET", "/", &[("host", "web")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    });
}

/// Whether the server closes `s` within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_and_silent_connections_neither_hold_the_admin_api_nor_take_it_down() {
    netns::run(|| async {
        let mut c = Cluster::new();
        let spec = NodeSpec {
            extra_toml: "\n[limits.admin]\nfirst_byte_timeout = \"1s\"\n\
                         [limits.outbound]\nmax_connections = 50\nfirst_byte_timeout = \"30s\"\n"
                .into(),
            ..NodeSpec::new("n1", Cluster::ip(2))
        };
        c.add(spec);
        let n1 = c.node("n1");
        wait_until("n1 to answer", Duration::from_secs(10), || async {
            n1.admin_get("/healthz").await.map(|_| ())
        })
        .await;
        // A head that never ends, on the admin API: closed after its header timeout.
        let started = Instant::now();
        let mut slow = TcpStream::connect(n1.admin()).await.unwrap();
        slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.2:7422\r\nX-Slow:")
            .await
            .unwrap();
        assert!(closed_within(&mut slow, Duration::from_secs(10)).await);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // The outbound proxy flooded with silent connections up to its cap and beyond: the
        // extra ones are closed at once, and the admin API answers all along.
        let mut held = Vec::new();
        for _ in 0..80 {
            held.push(TcpStream::connect(n1.outbound()).await.unwrap());
        }
        let mut closed = 0;
        for s in held.iter_mut() {
            if closed_within(s, Duration::from_millis(200)).await {
                closed += 1;
            }
        }
        assert_eq!(
            closed, 30,
            "the 30 over the cap are closed, the 50 under it held"
        );
        assert_eq!(n1.admin_get("/readyz").await.unwrap().status, 200);
        let metrics = n1.admin_get("/metrics").await.unwrap().text();
        assert!(
            metrics.contains("murmur_listener_refused_total{listener=\"outbound\"} 30"),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "murmur_listener_timeouts_total{listener=\"admin\",reason=\"first_byte\"}"
            ),
            "{metrics}"
        );
    });
}

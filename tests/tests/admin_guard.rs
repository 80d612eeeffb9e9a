//! The admin API takes changes only from its own clients: a cross-origin text/plain POST (what
//! any web page can send without asking), a foreign `Host` (DNS rebinding) and a non-JSON body
//! are refused by every endpoint that changes something, and change nothing. A registration
//! over the API never overrides the config file at the next start.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

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

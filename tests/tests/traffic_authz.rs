//! Authorization end to end: a default-deny service lets an allowed caller through and answers
//! 403 naming the rule to the others; a policy change flips it live; shadow mode denies nothing
//! and counts; encoded and dotted paths cannot slip past a rule (issue 6, acceptance 6 and 7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::apps::EchoApp;
use murmur_tests::traffic::{Req, apply, load, metric, raw_get};
use murmur_tests::{Cluster, netns, wait_until};

fn app_addr(ip: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Cluster::ip(ip), port))
}

/// n1 (whose certificate names `frontend`) and n3 (a plain node) call `web` and `api`, both
/// served by n2.
async fn mesh() -> Cluster {
    EchoApp::start(app_addr(3, 8080), "web").await;
    EchoApp::start(app_addr(3, 8081), "api").await;
    let mut c = Cluster::new();
    c.chain(3, |mut s| match s.name.as_str() {
        "n1" => {
            s.cert_services.push("frontend".into());
            s
        }
        "n2" => {
            s.service("web", app_addr(3, 8080), "http")
                .service("api", app_addr(3, 8081), "http")
        }
        _ => s,
    });
    for n in ["n1", "n3"] {
        c.node(n).wait_instances("web", &["n2"]).await;
    }
    c
}

fn statuses(done: &[murmur_tests::traffic::Done]) -> (usize, usize, usize) {
    let ok = done.iter().filter(|d| d.status() == 200).count();
    let denied = done.iter().filter(|d| d.status() == 403).count();
    (ok, denied, done.len() - ok - denied)
}

const DEFAULT_DENY: &str = r#"
[[authz]]
name = "web-authz"
service = "web"
default = "deny"
rules = [{ name = "frontends", action = "allow", callers = [{ service = "frontend" }] }]
"#;

#[test]
fn default_deny_allows_by_identity_flips_live_and_shadow_mode_only_counts() {
    netns::run(|| async {
        let c = mesh().await;
        let (n1, n3) = (c.node("n1").outbound(), c.node("n3").outbound());
        apply(&c, "n2", DEFAULT_DENY).await;

        let allowed = load(n1, 100, 4, |_| Req::get("web", "/x")).await;
        let refused = load(n3, 100, 4, |_| Req::get("web", "/x")).await;
        println!(
            "default deny, frontends allowed: n1 (frontend) {:?}, n3 {:?} (ok, 403, other)",
            statuses(&allowed),
            statuses(&refused)
        );
        assert_eq!(statuses(&allowed), (100, 0, 0));
        assert_eq!(statuses(&refused), (0, 100, 0));
        let r = refused[0].reply.as_ref().unwrap();
        assert_eq!(r.headers["x-murmur-error"], "denied");
        assert_eq!(r.headers["x-murmur-authz"], "web-authz/default");
        assert_eq!(
            r.text().trim(),
            "denied by authz \"web-authz\": no rule allows this caller, and the default for web \
             is deny"
        );
        assert_eq!(
            metric(
                &c,
                "n2",
                "murmur_denied_total",
                &[("rule", "web-authz/default")]
            )
            .await,
            100.0
        );

        // Live: allow n3 by SPIFFE ID; no restart.
        let started = Instant::now();
        let digest = apply(
            &c,
            "n1",
            &DEFAULT_DENY.replace(
                "callers = [{ service = \"frontend\" }] }",
                "callers = [{ service = \"frontend\" }] },\n         { name = \"n3\", action = \"allow\", callers = [{ spiffe = \"spiffe://test.mesh/node/n3\" }] }",
            ),
        )
        .await;
        let converged = started.elapsed();
        let (_, took) = wait_until("n3 to be allowed", Duration::from_secs(10), || async {
            let d = load(n3, 1, 1, |_| Req::get("web", "/x")).await;
            if d[0].status() == 200 {
                Ok(())
            } else {
                Err(d[0].status().to_string())
            }
        })
        .await;
        let after = load(n3, 100, 4, |_| Req::get("web", "/x")).await;
        println!(
            "after allowing n3 by SPIFFE ID (applied on n1, digest {digest}): every node held it \
             {converged:?} after the apply started; n3 was let through {took:?} later; then n3 \
             {:?}",
            statuses(&after),
        );
        assert_eq!(statuses(&after), (100, 0, 0));

        // A deny rule by method, tried before the allows.
        apply(
            &c,
            "n3",
            &DEFAULT_DENY.replace(
                "rules = [",
                "rules = [{ name = \"no-delete\", action = \"deny\", methods = [\"DELETE\"] },\n         ",
            ),
        )
        .await;
        let deletes = load(n1, 10, 2, |_| Req::get("web", "/x").with("DELETE", b"")).await;
        let gets = load(n1, 10, 2, |_| Req::get("web", "/x")).await;
        println!(
            "deny DELETE: n1 deletes {:?}, gets {:?}",
            statuses(&deletes),
            statuses(&gets)
        );
        assert_eq!(statuses(&deletes), (0, 10, 0));
        assert_eq!(statuses(&gets), (10, 0, 0));
        let r = deletes[0].reply.as_ref().unwrap();
        assert_eq!(
            r.text().trim(),
            "denied by authz \"web-authz\", rule \"no-delete\""
        );

        // Shadow mode: nothing is denied, would-be denials are counted.
        apply(
            &c,
            "n2",
            &DEFAULT_DENY.replace(
                "default = \"deny\"",
                "default = \"deny\"\nmode = \"shadow\"",
            ),
        )
        .await;
        let denied_before = metric(&c, "n2", "murmur_denied_total", &[]).await;
        let shadow = load(n3, 50, 4, |_| Req::get("web", "/x")).await;
        let front = load(n1, 50, 4, |_| Req::get("web", "/x")).await;
        let counted = metric(
            &c,
            "n2",
            "murmur_shadow_denied_total",
            &[("rule", "web-authz/default")],
        )
        .await;
        println!(
            "shadow mode: n3 {:?}, n1 {:?}; shadow denials counted {counted}",
            statuses(&shadow),
            statuses(&front)
        );
        assert_eq!(statuses(&shadow), (50, 0, 0));
        assert_eq!(statuses(&front), (50, 0, 0));
        assert_eq!(counted, 50.0, "only n3's requests would have been denied");
        assert_eq!(
            metric(&c, "n2", "murmur_denied_total", &[]).await,
            denied_before
        );
        assert!(
            c.node("n2")
                .log_tail(400)
                .contains("would deny this request")
        );
    });
}

#[test]
fn encoded_and_dotted_paths_cannot_slip_past_a_rule() {
    netns::run(|| async {
        let c = mesh().await;
        let out = c.node("n1").outbound();
        apply(
            &c,
            "n2",
            r#"
[[authz]]
name = "public-only"
service = "web"
default = "deny"
rules = [{ name = "public", action = "allow", paths = [{ prefix = "/public" }] }]

[[authz]]
name = "no-admin"
service = "api"
default = "allow"
rules = [{ name = "admin", action = "deny", paths = [{ prefix = "/admin" }] }]
"#,
        )
        .await;
        // (service, raw request target, status, path the app receives when let through)
        let cases: &[(&str, &str, u16, Option<&str>)] = &[
            ("web", "/public/x", 200, Some("/public/x")),
            ("web", "/public/../admin", 403, None),
            ("web", "/public/%2e%2e/admin", 403, None),
            ("web", "/public/%2E%2e/admin", 403, None),
            ("web", "/public/.%2e/admin", 403, None),
            ("web", "/public//../admin", 403, None),
            ("web", "/public/./../admin", 403, None),
            ("web", "//admin", 403, None),
            ("web", "/%61dmin", 403, None),
            ("web", "/PUBLIC/x", 403, None),
            ("web", "/public/..%2Fadmin", 400, None),
            ("web", "/public%2F..%2Fadmin", 400, None),
            ("web", "/public/..%2fadmin", 400, None),
            ("web", "/public/..%5Cadmin", 400, None),
            ("web", "/public/..;/admin", 400, None),
            ("web", "/public/%00/../admin", 400, None),
            ("web", "/%70ublic/x", 200, Some("/public/x")),
            ("web", "/public/./x//y", 200, Some("/public/x/y")),
            (
                "web",
                "/public/%252e%252e/admin",
                200,
                Some("/public/%252e%252e/admin"),
            ),
            ("api", "/admin", 403, None),
            ("api", "/admin/", 403, None),
            ("api", "//admin//users", 403, None),
            ("api", "/./admin", 403, None),
            ("api", "/x/../admin", 403, None),
            ("api", "/%61dmin", 403, None),
            ("api", "/%61%64%6d%69%6e/users", 403, None),
            ("api", "/admin%2Fusers", 400, None),
            ("api", "/administrator", 200, Some("/administrator")),
            ("api", "/public/x", 200, Some("/public/x")),
        ];
        let mut failures = Vec::new();
        for (service, raw, status, path) in cases {
            let (got, body) = raw_get(out, raw, service).await.unwrap();
            let seen = body
                .lines()
                .find(|l| l.starts_with(service))
                .and_then(|l| l.split(' ').nth(2))
                .map(str::to_owned);
            println!(
                "{service:4} {raw:28} -> {got}  {}",
                seen.as_deref().unwrap_or("")
            );
            let why = match got {
                400 => body.contains("the request path is refused"),
                403 => body.contains("denied by authz"),
                _ => true,
            };
            if got != *status || !why || (path.is_some() && seen.as_deref() != *path) {
                failures.push(format!(
                    "{service} {raw}: got {got} {seen:?}, want {status} {path:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

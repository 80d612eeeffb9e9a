//! Calls out of the mesh governed by signed `external` documents (issue 19, acceptance 3): an
//! app calls `http://api.example.test/` through its node, which resolves the name (to a
//! loopback HTTPS server with a test CA) and speaks TLS to it, verifying it with the CA the
//! document names; with `external = "deny"` a host no document names gets a 403 naming it, and
//! a caller the document does not allow gets a 403 naming the document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use murmur_tests::gateway::{HttpsApp, WebCa};
use murmur_tests::onboarding::{client, run_ok};
use murmur_tests::traffic::{apply, metric};
use murmur_tests::{Cluster, NodeSpec, netns, wait_until};

fn external(caller: &str, ca: &Path) -> String {
    format!(
        "[[external]]\nname = \"api\"\nhosts = [\"api.example.test\"]\nports = [80]\n\
         callers = [{{ spiffe = \"spiffe://test.mesh/node/{caller}\" }}]\n\
         tls = {{ ca = \"{}\" }}\n",
        ca.display()
    )
}

/// `curl -x <proxy> <url>`: the body, then a line with the status.
fn call(proxy: &str, url: &str) -> std::process::Command {
    client(
        None,
        Path::new("curl"),
        &[
            "-sS",
            "--max-time",
            "10",
            "-x",
            proxy,
            "-w",
            "\n%{http_code}",
            url,
        ],
    )
}

#[test]
fn an_app_calls_an_external_api_in_plain_http_and_its_node_speaks_tls() {
    netns::run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ca = WebCa::new(dir.path(), "api-ca");
        let server = SocketAddr::from(([127, 0, 0, 9], 443));
        let app = HttpsApp::start(server, &ca, "api.example.test", dir.path()).await;
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost\n127.0.0.9 api.example.test other.example.test\n",
        )
        .unwrap();
        let mut c = Cluster::new();
        let mut n1 = NodeSpec::new("n1", Cluster::ip(2));
        n1.external = Some("deny");
        n1.hosts_file = Some(hosts);
        c.add(n1);
        wait_until("n1 to serve", Duration::from_secs(30), || async {
            c.node("n1").admin_get("/healthz").await.map(|_| ())
        })
        .await;
        let proxy = format!("http://{}", c.node("n1").outbound());

        // Not documented yet, and external = "deny": refused, naming the host.
        let out = run_ok(&call(&proxy, "http://api.example.test/v1/items")).await;
        assert!(out.ends_with("\n403"), "{out}");
        assert!(
            out.contains("api.example.test:80 is outside the mesh"),
            "{out}"
        );

        // Documented for n1 with TLS origination: the app speaks HTTP, the server sees TLS.
        apply(&c, "n1", &external("n1", &ca.file)).await;
        wait_until(
            "the call to go out over TLS",
            Duration::from_secs(20),
            || async {
                let out = run_ok(&call(&proxy, "http://api.example.test/v1/items")).await;
                if out == "secure GET /v1/items host=api.example.test\n\n200" {
                    Ok(())
                } else {
                    Err(out)
                }
            },
        )
        .await;
        let handshakes = app.handshakes.load(Ordering::Relaxed);
        assert!(handshakes >= 1, "the server saw no TLS handshake");
        let originated = [("kind", "http"), ("decision", "originated")];
        assert!(metric(&c, "n1", "murmur_external_requests_total", &originated).await >= 1.0);

        // Another host on the same server, not documented: 403 naming it.
        let out = run_ok(&call(&proxy, "http://other.example.test/")).await;
        assert!(out.ends_with("\n403"), "{out}");
        assert!(
            out.contains("other.example.test:80 is outside the mesh"),
            "{out}"
        );

        // A document that allows another caller only: n1 is refused, naming the document.
        apply(&c, "n1", &external("n9", &ca.file)).await;
        wait_until("n1 to be refused", Duration::from_secs(20), || async {
            let out = run_ok(&call(&proxy, "http://api.example.test/v1/items")).await;
            if out.ends_with("\n403") && out.contains("external \"api\"") {
                Ok(())
            } else {
                Err(out)
            }
        })
        .await;
        let refused_at = app.handshakes.load(Ordering::Relaxed);
        let out = run_ok(&call(&proxy, "http://api.example.test/v1/items")).await;
        assert!(out.ends_with("\n403"), "{out}");
        assert_eq!(
            app.handshakes.load(Ordering::Relaxed),
            refused_at,
            "no call went out"
        );
    });
}

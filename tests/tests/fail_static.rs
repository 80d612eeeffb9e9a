//! Fail-static after a graceful stop of the whole mesh: every node stops with SIGTERM (each
//! marks itself left on the way out), then every node but the seed starts again. The members
//! known before the stop are tried as seeds, so the mesh re-forms and serves within 10 s, and
//! until it has, the last-known-good services are served, marked stale.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use murmur_tests::{Cluster, NodeSpec, apps::EchoApp, http, netns, wait_until};
use nix::sys::signal::Signal;

#[test]
fn a_mesh_stopped_as_a_whole_reforms_and_serves_without_its_seed() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.4:8080".parse().unwrap(), "web-on-n3").await;
        let mut c = Cluster::new();
        // n1 is every other node's only seed.
        c.add(NodeSpec::new("n1", Cluster::ip(2)));
        let seed = c.node("n1").mesh();
        for (i, name) in [(3, "n2"), (4, "n3"), (5, "n4")] {
            let mut spec = NodeSpec::new(name, Cluster::ip(i)).seed(seed);
            if name == "n3" {
                spec = spec.service("web", app.addr, "http");
            }
            c.add(spec);
        }
        let all = ["n1", "n2", "n3", "n4"];
        c.wait_alive(&all, &all, Duration::from_secs(30)).await;
        c.node("n2").wait_instances("web", &["n3"]).await;
        let old: Vec<(String, String, u64)> = c.node("n2").members().await.unwrap();
        let old_generation = |name: &str| {
            old.iter()
                .find(|(n, _, _)| n == name)
                .map_or(0, |(_, _, g)| *g)
        };
        for n in &mut c.nodes {
            assert!(n.stop_with(Signal::SIGTERM), "{} did not stop", n.name());
        }
        // Every node but the seed comes back.
        let started = Instant::now();
        for n in ["n2", "n3", "n4"] {
            c.node_mut(n).restart();
        }
        let rest = ["n2", "n3", "n4"];
        let (_, took) = wait_until(
            "n2, n3 and n4 to find each other and n2 to reach web on n3",
            Duration::from_secs(10),
            || async {
                for o in rest {
                    let members = c.node(o).members().await?;
                    for m in rest {
                        // Alive in a new generation: heard from by gossip, not read from disk.
                        let fresh = members
                            .iter()
                            .any(|(n, s, g)| n == m && s == "alive" && *g > old_generation(m));
                        if !fresh {
                            return Err(format!("{o}: {members:?}"));
                        }
                    }
                }
                let r = http::send(
                    c.node("n2").outbound(),
                    "GET",
                    "/",
                    &[("host", "web")],
                    vec![],
                )
                .await?;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(format!("web: {} {}", r.status, r.text()))
                }
            },
        )
        .await;
        println!(
            "after a SIGTERM of the whole mesh, three of four nodes re-formed and served in {took:?} \
             ({:?} after the first restart)",
            started.elapsed()
        );
        let log = c.node("n2").log_tail(400);
        assert!(
            log.contains("members known before the stop are tried as seeds"),
            "{log}"
        );
    });
}

#[test]
fn alone_after_a_whole_mesh_stop_a_node_serves_its_last_known_view_marked_stale() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.3:8080".parse().unwrap(), "web-on-n2").await;
        let mut c = Cluster::serving_pair("web", app.addr, "http").await;
        for n in &mut c.nodes {
            assert!(n.stop_with(Signal::SIGTERM));
        }
        // Only n1 comes back: nobody to gossip with, n2's last record comes from disk.
        c.node_mut("n1").restart();
        let n1 = c.node("n1");
        wait_until(
            "n1 to list web on n2, stale",
            Duration::from_secs(10),
            || async {
                let reply = n1.admin_get("/v1/services").await?;
                let text = reply.text();
                if text.contains("\"stale\": true") && text.contains("\"node\": \"n2\"") {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        )
        .await;
        let metrics = n1.admin_get("/metrics").await.unwrap().text();
        assert!(metrics.contains("murmur_view_stale 1"), "{metrics}");
        // n2's app is still up: with n2 gone the call fails, fast, with the reason.
        let r = http::send(n1.outbound(), "GET", "/", &[("host", "web")], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        // n2 returns: the view is live again, and web is served.
        c.node_mut("n2").restart();
        let n1 = c.node("n1");
        wait_until(
            "web served through n1 again",
            Duration::from_secs(30),
            || async {
                let r = http::send(n1.outbound(), "GET", "/", &[("host", "web")], vec![]).await?;
                (r.status == 200)
                    .then_some(())
                    .ok_or(format!("{} {}", r.status, r.text()))
            },
        )
        .await;
    });
}

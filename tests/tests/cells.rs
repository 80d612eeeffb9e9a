//! Cells with real processes in a network namespace (issue: cells, acceptance 3): two cells of
//! three nodes; a service in cell a called from cell b; a policy applied in b enforced in a;
//! a's publishing custodian killed under steady load with no failed request.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use murmur_tests::apps::EchoApp;
use murmur_tests::load::Load;
use murmur_tests::node::NodeSpec;
use murmur_tests::traffic::{Req, apply, load};
use murmur_tests::{Cluster, http, netns, wait_until};
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);
const A: [&str; 3] = ["a1", "a2", "a3"];
const B: [&str; 3] = ["b1", "b2", "b3"];

/// a1..a3 on 127.0.0.2..4 and b1..b3 on 127.0.0.5..7; each cell seeded within itself, and
/// every node given the first node of the other cell as its cell seed. Every node of a may
/// serve `web` (its certificate names it); none does yet.
fn start(c: &mut Cluster) {
    let (a_seed, b_seed) = (mesh(2), mesh(5));
    for (i, name) in (2u8..).zip(A.iter().chain(B.iter())) {
        let in_a = i < 5;
        let (own_seed, other) = if in_a {
            (a_seed, b_seed)
        } else {
            (b_seed, a_seed)
        };
        let mut spec =
            NodeSpec::new(name, Cluster::ip(i)).cell(if in_a { "a" } else { "b" }, &[other]);
        if mesh(i) != own_seed {
            spec = spec.seed(own_seed);
        }
        if in_a {
            spec.cert_services.push("web".into());
        }
        c.add(spec);
    }
}

fn mesh(i: u8) -> SocketAddr {
    SocketAddr::from((Cluster::ip(i), 7420))
}

fn app(i: u8) -> SocketAddr {
    SocketAddr::from((Cluster::ip(i), 8080))
}

/// `(custodians, remote cells as (name, publisher, stale))` from a node's `/v1/status`; a
/// remote cell's publisher is the first custodian its summary names.
async fn cell_of(
    c: &Cluster,
    node: &str,
) -> Result<(Vec<String>, Vec<(String, String, bool)>), String> {
    let s = c.node(node).admin_get("/v1/status").await?.json();
    let cell = &s["cell"];
    let custodians = cell["custodians"]
        .as_array()
        .ok_or("no custodians in status")?
        .iter()
        .filter_map(|v| Some(v.as_str()?.to_owned()))
        .collect();
    let remote = cell["remote"]
        .as_array()
        .ok_or("no remote cells in status")?
        .iter()
        .filter_map(|r| {
            Some((
                r["name"].as_str()?.to_owned(),
                r["custodians"].as_array()?.first()?.as_str()?.to_owned(),
                r["stale"].as_bool()?,
            ))
        })
        .collect();
    Ok((custodians, remote))
}

/// Registers `web` on `node` through its admin API, served by the echo app on `app`.
async fn register_web(c: &Cluster, node: &str, app: SocketAddr) {
    let body = format!("{{\"name\":\"web\",\"address\":\"{app}\"}}");
    let r = http::send(
        c.node(node).admin(),
        "POST",
        "/v1/services",
        &[("content-type", "application/json")],
        body.into_bytes(),
    )
    .await
    .unwrap();
    assert!(
        r.status < 300,
        "register web on {node}: {} {}",
        r.status,
        r.text()
    );
}

/// Waits until every node of one cell lists exactly its own cell's members, alive.
async fn cell_formed(c: &Cluster, cell: &[&str]) {
    c.wait_alive(cell, cell, LIMIT).await;
    for o in cell {
        let m = c.node(o).members().await.unwrap();
        let names: Vec<&str> = m.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, cell, "{o} lists members of another cell");
    }
}

/// The custodians every node of `cell` agrees on.
async fn agreed_custodians(c: &Cluster, cell: &[&str]) -> Vec<String> {
    let (custodians, _) = wait_until("the cell to agree on its custodians", LIMIT, || async {
        let first = cell_of(c, cell[0]).await?.0;
        if first.len() != 2 {
            return Err(format!("{}: {first:?}", cell[0]));
        }
        for n in &cell[1..] {
            let theirs = cell_of(c, n).await?.0;
            if theirs != first {
                return Err(format!("{}: {theirs:?}, {}: {first:?}", n, cell[0]));
            }
        }
        Ok(first)
    })
    .await;
    custodians
}

#[test]
fn two_cells_route_share_policy_and_survive_a_custodian_kill() {
    netns::run(|| async {
        let mut c = Cluster::new();
        start(&mut c);
        cell_formed(&c, &A).await;
        cell_formed(&c, &B).await;
        let custodians = agreed_custodians(&c, &A).await;
        println!("cell a custodians: {custodians:?}");
        let publisher = custodians[0].clone();

        // web is served in a by the two nodes that are not the publishing custodian, so that
        // killing it tests the cell link, not the data path's failover.
        let mut servers = Vec::new();
        for (i, name) in (2u8..).zip(A) {
            if name != publisher {
                EchoApp::start(app(i), name).await;
                register_web(&c, name, app(i)).await;
                servers.push(name);
            }
        }
        for b in B {
            c.node(b).wait_instances("web", &servers).await;
        }
        let (_, took) = wait_until(
            "b1 to see cell a published by its custodian",
            LIMIT,
            || async {
                let (_, remote) = cell_of(&c, "b1").await?;
                match remote.iter().find(|r| r.0 == "a") {
                    Some((_, p, false)) if *p == publisher => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
        println!("b1 sees cell a from {publisher} ({took:?})");

        // Called from cell b.
        let done = load(c.node("b2").outbound(), 20, 2, |_| Req::get("web", "/x")).await;
        let ok = done.iter().filter(|d| d.status() == 200).count();
        assert_eq!(
            ok,
            20,
            "web from b2: {:?}",
            done.iter().map(|d| d.status()).collect::<Vec<_>>()
        );

        // a's publishing custodian killed under steady load from b1: nothing fails, and the
        // other custodian takes over publishing.
        let steady = Load::start(
            c.node("b1").outbound(),
            "web",
            50,
            4,
            Duration::from_secs(40),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let killed = Instant::now();
        // A killed process does not exit successfully: only whether it is gone matters.
        let _ = c.node_mut(&publisher).stop_with(Signal::SIGKILL);
        assert!(!c.node_mut(&publisher).is_running());
        let (next, took) = wait_until("another custodian of a to publish", LIMIT, || async {
            let (_, remote) = cell_of(&c, "b1").await?;
            match remote.iter().find(|r| r.0 == "a") {
                Some((_, p, false)) if *p != publisher => Ok(p.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        println!(
            "{publisher} killed; {next} publishes cell a as seen from b1 {:?} later",
            killed.elapsed().min(took)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (summary, _) = steady.stop().await;
        println!(
            "steady load from b1 across the kill: {} requests, {} ok, failures {:?}, by instance {:?}",
            summary.total, summary.ok, summary.failures, summary.by_instance
        );
        assert!(summary.total > 100, "too little load: {}", summary.total);
        assert!(summary.failures.is_empty(), "{:?}", summary.failures);

        // A policy applied in b is enforced by the serving nodes in a.
        let started = Instant::now();
        apply(
            &c,
            "b3",
            r#"
[[authz]]
name = "web-closed"
service = "web"
default = "deny"
rules = []
"#,
        )
        .await;
        let done = load(c.node("b2").outbound(), 10, 1, |_| Req::get("web", "/x")).await;
        println!(
            "authz applied at b3 held by every live node in {:?}",
            started.elapsed()
        );
        for d in &done {
            assert_eq!(d.status(), 403);
            let r = d.reply.as_ref().unwrap();
            assert_eq!(r.headers["x-murmur-authz"], "web-closed/default");
        }
    });
}

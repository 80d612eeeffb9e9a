//! A hostile member with a valid certificate against real nodes: it claims another node's
//! address, rewrites another node's state, sends the two messages that crash stock chitchat,
//! and opens streams for 10 000 made-up services. Others' views stay true, the owner's later
//! updates still spread, every node keeps gossiping, and memory and `/metrics` stay bounded.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::ChitchatId;
use murmur_membership::records::{self, NODE_KEY, NodeRecord, NodeStatus, RECORD_VERSION};
use murmur_membership::trust::signed::Slot;
use murmur_tests::hostile::Hostile;
use murmur_tests::node::memory_kib;
use murmur_tests::{Cluster, apps::EchoApp, http, netns, wait_until};
use murmur_transport::gossip::message::{DigestEntry, Kind, Kv, Message, NodeDelta, encode};

fn syn(digest: Vec<DigestEntry>) -> Message {
    Message {
        kind: Kind::Syn,
        digest,
        cluster_id: "murmur".into(),
        delta: Vec::new(),
    }
}

fn ack(delta: Vec<NodeDelta>) -> Message {
    Message {
        kind: Kind::Ack,
        digest: Vec::new(),
        cluster_id: String::new(),
        delta,
    }
}

async fn state_of(c: &Cluster, observer: &str, name: &str) -> Option<(String, u64)> {
    let members = c.node(observer).members().await.ok()?;
    members
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, g)| (s, g))
}

/// A served pair n1 → n2 (service web), and the hostile member y on 127.0.0.9.
async fn mesh() -> (Cluster, EchoApp, Hostile) {
    let app = EchoApp::start("127.0.1.3:8080".parse().unwrap(), "n2-app").await;
    let c = Cluster::serving_pair("web", app.addr, "http").await;
    let y = Hostile::new(&c.pki, "y", Cluster::ip(9), &[]);
    (c, app, y)
}

async fn web_ok(c: &Cluster) -> Result<(), String> {
    let r = http::send(
        c.node("n1").outbound(),
        "GET",
        "/",
        &[("host", "web")],
        Vec::new(),
    )
    .await?;
    if r.status == 200 {
        Ok(())
    } else {
        Err(format!("{} {}", r.status, r.text()))
    }
}

#[test]
fn a_member_claiming_another_node_s_address_takes_none_of_its_traffic() {
    netns::run(|| async {
        let (c, _app, y) = mesh().await;
        let n1 = c.node("n1").mesh();
        let n2 = c.node("n2").mesh();
        // y claims n2's address to n1 again and again while n1's app calls web on n2.
        let claims = async {
            for _ in 0..100 {
                y.gossip(n1, n2, &syn(Vec::new())).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let calls = async {
            let mut failed = Vec::new();
            for _ in 0..200 {
                if let Err(e) = web_ok(&c).await {
                    failed.push(e);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failed
        };
        let ((), failed) = tokio::join!(claims, calls);
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert_eq!(state_of(&c, "n1", "n2").await.unwrap().0, "alive");
    });
}

#[test]
fn forged_state_and_crashing_messages_from_a_member_change_nothing() {
    netns::run(|| async {
        let (c, _app, y) = mesh().await;
        let n1 = c.node("n1").mesh();
        let (_, generation) = state_of(&c, "n1", "n2").await.unwrap();
        let n2 = ChitchatId::new("n2", generation, c.node("n2").mesh());
        let high = 1 << 62;
        let left = records::encode(&NodeRecord {
            version: RECORD_VERSION,
            name: "n2".into(),
            mesh_addr: n2.gossip_advertise_addr,
            admin_addr: None,
            labels: Default::default(),
            status: NodeStatus::Left,
        })
        .unwrap();
        let forged = y.forge(
            Slot {
                id: &n2,
                key: NODE_KEY,
                version: high,
            },
            &left,
        );
        let delta = |kvs, set_max_version| NodeDelta {
            id: n2.clone(),
            last_gc: 0,
            from_version: 0,
            kvs,
            set_max_version,
        };
        let kv = |value: String, version| Kv {
            key: NODE_KEY.into(),
            value,
            version,
            status: 0,
        };
        // n2 marked left, at a version that would lock n2 out; n2's version set to u64::MAX.
        y.gossip(n1, n1, &ack(vec![delta(vec![kv(forged, high)], None)]))
            .await;
        y.gossip(n1, n1, &ack(vec![delta(Vec::new(), Some(u64::MAX))]))
            .await;
        // The Ack that trips chitchat's assert, and 8 000 invented members in four Syns.
        let crash = ack(vec![NodeDelta {
            from_version: 1,
            ..delta(vec![kv("x".into(), 1000)], Some(2))
        }]);
        y.gossip(n1, n1, &crash).await;
        for k in 0..4u32 {
            let digest = (k * 2000..(k + 1) * 2000)
                .map(|i| DigestEntry {
                    id: ChitchatId::new(
                        format!("pod-{:08x}", i.wrapping_mul(2_654_435_761)),
                        u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                        SocketAddr::from((i.wrapping_mul(2_246_822_519).to_be_bytes(), 7420)),
                    ),
                    heartbeat: 1,
                    last_gc: 0,
                    max_version: 0,
                })
                .collect();
            y.gossip_raw(n1, n1, encode(&syn(digest))).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // n1 still runs, still gossips, and still believes what n2 says.
        let n1_proc = c.node("n1");
        assert!(
            n1_proc.is_running_ref(),
            "n1 exited: {}",
            n1_proc.log_tail(20)
        );
        let members = n1_proc.members().await.unwrap();
        assert!(members.len() <= 3, "{members:?}");
        assert_eq!(state_of(&c, "n1", "n2").await.unwrap().0, "alive");
        web_ok(&c).await.unwrap();
        let metrics = n1_proc.admin_get("/metrics").await.unwrap().text();
        assert!(
            metrics.contains("murmur_gossip_refused_total{reason=\"bad_signature\"}"),
            "{metrics}"
        );
        // n2's own update still spreads: it drains, and n1 sees it.
        let drain = http::send(
            c.node("n2").admin(),
            "POST",
            "/v1/drain",
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        );
        assert_eq!(drain.await.unwrap().status, 200);
        wait_until("n1 to see n2 draining", Duration::from_secs(10), || async {
            match state_of(&c, "n1", "n2").await {
                Some((s, _)) if s == "draining" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    });
}

/// Lines of `/metrics` and resident memory of node `name`.
async fn footprint(c: &Cluster, name: &str) -> (usize, u64) {
    let n = c.node(name);
    let lines = n
        .admin_get("/metrics")
        .await
        .unwrap()
        .text()
        .lines()
        .count();
    (lines, memory_kib(n.pid().unwrap()).0)
}

#[test]
fn ten_thousand_made_up_service_names_leave_memory_and_metrics_bounded() {
    netns::run(|| async {
        let (c, _app, y) = mesh().await;
        let n2 = c.node("n2").mesh();
        web_ok(&c).await.unwrap();
        let before = footprint(&c, "n2").await;
        // Streams from a peer, 64 at a time.
        let failed = y
            .streams_for(n2, (0..10_000).map(|i| format!("svc-{i}")), 64)
            .await;
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        // Requests from the local app for hosts the mesh does not know.
        let out = c.node("n1").outbound();
        let before_n1 = footprint(&c, "n1").await;
        let mut sender = http::connect(out).await.unwrap();
        for i in 0..10_000 {
            let host = format!("svc-{i}");
            let r = http::exchange(&mut sender, &host, "GET", "/", &[], Vec::new())
                .await
                .unwrap();
            assert_eq!(r.status, 503, "{}", r.text());
        }
        let after = footprint(&c, "n2").await;
        let after_n1 = footprint(&c, "n1").await;
        for (who, b, a) in [("n2", before, after), ("n1", before_n1, after_n1)] {
            eprintln!(
                "{who}: /metrics {} -> {} lines, RSS {} -> {} KiB",
                b.0, a.0, b.1, a.1
            );
            assert!(
                a.0 <= b.0 + 30,
                "{who}: /metrics went from {} to {} lines",
                b.0,
                a.0
            );
            assert!(
                a.1 <= b.1 + 24 * 1024,
                "{who}: resident memory went from {} to {} KiB",
                b.1,
                a.1
            );
        }
        web_ok(&c).await.unwrap();
    });
}

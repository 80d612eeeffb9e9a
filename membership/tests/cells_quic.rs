//! Two cells over the real QUIC endpoint: each node runs its cell on gossip channel 0 and, as
//! its cell's custodian, the top layer on channel 1 of the same endpoint, both behind the trust
//! guard (every value signed and checked, `cell/` keys included).

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_membership::cells::{
    CellLink, CellLinkConfig, CellSettings, QuicTopTransport, cluster_id,
};
use murmur_membership::driver::Trust;
use murmur_membership::records::{Balancer, Health, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_membership::{ClusterView, GossipSettings, Membership, MembershipConfig};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::QuicGossip;
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use tokio::time::Instant;

struct Node {
    membership: Arc<Membership>,
    link: CellLink,
    endpoint: MeshEndpoint,
}

async fn start(pki: &TestPki, name: &str, cell: &str, top_seeds: &[SocketAddr]) -> Node {
    let tls = pki.tls(&pki.node(name, &[]), Role::Node, name);
    let (endpoint, inbox) = MeshEndpoint::bind(
        EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            quic: QuicSettings::default(),
            reset_key: None,
        },
        tls.clone(),
    )
    .unwrap();
    let gossip = GossipSettings {
        cluster_id: cluster_id(cell),
        interval: Duration::from_millis(100),
        initial_interval: Duration::from_millis(100),
        head_interval: Duration::from_secs(1),
        ..GossipSettings::default()
    };
    let trust = Trust::new(tls.clone(), &gossip);
    let transport = QuicGossip::new(endpoint.clone(), inbox, trust.guard.clone());
    let config = MembershipConfig {
        name: name.into(),
        generation: 1,
        mesh_addr: endpoint.advertise_addr(),
        admin_addr: None,
        labels: BTreeMap::new(),
        seeds: vec![],
        gossip: gossip.clone(),
        view_file: None,
        fail_static_warmup: Duration::from_secs(1),
        refresh: Duration::from_millis(100),
        trust,
    };
    let membership = Arc::new(Membership::start(config, &transport).await.unwrap());
    let mut settings = CellSettings::new(cell, &gossip);
    settings.tick = Duration::from_millis(100);
    settings.beacon_every = Duration::from_millis(500);
    let link = CellLink::start(
        CellLinkConfig {
            settings,
            top_addr: endpoint.advertise_addr(),
            top_seeds: top_seeds.iter().map(ToString::to_string).collect(),
            tls,
            transport: Arc::new(QuicTopTransport {
                endpoint: endpoint.clone(),
            }),
        },
        membership.clone(),
    );
    Node {
        membership,
        link,
        endpoint,
    }
}

async fn wait_for(m: &Membership, what: &str, cond: impl Fn(&ClusterView) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rx = m.watch();
    loop {
        if cond(&rx.borrow()) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}: {:#?}",
            *rx.borrow()
        );
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_crosses_cells_over_quic_through_the_guard() {
    let pki = TestPki::new("murmur.local");
    let a = start(&pki, "qa", "east", &[]).await;
    let b = start(&pki, "qb", "west", &[a.endpoint.advertise_addr()]).await;
    let record = ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Grpc,
        labels: BTreeMap::from([("version".to_owned(), "v2".to_owned())]),
        weight: 3,
        health: Health::Passing,
        balancer: Balancer::LeastRequest,
    };
    a.membership.publish_service("web", &record).await.unwrap();
    let a_addr = a.endpoint.advertise_addr();
    wait_for(&b.membership, "east's web in west", |v| {
        v.endpoints("web").iter().any(|e| {
            e.node == "qa"
                && e.cell.as_deref() == Some("east")
                && e.mesh_addr == a_addr
                && e.protocol == Protocol::Grpc
                && e.weight == 3
                && e.balancer == Balancer::LeastRequest
                && e.labels.get("version").map(String::as_str) == Some("v2")
                && !e.stale
        })
    })
    .await;
    // The cells stay apart: neither lists the other's node as a member of its own.
    assert!(!b.membership.view().members.contains_key("qa"));
    assert!(!a.membership.view().members.contains_key("qb"));
    assert!(a.link.status().acting && b.link.status().acting);
    // The guards passed the signed cell keys and refused nothing of them.
    for n in [&a, &b] {
        let stats = n.membership.guard_stats();
        assert!(stats.refused.is_empty(), "{stats:?}");
        let top = n.link.top().unwrap();
        // The wait above saw a's keys reach b; b's reach a on gossip's own schedule.
        let deadline = Instant::now() + Duration::from_secs(20);
        while top.guard_stats().verified == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(top.guard_stats().verified > 0);
        assert!(
            top.guard_stats().refused.is_empty(),
            "{:?}",
            top.guard_stats()
        );
    }
}

//! In-process clusters over chitchat's in-memory transport, running the real membership code.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use murmur_membership::driver::Trust;
use murmur_membership::records::{Health, NodeStatus, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_membership::{ClusterView, GossipSettings, MemberState, Membership, MembershipConfig};
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use tokio::time::Instant;

/// One CA for every test of this file.
fn pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| TestPki::new("murmur.local"))
}

fn addr(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 20_000 + i).into()
}

fn config(name: &str, i: u16, generation: u64, seeds: &[u16]) -> MembershipConfig {
    let gossip = GossipSettings {
        interval: Duration::from_millis(50),
        initial_interval: Duration::from_millis(50),
        ..GossipSettings::default()
    };
    let tls = {
        // Tests run in parallel and reuse names: one issue (files on disk) at a time.
        static ISSUING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ISSUING.lock().unwrap();
        pki().tls(&pki().node(name, &[]), Role::Node, name)
    };
    MembershipConfig {
        trust: Trust::new(tls, &gossip),
        name: name.into(),
        generation,
        mesh_addr: addr(i),
        admin_addr: None,
        labels: BTreeMap::new(),
        seeds: seeds.iter().map(|s| addr(*s).to_string()).collect(),
        gossip,
        view_file: None,
        fail_static_warmup: Duration::from_secs(1),
        refresh: Duration::from_millis(50),
    }
}

async fn wait_for(m: &Membership, what: &str, cond: impl Fn(&ClusterView) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
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

fn alive(v: &ClusterView) -> Vec<&str> {
    v.members
        .values()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.name.as_str())
        .collect()
}

fn web() -> ServiceRecord {
    ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Http,
        labels: BTreeMap::new(),
        weight: 1,
        health: Health::Passing,
        balancer: murmur_membership::records::Balancer::default(),
    }
}

#[tokio::test]
async fn members_services_and_departures_propagate() {
    let net = ChannelTransport::with_mtu(65_507);
    let a = Membership::start(config("a", 1, 1, &[]), &net)
        .await
        .unwrap();
    let b = Membership::start(config("b", 2, 1, &[1]), &net)
        .await
        .unwrap();
    let c = Membership::start(config("c", 3, 1, &[2]), &net)
        .await
        .unwrap();
    for m in [&a, &b, &c] {
        wait_for(m, "three alive", |v| alive(v) == ["a", "b", "c"]).await;
    }

    b.publish_service("web", &web()).await.unwrap();
    wait_for(&c, "web endpoint", |v| v.endpoints("web").len() == 1).await;
    assert_eq!(c.view().endpoints("web")[0].node, "b");

    b.set_status(NodeStatus::Draining).await.unwrap();
    wait_for(&a, "b draining", |v| {
        v.endpoints("web")
            .first()
            .is_some_and(|e| !e.accepts_new_traffic())
    })
    .await;

    b.leave(Duration::from_millis(200)).await;
    wait_for(&a, "b left", |v| v.members["b"].state == MemberState::Left).await;
    assert!(
        c.view().endpoints("web").is_empty() || c.view().members["b"].state == MemberState::Left
    );
}

#[tokio::test]
async fn a_restarted_node_is_listed_once_with_its_new_generation() {
    let net = ChannelTransport::with_mtu(65_507);
    let a = Membership::start(config("a", 1, 1, &[]), &net)
        .await
        .unwrap();
    let b1 = Membership::start(config("b", 2, 100, &[1]), &net)
        .await
        .unwrap();
    wait_for(&a, "b alive", |v| alive(v) == ["a", "b"]).await;
    // Crash: stop gossiping without leaving.
    drop(b1);
    let b2 = loop {
        // The in-memory address frees once the old gossip task has wound down.
        match Membership::start(config("b", 2, 200, &[1]), &net).await {
            Ok(m) => break m,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    wait_for(&a, "new b", |v| {
        v.members.get("b").is_some_and(|m| m.generation == 200)
    })
    .await;
    wait_for(&b2, "sees a", |v| alive(v) == ["a", "b"]).await;
    // The old incarnation never comes back as the listed one.
    for _ in 0..20 {
        let v = a.view();
        assert_eq!(v.members["b"].generation, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_end_of_gossip_is_noticed() {
    let net = ChannelTransport::with_mtu(65_507);
    let a = Membership::start(config("a", 9, 1, &[]), &net)
        .await
        .unwrap();
    let ended = a.gossip_ended();
    assert_eq!(a.known_incarnations().await, 1);
    a.leave(Duration::from_millis(10)).await;
    let why = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the watcher resolves once gossip is gone");
    assert!(why.contains("gossip"), "{why}");
}

#[tokio::test]
async fn a_member_that_joins_is_never_listed_dead_on_its_way_in() {
    let net = ChannelTransport::with_mtu(65_507);
    let a = Membership::start(config("a", 31, 1, &[]), &net)
        .await
        .unwrap();
    let mut rx = a.watch();
    let _b = Membership::start(config("b", 32, 1, &[31]), &net)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let state = rx.borrow_and_update().members.get("b").map(|m| m.state);
        if let Some(s) = state
            && seen.last() != Some(&s)
        {
            seen.push(s);
        }
        if state == Some(MemberState::Alive) {
            break;
        }
        assert!(Instant::now() < deadline, "b never alive: {seen:?}");
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
    assert!(!seen.contains(&MemberState::Dead), "{seen:?}");
}

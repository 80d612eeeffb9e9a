//! chitchat runs over the QUIC endpoint: nodes converge, strangers learn nothing.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::{GossipStats, QuicGossip};
use murmur_transport::identity::Role;
use murmur_transport::testing::{OpenGuard, TestPki};

async fn start(pki: &TestPki, name: &str, seeds: Vec<String>) -> (ChitchatHandle, MeshEndpoint) {
    let (handle, ep, _) = start_counted(pki, name, seeds, true).await;
    (handle, ep)
}

/// A node, with its transport's counters; `packed`: whether it offers packed gossip.
async fn start_counted(
    pki: &TestPki,
    name: &str,
    seeds: Vec<String>,
    packed: bool,
) -> (ChitchatHandle, MeshEndpoint, Arc<GossipStats>) {
    let paths = pki.node(name, &[]);
    let tls = pki.tls(&paths, Role::Node, name);
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (ep, inbox) = MeshEndpoint::bind(
        EndpointConfig {
            listen,
            advertise: None,
            reset_key: None,
            quic: QuicSettings {
                packed_gossip: packed,
                ..QuicSettings::default()
            },
        },
        tls,
    )
    .unwrap();
    let addr = ep.advertise_addr();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(name, 1, addr),
        cluster_id: "test".into(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: addr,
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig {
            initial_interval: Duration::from_millis(100),
            dead_node_grace_period: Duration::from_secs(60),
            ..FailureDetectorConfig::default()
        },
        marked_for_deletion_grace_period: Duration::from_secs(60),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: ProtocolVersion::V1,
    };
    let transport = QuicGossip::new(ep.clone(), inbox, Arc::new(OpenGuard));
    let handle = spawn_chitchat(config, vec![("role".into(), name.into())], &transport)
        .await
        .unwrap();
    (handle, ep, transport.stats())
}

/// Three nodes, the last two seeded with the first; `packed`: which offer packed gossip.
async fn star(
    pki: &TestPki,
    names: [&str; 3],
    packed: [bool; 3],
) -> [(ChitchatHandle, MeshEndpoint, Arc<GossipStats>); 3] {
    let first = start_counted(pki, names[0], vec![], packed[0]).await;
    let seed = vec![first.1.advertise_addr().to_string()];
    let second = start_counted(pki, names[1], seed.clone(), packed[1]).await;
    let third = start_counted(pki, names[2], seed, packed[2]).await;
    [first, second, third]
}

/// `key` of `node` as `handle` holds it.
async fn value_of(handle: &ChitchatHandle, node: &str, key: &str) -> Option<String> {
    handle
        .with_chitchat(|ch| {
            ch.node_states()
                .iter()
                .find(|(id, _)| &*id.node_id == node)
                .and_then(|(_, s)| s.get(key).map(str::to_owned))
        })
        .await
}

async fn live(handle: &ChitchatHandle) -> Vec<String> {
    let mut names: Vec<String> = handle
        .with_chitchat(|c| {
            c.live_nodes()
                .map(|id| id.node_id.to_string())
                .collect::<Vec<_>>()
        })
        .await;
    names.sort();
    names
}

#[tokio::test]
async fn three_nodes_in_a_seed_chain_converge_over_quic() {
    let pki = TestPki::new("test.mesh");
    let (a, a_ep) = start(&pki, "a", vec![]).await;
    let (b, b_ep) = start(&pki, "b", vec![a_ep.advertise_addr().to_string()]).await;
    let (c, _c_ep) = start(&pki, "c", vec![b_ep.advertise_addr().to_string()]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views = [live(&a).await, live(&b).await, live(&c).await];
        if views.iter().all(|v| v == &["a", "b", "c"]) {
            break;
        }
        assert!(Instant::now() < deadline, "no convergence: {views:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Values travel too.
    let role = value_of(&c, "a", "role").await;
    assert_eq!(role.as_deref(), Some("a"));
}

#[tokio::test]
async fn a_node_of_another_ca_never_joins_or_learns() {
    let pki = TestPki::new("test.mesh");
    let rogue_pki = TestPki::new("test.mesh");
    let (a, a_ep) = start(&pki, "a", vec![]).await;
    let (b, _) = start(&pki, "b", vec![a_ep.advertise_addr().to_string()]).await;
    let (rogue, _) = start(&rogue_pki, "rogue", vec![a_ep.advertise_addr().to_string()]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while live(&a).await != ["a", "b"] {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give the rogue many gossip rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live(&a).await, ["a", "b"]);
    assert_eq!(live(&b).await, ["a", "b"]);
    assert_eq!(live(&rogue).await, ["rogue"]);
}

/// Nodes that both speak packed gossip use it: digests go packed against what the peer holds,
/// nothing is refused for a missing base, and a value set later still travels.
#[tokio::test]
async fn packed_gossip_carries_the_cluster() {
    let pki = TestPki::new("test.mesh");
    let [(a, _, a_stats), (b, _, b_stats), (c, _, c_stats)] =
        star(&pki, ["a", "b", "c"], [true; 3]).await;
    let stats = [a_stats, b_stats, c_stats];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let based: Vec<u64> = stats
            .iter()
            .map(|s| s.sent_against_base.load(Ordering::Relaxed))
            .collect();
        let views = [live(&a).await, live(&b).await, live(&c).await];
        if views.iter().all(|v| v == &["a", "b", "c"]) && based.iter().all(|n| *n > 5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{views:?}, sent against a base: {based:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.with_chitchat(|ch| ch.self_node_state().set("late", "value"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if value_of(&a, "c", "late").await.as_deref() == Some("value") {
            break;
        }
        assert!(Instant::now() < deadline, "the late value never reached a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &stats {
        assert_eq!(
            s.rejected.load(Ordering::Relaxed),
            0,
            "a message was refused"
        );
    }
}

/// A node that does not speak packed gossip (one not yet upgraded) gossips with one that does:
/// they fall back to chitchat's own encoding between them, and the cluster still converges.
#[tokio::test]
async fn a_node_without_packed_gossip_still_converges() {
    let pki = TestPki::new("test.mesh");
    let [(a, _, a_stats), (old, old_ep, old_stats), (c, _, c_stats)] =
        star(&pki, ["a", "old", "c"], [true, false, true]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let views = [live(&a).await, live(&old).await, live(&c).await];
        let based = c_stats.sent_against_base.load(Ordering::Relaxed);
        if views.iter().all(|v| v == &["a", "c", "old"]) && based > 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{views:?}, c sent against a base: {based}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(old_stats.sent_against_base.load(Ordering::Relaxed), 0);
    let malformed = old_ep.counters().gossip_malformed.load(Ordering::Relaxed);
    assert_eq!(
        malformed, 0,
        "a packed frame reached the node that does not speak it"
    );
    for s in [&a_stats, &old_stats, &c_stats] {
        assert_eq!(
            s.rejected.load(Ordering::Relaxed),
            0,
            "a message was refused"
        );
    }
}

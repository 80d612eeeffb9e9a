//! chitchat runs over the QUIC endpoint: nodes converge, strangers learn nothing.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, ProtocolVersion,
    spawn_chitchat,
};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::QuicGossip;
use murmur_transport::identity::Role;
use murmur_transport::testing::{OpenGuard, TestPki};

async fn start(pki: &TestPki, name: &str, seeds: Vec<String>) -> (ChitchatHandle, MeshEndpoint) {
    let paths = pki.node(name, &[]);
    let tls = pki.tls(&paths, Role::Node, name);
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (ep, inbox) = MeshEndpoint::bind(
        EndpointConfig {
            listen,
            advertise: None,
            reset_key: None,
            quic: QuicSettings::default(),
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
    let transport = QuicGossip::new(ep.clone(), inbox, std::sync::Arc::new(OpenGuard));
    let handle = spawn_chitchat(config, vec![("role".into(), name.into())], &transport)
        .await
        .unwrap();
    (handle, ep)
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
    let role = c
        .with_chitchat(|ch| {
            ch.node_states()
                .iter()
                .find(|(id, _)| &*id.node_id == "a")
                .and_then(|(_, s)| s.get("role").map(str::to_owned))
        })
        .await;
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

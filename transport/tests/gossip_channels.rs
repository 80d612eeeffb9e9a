//! Two gossip instances behind one QUIC endpoint: channel 0 (a cell) and channel 1 (the top
//! layer of cells) share connections and never see each other's messages; channel 0 keeps the
//! format every node speaks.

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
use murmur_transport::endpoint::{EndpointConfig, GossipDatagram, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::QuicGossip;
use murmur_transport::identity::Role;
use murmur_transport::testing::{OpenGuard, TestPki};
use murmur_transport::wire::{
    GossipFrame, StreamKind, WIRE_VERSION, encode_gossip, encode_gossip_on,
};
use tokio::sync::mpsc;

fn bind(pki: &TestPki, name: &str) -> (MeshEndpoint, mpsc::Receiver<GossipDatagram>) {
    let tls = pki.tls(&pki.node(name, &[]), Role::Node, name);
    MeshEndpoint::bind(
        EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            reset_key: None,
            quic: QuicSettings::default(),
        },
        tls,
    )
    .unwrap()
}

/// A chitchat instance of `cluster` on `channel` of `ep`, as incarnation `generation` of
/// `name`, seeded from `seeds`.
async fn instance(
    ep: &MeshEndpoint,
    inbox: mpsc::Receiver<GossipDatagram>,
    channel: u8,
    (name, generation): (&str, u64),
    cluster: &str,
    seeds: &[SocketAddr],
) -> ChitchatHandle {
    let addr = ep.advertise_addr();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(name, generation, addr),
        cluster_id: cluster.into(),
        gossip_interval: Duration::from_millis(100),
        listen_addr: addr,
        seed_nodes: seeds.iter().map(ToString::to_string).collect(),
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
    let transport = QuicGossip::on_channel(ep.clone(), channel, inbox, Arc::new(OpenGuard));
    spawn_chitchat(config, vec![("layer".into(), cluster.into())], &transport)
        .await
        .unwrap()
}

/// (name, generation, layer key) of every incarnation `h` knows, sorted.
async fn known(h: &ChitchatHandle) -> Vec<(String, u64, String)> {
    let mut out: Vec<(String, u64, String)> = h
        .with_chitchat(|c| {
            c.node_states()
                .iter()
                .map(|(id, s)| {
                    let layer = s.get("layer").unwrap_or_default().to_owned();
                    (id.node_id.to_string(), id.generation_id, layer)
                })
                .collect::<Vec<_>>()
        })
        .await;
    out.sort();
    out
}

async fn live(h: &ChitchatHandle) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = h
        .with_chitchat(|c| {
            c.live_nodes()
                .map(|id| (id.node_id.to_string(), id.generation_id))
                .collect::<Vec<_>>()
        })
        .await;
    out.sort();
    out
}

async fn wait_live(h: &ChitchatHandle, want: &[(&str, u64)]) {
    let want: Vec<(String, u64)> = want.iter().map(|(n, g)| ((*n).to_owned(), *g)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = live(h).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "want {want:?}, live {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn channel_zero_keeps_the_old_format_and_other_channels_are_tagged() {
    let frame = GossipFrame {
        version: WIRE_VERSION,
        from: "127.0.0.1:7420".parse().unwrap(),
        payload: vec![1, 2, 3],
    };
    let old = encode_gossip(&frame).unwrap();
    assert_eq!(old[0], StreamKind::Gossip as u8);
    assert_eq!(encode_gossip_on(0, &frame).unwrap(), old);
    let top = encode_gossip_on(1, &frame).unwrap();
    assert_eq!(top[..2], [StreamKind::GossipChannel as u8, 1]);
    assert_eq!(top[2..], old[1..]);
    assert_eq!(StreamKind::from_byte(6), Some(StreamKind::GossipChannel));
}

#[tokio::test]
async fn two_channels_share_one_endpoint_and_never_see_each_others_messages() {
    let pki = TestPki::new("test.mesh");
    let (a_ep, a_inbox) = bind(&pki, "a");
    let (b_ep, b_inbox) = bind(&pki, "b");
    let a_addr = a_ep.advertise_addr();
    let a_cell = instance(&a_ep, a_inbox, 0, ("a", 1), "cell", &[]).await;
    let b_cell = instance(&b_ep, b_inbox, 0, ("b", 1), "cell", &[a_addr]).await;
    let a_top = instance(&a_ep, a_ep.gossip_channel(1), 1, ("a", 2), "top", &[]).await;
    let b_top = instance(&b_ep, b_ep.gossip_channel(1), 1, ("b", 2), "top", &[a_addr]).await;

    for h in [&a_cell, &b_cell] {
        wait_live(h, &[("a", 1), ("b", 1)]).await;
    }
    for h in [&a_top, &b_top] {
        wait_live(h, &[("a", 2), ("b", 2)]).await;
    }
    // A few more rounds, then: each instance knows only its own layer's incarnations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for h in [&a_cell, &b_cell] {
        assert_eq!(
            known(h).await,
            [
                ("a".into(), 1, "cell".into()),
                ("b".into(), 1, "cell".into())
            ]
        );
    }
    for h in [&a_top, &b_top] {
        assert_eq!(
            known(h).await,
            [("a".into(), 2, "top".into()), ("b".into(), 2, "top".into())]
        );
    }

    // A custodian leaves the top layer and joins again with a new instance on a fresh
    // receiver of the same channel.
    a_top.shutdown().await.unwrap();
    let a_top = instance(
        &a_ep,
        a_ep.gossip_channel(1),
        1,
        ("a", 3),
        "top",
        &[b_ep.advertise_addr()],
    )
    .await;
    wait_live(&b_top, &[("a", 3), ("b", 2)]).await;
    wait_live(&a_top, &[("a", 3), ("b", 2)]).await;
    assert_eq!(live(&b_cell).await, [("a".into(), 1), ("b".into(), 1)]);
}

#[tokio::test]
async fn a_node_without_the_channel_drops_its_frames_and_keeps_its_own_gossip() {
    let pki = TestPki::new("test.mesh");
    let (a_ep, a_inbox) = bind(&pki, "a");
    let (c_ep, c_inbox) = bind(&pki, "c");
    let c_addr = c_ep.advertise_addr();
    // `c` runs only channel 0, as a node that knows nothing of cells.
    let c_cell = instance(&c_ep, c_inbox, 0, ("c", 1), "cell", &[]).await;
    let a_cell = instance(&a_ep, a_inbox, 0, ("a", 1), "cell", &[c_addr]).await;
    let _a_top = instance(&a_ep, a_ep.gossip_channel(1), 1, ("a", 2), "top", &[c_addr]).await;
    for h in [&a_cell, &c_cell] {
        wait_live(h, &[("a", 1), ("c", 1)]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c_ep.counters().gossip_dropped.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no channel-1 frame reached c");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        known(&c_cell).await,
        [
            ("a".into(), 1, "cell".into()),
            ("c".into(), 1, "cell".into())
        ]
    );
}

//! An endpoint split over two runtimes (shards) on one mesh port: every connection is served,
//! and dialled, by the shard that owns it.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::endpoint::{
    EndpointConfig, InboundStream, MeshEndpoint, PeerConnection, QuicSettings, StreamHandler,
    StreamWork,
};
use murmur_transport::identity::Role;
use murmur_transport::shard;
use murmur_transport::testing::{TestPki, serving_endpoint};
use murmur_transport::tls::TlsState;
use murmur_transport::wire::{StreamHeader, StreamKind};
use tokio::runtime::Handle;

/// Answers every stream with the shard that served it.
struct WhichShard;

impl StreamHandler for WhichShard {
    fn handle(&self, mut s: InboundStream) -> StreamWork {
        Box::pin(async move {
            let _ = s.recv.read_to_end(1024).await;
            let _ = s
                .send
                .write_all(shard::current().to_string().as_bytes())
                .await;
            let _ = s.send.finish();
            let _ = s.send.stopped().await;
        })
    }
}

/// A second runtime on its own thread, running shard 1 until the test ends.
struct SecondShard {
    handle: Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn second_shard() -> SecondShard {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        shard::enter(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        handle_tx.send(rt.handle().clone()).unwrap();
        let _ = rt.block_on(stopped);
    });
    SecondShard {
        handle: handle_rx.recv().unwrap(),
        _stop: stop,
    }
}

fn tls(pki: &TestPki, name: &str) -> Arc<TlsState> {
    pki.tls(&pki.node(name, &["web"]), Role::Node, name)
}

fn sharded(tls: Arc<TlsState>, second: &SecondShard) -> MeshEndpoint {
    let config = EndpointConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        advertise: None,
        reset_key: None,
        quic: QuicSettings::default(),
    };
    let shards = [Handle::current(), second.handle.clone()];
    let (ep, _gossip) = MeshEndpoint::bind_sharded(config, tls, &shards).unwrap();
    ep.set_handler(Arc::new(WhichShard));
    ep
}

/// Opens a stream on `conn` and returns the answer.
async fn ask(conn: &PeerConnection) -> String {
    let (mut send, mut recv) = conn
        .open(StreamKind::Http, &StreamHeader::new("web"))
        .await
        .unwrap();
    send.finish().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn connections_spread_over_the_shards_and_each_is_served_by_its_own() {
    let pki = TestPki::new("test.mesh");
    let second = second_shard();
    let server = sharded(tls(&pki, "b"), &second);
    let client = serving_endpoint(tls(&pki, "a"), Arc::new(WhichShard));
    let to: SocketAddr = server.local_addr().unwrap();
    let mut served_by = BTreeSet::new();
    // Each fresh connection starts with a random connection ID, so the shard that takes it is
    // random: 32 all landing on one shard has a chance of 2 in 2^32.
    for _ in 0..32 {
        let conn = client.connect_fresh(to, None).await.unwrap();
        served_by.insert(ask(&conn).await);
    }
    let expected: BTreeSet<String> = ["0".into(), "1".into()].into();
    assert_eq!(served_by, expected);
}

#[tokio::test]
async fn both_shards_dial_one_peer_from_the_shared_port() {
    let pki = TestPki::new("test.mesh");
    let second = second_shard();
    let a = sharded(tls(&pki, "a"), &second);
    let b = serving_endpoint(tls(&pki, "b"), Arc::new(WhichShard));
    let to = b.local_addr().unwrap();
    // The kernel sees both shards' connections to b between the same two addresses: only the
    // connection IDs tell the answers apart.
    let from_first = a.connect(to, None).await.unwrap();
    let a1 = a.clone();
    let from_second = second
        .handle
        .spawn(async move { a1.connect(to, None).await.unwrap() })
        .await
        .unwrap();
    assert_eq!(from_first.remote_address(), from_second.remote_address());
    for _ in 0..20 {
        assert_eq!(ask(&from_first).await, "0");
        assert_eq!(ask(&from_second).await, "0");
    }
    // b saw two connections from a, both from a's one mesh port.
    assert_eq!(b.connected_peers(), vec!["a".to_owned(), "a".to_owned()]);
}

#[tokio::test]
async fn shard_k_of_one_node_reaches_shard_k_of_another() {
    let pki = TestPki::new("test.mesh");
    // One runtime thread serves as shard 1 of both nodes.
    let second = second_shard();
    let a = sharded(tls(&pki, "a"), &second);
    let b = sharded(tls(&pki, "b"), &second);
    let to = b.local_addr().unwrap();
    for _ in 0..8 {
        let first = a.connect_fresh(to, None).await.unwrap();
        assert_eq!(ask(&first).await, "0");
        let a1 = a.clone();
        let from_second = second
            .handle
            .spawn(async move {
                let conn = a1.connect_fresh(to, None).await.unwrap();
                ask(&conn).await
            })
            .await
            .unwrap();
        assert_eq!(from_second, "1");
    }
}

#[tokio::test]
async fn a_busy_mesh_port_fails_the_bind_even_for_a_sharing_group() {
    let pki = TestPki::new("test.mesh");
    let second = second_shard();
    let first = sharded(tls(&pki, "a"), &second);
    let config = EndpointConfig {
        listen: first.local_addr().unwrap(),
        advertise: None,
        reset_key: None,
        quic: QuicSettings::default(),
    };
    let shards = [Handle::current(), second.handle];
    let err = MeshEndpoint::bind_sharded(config, tls(&pki, "b"), &shards).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

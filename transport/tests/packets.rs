//! QUIC packets between nodes grow to what the path carries, and stay there under bulk
//! transfers: on loopback the path carries far more than the default limit.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::endpoint::{
    InboundStream, MeshEndpoint, QuicSettings, StreamHandler, StreamWork,
};
use murmur_transport::identity::Role;
use murmur_transport::testing::{TestPki, serving_endpoint};
use murmur_transport::wire::{StreamHeader, StreamKind};

/// Ethernet's largest UDP payload: a limit the endpoint's settings must lift.
const ETHERNET_PAYLOAD: u16 = 1472;
/// Bytes each request uploads.
const BULK: usize = 4 << 20;

/// Reads each stream to its end and answers with the number of bytes it read.
struct Count;

impl StreamHandler for Count {
    fn handle(&self, mut s: InboundStream) -> StreamWork {
        Box::pin(async move {
            let n = s.recv.read_to_end(BULK).await.map_or(0, |b| b.len());
            let _ = s.send.write_all(n.to_string().as_bytes()).await;
            let _ = s.send.finish();
            let _ = s.send.stopped().await;
        })
    }
}

fn bind(pki: &TestPki, name: &str) -> MeshEndpoint {
    let paths = pki.node(name, &["bulk"]);
    serving_endpoint(pki.tls(&paths, Role::Node, name), Arc::new(Count))
}

/// Sends `BULK` bytes from `from` to `to`; returns how many `to` says it read.
async fn upload(from: &MeshEndpoint, to: SocketAddr) -> String {
    let conn = from.connect(to, None).await.unwrap();
    let (mut send, mut recv) = conn
        .open(StreamKind::Http, &StreamHeader::new("bulk"))
        .await
        .unwrap();
    let chunk = vec![7u8; 64 << 10];
    let transfer = async {
        for _ in 0..BULK / chunk.len() {
            send.write_all(&chunk).await.unwrap();
        }
        send.finish().unwrap();
        recv.read_to_end(64).await.unwrap()
    };
    let answer = tokio::time::timeout(Duration::from_secs(30), transfer)
        .await
        .expect("the transfer ended in time");
    String::from_utf8(answer).unwrap()
}

/// The largest UDP payload the connection to the only peer uses now.
fn mtu(ep: &MeshEndpoint) -> u16 {
    ep.peer_stats().first().map_or(0, |p| p.mtu)
}

/// Packets sent on the connections to the only peer, as its counter says.
fn sent(ep: &MeshEndpoint) -> u64 {
    ep.peer_stats().first().map_or(0, |p| p.sent_packets)
}

#[tokio::test]
async fn packets_grow_past_ethernet_on_loopback_and_bulk_keeps_them_there() {
    let pki = TestPki::new("test.mesh");
    let (client, server) = (bind(&pki, "client"), bind(&pki, "server"));
    let to = server.local_addr().unwrap();
    let bulk = BULK.to_string();
    assert_eq!(upload(&client, to).await, bulk);

    // MTU discovery runs on each side of the connection for what that side sends: the
    // client's packets are watched.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while mtu(&client) <= ETHERNET_PAYLOAD {
        assert!(
            tokio::time::Instant::now() < deadline,
            "MTU discovery stopped at {} bytes",
            mtu(&client)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let found = mtu(&client);
    assert!(found <= QuicSettings::default().max_udp_payload, "{found}");

    // On a host whose kernel caps UDP buffers below what the endpoint asks for, bulk loses
    // datagrams in the receive buffer, and those losses alone can bring the MTU down
    // (docs/operations.md, "UDP buffers"): what follows needs the buffers.
    let granted = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if granted < u64::from(QuicSettings::default().udp_buffer) {
        eprintln!("net.core.rmem_max is {granted}: bulk part not run");
        return;
    }
    // Bulk uploads send full batches of the largest packets. A batch the kernel refuses is
    // lost whole, and repeated losses of large packets make MTU discovery fall back to its
    // minimum.
    for _ in 0..4 {
        assert_eq!(upload(&client, to).await, bulk);
    }
    assert!(
        mtu(&client) > ETHERNET_PAYLOAD,
        "packets of {found} bytes before the uploads, {} after",
        mtu(&client)
    );
}

#[tokio::test]
async fn packets_of_a_connection_closed_between_two_looks_are_counted() {
    let pki = TestPki::new("test.mesh");
    let (client, server) = (bind(&pki, "client"), bind(&pki, "server"));
    let to = server.local_addr().unwrap();
    let small = async |c: &MeshEndpoint| {
        let conn = c.connect(to, None).await.unwrap();
        let (mut send, mut recv) = conn
            .open(StreamKind::Http, &StreamHeader::new("bulk"))
            .await
            .unwrap();
        send.write_all(b"hello").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(64).await.unwrap(), b"5");
    };
    small(&client).await;
    let first = sent(&client);
    assert!(first > 0, "the first connection sent packets");

    // Between two looks at the counters: a connection carries a bulk upload and closes, and
    // another one opens. No look saw the closed connection while it was open.
    client.disconnect(to, "test");
    assert_eq!(upload(&client, to).await, BULK.to_string());
    client.disconnect(to, "test");
    small(&client).await;

    // The upload alone took at least this many packets, however large they grew.
    let payload = usize::from(QuicSettings::default().max_udp_payload);
    let least = u64::try_from(BULK / payload).unwrap();
    let later = sent(&client);
    assert!(
        later >= first + least,
        "{first} packets counted at the first look, {later} at the second: the upload's {least} \
         or more are missing"
    );
}

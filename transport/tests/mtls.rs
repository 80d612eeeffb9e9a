//! The QUIC endpoint admits only verified mesh identities and streams carry typed headers.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::endpoint::{
    InboundStream, MeshEndpoint, QuicSettings, StreamHandler, StreamWork,
};
use murmur_transport::identity::{Name, Role};
use murmur_transport::testing::{TestPki, serving_endpoint};
use murmur_transport::tls::{CredentialPaths, CredentialWatcher, TlsState};
use murmur_transport::wire::{StreamHeader, StreamKind};

/// Echoes the header's service name, then the request body.
struct Echo;

impl StreamHandler for Echo {
    fn handle(&self, mut s: InboundStream) -> StreamWork {
        Box::pin(async move {
            let body = s.recv.read_to_end(1 << 20).await.unwrap_or_default();
            let mut reply = format!("{}|{}|", s.header.service, s.peer.id).into_bytes();
            reply.extend(body);
            let _ = s.send.write_all(&reply).await;
            let _ = s.send.finish();
            let _ = s.send.stopped().await;
        })
    }
}

fn bind(tls: Arc<TlsState>) -> MeshEndpoint {
    serving_endpoint(tls, Arc::new(Echo))
}

async fn request(
    ep: &MeshEndpoint,
    to: SocketAddr,
    expect: Option<&str>,
) -> anyhow::Result<String> {
    let expect = expect.map(|n| Name::parse("node", n).unwrap());
    let conn = ep.connect(to, expect.as_ref()).await?;
    let (mut send, mut recv) = conn
        .open(StreamKind::Http, &StreamHeader::new("web"))
        .await?;
    send.write_all(b"ping").await?;
    send.finish()?;
    let out = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 20)).await??;
    Ok(String::from_utf8(out)?)
}

fn node(pki: &TestPki, name: &str) -> (CredentialPaths, Arc<TlsState>) {
    let paths = pki.node(name, &["web"]);
    let tls = pki.tls(&paths, Role::Node, name);
    (paths, tls)
}

#[tokio::test]
async fn nodes_of_one_mesh_connect_and_see_each_others_identity() {
    let pki = TestPki::new("test.mesh");
    let (_, a) = node(&pki, "a");
    let (_, b) = node(&pki, "b");
    let a = bind(a);
    let b = bind(b);
    let b_addr = b.local_addr().unwrap();
    let reply = request(&a, b_addr, Some("b")).await.unwrap();
    assert_eq!(reply, "web|spiffe://test.mesh/node/a|ping");

    // One cached connection serves later requests, and it knows who the peer is.
    let conn = a.connect(b_addr, None).await.unwrap();
    assert_eq!(conn.identity().id.to_string(), "spiffe://test.mesh/node/b");
    assert!(conn.identity().may_serve("web"));
    // Asking for another node at that address is refused.
    let wrong = Name::parse("node", "c").unwrap();
    assert!(a.connect(b_addr, Some(&wrong)).await.is_err());
}

#[tokio::test]
async fn a_node_of_another_ca_is_refused_both_ways() {
    let pki = TestPki::new("test.mesh");
    let rogue_pki = TestPki::new("test.mesh");
    let (_, good) = node(&pki, "good");
    let (_, rogue) = node(&rogue_pki, "rogue");
    let good = bind(good);
    let rogue = bind(rogue);
    let good_addr = good.local_addr().unwrap();
    assert!(request(&rogue, good_addr, None).await.is_err());
    assert!(
        request(&good, rogue.local_addr().unwrap(), None)
            .await
            .is_err()
    );
    assert!(
        good.counters()
            .handshakes_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn operators_may_connect_but_not_open_data_streams() {
    let pki = TestPki::new("test.mesh");
    let (_, n) = node(&pki, "n");
    let n = bind(n);
    let op_paths = pki.issue(Role::Operator, "alice", &[]);
    let op_tls = pki.tls(&op_paths, Role::Operator, "alice");
    let op = MeshEndpoint::client(op_tls, QuicSettings::default()).unwrap();
    let addr = n.local_addr().unwrap();
    assert!(
        request(&op, addr, None).await.is_err(),
        "operator opened an HTTP stream"
    );

    let conn = op.connect(addr, None).await.unwrap();
    let (mut send, mut recv) = conn
        .open(StreamKind::Control, &StreamHeader::new(""))
        .await
        .unwrap();
    send.finish().unwrap();
    let out = recv.read_to_end(1 << 20).await.unwrap();
    assert!(String::from_utf8(out).unwrap().contains("operator/alice"));
}

#[tokio::test]
async fn replaced_certificates_are_used_by_new_connections() {
    let pki = TestPki::new("test.mesh");
    let (_, a) = node(&pki, "a");
    let (b_paths, b_tls) = node(&pki, "b");
    let b = bind(b_tls.clone());
    let b_addr = b.local_addr().unwrap();
    let before = b_tls.local_cert().serial;

    let mut watcher = CredentialWatcher::new(b_tls.clone(), b_paths.clone());
    assert!(watcher.check(false).is_none(), "nothing changed yet");
    pki.node("b", &["web", "api"]);
    let reloaded = watcher
        .check(true)
        .expect("a reload was attempted")
        .unwrap();
    assert_ne!(reloaded, before);

    let a = bind(a);
    let conn = a.connect(b_addr, None).await.unwrap();
    assert_eq!(conn.identity().serial, reloaded);
    assert!(conn.identity().may_serve("api"));

    // A certificate for another node is refused and the current one stays.
    let other = pki.node("c", &[]);
    std::fs::copy(&other.cert, &b_paths.cert).unwrap();
    std::fs::copy(&other.key, &b_paths.key).unwrap();
    assert!(watcher.check(true).unwrap().is_err());
    assert_eq!(b_tls.local_cert().serial, reloaded);
}

#[tokio::test]
async fn a_bundle_with_two_cas_admits_nodes_of_both_during_a_rotation() {
    let old_ca = TestPki::new("test.mesh");
    let new_ca = TestPki::new("test.mesh");
    // Both CAs in one bundle file, as during a rotation.
    let bundle = old_ca.path().join("bundle.crt");
    let mut pem = std::fs::read(&old_ca.ca.ca_cert).unwrap();
    pem.extend(std::fs::read(&new_ca.ca.ca_cert).unwrap());
    std::fs::write(&bundle, pem).unwrap();
    let with_bundle = |pki: &TestPki, name: &str| {
        let mut paths = pki.node(name, &["web"]);
        paths.bundle = bundle.clone();
        pki.tls(&paths, Role::Node, name)
    };
    let a = bind(with_bundle(&old_ca, "a"));
    let b = bind(with_bundle(&new_ca, "b"));
    assert_eq!(
        request(&a, b.local_addr().unwrap(), Some("b"))
            .await
            .unwrap(),
        "web|spiffe://test.mesh/node/a|ping"
    );
    assert!(
        request(&b, a.local_addr().unwrap(), Some("a"))
            .await
            .is_ok()
    );
    // A node that trusts only the old CA refuses the new one's nodes.
    let (_, c) = node(&old_ca, "c");
    let c = bind(c);
    assert!(request(&c, b.local_addr().unwrap(), None).await.is_err());
}

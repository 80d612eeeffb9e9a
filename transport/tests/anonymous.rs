//! Connections without a client certificate may ask for one and do nothing else; revoked peers
//! lose their connections and cannot make new ones.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::certs::{self, make_request};
use murmur_transport::endpoint::{
    AnonymousStream, InboundStream, MeshEndpoint, QuicSettings, StreamHandler, StreamWork,
    connect_anonymous,
};
use murmur_transport::identity::{Name, Role, SpiffeId};
use murmur_transport::issuance::exchange::{exchange_anonymous, read_request, write_answer};
use murmur_transport::issuance::protocol::{Answer, Refusal, RefusalCode, Request};
use murmur_transport::testing::{TestPki, serving_endpoint};
use murmur_transport::tls::{Material, Revocations, TlsState};
use murmur_transport::wire::{StreamHeader, StreamKind};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Answers identity requests from clients without a certificate with a refusal naming the
/// request; echoes data streams of verified peers.
struct Handler;

impl StreamHandler for Handler {
    fn handle(&self, mut s: InboundStream) -> StreamWork {
        Box::pin(async move {
            let _ = s.recv.read_to_end(1024).await;
            let _ = s.send.write_all(s.peer.id.name.as_str().as_bytes()).await;
            let _ = s.send.finish();
            let _ = s.send.stopped().await;
        })
    }

    fn handle_anonymous(&self, mut s: AnonymousStream) -> StreamWork {
        Box::pin(async move {
            let what = match read_request(&mut s.recv, Duration::from_secs(5)).await {
                Ok(Request::Join { token, .. }) => format!("join {token}"),
                Ok(Request::Renew { .. }) => "renew".to_owned(),
                Err(e) => e,
            };
            let answer = Answer::Refused(Refusal::new(RefusalCode::NotAnIssuer, what));
            write_answer(&mut s.send, &answer, Duration::from_secs(5)).await;
        })
    }
}

fn bind(tls: Arc<TlsState>) -> MeshEndpoint {
    serving_endpoint(tls, Arc::new(Handler))
}

fn node(pki: &TestPki, name: &str) -> MeshEndpoint {
    let paths = pki.node(name, &[]);
    bind(pki.tls(&paths, Role::Node, name))
}

async fn call(ep: &MeshEndpoint, to: SocketAddr) -> anyhow::Result<String> {
    let conn = ep.connect(to, None).await?;
    let (mut send, mut recv) = conn.open(StreamKind::Http, &StreamHeader::new("x")).await?;
    send.write_all(b"hi").await?;
    send.finish()?;
    let out = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await??;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn a_client_without_a_certificate_may_ask_for_one_and_nothing_else() {
    let pki = TestPki::new("test.mesh");
    let seed = node(&pki, "seed");
    let addr = seed.local_addr().unwrap();
    let join = Request::Join {
        token: "t0k3n".into(),
        csr: vec![1, 2, 3],
    };
    let (answer, seed_name) = exchange_anonymous(
        pki.bundle(),
        addr,
        &join,
        &QuicSettings::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(seed_name, "seed");
    assert_eq!(
        answer,
        Answer::Refused(Refusal::new(RefusalCode::NotAnIssuer, "join t0k3n"))
    );

    // The joiner checks the seed: a node of another CA is not talked to.
    let other = TestPki::new("test.mesh");
    assert!(
        exchange_anonymous(
            other.bundle(),
            addr,
            &join,
            &QuicSettings::default(),
            Duration::from_secs(5)
        )
        .await
        .is_err()
    );

    // A data stream without a certificate closes the connection.
    let anon = connect_anonymous(pki.bundle(), addr, &QuicSettings::default())
        .await
        .unwrap();
    if let Ok((mut send, mut recv)) = anon
        .conn
        .open(StreamKind::Http, &StreamHeader::new("x"))
        .await
    {
        let _ = send.write_all(b"hi").await;
        let _ = send.finish();
        let read = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
        assert!(
            !matches!(read, Ok(Ok(_))),
            "a client without a certificate got an answer on a data stream"
        );
    }
    let conn_closed = tokio::time::timeout(Duration::from_secs(5), async {
        while anon.conn.is_open() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(conn_closed.is_ok(), "the connection stayed open");
}

#[tokio::test]
async fn revoked_peers_lose_their_connections_and_cannot_reconnect() {
    let pki = TestPki::new("test.mesh");
    let a = node(&pki, "a");
    let b = node(&pki, "b");
    let c = node(&pki, "c");
    let b_addr = b.local_addr().unwrap();
    assert_eq!(call(&a, b_addr).await.unwrap(), "a");
    assert_eq!(call(&c, b_addr).await.unwrap(), "c");
    assert!(b.connected_peers().contains(&"a".to_owned()));

    // b revokes a: a's connection goes, c's stays.
    let a_name = Name::parse("n", "a").unwrap();
    assert!(b.tls().set_revocations(Revocations::new([a_name], [])));
    assert_eq!(b.close_revoked(), 1);
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while b.connected_peers().contains(&"a".to_owned()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "{:?}", b.connected_peers());
    assert_eq!(call(&c, b_addr).await.unwrap(), "c");
    // And a cannot come back.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(call(&a, b_addr).await.is_err());

    // A revoked serial: b also refuses c's certificate, while a (no longer revoked) is back.
    let serial = c.tls().local_cert().serial;
    assert!(
        b.tls()
            .set_revocations(Revocations::new([], [serial.to_uppercase()]))
    );
    assert_eq!(b.close_revoked(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(call(&c, b_addr).await.is_err());
    assert_eq!(call(&a, b_addr).await.unwrap(), "a");
    // b, for its part, does not dial a revoked server either.
    assert!(call(&b, c.local_addr().unwrap()).await.is_err());

    // Revoking an issuer credential refuses every certificate it signed.
    let authority = pki.authority("issuer-1");
    let id = SpiffeId::node(pki.trust_domain.clone(), Name::parse("n", "d").unwrap());
    let (key, csr) = make_request(&id, &[]).unwrap();
    let req = certs::read_request(&csr, &id, &Default::default()).unwrap();
    let issued = authority
        .sign(
            &req,
            &id,
            &Default::default(),
            Duration::from_secs(600),
            &pki.bundle(),
        )
        .unwrap();
    let material = Material {
        chain: issued.chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        bundle: pki.bundle(),
    };
    let d = bind(TlsState::new(id, material).unwrap());
    assert_eq!(call(&d, b_addr).await.unwrap(), "d");
    assert!(
        b.tls()
            .set_revocations(Revocations::new([], [authority.serial().to_owned()]))
    );
    assert_eq!(b.close_revoked(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(call(&d, b_addr).await.is_err());
    assert_eq!(call(&a, b_addr).await.unwrap(), "a");
}

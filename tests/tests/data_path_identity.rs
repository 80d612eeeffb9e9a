//! A caller sends traffic for a service only to nodes whose certificate names it — even when a
//! member of the mesh advertises the service by gossip. The rogue here is a real member (its
//! certificate comes from the mesh CA) built from the library, because the `murmur` binary
//! itself refuses to publish a service its certificate does not name.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use murmur_membership::records::{Health, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_membership::{GossipSettings, Membership, MembershipConfig, Trust};
use murmur_tests::{Cluster, NodeSpec, apps::EchoApp, http, netns};
use murmur_transport::endpoint::{
    EndpointConfig, InboundStream, MeshEndpoint, QuicSettings, StreamHandler, StreamWork,
};
use murmur_transport::gossip::QuicGossip;
use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
use murmur_transport::tls::{CredentialPaths, TlsState, load_material};

/// Counts the streams the rogue is offered.
struct Counter(Arc<AtomicU64>);

impl StreamHandler for Counter {
    fn handle(&self, mut s: InboundStream) -> StreamWork {
        self.0.fetch_add(1, Ordering::Relaxed);
        let _ = s.send.reset(0u32.into());
        Box::pin(async {})
    }
}

#[test]
fn traffic_never_goes_to_a_node_whose_certificate_lacks_the_service() {
    netns::run(|| async {
        let app = EchoApp::start("127.0.1.2:8080".parse().unwrap(), "honest").await;
        let mut c = Cluster::new();
        c.add(NodeSpec::new("n1", Cluster::ip(2)));
        let seed = c.node("n1").mesh();
        c.add(
            NodeSpec::new("n2", Cluster::ip(3))
                .seed(seed)
                .service("pay", app.addr, "http"),
        );
        c.node("n1").wait_instances("pay", &["n2"]).await;

        // The rogue: a certificate from the mesh CA that names no service at all.
        let issued = c.pki.issue("rogue", &[]);
        let td = TrustDomain::parse("test.mesh").unwrap();
        let paths = CredentialPaths {
            cert: issued.cert,
            key: issued.key,
            bundle: c.pki.ca_cert(),
        };
        let tls = TlsState::new(
            SpiffeId::node(td.clone(), Name::parse("n", "rogue").unwrap()),
            load_material(&paths, &td).unwrap(),
        )
        .unwrap();
        let (ep, inbox) = MeshEndpoint::bind(
            EndpointConfig {
                listen: "127.0.0.9:7420".parse().unwrap(),
                advertise: None,
                quic: QuicSettings::default(),
                reset_key: None,
            },
            tls,
        )
        .unwrap();
        let offered = Arc::new(AtomicU64::new(0));
        ep.set_handler(Arc::new(Counter(offered.clone())));
        let settings = GossipSettings {
            interval: Duration::from_millis(200),
            ..GossipSettings::default()
        };
        let trust = Trust::new(ep.tls().clone(), &settings);
        let gossip = QuicGossip::new(ep.clone(), inbox, trust.guard.clone());
        let rogue = Membership::start(
            MembershipConfig {
                trust,
                name: "rogue".into(),
                generation: 1,
                mesh_addr: ep.advertise_addr(),
                admin_addr: None,
                labels: BTreeMap::new(),
                seeds: vec![seed.to_string()],
                gossip: settings,
                view_file: None,
                fail_static_warmup: Duration::from_secs(1),
                refresh: Duration::from_millis(200),
            },
            &gossip,
        )
        .await
        .unwrap();
        let claim = ServiceRecord {
            version: RECORD_VERSION,
            protocol: Protocol::Http,
            labels: BTreeMap::new(),
            weight: 1000,
            health: Health::Passing,
            balancer: Default::default(),
        };
        rogue.publish_service("pay", &claim).await.unwrap();
        rogue.publish_service("ghost", &claim).await.unwrap();
        // n1 sees the claims: gossip itself is not where the check happens.
        c.node("n1").wait_instances("pay", &["n2", "rogue"]).await;

        let mut honest = 0;
        for i in 0..200 {
            let r = http::send(
                c.node("n1").outbound(),
                "GET",
                &format!("/p/{i}"),
                &[("host", "pay")],
                Vec::new(),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            honest += u32::from(r.text().starts_with("honest"));
        }
        let ghost = http::send(
            c.node("n1").outbound(),
            "GET",
            "/",
            &[("host", "ghost")],
            Vec::new(),
        )
        .await
        .unwrap();
        println!(
            "200 requests for pay: {honest} served by the honest instance, {} streams offered to the rogue; ghost answered {}: {}",
            offered.load(Ordering::Relaxed),
            ghost.status,
            ghost.text().trim()
        );
        assert_eq!(honest, 200);
        assert_eq!(
            offered.load(Ordering::Relaxed),
            0,
            "the rogue was sent traffic"
        );
        assert_eq!(ghost.status, 503);
        assert!(
            ghost
                .text()
                .contains("certificate does not name service ghost"),
            "{}",
            ghost.text()
        );
    });
}

//! A compromised member: a valid node certificate, real gossip over QUIC with mutual TLS, but no
//! policy service. It publishes whatever it likes under its own keys, which every honest node
//! reads, verifies and must refuse or outrank.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use murmur_membership::{GossipSettings, Membership, MembershipConfig, Trust};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::QuicGossip;
use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
use murmur_transport::tls::{CredentialPaths, TlsState, load_material};

use crate::pki::Pki;

/// The trust domain [`Pki::new`] creates.
const TRUST_DOMAIN: &str = "test.mesh";

/// A member that runs in the test process; it leaves the mesh when dropped.
pub struct Rogue {
    membership: Membership,
    endpoint: MeshEndpoint,
}

impl std::fmt::Debug for Rogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rogue")
            .field("mesh", &self.endpoint.advertise_addr())
            .finish_non_exhaustive()
    }
}

impl Rogue {
    /// Issues a node certificate for `name` from `pki` and joins the mesh through `seed`,
    /// listening on `ip`:7420. Must run inside the test's namespace and runtime.
    pub async fn join(pki: &Pki, name: &str, ip: Ipv4Addr, seed: SocketAddr) -> Self {
        let issued = pki.issue(name, &[]);
        let td = TrustDomain::parse(TRUST_DOMAIN).expect("trust domain");
        let paths = CredentialPaths {
            cert: issued.cert,
            key: issued.key,
            bundle: pki.ca_cert(),
        };
        let material = load_material(&paths, &td).expect("load credentials");
        let id = SpiffeId::node(td, Name::parse("node name", name).expect("node name"));
        let tls = TlsState::new(id, material).expect("node credentials");
        let addr = SocketAddr::from((ip, 7420));
        let (endpoint, inbox) = MeshEndpoint::bind(
            EndpointConfig {
                listen: addr,
                advertise: None,
                quic: QuicSettings::default(),
                reset_key: None,
            },
            tls,
        )
        .expect("bind the mesh address");
        let interval = Duration::from_millis(200);
        let settings = GossipSettings {
            interval,
            initial_interval: interval * 2,
            ..GossipSettings::default()
        };
        let trust = Trust::new(endpoint.tls().clone(), &settings);
        let gossip = QuicGossip::new(endpoint.clone(), inbox, trust.guard.clone());
        let config = MembershipConfig {
            trust,
            name: name.to_owned(),
            generation: 1,
            mesh_addr: addr,
            admin_addr: None,
            labels: BTreeMap::new(),
            seeds: vec![seed.to_string()],
            gossip: settings,
            view_file: None,
            fail_static_warmup: Duration::from_secs(1),
            refresh: interval,
        };
        let membership = Membership::start(config, &gossip)
            .await
            .expect("start gossip");
        Self {
            membership,
            endpoint,
        }
    }

    /// Publishes `value` under `key` in its own gossip namespace, and pushes it now.
    pub async fn publish(&self, key: &str, value: &str) {
        self.membership.set_key(key, value).await;
        self.membership.announce().await;
    }
}

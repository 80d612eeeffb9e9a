//! A hostile member: a certificate from the mesh CA, a QUIC endpoint, and no manners. It sends
//! gossip frames of its own making (any claimed address, any chitchat bytes) and opens streams
//! for services nobody serves. Built from the library, because the `murmur` binary does none
//! of this.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use murmur_membership::trust::signed::{self, Slot};
use murmur_transport::endpoint::{EndpointConfig, GossipDatagram, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::message::{Message, encode};
use murmur_transport::identity::{Name, SpiffeId, TrustDomain};
use murmur_transport::tls::{CredentialPaths, TlsState, load_material};
use murmur_transport::wire::{GossipFrame, StreamHeader, StreamKind, WIRE_VERSION, encode_gossip};
use tokio::sync::mpsc;

use crate::pki::Pki;

/// The trust domain [`Pki::new`] creates.
const TRUST_DOMAIN: &str = "test.mesh";

/// A member with a valid certificate that behaves as it likes.
pub struct Hostile {
    /// Its endpoint.
    pub endpoint: MeshEndpoint,
    /// Its credentials (to sign values in another's name, which must not help).
    pub tls: Arc<TlsState>,
    _gossip: mpsc::Receiver<GossipDatagram>,
}

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hostile")
            .field("mesh", &self.endpoint.advertise_addr())
            .finish_non_exhaustive()
    }
}

impl Hostile {
    /// A member called `name` on `ip`:7420, certified by `pki` for `services`.
    pub fn new(pki: &Pki, name: &str, ip: Ipv4Addr, services: &[&str]) -> Self {
        let issued = pki.issue(name, services);
        let td = TrustDomain::parse(TRUST_DOMAIN).expect("trust domain");
        let paths = CredentialPaths {
            cert: issued.cert,
            key: issued.key,
            bundle: pki.ca_cert(),
        };
        let id = SpiffeId::node(td.clone(), Name::parse("node name", name).expect("name"));
        let tls = TlsState::new(id, load_material(&paths, &td).expect("credentials"))
            .expect("node credentials");
        let (endpoint, gossip) = MeshEndpoint::bind(
            EndpointConfig {
                listen: SocketAddr::from((ip, 7420)),
                advertise: None,
                quic: QuicSettings::default(),
                reset_key: None,
            },
            tls.clone(),
        )
        .expect("bind the mesh address");
        Self {
            endpoint,
            tls,
            _gossip: gossip,
        }
    }

    /// Sends chitchat bytes to `to` in a gossip frame claiming to come from `claim`.
    pub async fn gossip_raw(&self, to: SocketAddr, claim: SocketAddr, payload: Vec<u8>) {
        let frame = encode_gossip(&GossipFrame {
            version: WIRE_VERSION,
            from: claim,
            payload,
        })
        .expect("frame");
        let conn = self.endpoint.connect(to, None).await.expect("connect");
        conn.send_uni(&frame).await.expect("send");
    }

    /// Sends `msg` to `to` in a frame claiming `claim`.
    pub async fn gossip(&self, to: SocketAddr, claim: SocketAddr, msg: &Message) {
        self.gossip_raw(to, claim, encode(msg)).await;
    }

    /// A value for `slot` signed with this member's own key (not the slot owner's).
    pub fn forge(&self, slot: Slot<'_>, body: &str) -> String {
        let manifest = signed::manifest([(slot.key, slot.version)]);
        let bytes = signed::signed_bytes(slot, Some(body), &manifest);
        let sig = self.tls.sign_as_node(&bytes).expect("sign");
        signed::render(Some(body), &manifest, &sig.signature)
    }

    /// Opens one HTTP stream to `to` for each of `services`, `concurrency` at a time, and
    /// reads whatever comes back (refusals). Returns the failures to open.
    pub async fn streams_for(
        &self,
        to: SocketAddr,
        services: impl Iterator<Item = String>,
        concurrency: usize,
    ) -> Vec<String> {
        let mut running = tokio::task::JoinSet::new();
        let mut failures = Vec::new();
        for service in services {
            if running.len() >= concurrency
                && let Some(Ok(Err(e))) = running.join_next().await
            {
                failures.push(e);
            }
            running.spawn(stream_for(self.endpoint.clone(), to, service));
        }
        while let Some(done) = running.join_next().await {
            if let Ok(Err(e)) = done {
                failures.push(e);
            }
        }
        failures
    }
}

/// Opens an HTTP stream to `to` for `service` and reads whatever comes back (a refusal).
async fn stream_for(
    endpoint: MeshEndpoint,
    to: SocketAddr,
    service: String,
) -> Result<usize, String> {
    {
        let conn = endpoint
            .connect(to, None)
            .await
            .map_err(|e| e.to_string())?;
        let header = StreamHeader::new(service);
        let (mut send, mut recv) = conn
            .open(StreamKind::Http, &header)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        let back = recv.read_to_end(64 * 1024).await.unwrap_or_default();
        Ok(back.len())
    }
}

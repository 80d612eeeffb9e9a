//! What the admin API works with: handles to the parts of the node it reports on or acts on,
//! and the facts about the node it shows. Built once by the node; owned by the admin API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use murmur_membership::Membership;
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::gossip::GossipStats;
use murmur_transport::tls::TlsState;

use murmur_membership::cells::CellStatus;
use tokio::sync::watch;

use crate::balance::Balancers;
use crate::cells::CellSettings;
use crate::drain::DrainSettings;
use crate::identity::Identity;
use crate::listener::Gate;
use crate::policy::api::PolicyApi;
use crate::services::Services;
use crate::telemetry::Telemetry;
use crate::telemetry::traces::TraceStats;
use crate::traffic::Traffic;

/// The admin API's state.
#[derive(Debug)]
pub struct AdminState {
    /// Facts about this node.
    pub node: NodeFacts,
    /// Gossip and the cluster view; drain and undrain change the status it publishes.
    pub membership: Arc<Membership>,
    /// The policy endpoints.
    pub policy: PolicyApi,
    /// The QUIC endpoint: handshake counters, per-peer statistics.
    pub endpoint: MeshEndpoint,
    /// Live TLS credentials.
    pub tls: Arc<TlsState>,
    /// Gossip counters.
    pub gossip_stats: Arc<GossipStats>,
    /// Local services: listed, registered, deregistered.
    pub services: Arc<Services>,
    /// Balancer state: pending requests and latency per instance.
    pub balancers: Arc<Balancers>,
    /// Request metrics and traffic summaries.
    pub telemetry: Arc<Telemetry>,
    /// Span export counters.
    pub traces: Arc<TraceStats>,
    /// Traffic policy state: rate-limit shares.
    pub traffic: Arc<Traffic>,
    /// The local listeners' gates: open, refused and timed-out connections.
    pub listeners: Vec<Arc<Gate>>,
    /// Issuer and renewal status.
    pub identity: Arc<Identity>,
    /// The node's cell.
    pub cell: CellSettings,
    /// The cell link's status (custodians, acting), when the link runs.
    pub link: Option<watch::Receiver<CellStatus>>,
}

/// What the admin API says about this node itself.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    /// Node name.
    pub name: String,
    /// When it started.
    pub started: Instant,
    /// The outbound HTTP proxy address.
    pub outbound: SocketAddr,
    /// The admin API's own address (requests must name it, see [`super::guard`]).
    pub admin: SocketAddr,
    /// Local TCP listeners for remote services, `service@address`.
    pub upstreams: Vec<String>,
    /// Whether it was given seeds: without, it is the first of its mesh and ready alone.
    pub has_seeds: bool,
    /// How `POST /v1/drain` drains it.
    pub drain: DrainSettings,
}

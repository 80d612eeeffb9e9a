//! `GET /v1/status`: a node's identity, certificate and gossip health.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Node name.
    pub name: String,
    /// SPIFFE ID.
    pub id: String,
    /// Incarnation.
    pub generation: u64,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Advertised QUIC address.
    pub mesh_addr: SocketAddr,
    /// Outbound HTTP proxy address.
    pub outbound: SocketAddr,
    /// Local TCP listeners for remote services, `service@address`.
    pub upstreams: Vec<String>,
    /// The certificate in use.
    pub certificate: CertJson,
    /// Gossip counters.
    pub gossip: GossipJson,
}

/// The certificate in use.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertJson {
    /// Serial (hex).
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after_unix: u64,
    /// Seconds left (negative when expired).
    pub expires_in_s: i64,
    /// Services it allows.
    pub services: Vec<String>,
}

/// Gossip counters.
#[derive(Debug, Serialize, Deserialize)]
pub struct GossipJson {
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Messages refused (malformed or oversized).
    pub rejected: u64,
    /// Messages dropped (unreachable peer or full queue).
    pub dropped: u64,
    /// Connections refused at the handshake.
    pub handshakes_refused: u64,
}

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
    /// Renewal, issuing, revocations, open connections.
    pub identity: IdentityJson,
    /// Gossip counters.
    pub gossip: GossipJson,
    /// The node's cell, its custodians and the other cells it knows of.
    #[serde(default)]
    pub cell: CellJson,
}

/// A node's cell as it sees it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CellJson {
    /// The cell's name (`default` when none is configured).
    pub name: String,
    /// Whether the cell link runs (a cell was named, or cell seeds given).
    pub linked: bool,
    /// The cell's custodians as this node ranks them, best first.
    pub custodians: Vec<String>,
    /// This node publishes its cell's summary and bridges the other cells in.
    pub acting: bool,
    /// This node is in the top layer (a custodian, or lingering after being one).
    pub in_top: bool,
    /// Other cells this node knows of, by name.
    pub remote: Vec<RemoteCellJson>,
}

/// Another cell, from its published summary.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RemoteCellJson {
    /// The cell's name.
    pub name: String,
    /// Members its summary counts (alive or draining).
    pub members: u32,
    /// Its custodians, best ranked first: the first is the one that published the summary.
    pub custodians: Vec<String>,
    /// Services it exports.
    pub services: usize,
    /// Not renewed for a while: its instances are still routed to, marked stale, until the
    /// summary expires.
    pub stale: bool,
    /// Its policy digest as published (hex; the first 16 digits are what `murmur policy`
    /// shows there).
    pub policy_digest: String,
}

/// Renewal, issuing and revocations as this node sees them.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdentityJson {
    /// `off`, `waiting`, `renewed`, `no-issuer` or `failing`.
    pub renewal: String,
    /// The last error while failing.
    pub renewal_error: Option<String>,
    /// Renewals since start.
    pub renewals: u64,
    /// Failed renewal attempts since start.
    pub renewal_failures: u64,
    /// The issuer of the last renewal.
    pub last_issuer: Option<String>,
    /// When the next attempt is due, ms since the epoch.
    pub next_renewal_unix_ms: Option<u64>,
    /// This node's issuer credential, if it holds one.
    pub issuer: Option<IssuerJson>,
    /// Revoked node names and serials in force.
    pub revoked: Vec<String>,
    /// The peer of every open connection (a peer connected both ways is listed twice).
    pub peers: Vec<String>,
}

/// An issuer credential and what it did.
#[derive(Debug, Serialize, Deserialize)]
pub struct IssuerJson {
    /// Serial of the issuer certificate.
    pub serial: String,
    /// Its expiry, seconds since the epoch.
    pub not_after_unix: u64,
    /// Certificates issued for joins since start.
    pub joins: u64,
    /// Certificates issued for renewals since start.
    pub renewals: u64,
    /// Requests refused since start, by reason.
    pub refused: std::collections::BTreeMap<String, u64>,
}

/// The certificate in use.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertJson {
    /// Serial (hex).
    pub serial: String,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before_unix: u64,
    /// Who issued it (distinguished name).
    pub issuer: String,
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

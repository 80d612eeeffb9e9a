//! `GET /v1/status`: this node's identity, certificate and gossip health.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::http::{Body, json};
use crate::node::NodeContext;

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

/// Answers `GET /v1/status`.
pub fn get(ctx: &NodeContext) -> hyper::Response<Body> {
    let cert = ctx.tls.local_cert();
    let not_after_unix = cert
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = crate::telemetry::unix_now();
    let g = &ctx.gossip_stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    json(
        200,
        &StatusResponse {
            name: ctx.config.name.to_string(),
            id: ctx.tls.identity().to_string(),
            generation: ctx.membership.chitchat_id().generation_id,
            uptime_s: ctx.started.elapsed().as_secs(),
            mesh_addr: ctx.endpoint.advertise_addr(),
            outbound: ctx.config.outbound,
            upstreams: ctx
                .config
                .upstreams
                .iter()
                .map(|u| format!("{}@{}", u.service, u.listen))
                .collect(),
            certificate: CertJson {
                serial: cert.serial,
                not_after_unix,
                expires_in_s: i64::try_from(not_after_unix).unwrap_or(i64::MAX)
                    - i64::try_from(now).unwrap_or(0),
                services: cert.services.iter().map(|s| s.to_string()).collect(),
            },
            gossip: GossipJson {
                sent: load(&g.sent),
                received: load(&g.received),
                rejected: load(&g.rejected),
                dropped: load(&g.dropped),
                handshakes_refused: load(&ctx.endpoint.counters().handshakes_refused),
            },
        },
    )
}

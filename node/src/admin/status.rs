//! `GET /v1/status`: this node's identity, certificate and gossip health.

use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use super::http::{Body, json};
use super::state::AdminState;
use crate::api::status::{
    CellJson, CertJson, GossipJson, IdentityJson, IssuerJson, RemoteCellJson, StatusResponse,
};

/// Answers `GET /v1/status`.
pub fn get(state: &AdminState) -> hyper::Response<Body> {
    let cert = state.tls.local_cert();
    let not_after_unix = cert
        .not_after
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = crate::clock::unix_now();
    let g = &state.gossip_stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    json(
        200,
        &StatusResponse {
            name: state.node.name.clone(),
            id: state.tls.identity().to_string(),
            generation: state.membership.chitchat_id().generation_id,
            uptime_s: state.node.started.elapsed().as_secs(),
            mesh_addr: state.endpoint.advertise_addr(),
            outbound: state.node.outbound,
            upstreams: state.node.upstreams.clone(),
            certificate: CertJson {
                serial: cert.serial,
                not_before_unix: unix(cert.not_before),
                issuer: cert.issuer,
                not_after_unix,
                expires_in_s: i64::try_from(not_after_unix).unwrap_or(i64::MAX)
                    - i64::try_from(now).unwrap_or(0),
                services: cert.services.iter().map(|s| s.to_string()).collect(),
            },
            identity: identity(state),
            gossip: GossipJson {
                sent: load(&g.sent),
                received: load(&g.received),
                rejected: load(&g.rejected),
                dropped: load(&g.dropped),
                handshakes_refused: load(&state.endpoint.counters().handshakes_refused),
            },
            cell: cell(state),
        },
    )
}

/// The cell: the link's status, and the other cells as the view holds them.
fn cell(state: &AdminState) -> CellJson {
    let link = state
        .link
        .as_ref()
        .map(|l| l.borrow().clone())
        .unwrap_or_default();
    let remote = state
        .membership
        .view()
        .cells
        .iter()
        .map(|(name, c)| RemoteCellJson {
            name: name.clone(),
            members: c.members,
            custodians: c.custodians.clone(),
            services: c.services,
            stale: c.stale,
            policy_digest: c.policy_digest.clone(),
        })
        .collect();
    CellJson {
        name: state.cell.name.clone(),
        linked: state.cell.linked,
        custodians: link.custodians,
        acting: link.acting,
        in_top: link.in_top,
        remote,
    }
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn identity(state: &AdminState) -> IdentityJson {
    let renew = state.identity.renew.snapshot();
    let issuer = state.identity.issuer.as_ref().map(|i| {
        let authority = i.authority();
        let stats = i.stats();
        IssuerJson {
            serial: authority.serial().to_owned(),
            not_after_unix: unix(authority.not_after()),
            joins: stats.joins.load(Ordering::Relaxed),
            renewals: stats.renewals.load(Ordering::Relaxed),
            refused: stats
                .refused()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, n)| (c.as_str().to_owned(), n))
                .collect(),
        }
    });
    IdentityJson {
        renewal: renew.state.label().to_owned(),
        renewal_error: renew.state.error().map(str::to_owned),
        renewals: renew.renewals,
        renewal_failures: renew.failures,
        last_issuer: renew.last_issuer,
        next_renewal_unix_ms: renew.next_ms,
        issuer,
        revoked: state.tls.revocations().describe(),
        peers: state.endpoint.connected_peers(),
    }
}

//! Revocations in force: every signed `revocation` document of the policy set, applied to the
//! TLS state (every handshake checks it) and to the open connections (those of a revoked peer
//! are closed at once).

use std::sync::Arc;

use murmur_membership::policy::spec::PolicyBody;
use murmur_membership::policy::{Kind, PolicySet};
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::tls::{Revocations, TlsState};
use tokio::sync::watch;
use tracing::warn;

/// The revocations a policy set holds.
pub fn revocations_of(set: &PolicySet) -> Revocations {
    let mut nodes = Vec::new();
    let mut serials = Vec::new();
    for doc in set.iter().filter(|d| d.kind() == Kind::Revocation) {
        if let Some(PolicyBody::Revocation(r)) = doc.body() {
            nodes.extend(r.node.clone());
            serials.extend(r.serial.clone());
        }
    }
    Revocations::new(nodes, serials)
}

/// Applies the revocations of every new policy set until the policy service stops.
pub async fn enforce(
    mut sets: watch::Receiver<Arc<PolicySet>>,
    tls: Arc<TlsState>,
    endpoint: MeshEndpoint,
) {
    loop {
        let set = sets.borrow_and_update().clone();
        if tls.set_revocations(revocations_of(&set)) {
            let closed = endpoint.close_revoked();
            let revoked = tls.revocations();
            warn!(
                ?revoked,
                closed, "revocations changed; connections of revoked peers closed"
            );
        }
        if sets.changed().await.is_err() {
            return;
        }
    }
}

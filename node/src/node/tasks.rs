//! The node's long-running chores, each given the handles it uses: credential reloads, the
//! admin API, the gossiped traffic summary, rate-limit shares, health checks, and closing
//! connections to the dead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_membership::policy::PolicySet;
use murmur_membership::{ClusterView, MemberState, Membership};
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::identity::Name;
use murmur_transport::tls::{CredentialPaths, CredentialWatcher, TlsState};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::admin::AdminState;
use crate::health::CheckConfig;
use crate::identity::renew::Renewer;
use crate::identity::{Identity, issuer, record, renew, revocations};
use crate::listener::Gate;
use crate::proxy::Proxy;
use crate::services::Services;
use crate::traffic::share::{self, ShareTask};

/// What the chores are built from.
#[derive(Debug)]
pub struct Chores {
    /// Reloads the credentials when their files change, or when `reload` is notified.
    pub credentials: CredentialWatcher,
    /// How often the credential files are checked.
    pub reload_interval: Duration,
    /// Notified on SIGHUP.
    pub reload: Arc<Notify>,
    /// The admin API, its listener and the listener's gate.
    pub admin: (Arc<AdminState>, TcpListener, Arc<Gate>),
    /// Gossip and the view.
    pub membership: Arc<Membership>,
    /// The QUIC endpoint.
    pub endpoint: MeshEndpoint,
    /// The data path.
    pub proxy: Arc<Proxy>,
    /// Local services.
    pub services: Arc<Services>,
    /// The configured health checks: service, instance address, check.
    pub checks: Vec<(String, SocketAddr, CheckConfig)>,
    /// The gossip interval.
    pub gossip_interval: Duration,
    /// Identity: revocations, renewal, the gossiped record, the issuer's credential.
    pub identity: IdentityChores,
}

/// What the identity chores are built from.
#[derive(Debug)]
pub struct IdentityChores {
    /// This node.
    pub node: Name,
    /// The live credentials.
    pub tls: Arc<TlsState>,
    /// Every new policy set (revocations are in it).
    pub policy: watch::Receiver<Arc<PolicySet>>,
    /// The issuer and renewal status.
    pub identity: Arc<Identity>,
    /// Whether this node renews its certificate.
    pub renew: bool,
    /// Where renewed credentials are written.
    pub paths: CredentialPaths,
}

/// Spawns every chore.
pub fn spawn(c: Chores) {
    tokio::spawn(c.credentials.run(c.reload_interval, c.reload));
    tokio::spawn(crate::admin::serve(c.admin.0, c.admin.1, c.admin.2));
    tokio::spawn(crate::telemetry::mesh::publish_loop(
        c.proxy.telemetry.clone(),
        c.membership.keys(),
    ));
    let services = c.services.clone();
    tokio::spawn(share::run(ShareTask {
        traffic: c.proxy.traffic.clone(),
        keys: c.membership.keys(),
        view: c.membership.watch(),
        serves: Box::new(move |s| services.get(s).is_some()),
        gap: c.gossip_interval,
    }));
    for (service, address, check) in c.checks {
        spawn_health_check(&c.services, &c.membership, service, address, check);
    }
    tokio::spawn(withdraw_uncertified(
        c.services.clone(),
        c.membership.clone(),
        c.endpoint.clone(),
        c.reload_interval,
    ));
    spawn_identity(c.identity, &c.membership, &c.endpoint, c.reload_interval);
    tokio::spawn(disconnect_the_dead(c.membership.watch(), c.endpoint));
}

/// Withdraws the local services the node's certificate no longer names (a rotation dropped
/// them): callers stop choosing this node for them, and the serving side refuses what still
/// comes on older connections.
async fn withdraw_uncertified(
    services: Arc<Services>,
    membership: Arc<Membership>,
    endpoint: MeshEndpoint,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for name in services.snapshot().keys() {
            if endpoint.tls().certifies_service(name) {
                continue;
            }
            warn!(service = %name, "the node's certificate no longer names this service: withdrawn");
            if let Err(e) = services.deregister(name, &membership).await {
                warn!(service = %name, error = %e, "cannot withdraw");
            }
        }
    }
}

/// Revocations enforced, renewal, the gossiped identity record, the issuer's credential reload.
fn spawn_identity(
    i: IdentityChores,
    membership: &Arc<Membership>,
    endpoint: &MeshEndpoint,
    reload_interval: Duration,
) {
    tokio::spawn(revocations::enforce(
        i.policy,
        i.tls.clone(),
        endpoint.clone(),
    ));
    let issuer = i.identity.issuer.clone();
    if i.renew {
        tokio::spawn(renew::run(Renewer {
            node: i.node,
            tls: i.tls.clone(),
            endpoint: endpoint.clone(),
            view: membership.watch(),
            issuer: issuer.clone(),
            paths: i.paths,
            status: i.identity.renew.clone(),
        }));
    }
    if let Some(issuer) = &issuer {
        tokio::spawn(issuer::reload_loop(issuer.clone(), reload_interval));
    }
    tokio::spawn(record::publish_loop(
        i.tls,
        issuer,
        i.identity.renew.clone(),
        membership.keys(),
    ));
}

/// Closes connections to members as soon as they are declared dead: requests waiting on them
/// fail (or move on) now rather than at the QUIC idle timeout. Only a fall from alive counts: a
/// member just learned of is listed dead until its second heartbeat.
async fn disconnect_the_dead(mut rx: watch::Receiver<Arc<ClusterView>>, endpoint: MeshEndpoint) {
    let mut alive: BTreeMap<String, SocketAddr> = BTreeMap::new();
    while rx.changed().await.is_ok() {
        let view = rx.borrow_and_update().clone();
        for (name, addr) in &alive {
            let fell = view
                .members
                .get(name)
                .is_none_or(|m| m.state == MemberState::Dead && m.mesh_addr == *addr);
            if fell {
                info!(node = %name, %addr, "peer declared dead: closing its connection");
                endpoint.disconnect(*addr, "peer declared dead");
            }
        }
        alive = view
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Draining) && !m.stale)
            .map(|m| (m.name.clone(), m.mesh_addr))
            .collect();
    }
}

/// A task that checks the local instance of `service` and publishes its health as it changes.
fn spawn_health_check(
    services: &Arc<Services>,
    membership: &Arc<Membership>,
    service: String,
    address: SocketAddr,
    check: CheckConfig,
) {
    let (services, membership) = (services.clone(), membership.clone());
    let name = service.clone();
    let report = move |health| {
        let (services, membership, name) = (services.clone(), membership.clone(), name.clone());
        async move {
            if let Err(e) = services.set_health(&name, health, &membership).await {
                warn!(error = %e, "cannot publish health");
            }
        }
    };
    tokio::spawn(crate::health::run(service, address, check, report));
}

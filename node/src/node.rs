//! A running node: wires credentials, the QUIC endpoint, gossip, policy, the data path, health
//! checks, telemetry and the admin API, and stops gracefully.

mod generation;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use murmur_membership::policy::PolicyHandle;
use murmur_membership::{Membership, MembershipConfig};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint};
use murmur_transport::gossip::{GossipStats, QuicGossip};
use murmur_transport::identity::SpiffeId;
use murmur_transport::tls::{CredentialWatcher, TlsState, load_material};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::balance::Balancers;
use crate::config::Config;
use crate::inbound::Inbound;
use crate::proxy::{self, Proxy};
use crate::readiness;
use crate::services::Services;
use crate::signals;
use crate::telemetry::Telemetry;
use crate::telemetry::traces::Tracing;

/// What every part of a running node may need.
#[derive(Debug)]
pub struct NodeContext {
    /// The configuration it runs with.
    pub config: Config,
    /// Gossip and the cluster view.
    pub membership: Membership,
    /// Signed policy documents: the effective set, applies.
    pub policy: PolicyHandle,
    /// The QUIC endpoint.
    pub endpoint: MeshEndpoint,
    /// Live TLS credentials.
    pub tls: Arc<TlsState>,
    /// Gossip counters.
    pub gossip_stats: Arc<GossipStats>,
    /// Local services (config and runtime registrations).
    pub services: Arc<Services>,
    /// The data path.
    pub proxy: Arc<Proxy>,
    /// When the node started.
    pub started: Instant,
    /// Request metrics and traffic summaries.
    pub telemetry: Arc<Telemetry>,
    /// Trace export.
    pub traces: Arc<Tracing>,
}

/// Runs a node until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let (ctx, admin_listener) = start(config).await?;
    let reload = Arc::new(Notify::new());
    spawn_background(&ctx, admin_listener, reload.clone());
    let (c, seeded) = (ctx.clone(), !ctx.config.seeds.is_empty());
    let ready = move |v: &_| readiness::check(c.membership.status(), v, seeded);
    tokio::spawn(readiness::notify_when_ready(ctx.membership.watch(), ready));
    let gossip_ended = ctx.membership.gossip_ended();
    tokio::select! {
        why = signals::wait_for_stop(reload) => {
            info!(?why, "stopping");
            readiness::stopping();
            shutdown(ctx).await;
            Ok(())
        }
        reason = gossip_ended => {
            // A node whose gossip died would serve a frozen view forever: better to stop and be
            // restarted by its supervisor.
            tracing::error!(%reason, "gossip has ended; exiting so the node can be restarted");
            ctx.endpoint.close(Duration::from_millis(200)).await;
            anyhow::bail!("{reason}")
        }
    }
}

/// Binds every socket (so a busy port fails the start), joins the mesh and starts the data
/// path. Returns the node and its admin listener, not yet served.
async fn start(config: Config) -> anyhow::Result<(Arc<NodeContext>, TcpListener)> {
    let tls = load_credentials(&config)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let cert = tls.local_cert();
    let services = Services::from_config(&config.services, &cert)?
        .with_registrations(config.data_dir.join("registrations.json"), &cert);
    let services = Arc::new(services);
    let generation = generation::next(&config.data_dir)?;
    let admin_listener = TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot listen on admin address {}", config.admin))?;
    let listeners = proxy::bind(config.outbound, &config.upstreams).await?;
    let (endpoint, gossip) = bind_endpoint(&config, &tls)?;
    let gossip_stats = gossip.stats();
    let membership = Membership::start(membership_config(&config, &endpoint, generation), &gossip)
        .await
        .context("cannot start gossip")?;
    let policy = crate::policy::start(&membership, &config, tls.clone());
    services.publish_all(&membership).await?;
    let telemetry = Arc::new(Telemetry::default());
    let traces = Arc::new(Tracing::start(&config.traces).context("cannot start trace export")?);
    let proxy = Arc::new(Proxy {
        node: config.name.to_string(),
        endpoint: endpoint.clone(),
        view: membership.watch(),
        balancers: Arc::new(Balancers::new(u64::from(std::process::id()) ^ generation)),
        services: services.clone(),
        local: proxy::local::LocalClients::new(),
        telemetry: telemetry.clone(),
        traces: traces.clone(),
        traffic: crate::traffic::Traffic::start(policy.watch(), u64::from(std::process::id())),
    });
    proxy::start(&proxy, listeners);
    info!(node = %config.name, mesh = %endpoint.advertise_addr(), admin = %config.admin, generation, "node started");
    let ctx = Arc::new(NodeContext {
        config,
        membership,
        policy,
        endpoint,
        tls,
        gossip_stats,
        services,
        proxy,
        started: Instant::now(),
        telemetry,
        traces,
    });
    ctx.endpoint.set_handler(Inbound::new(&ctx));
    Ok((ctx, admin_listener))
}

/// The QUIC endpoint (keeping its stateless-reset key across restarts) and gossip over it.
fn bind_endpoint(
    config: &Config,
    tls: &Arc<TlsState>,
) -> anyhow::Result<(MeshEndpoint, QuicGossip)> {
    let (endpoint, inbox) = MeshEndpoint::bind(
        EndpointConfig {
            listen: config.listen,
            advertise: config.advertise,
            quic: config.quic.clone(),
            reset_key: Some(generation::reset_key(&config.data_dir)?),
        },
        tls.clone(),
    )
    .with_context(|| format!("cannot bind mesh address {}", config.listen))?;
    let gossip = QuicGossip::new(endpoint.clone(), inbox);
    Ok((endpoint, gossip))
}

/// The node's long-running chores: credential reloads, the admin API, the gossiped traffic
/// summary, rate-limit shares, health checks, and closing connections to the dead.
fn spawn_background(ctx: &Arc<NodeContext>, admin: TcpListener, reload: Arc<Notify>) {
    let watcher = CredentialWatcher::new(ctx.tls.clone(), ctx.config.tls.clone());
    tokio::spawn(watcher.run(ctx.config.reload_interval, reload));
    tokio::spawn(crate::admin::serve(ctx.clone(), admin));
    tokio::spawn(crate::telemetry::mesh::publish_loop(ctx.clone()));
    tokio::spawn(crate::traffic::share::run(ctx.clone()));
    spawn_health_checks(ctx);
    tokio::spawn(disconnect_the_dead(ctx.clone()));
}

async fn shutdown(ctx: Arc<NodeContext>) {
    crate::drain::drain(&ctx, ctx.config.drain).await;
    let linger = (ctx.config.gossip.interval * 3).max(Duration::from_millis(300));
    ctx.membership.leave(linger).await;
    ctx.endpoint.close(Duration::from_millis(500)).await;
    ctx.traces.shutdown().await;
}

/// Closes connections to members as soon as they are declared dead: requests waiting on them
/// fail (or move on) now rather than at the QUIC idle timeout. Only a fall from alive counts: a
/// member just learned of is listed dead until its second heartbeat.
async fn disconnect_the_dead(ctx: Arc<NodeContext>) {
    use murmur_membership::MemberState;
    let mut rx = ctx.membership.watch();
    let mut alive: std::collections::BTreeMap<String, std::net::SocketAddr> = Default::default();
    while rx.changed().await.is_ok() {
        let view = rx.borrow_and_update().clone();
        for (name, addr) in &alive {
            let fell = view
                .members
                .get(name)
                .is_none_or(|m| m.state == MemberState::Dead && m.mesh_addr == *addr);
            if fell {
                info!(node = %name, %addr, "peer declared dead: closing its connection");
                ctx.endpoint.disconnect(*addr, "peer declared dead");
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

fn spawn_health_checks(ctx: &Arc<NodeContext>) {
    for s in &ctx.config.services {
        let Some(check) = s.health.clone() else {
            continue;
        };
        let (ctx2, name) = (ctx.clone(), s.name.to_string());
        let report = move |health| {
            let (ctx, name) = (ctx2.clone(), name.clone());
            async move {
                if let Err(e) = ctx
                    .services
                    .set_health(&name, health, &ctx.membership)
                    .await
                {
                    warn!(error = %e, "cannot publish health");
                }
            }
        };
        tokio::spawn(crate::health::run(
            s.name.to_string(),
            s.address,
            check,
            report,
        ));
    }
}

fn load_credentials(config: &Config) -> anyhow::Result<Arc<TlsState>> {
    let id = SpiffeId::node(config.trust_domain.clone(), config.name.clone());
    let material = load_material(&config.tls, &config.trust_domain)?;
    TlsState::new(id, material).with_context(|| {
        format!(
            "the certificate {} cannot be used by node {}",
            config.tls.cert.display(),
            config.name
        )
    })
}

fn membership_config(
    config: &Config,
    endpoint: &MeshEndpoint,
    generation: u64,
) -> MembershipConfig {
    MembershipConfig {
        name: config.name.to_string(),
        generation,
        mesh_addr: endpoint.advertise_addr(),
        admin_addr: Some(config.admin),
        labels: config.labels.clone(),
        seeds: config.seeds.clone(),
        gossip: config.gossip.clone(),
        view_file: Some(config.data_dir.join("cluster-view.json")),
        fail_static_warmup: config.fail_static_warmup,
        refresh: config.gossip.interval,
    }
}

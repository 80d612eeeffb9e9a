//! A running node, composed from its config: credentials, the QUIC endpoint, gossip, policy,
//! the data path, health checks, telemetry and the admin API, each built here from the settings
//! it takes and handed the narrow handles it uses; then the node's tasks, and a graceful stop.
//!
//! This is the composition root: the only module (with the command line) that reads the
//! config, and the only one that knows every part.

mod credentials;
mod generation;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use murmur_membership::policy::PolicyHandle;
use murmur_membership::{Membership, MembershipConfig, Trust};
use murmur_transport::endpoint::{EndpointConfig, MeshEndpoint};
use murmur_transport::gossip::{GossipStats, QuicGossip};
use murmur_transport::identity::SpiffeId;
use murmur_transport::issuance::Authority;
use murmur_transport::tls::{CredentialWatcher, TlsState};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};
use tracing::info;

use crate::admin::{AdminState, NodeFacts};
use crate::balance::Balancers;
use crate::config::Config;
use crate::identity::issuer::{Issuer, IssuerParts};
use crate::identity::serve::IdentityService;
use crate::identity::status::{RenewStatus, RenewalState};
use crate::identity::{Identity, join, self_issue};
use crate::listener::Gate;
use crate::policy::api::PolicyApi;
use crate::policy::control;
use crate::proxy::{self, Proxy};
use crate::readiness;
use crate::services::Services;
use crate::signals;
use crate::streams::Streams;
use crate::telemetry::Telemetry;
use crate::telemetry::accesslog::AccessLog;
use crate::telemetry::traces::Tracing;
use crate::traffic::Traffic;
use crate::vip::{self, VipMap};
use crate::{capture, cells, dns};

/// What a node needs before it starts: read from disk before the async runtime runs, so no
/// file is read on the runtime's thread.
#[derive(Debug)]
pub struct Prepared {
    config: Config,
    tls: Arc<TlsState>,
    authority: Option<Authority>,
    services: Arc<Services>,
    generation: u64,
    reset_key: [u8; 32],
    dns_upstreams: Vec<SocketAddr>,
    gateway_certs: Option<Arc<proxy::gateway::Certificates>>,
}

/// Obtains a first certificate with the join token, when one is configured and the credential
/// files do not already hold a valid certificate. Runs before [`prepare`], on `runtime`.
pub fn join(config: &Config, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let Some(token) = &config.identity.join_token else {
        return Ok(());
    };
    // An issuer node joined before signs its own certificate when it runs out (see `prepare`).
    if config.identity.issuer.is_some() && config.tls.cert.exists() {
        return Ok(());
    }
    let id = SpiffeId::node(config.trust_domain.clone(), config.name.clone());
    let Some(plan) = join::prepare(&id, token, &config.tls, &config.seeds, &config.quic)? else {
        return Ok(());
    };
    let joined = runtime
        .block_on(join::request(&plan))
        .context("cannot join the mesh with the token")?;
    join::finish(&plan, &joined)
}

/// Loads the credentials, creates the data directory and restores what it keeps.
#[allow(
    clippy::disallowed_methods,
    reason = "runs before the node's runtime starts"
)]
pub fn prepare(config: Config) -> anyhow::Result<Prepared> {
    let id = SpiffeId::node(config.trust_domain.clone(), config.name.clone());
    if let Some(issuer) = &config.identity.issuer
        && self_issue::wanted(&config.tls, &id, crate::clock::wall_now())
    {
        let services: Vec<_> = config.services.iter().map(|s| s.name.clone()).collect();
        self_issue::issue_own(
            &id,
            &services,
            issuer,
            &config.tls,
            config.identity.leaf_ttl,
        )?;
    }
    let tls = credentials::load(&config.tls, &config.trust_domain, &config.name)?;
    let authority = match &config.identity.issuer {
        Some(files) => Some(
            Authority::load(&files.cert, &files.key, &tls.bundle()).with_context(|| {
                format!(
                    "the issuer credential {} cannot be used",
                    files.cert.display()
                )
            })?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let cert = tls.local_cert();
    let services = Services::from_config(&config.services, &cert)?
        .with_registrations(config.data_dir.join("registrations.json"), &cert);
    // Read before this node may have become the host's resolver (see dns::upstreams).
    let dns_upstreams = match &config.dns {
        Some(d) => dns::upstreams::resolve(&d.upstreams, d.listen, &config.data_dir)?,
        None => Vec::new(),
    };
    let gateway_certs = match &config.gateway {
        Some(g) => Some(Arc::new(proxy::gateway::Certificates::load(
            &g.certificates,
        )?)),
        None => None,
    };
    Ok(Prepared {
        gateway_certs,
        generation: generation::next(&config.data_dir)?,
        reset_key: generation::reset_key(&config.data_dir)?,
        dns_upstreams,
        services: Arc::new(services),
        tls,
        authority,
        config,
    })
}

/// The parts a running node stops, and the handles its tasks are built from.
#[derive(Debug)]
struct Node {
    config: Config,
    tls: Arc<TlsState>,
    membership: Arc<Membership>,
    policy: PolicyHandle,
    endpoint: MeshEndpoint,
    gossip_stats: Arc<GossipStats>,
    services: Arc<Services>,
    proxy: Arc<Proxy>,
    /// Every local listener's gate, for metrics.
    gates: Vec<Arc<Gate>>,
    /// The admin API's gate.
    admin_gate: Arc<Gate>,
    identity: Arc<Identity>,
    /// The cell link, unless this node is in a single-cell mesh.
    link: Option<cells::Linked>,
    started: Instant,
}

/// Runs a node until SIGTERM or SIGINT, on the current runtime and `shards`, the node's other
/// runtimes (each gets its share of the data path; see `shards.rs`).
pub async fn run(prepared: Prepared, shards: Vec<Handle>) -> anyhow::Result<()> {
    let stop_signals = signals::Signals::install();
    let (node, admin_listener) = start(prepared, &shards).await?;
    let reload = Arc::new(Notify::new());
    tasks::spawn(chores(&node, admin_listener, reload.clone()));
    let (membership, seeded) = (node.membership.clone(), !node.config.seeds.is_empty());
    let ready = move |v: &_| readiness::check(membership.status(), v, seeded);
    tokio::spawn(readiness::notify_when_ready(node.membership.watch(), ready));
    let gossip_ended = node.membership.gossip_ended();
    tokio::select! {
        why = stop_signals.wait_for_stop(reload) => {
            info!(?why, "stopping");
            readiness::stopping();
            shutdown(node).await;
            Ok(())
        }
        reason = gossip_ended => {
            // A node whose gossip died would serve a frozen view forever: better to stop and be
            // restarted by its supervisor.
            tracing::error!(%reason, "gossip has ended; exiting so the node can be restarted");
            node.endpoint.close(Duration::from_millis(200)).await;
            if let Some(c) = &node.config.capture {
                capture::remove(c).await;
            }
            anyhow::bail!("{reason}")
        }
    }
}

/// Binds every socket (so a busy port fails the start), joins the mesh and starts the data
/// path. Returns the node and its admin listener, not yet served.
async fn start(p: Prepared, shards: &[Handle]) -> anyhow::Result<(Node, TcpListener)> {
    let Prepared {
        config,
        tls,
        authority,
        services,
        generation,
        reset_key,
        dns_upstreams,
        gateway_certs,
    } = p;
    let admin_listener = TcpListener::bind(config.admin)
        .await
        .with_context(|| format!("cannot listen on admin address {}", config.admin))?;
    let runtimes = 1 + shards.len();
    let mut listeners = proxy::bind(
        config.outbound,
        &config.upstreams,
        &config.listeners,
        runtimes,
    )
    .await?;
    let dns_listeners = bind_onboarding(&config, &mut listeners, runtimes).await?;
    let admin_gate = Arc::new(Gate::new("admin", config.listeners.admin));
    let mut gates = listeners.gates();
    gates.push(admin_gate.clone());
    let gateway = match (&config.gateway, gateway_certs) {
        (Some(g), Some(certs)) => {
            let bound = proxy::gateway::bind(g, runtimes).await?;
            gates.push(bound.gate.clone());
            Some((bound, certs))
        }
        _ => None,
    };
    let trust = Trust::new(tls.clone(), &config.gossip);
    let (endpoint, gossip) = bind_endpoint(&config, &tls, &trust, reset_key, shards)?;
    let membership = Membership::start(
        membership_config(&config, &endpoint, generation, trust),
        &gossip,
    )
    .await
    .context("cannot start gossip")?;
    let membership = Arc::new(membership);
    let (bridge_tx, bridge_rx) = watch::channel(None);
    let policy = crate::policy::start(
        &membership,
        bridge_rx,
        tls.clone(),
        config.name.as_str(),
        &config.policy,
        &config.data_dir,
        config.gossip.interval,
    );
    let link = cells::start(
        &config.cell,
        cells::LinkParts {
            gossip: config.gossip.clone(),
            membership: membership.clone(),
            tls: tls.clone(),
            endpoint: endpoint.clone(),
            bridge: bridge_tx,
            policy: policy.watch(),
        },
    );
    services.publish_all(&membership).await?;
    let traces = Arc::new(Tracing::start(&config.traces).context("cannot start trace export")?);
    let seed = u64::from(std::process::id());
    let vips = start_vips(&config, &membership);
    let proxy = Arc::new(Proxy {
        node: config.name.to_string(),
        id: tls.identity().to_string(),
        zone: config.labels.get(proxy::plan::ZONE_LABEL).cloned(),
        endpoint: endpoint.clone(),
        view: membership.watch(),
        balancers: Arc::new(Balancers::new(seed ^ generation)),
        services: services.clone(),
        local: proxy::local::LocalClients::new(runtimes),
        telemetry: Arc::new(Telemetry::with_access_log(AccessLog::new(
            config.access_log.clone(),
        ))),
        traces,
        traffic: Traffic::start(policy.watch(), seed),
        names: config.names.clone(),
        vips: vips.clone(),
        external: config.external,
        mark: config.capture.as_ref().map(|c| c.mark),
        origination: proxy::external::origination::Origination::default(),
    });
    proxy::start(&proxy, listeners, shards)?;
    if let Some((listeners, certs)) = gateway {
        proxy::gateway::start(&proxy, listeners, certs, shards)?;
    }
    if let Some(l) = dns_listeners {
        let names = config.names.clone();
        dns::start(l, names, &dns_upstreams, vips, proxy.telemetry.clone())?;
    }
    let identity = start_identity(&config, authority, &tls, &policy, &membership);
    let (control_tx, control_rx) = control::queue();
    let (identity_tx, identity_rx) = crate::identity::serve::queue();
    endpoint.set_handler(Streams::new(proxy.clone(), control_tx, identity_tx));
    tokio::spawn(crate::identity::serve::run(
        IdentityService {
            issuer: identity.issuer.clone(),
            endpoint: endpoint.clone(),
            view: membership.watch(),
            node: config.name.clone(),
        },
        identity_rx,
    ));
    let api = PolicyApi {
        policy: policy.clone(),
        membership: membership.clone(),
        node: config.name.to_string(),
    };
    tokio::spawn(control::run(api, control_rx));
    if let Some(c) = &config.capture {
        // Last: the rules send apps' connections to a data path that is serving already.
        capture::install(c, config.vips.v4, config.vips.v6).await?;
    }
    info!(node = %config.name, cell = %config.cell.name, mesh = %endpoint.advertise_addr(), admin = %config.admin, generation, "node started");
    let node = Node {
        gossip_stats: gossip.stats(),
        config,
        tls,
        membership,
        policy,
        endpoint,
        services,
        proxy,
        gates,
        admin_gate,
        identity,
        link,
        started: crate::clock::now(),
    };
    Ok((node, admin_listener))
}

/// Binds the capture listeners (into `listeners`) and the DNS sockets, when they are on, and
/// checks that the capture rules can be installed.
async fn bind_onboarding(
    config: &Config,
    listeners: &mut proxy::Listeners,
    shards: usize,
) -> anyhow::Result<Option<dns::DnsListeners>> {
    if let Some(c) = &config.capture {
        listeners.captured = proxy::bind_captured(c.port, config.vips.v6.is_some(), shards).await?;
        capture::check(c, config.vips.v4, config.vips.v6).await?;
    }
    match &config.dns {
        Some(d) => Ok(Some(dns::bind(d.listen).await?)),
        None => Ok(None),
    }
}

/// Keeps the services' virtual IPs in step with the view; returns the map's receiver.
fn start_vips(config: &Config, membership: &Membership) -> watch::Receiver<Arc<VipMap>> {
    let (tx, rx) = watch::channel(Arc::new(VipMap::default()));
    let allocator = vip::Allocator::new(config.vips.clone());
    tokio::spawn(vip::run(membership.watch(), allocator, tx));
    rx
}

/// This node's issuer (when it holds a credential) and its renewal status.
fn start_identity(
    config: &Config,
    authority: Option<Authority>,
    tls: &Arc<TlsState>,
    policy: &PolicyHandle,
    membership: &Arc<Membership>,
) -> Arc<Identity> {
    let issuer = authority
        .zip(config.identity.issuer.clone())
        .map(|(authority, files)| {
            Issuer::new(IssuerParts {
                node: config.name.clone(),
                files,
                authority,
                leaf_ttl: config.identity.leaf_ttl,
                tls: tls.clone(),
                policy: policy.clone(),
                membership: membership.clone(),
            })
        });
    let state = if config.identity.renew {
        RenewalState::Waiting
    } else {
        RenewalState::Off
    };
    Arc::new(Identity {
        issuer,
        renew: Arc::new(RenewStatus::new(state)),
    })
}

/// The QUIC endpoint (keeping its stateless-reset key across restarts) and gossip over it,
/// every message checked by the trust's guard.
fn bind_endpoint(
    config: &Config,
    tls: &Arc<TlsState>,
    trust: &Trust,
    reset_key: [u8; 32],
    shards: &[Handle],
) -> anyhow::Result<(MeshEndpoint, QuicGossip)> {
    let all: Vec<Handle> = std::iter::once(Handle::current())
        .chain(shards.iter().cloned())
        .collect();
    let (endpoint, inbox) = MeshEndpoint::bind_sharded(
        EndpointConfig {
            listen: config.listen,
            advertise: config.advertise,
            quic: config.quic.clone(),
            reset_key: Some(reset_key),
        },
        tls.clone(),
        &all,
    )
    .with_context(|| format!("cannot bind mesh address {}", config.listen))?;
    let gossip = QuicGossip::new(endpoint.clone(), inbox, trust.guard.clone());
    Ok((endpoint, gossip))
}

/// The node's chores, each with the handles it uses.
fn chores(node: &Node, admin_listener: TcpListener, reload: Arc<Notify>) -> tasks::Chores {
    let c = &node.config;
    tasks::Chores {
        credentials: CredentialWatcher::new(node.tls.clone(), c.tls.clone()),
        reload_interval: c.reload_interval,
        reload,
        admin: (
            admin_state(node, admin_listener.local_addr().unwrap_or(c.admin)),
            admin_listener,
            node.admin_gate.clone(),
        ),
        membership: node.membership.clone(),
        endpoint: node.endpoint.clone(),
        proxy: node.proxy.clone(),
        services: node.services.clone(),
        checks: c
            .services
            .iter()
            .filter_map(|s| Some((s.name.to_string(), s.address, s.health.clone()?)))
            .collect(),
        gossip_interval: c.gossip.interval,
        identity: tasks::IdentityChores {
            node: c.name.clone(),
            tls: node.tls.clone(),
            policy: node.policy.watch(),
            identity: node.identity.clone(),
            renew: c.identity.renew,
            paths: c.tls.clone(),
        },
    }
}

/// What the admin API, listening on `admin`, works with.
fn admin_state(node: &Node, admin: std::net::SocketAddr) -> Arc<AdminState> {
    let c = &node.config;
    Arc::new(AdminState {
        node: NodeFacts {
            name: c.name.to_string(),
            started: node.started,
            outbound: c.outbound,
            admin,
            upstreams: c
                .upstreams
                .iter()
                .map(|u| format!("{}@{}", u.service, u.listen))
                .collect(),
            has_seeds: !c.seeds.is_empty(),
            drain: c.drain,
        },
        membership: node.membership.clone(),
        policy: PolicyApi {
            policy: node.policy.clone(),
            membership: node.membership.clone(),
            node: c.name.to_string(),
        },
        endpoint: node.endpoint.clone(),
        tls: node.tls.clone(),
        gossip_stats: node.gossip_stats.clone(),
        services: node.services.clone(),
        balancers: node.proxy.balancers.clone(),
        telemetry: node.proxy.telemetry.clone(),
        traces: node.proxy.traces.stats.clone(),
        traffic: node.proxy.traffic.clone(),
        listeners: node.gates.clone(),
        identity: node.identity.clone(),
        cell: c.cell.clone(),
        link: node.link.as_ref().map(cells::Linked::status),
    })
}

async fn shutdown(node: Node) {
    crate::drain::drain(&node.membership, &node.proxy.telemetry, node.config.drain).await;
    let linger = (node.config.gossip.interval * 3).max(Duration::from_millis(300));
    if let Some(link) = node.link {
        // The top layer first: the other custodian of the cell takes over from a live cell.
        link.shutdown(linger).await;
    }
    node.membership.leave(linger).await;
    node.endpoint.close(Duration::from_millis(500)).await;
    if let Some(c) = &node.config.capture {
        // Last: captured apps are served until the node is gone.
        capture::remove(c).await;
    }
    node.proxy.traces.shutdown().await;
}

fn membership_config(
    config: &Config,
    endpoint: &MeshEndpoint,
    generation: u64,
    trust: Trust,
) -> MembershipConfig {
    MembershipConfig {
        trust,
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

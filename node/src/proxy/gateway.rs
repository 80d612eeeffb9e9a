//! The gateway (`[gateway]`): clients outside the mesh reach mesh services over HTTPS.
//!
//! ```text
//! client ─TLS (SNI: certs)─▶ gateway ─host, path: Compiled::edge_target─▶ outbound::to_service
//!                                     (404 naming an unknown host)       (plan::decide, exchange)
//! ```
//!
//! The listener is rustls over TCP (HTTP/1.1 and HTTP/2 by ALPN, upgrades such as WebSocket
//! included), with the certificate picked by SNI and reloaded from disk ([`certs`]). A request
//! is routed by its host and path to the service of the first route, across the mesh's route
//! documents, that names the host in `match.hosts` and matches; from there it is an outbound
//! request like any other — decided by `plan::decide` (only routes naming the host apply),
//! carried out by `exchange`, accounted, traced and logged — with this node's identity as the
//! caller the serving node authorizes. The client's address goes along in `X-Forwarded-For`
//! and `Forwarded` ([`forwarded`]).
//!
//! What a client outside can hold is bounded: the listener's gate (connection cap, first-byte
//! and idle timeouts, `[limits.gateway]`), a share of connections per client address
//! ([`per_ip`]), a time for the TLS handshake and for the request head, and a size for the head.

mod certs;
mod forwarded;
mod host;
mod per_ip;
mod rate;
mod redirect;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use murmur_transport::identity::Name;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

pub use certs::{CertFiles, Certificates};

use super::body::ProxyBody;
use super::errors::{LocalReply, ProxyError};
use super::outbound;
use super::route::RouteError;
use super::runtime::Proxy;
use super::spread::Spread;
use crate::listener::{Activity, Admitted, Gate, ListenerLimits, Tracked};
use crate::traffic::compiled::EdgeTarget;
use crate::traffic::normalize;

/// A TLS handshake must finish within this time of the connection's start.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a request head within this time (slow heads).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head: larger ones get 431 (HTTP/1.1) or a refused stream (HTTP/2).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one client connection may have open.
const H2_MAX_STREAMS: u32 = 256;

/// `[gateway]`: where the gateway listens and with which certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The HTTPS listener.
    pub listen: SocketAddr,
    /// A plain-HTTP listener that redirects to HTTPS, if wanted.
    pub http_listen: Option<SocketAddr>,
    /// Certificates, the first one for clients that name no host.
    pub certificates: Vec<CertFiles>,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
    /// Connections one client address may hold open at once.
    pub max_connections_per_ip: usize,
    /// Requests per second one client address may send, if limited.
    pub rate_per_ip: Option<u32>,
    /// The gate of both listeners.
    pub limits: ListenerLimits,
}

/// The gateway's sockets, bound before the node starts (each once per runtime), and its
/// certificates.
#[derive(Debug)]
pub struct GatewayListeners {
    /// HTTPS.
    pub tls: Spread,
    /// Plain HTTP, redirected.
    pub http: Option<Spread>,
    /// The gate of both.
    pub gate: Arc<Gate>,
    settings: GatewaySettings,
}

/// Binds the gateway's listeners, each once for each of `runtimes`.
pub async fn bind(settings: &GatewaySettings, runtimes: usize) -> anyhow::Result<GatewayListeners> {
    let tls = Spread::bind(settings.listen, runtimes)
        .await
        .with_context(|| format!("cannot listen on {} (gateway.listen)", settings.listen))?;
    let http = match settings.http_listen {
        Some(a) => Some(
            Spread::bind(a, runtimes)
                .await
                .with_context(|| format!("cannot listen on {a} (gateway.http_listen)"))?,
        ),
        None => None,
    };
    Ok(GatewayListeners {
        tls,
        http,
        gate: Arc::new(Gate::new("gateway", settings.limits)),
        settings: settings.clone(),
    })
}

/// Serves the gateway until the process ends, each listener on every runtime (the current one
/// and `shards`), and keeps its certificates in step with their files.
pub fn start(
    proxy: &Arc<Proxy>,
    listeners: GatewayListeners,
    certs: Arc<Certificates>,
    shards: &[Handle],
) -> anyhow::Result<()> {
    let GatewayListeners {
        tls,
        http,
        gate,
        settings,
    } = listeners;
    let config = tls_config(certs.clone())?;
    let per_ip = per_ip::PerIp::new(settings.max_connections_per_ip);
    let rate = settings.rate_per_ip.map(rate::PerIpRate::new);
    tokio::spawn(certs.watch(settings.reload_interval, proxy.telemetry.clone()));
    if let Some(l) = http {
        let https_port = settings.listen.port();
        l.serve(shards, |l| {
            let (proxy, gate, per_ip) = (proxy.clone(), gate.clone(), per_ip.clone());
            redirect::serve(proxy, l, gate, per_ip, https_port)
        })
        .context("the gateway's plain-HTTP listener")?;
    }
    info!(listen = %settings.listen, "gateway serving");
    let shared = Arc::new(Shared {
        builder: builder(),
        acceptor: TlsAcceptor::from(config),
        rate,
    });
    tls.serve(shards, |l| {
        serve(
            proxy.clone(),
            l,
            gate.clone(),
            shared.clone(),
            per_ip.clone(),
        )
    })
    .context("the gateway's HTTPS listener")
}

/// rustls with the node's provider, the certificates by SNI, and ALPN h2 then http/1.1.
fn tls_config(certs: Arc<Certificates>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(murmur_transport::tls::provider())
        .with_safe_default_protocol_versions()
        .context("the gateway's TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTP server of client connections: HTTP/1.1 with upgrades, and HTTP/2.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    builder
}

/// What every connection of the HTTPS listener uses.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    acceptor: TlsAcceptor,
    rate: Option<rate::PerIpRate>,
}

async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    gate: Arc<Gate>,
    shared: Arc<Shared>,
    per_ip: Arc<per_ip::PerIp>,
) {
    loop {
        let (conn, ip_slot) = per_ip.accept_counted(&gate, &listener, &proxy).await;
        let _ = conn.stream.set_nodelay(true);
        let (proxy, shared, gate) = (proxy.clone(), shared.clone(), gate.clone());
        tokio::spawn(async move {
            serve_one(proxy, shared, gate, conn).await;
            drop(ip_slot);
        });
    }
}

/// One client connection: the handshake, then HTTP, under the gate's watch all along.
async fn serve_one(proxy: Arc<Proxy>, shared: Arc<Shared>, gate: Arc<Gate>, conn: Admitted) {
    let Admitted { stream, peer, slot } = conn;
    let activity = Activity::new();
    let io = Tracked::new(stream, activity.clone());
    let served = async {
        let count = |result: &str| proxy.telemetry.gateway_connections.get(&[result]).inc();
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.acceptor.accept(io)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                count("handshake_failed");
                debug!(%peer, error = %e, "gateway TLS handshake failed");
                return;
            }
            Err(_) => {
                count("handshake_timeout");
                return;
            }
        };
        count("tls");
        let svc = service_fn(|req| {
            let (proxy, shared) = (proxy.clone(), shared.clone());
            // Counted in flight, so the idle timeout never closes a connection mid-request.
            let in_flight = activity.request();
            async move {
                let resp = handle(&proxy, req, peer, shared.rate.as_ref()).await;
                drop(in_flight);
                Ok::<_, Infallible>(resp)
            }
        });
        let io = TokioIo::new(tls);
        if let Err(e) = shared.builder.serve_connection_with_upgrades(io, svc).await {
            debug!(%peer, error = %e, "gateway connection ended");
        }
    };
    gate.serve(&activity, served).await;
    drop(slot);
}

/// One request from outside: to the service of the first route naming its host that matches.
async fn handle(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    rate: Option<&rate::PerIpRate>,
) -> Response<ProxyBody> {
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let count = |result: &str| proxy.telemetry.gateway_requests.get(&[result]).inc();
    if req.method() == Method::CONNECT {
        count("bad_host");
        let why = "the gateway does not open tunnels: send requests to the host it serves";
        return LocalReply::new(405, "method-not-allowed", 12, why.into()).response(grpc);
    }
    if let Some(Err(wait)) = rate.map(|r| r.take(peer.ip(), crate::clock::now())) {
        count("rate_limited");
        let secs = wait.as_secs() + 1;
        let why = format!(
            "{} sends more requests than the gateway takes from one address",
            peer.ip()
        );
        return LocalReply::new(429, "rate-limited", 8, why)
            .with("retry-after", secs.to_string())
            .response(grpc);
    }
    let host = match host::host_of(req.uri(), req.headers()) {
        Ok(h) => h,
        Err(why) => {
            count("bad_host");
            return ProxyError::Route(RouteError::BadTarget(why)).response(grpc);
        }
    };
    let raw = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let path = match normalize::path_and_query(raw) {
        Ok(p) => p.into_owned(),
        Err(e) => return ProxyError::BadPath(e).response(grpc),
    };
    forwarded::add(req.headers_mut(), peer.ip(), &host);
    let compiled = proxy.traffic.compiled();
    let target = compiled.edge_target(
        &host,
        req.method().as_str(),
        normalize::strip_query(&path),
        req.headers(),
    );
    let service = match target {
        EdgeTarget::Service(s) => Name::parse("service", s).ok(),
        EdgeTarget::NoRoute | EdgeTarget::UnknownHost => None,
    };
    let Some(service) = service else {
        let error = if target == EdgeTarget::NoRoute {
            count("no_route");
            ProxyError::NoGatewayRoute {
                host: host.clone(),
                method: req.method().to_string(),
                path: host::shown(&path).to_owned(),
            }
        } else {
            count("unknown_host");
            ProxyError::UnknownHost(host::shown(&host).to_owned())
        };
        return error.response(grpc);
    };
    drop(compiled);
    count("routed");
    outbound::to_service(proxy, req, service, grpc, Some(&host)).await
}

//! The data path: the outbound HTTP listener and TCP upstream listeners the local app calls,
//! and the inbound side that takes streams from peers to the local instance.
//!
//! ```text
//! app ─HTTP─▶ outbound ─route─▶ balance ─dial─▶ QUIC stream (header, frames) ─▶ inbound ─▶ app
//! app ─TCP──▶ upstream ─route─▶ balance ─dial─▶ QUIC stream (header, ack, bytes) ─▶ inbound ─▶ app
//! ```
//!
//! One cached QUIC connection per peer (the transport's), one bidirectional stream per HTTP
//! request or TCP connection. [`plan`] decides (pure: route, backend, subset, faults, timeouts,
//! retry, circuit), [`crate::balance`] orders the candidates, [`exchange`] does it ([`dial`]
//! connects; retries and the fallback to the next instance while nothing was sent). Traffic
//! policy itself lives in [`crate::traffic`].

pub mod admission;
pub mod body;
pub mod dial;
pub mod errors;
pub mod exchange;
pub mod frame;
pub mod headers;
pub mod inbound;
pub mod local;
pub mod outbound;
pub mod plan;
pub mod replay;
pub mod route;
pub mod tcp;
pub mod timed;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use murmur_membership::ClusterView;
use murmur_transport::endpoint::{InboundStream, MeshEndpoint};
use murmur_transport::identity::Name;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::balance::Balancers;
use crate::config::typed::UpstreamConfig;
use crate::services::Services;
use crate::telemetry::traces::Tracing;
use crate::telemetry::traffic::Direction;
use crate::telemetry::{Outcome, Telemetry};
use crate::traffic::Traffic;

/// What the data path shares across requests.
#[derive(Debug)]
pub struct Proxy {
    /// This node's name.
    pub node: String,
    /// The QUIC endpoint (connection cache).
    pub endpoint: MeshEndpoint,
    /// The cluster view.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Balancer state of every called service.
    pub balancers: Arc<Balancers>,
    /// Local services (for inbound streams).
    pub services: Arc<Services>,
    /// Pooled clients to local apps.
    pub local: local::LocalClients,
    /// Request metrics and traffic summaries.
    pub telemetry: Arc<Telemetry>,
    /// Client and server spans.
    pub traces: Arc<Tracing>,
    /// Traffic policy: compiled documents and the state they keep.
    pub traffic: Arc<Traffic>,
}

/// Serves one inbound stream with `handle`, accounted in metrics as an inbound request of the
/// stream's service from its caller (HTTP and TCP alike).
pub async fn accounted<F>(
    proxy: &Proxy,
    stream: InboundStream,
    handle: impl FnOnce(InboundStream) -> F,
) where
    F: Future<Output = Outcome>,
{
    let caller = stream.peer.id.name.to_string();
    let guard = proxy
        .telemetry
        .start(Direction::Inbound, &stream.header.service);
    let outcome = handle(stream).await;
    guard.finish(&caller, outcome);
}

/// Listeners bound before the node starts, so a busy port is a startup error.
#[derive(Debug)]
pub struct Listeners {
    /// The outbound HTTP proxy.
    pub outbound: TcpListener,
    /// One per `[[upstream]]`.
    pub upstreams: Vec<(Name, TcpListener)>,
}

/// Binds the outbound and upstream listeners.
pub async fn bind(outbound: SocketAddr, upstreams: &[UpstreamConfig]) -> anyhow::Result<Listeners> {
    let out = TcpListener::bind(outbound)
        .await
        .with_context(|| format!("cannot listen on outbound proxy address {outbound}"))?;
    let mut ups = Vec::new();
    for u in upstreams {
        let l = TcpListener::bind(u.listen)
            .await
            .with_context(|| format!("cannot listen on {} for upstream {}", u.listen, u.service))?;
        ups.push((u.service.clone(), l));
    }
    Ok(Listeners {
        outbound: out,
        upstreams: ups,
    })
}

/// Starts serving the listeners.
pub fn start(proxy: &Arc<Proxy>, listeners: Listeners) {
    tokio::spawn(outbound::serve(proxy.clone(), listeners.outbound));
    for (service, listener) in listeners.upstreams {
        tokio::spawn(tcp::serve_upstream(proxy.clone(), service, listener));
    }
}

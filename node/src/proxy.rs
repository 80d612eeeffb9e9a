//! The data path: the outbound HTTP listener and TCP upstream listeners the local app calls,
//! and the inbound side that takes streams from peers to the local instance.
//!
//! ```text
//! app ─HTTP─▶ outbound ─plan─▶ exchange ─dial─▶ QUIC stream (header, frames) ─▶ inbound ─▶ app
//! app ─TCP──▶ upstream ─plan─▶ (targets) ─dial─▶ QUIC stream (header, ack, bytes) ─▶ inbound ─▶ app
//! ```
//!
//! One cached QUIC connection per peer (the transport's), one bidirectional stream per HTTP
//! request or TCP connection. [`plan`] decides, before any I/O and for HTTP and TCP alike: route,
//! backend, subset, the instances in the balancer's order with the identity each must prove,
//! faults, timeouts, retry, circuit. [`exchange`] (HTTP) and [`upstream`] (TCP) carry a plan
//! out; [`dial`] opens each stream and checks the identity. On the serving side [`inbound`]
//! finds the local instance and serves the stream. Traffic policy itself lives in
//! [`crate::traffic`]; [`runtime::Proxy`] holds the handles every request may use.

pub mod ack;
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
pub mod runtime;
pub mod timed;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use murmur_transport::identity::Name;
use tokio::net::TcpListener;

pub use runtime::Proxy;

use crate::listener::{Gate, ListenerSettings};

#[cfg(test)]
mod tests;

/// A local TCP listener for a remote service (`[[upstream]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Remote service.
    pub service: Name,
    /// Local address.
    pub listen: SocketAddr,
}

/// Listeners bound before the node starts, so a busy port is a startup error, each with the
/// gate that caps its connections and closes silent ones.
#[derive(Debug)]
pub struct Listeners {
    /// The outbound HTTP proxy.
    pub outbound: (TcpListener, Arc<Gate>),
    /// One per `[[upstream]]`.
    pub upstreams: Vec<(Name, TcpListener, Arc<Gate>)>,
}

impl Listeners {
    /// The gates, for metrics.
    pub fn gates(&self) -> Vec<Arc<Gate>> {
        std::iter::once(self.outbound.1.clone())
            .chain(self.upstreams.iter().map(|u| u.2.clone()))
            .collect()
    }
}

/// Binds the outbound and upstream listeners.
pub async fn bind(
    outbound: SocketAddr,
    upstreams: &[Upstream],
    limits: &ListenerSettings,
) -> anyhow::Result<Listeners> {
    let out = TcpListener::bind(outbound)
        .await
        .with_context(|| format!("cannot listen on outbound proxy address {outbound}"))?;
    let mut ups = Vec::new();
    for u in upstreams {
        let l = TcpListener::bind(u.listen)
            .await
            .with_context(|| format!("cannot listen on {} for upstream {}", u.listen, u.service))?;
        let gate = Gate::new(format!("upstream:{}", u.service), limits.upstream);
        ups.push((u.service.clone(), l, Arc::new(gate)));
    }
    Ok(Listeners {
        outbound: (out, Arc::new(Gate::new("outbound", limits.outbound))),
        upstreams: ups,
    })
}

/// Starts serving the listeners.
pub fn start(proxy: &Arc<Proxy>, listeners: Listeners) {
    let (out, gate) = listeners.outbound;
    tokio::spawn(outbound::serve(proxy.clone(), out, gate));
    for (service, listener, gate) in listeners.upstreams {
        tokio::spawn(upstream::serve(proxy.clone(), service, listener, gate));
    }
}

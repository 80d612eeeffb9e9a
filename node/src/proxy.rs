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
//! backend, subset, the instances in order (balancer or hash ring, the caller's zone first) with
//! the identity each must prove, faults, timeouts, retry, circuit, redirect, mirror.
//! [`exchange`] (HTTP, with [`edits`] and [`mirror`]) and [`upstream`] (TCP) carry a plan out;
//! [`dial`] opens each stream and checks the identity; [`record`] accounts for each outbound
//! HTTP request (metrics, access log). On the serving side [`inbound`]
//! finds the local instance and serves the stream. Traffic policy itself lives in
//! [`crate::traffic`]; [`runtime::Proxy`] holds the handles every request may use.

pub mod ack;
pub mod admission;
pub mod body;
pub mod dial;
pub mod edits;
pub mod errors;
pub mod exchange;
pub mod frame;
pub mod headers;
pub mod inbound;
pub mod local;
pub mod mirror;
pub mod outbound;
pub mod plan;
pub mod record;
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

/// Listeners bound before the node starts, so a busy port is a startup error.
#[derive(Debug)]
pub struct Listeners {
    /// The outbound HTTP proxy.
    pub outbound: TcpListener,
    /// One per `[[upstream]]`.
    pub upstreams: Vec<(Name, TcpListener)>,
}

/// Binds the outbound and upstream listeners.
pub async fn bind(outbound: SocketAddr, upstreams: &[Upstream]) -> anyhow::Result<Listeners> {
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
        tokio::spawn(upstream::serve(proxy.clone(), service, listener));
    }
}

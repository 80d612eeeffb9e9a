//! The data path: the outbound HTTP listener and TCP upstream listeners the local app calls,
//! and the inbound side that takes streams from peers to the local instance.
//!
//! ```text
//! app ─HTTP─▶ outbound ─plan─▶ exchange ─dial─▶ QUIC stream (header, frames) ─▶ inbound ─▶ app
//! app ─TCP──▶ upstream ─plan─▶ (targets) ─dial─▶ QUIC stream (header, ack, bytes) ─▶ inbound ─▶ app
//! ```
//!
//! Apps that are not changed reach the same two paths: a connection captured on its way to a
//! service's virtual IP ([`captured`]) is served as HTTP by [`outbound`] or carried as TCP by
//! [`upstream`], by the service's protocol; a `CONNECT` ([`connect`]) likewise. An upgraded
//! request (WebSocket) and a CONNECT tunnel are one QUIC stream each, like a TCP connection,
//! decided and admitted as the request that opens them; [`tunnel`] copies their bytes.
//! Requests for hosts outside the mesh go straight there ([`external`]) or are refused, as
//! [`External`] says. Clients outside the mesh come in through the [`gateway`] (HTTPS), whose
//! requests go the outbound way from there.
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
pub mod captured;
pub mod connect;
pub mod dial;
pub mod edits;
pub mod errors;
pub mod exchange;
pub mod external;
pub mod frame;
pub mod gateway;
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
pub mod spread;
pub mod timed;
pub mod tunnel;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use murmur_transport::identity::Name;
use tokio::runtime::Handle;

pub use runtime::{External, Proxy};
pub use spread::Spread;

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
    /// The outbound HTTP proxy, once per runtime.
    pub outbound: (Spread, Arc<Gate>),
    /// One per `[[upstream]]`, each once per runtime.
    pub upstreams: Vec<(Name, Spread, Arc<Gate>)>,
    /// Where captured connections arrive (IPv4 and, with IPv6 virtual IPs, IPv6 loopback),
    /// each once per runtime, under one gate.
    pub captured: Vec<Spread>,
    /// The gate of the captured connections.
    pub captured_gate: Arc<Gate>,
}

impl Listeners {
    /// The gates, for metrics.
    pub fn gates(&self) -> Vec<Arc<Gate>> {
        let mut gates = vec![self.outbound.1.clone()];
        gates.extend(self.upstreams.iter().map(|u| u.2.clone()));
        if !self.captured.is_empty() {
            gates.push(self.captured_gate.clone());
        }
        gates
    }
}

/// Binds the listeners for captured connections, once per runtime: `port` on 127.0.0.1, and
/// on ::1 with `v6`.
pub async fn bind_captured(port: u16, v6: bool, shards: usize) -> anyhow::Result<Vec<Spread>> {
    let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
    if v6 {
        addrs.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    }
    let mut out = Vec::new();
    for a in addrs {
        let l = Spread::bind(a, shards).await.with_context(|| {
            format!("cannot listen on {a} for captured connections (capture.port)")
        })?;
        out.push(l);
    }
    Ok(out)
}

/// Binds the outbound and upstream listeners, each once per runtime.
pub async fn bind(
    outbound: SocketAddr,
    upstreams: &[Upstream],
    limits: &ListenerSettings,
    shards: usize,
) -> anyhow::Result<Listeners> {
    let out = Spread::bind(outbound, shards)
        .await
        .with_context(|| format!("cannot listen on outbound proxy address {outbound}"))?;
    let mut ups = Vec::new();
    for u in upstreams {
        let l = Spread::bind(u.listen, shards)
            .await
            .with_context(|| format!("cannot listen on {} for upstream {}", u.listen, u.service))?;
        let gate = Gate::new(format!("upstream:{}", u.service), limits.upstream);
        ups.push((u.service.clone(), l, Arc::new(gate)));
    }
    Ok(Listeners {
        outbound: (out, Arc::new(Gate::new("outbound", limits.outbound))),
        upstreams: ups,
        captured: Vec::new(),
        captured_gate: Arc::new(Gate::new("captured", limits.captured)),
    })
}

/// Starts serving the listeners, each on every runtime: the current one and `shards`.
pub fn start(proxy: &Arc<Proxy>, listeners: Listeners, shards: &[Handle]) -> anyhow::Result<()> {
    let (out, gate) = listeners.outbound;
    out.serve(shards, |l| outbound::serve(proxy.clone(), l, gate.clone()))
        .context("outbound listener")?;
    for (service, listener, gate) in listeners.upstreams {
        listener
            .serve(shards, |l| {
                upstream::serve(proxy.clone(), service.clone(), l, gate.clone())
            })
            .with_context(|| format!("upstream listener for {service}"))?;
    }
    let gate = listeners.captured_gate;
    for listener in listeners.captured {
        listener
            .serve(shards, |l| captured::serve(proxy.clone(), l, gate.clone()))
            .context("captured connections' listener")?;
    }
    Ok(())
}

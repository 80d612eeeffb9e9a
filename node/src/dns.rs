//! The node's DNS server (UDP and TCP on one address): `<service>.<suffix>` — and a bare
//! `<service>` when asked — answered with the service's virtual IPs ([`crate::vip`]), every
//! other name forwarded to the resolvers the host had ([`upstreams`]). Built on hickory-dns:
//! [`handler::MeshDns`] answers the mesh's names itself and hands the rest to a hickory
//! forwarder.

pub mod handler;
pub mod upstreams;

pub use upstreams::UpstreamSource;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::info;

use crate::names::MeshNames;
use crate::telemetry::Telemetry;
use crate::vip::VipMap;

/// An idle TCP client is dropped after this long.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Responses buffered per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 64;

/// `[dns]`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// UDP and TCP address to answer on.
    pub listen: SocketAddr,
    /// Where other names go.
    pub upstreams: UpstreamSource,
}

/// The bound sockets, so a busy address fails the start.
#[derive(Debug)]
pub struct DnsListeners {
    udp: UdpSocket,
    tcp: TcpListener,
}

/// Binds UDP and TCP on `listen`.
pub async fn bind(listen: SocketAddr) -> anyhow::Result<DnsListeners> {
    let hint = if listen.port() < 1024 {
        " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
    } else {
        ""
    };
    let udp = UdpSocket::bind(listen)
        .await
        .with_context(|| format!("cannot listen for DNS on udp {listen}{hint}"))?;
    let tcp = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for DNS on tcp {listen}{hint}"))?;
    Ok(DnsListeners { udp, tcp })
}

/// Serves DNS on `listeners` until the process ends: mesh names from `vips`, others forwarded
/// to `upstreams` (none: refused).
pub fn start(
    listeners: DnsListeners,
    names: MeshNames,
    upstreams: &[SocketAddr],
    vips: watch::Receiver<Arc<VipMap>>,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<()> {
    let addr = listeners.udp.local_addr().ok();
    let forward = handler::forwarder(upstreams)?;
    let suffix = names.suffix().to_owned();
    let mut server = Server::new(handler::MeshDns::new(names, vips, forward, telemetry));
    server.register_socket(listeners.udp);
    server.register_listener(listeners.tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
    info!(?addr, %suffix, ?upstreams, "answering DNS");
    tokio::spawn(async move {
        if let Err(e) = server.block_until_done().await {
            tracing::error!(error = %e, "the DNS server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests;

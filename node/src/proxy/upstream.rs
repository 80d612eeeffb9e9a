//! Outbound TCP: a local listener per `[[upstream]]`, and for each accepted connection a plan
//! ([`super::plan::decide`]) carried out — one QUIC stream to the first target that
//! acknowledges ([`super::ack`]), then bytes both ways. Each direction's end travels on its own
//! (TCP `shutdown(Write)` ⇄ QUIC `finish()`), so half-closed protocols work.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::ack::{self, AckError};
use super::dial::{self, DialError};
use super::plan::{self, Subject};
use super::route::RouteError;
use super::runtime::Proxy;
use crate::api::traffic::Direction;
use crate::listener::{Activity, Admitted, Gate, Tracked};
use crate::telemetry::Outcome;

/// Time for the serving node to connect to its app and say so.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a local TCP connection was not carried.
#[derive(Debug)]
pub enum TcpError {
    /// No instance could be planned.
    Route(RouteError),
    /// Every planned instance failed; what each said.
    NoInstance {
        /// The service.
        service: String,
        /// One entry per instance tried.
        failures: Vec<(String, Failed)>,
    },
}

/// How one instance failed a TCP connection.
#[derive(Debug)]
pub enum Failed {
    /// The stream could not be opened.
    Dial(DialError),
    /// The serving node refused or failed before acknowledging.
    Ack(AckError),
    /// No acknowledgement within [`ACK_TIMEOUT`].
    NoAck,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dial(e) => e.fmt(f),
            Self::Ack(e) => e.fmt(f),
            Self::NoAck => write!(f, "no answer in {ACK_TIMEOUT:?}"),
        }
    }
}

impl fmt::Display for TcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Route(e) => e.fmt(f),
            Self::NoInstance { service, failures } => {
                write!(f, "no reachable instance of service {service:?}: ")?;
                for (i, (node, why)) in failures.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{node}: {why}")?;
                }
                Ok(())
            }
        }
    }
}

/// Accepts local connections for `service` until the process ends, under `gate`'s cap and
/// idle timeout.
pub async fn serve(proxy: Arc<Proxy>, service: Name, listener: TcpListener, gate: Arc<Gate>) {
    loop {
        let conn = gate.accept(&listener).await;
        let _ = conn.stream.set_nodelay(true);
        let (proxy, service, gate) = (proxy.clone(), service.clone(), gate.clone());
        tokio::spawn(async move {
            let Admitted { stream, peer, slot } = conn;
            let guard = proxy.telemetry.start(Direction::Outbound, service.as_str());
            let activity = Activity::new();
            let client = Tracked::new(stream, activity.clone());
            match gate
                .serve(&activity, forward(&proxy, &service, client))
                .await
            {
                Some(Ok(node)) => {
                    guard.finish(&node, Outcome::Closed);
                }
                Some(Err(e)) => {
                    warn!(%service, %peer, error = %e, "TCP connection not proxied");
                    guard.finish("-", Outcome::Error);
                }
                None => {
                    guard.finish("-", Outcome::Closed);
                }
            }
            // Only now is its place under the cap free.
            drop(slot);
        });
    }
}

/// Carries one local connection to an instance of `service`; returns the node that served it.
pub async fn forward<C>(proxy: &Proxy, service: &Name, mut client: C) -> Result<String, TcpError>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let view = proxy.view.borrow().clone();
    let compiled = proxy.traffic.compiled();
    let plan = plan::decide(
        &compiled,
        &view,
        service.as_str(),
        Subject::Tcp,
        || proxy.traffic.random(),
        proxy.order(),
    )
    .map_err(TcpError::Route)?;
    let header = StreamHeader::new(plan.target);
    let mut failures = Vec::new();
    for target in &plan.targets {
        let node = &target.endpoint.node;
        if !failures.is_empty() {
            proxy.telemetry.retries.get(&[service.as_str()]).inc();
        }
        let mut inflight = proxy.balancers.start(plan.target, node);
        let (send, mut recv) = match dial::open(
            &proxy.endpoint,
            target,
            &header,
            StreamKind::Tcp,
            &[],
            false,
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                if e.is_impostor() {
                    info!(%service, %node, error = %e, "instance is not who the view says");
                }
                proxy.note(
                    plan.target,
                    node,
                    inflight.finish(false, false, plan.outlier()),
                );
                failures.push((node.clone(), Failed::Dial(e)));
                continue;
            }
        };
        inflight.sent();
        let failed = match tokio::time::timeout(ACK_TIMEOUT, ack::read(&mut recv)).await {
            Ok(Ok(())) => {
                proxy.note(
                    plan.target,
                    node,
                    inflight.finish(true, true, plan.outlier()),
                );
                let mut quic = tokio::io::join(recv, send);
                match tokio::io::copy_bidirectional(&mut client, &mut quic).await {
                    Ok((up, down)) => debug!(%service, %node, up, down, "TCP connection done"),
                    Err(e) => debug!(%service, %node, error = %e, "TCP connection broke"),
                }
                return Ok(node.clone());
            }
            Ok(Err(e)) => Failed::Ack(e),
            Err(_) => Failed::NoAck,
        };
        failures.push((node.clone(), failed));
        proxy.note(
            plan.target,
            node,
            inflight.finish(false, false, plan.outlier()),
        );
    }
    let _ = client.shutdown().await;
    Err(TcpError::NoInstance {
        service: service.to_string(),
        failures,
    })
}

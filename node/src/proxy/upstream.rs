//! Outbound TCP: a local listener per `[[upstream]]`, and for each accepted connection (or a
//! captured one, or a CONNECT tunnel to a TCP service) a plan ([`super::plan::decide`]) carried
//! out — one QUIC stream to the first target that acknowledges ([`super::ack`]), then bytes
//! both ways ([`super::tunnel`]), under a client span whose context travels in the stream
//! header.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::ack::{self, AckError};
use super::dial::{self, DialError};
use super::plan::{self, Subject};
use super::route::RouteError;
use super::runtime::Proxy;
use super::tunnel::Tunnel;
use crate::api::traffic::Direction;
use crate::listener::{Activity, Admitted, Gate, Tracked};
use crate::telemetry::Outcome;
use crate::telemetry::traces::ProxySpan;

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

impl TcpError {
    /// The same failure as a routing error, for an HTTP answer (to a CONNECT).
    pub fn into_route(self) -> RouteError {
        match self {
            Self::Route(e) => e,
            Self::NoInstance { service, failures } => RouteError::NoInstance {
                service,
                detail: failures
                    .iter()
                    .map(|(node, why)| format!("{node}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
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
        tokio::spawn(serve_admitted(
            proxy.clone(),
            service.clone(),
            gate.clone(),
            conn,
        ));
    }
}

/// Carries one connection `gate` admitted until it ends or falls silent; only then is its
/// place under the cap free.
pub async fn serve_admitted(proxy: Arc<Proxy>, service: Name, gate: Arc<Gate>, conn: Admitted) {
    let Admitted { stream, peer, slot } = conn;
    let activity = Activity::new();
    let client = Tracked::new(stream, activity.clone());
    serve_one(proxy, service, client, peer, Some((&gate, &activity))).await;
    drop(slot);
}

/// Carries one local connection for `service`, accounted and traced as an outbound TCP
/// connection; with `watch`, closed when its gate finds it silent.
pub async fn serve_one<C>(
    proxy: Arc<Proxy>,
    service: Name,
    mut client: C,
    peer: SocketAddr,
    watch: Option<(&Gate, &Activity)>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let guard = proxy.telemetry.start(Direction::Outbound, service.as_str());
    let carried = carry(&proxy, &service, &mut client);
    let result = match watch {
        Some((gate, activity)) => gate.serve(activity, carried).await,
        None => Some(carried.await),
    };
    match result {
        Some(Ok(node)) => {
            guard.finish(&node, Outcome::Closed);
        }
        Some(Err(e)) => {
            warn!(%service, %peer, error = %e, "TCP connection not proxied");
            guard.finish("-", Outcome::Error);
        }
        // Closed for silence (the gate counted it).
        None => {
            guard.finish("-", Outcome::Closed);
        }
    }
}

/// Carries one local connection to an instance of `service`, under a client span; returns the
/// node that served it.
pub async fn carry<C>(proxy: &Proxy, service: &Name, client: &mut C) -> Result<String, TcpError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let span = client_span(proxy, service.as_str());
    let (node, tunnel) = match connect(proxy, service, span.traceparent()).await {
        Ok(c) => c,
        Err(e) => {
            let _ = client.shutdown().await;
            span.end_connection(false);
            return Err(e);
        }
    };
    span.set(KeyValue::new("murmur.peer", node.clone()));
    let ok = match tunnel.splice(client).await {
        Ok((up, down)) => {
            debug!(%service, %node, up, down, "TCP connection done");
            true
        }
        Err(e) => {
            debug!(%service, %node, error = %e, "TCP connection broke");
            false
        }
    };
    span.end_connection(ok);
    Ok(node)
}

/// The client span of a TCP connection (or tunnel) to `service`.
pub fn client_span(proxy: &Proxy, service: &str) -> ProxySpan {
    proxy.traces.span(SpanKind::Client, None, || {
        let attrs = vec![
            KeyValue::new("murmur.service", service.to_owned()),
            KeyValue::new("murmur.node", proxy.node.clone()),
            KeyValue::new("network.transport", "tcp"),
        ];
        (format!("TCP {service}"), attrs)
    })
}

/// Decides where a connection to `service` goes ([`plan::decide`], a TCP subject) and opens a
/// stream to the first target that acknowledges; returns its node and the stream.
pub async fn connect(
    proxy: &Proxy,
    service: &Name,
    traceparent: Option<String>,
) -> Result<(String, Tunnel), TcpError> {
    let view = proxy.view.borrow().clone();
    let compiled = proxy.traffic.compiled();
    let plan = plan::decide(
        &compiled,
        &view,
        service.as_str(),
        Subject::Tcp,
        proxy.caller(service.as_str()),
        || proxy.traffic.random(),
        proxy.order(crate::clock::now()),
    )
    .map_err(TcpError::Route)?;
    let mut header = StreamHeader::new(plan.target);
    header.traceparent = traceparent;
    let mut failures = Vec::new();
    for target in &plan.targets {
        let node = target.endpoint.node.as_str();
        if !failures.is_empty() {
            proxy.telemetry.retries.get(&[service.as_str()]).inc();
        }
        if let Some(zone) = target.cross_zone {
            proxy.telemetry.cross_zone.get(&[plan.target, zone]).inc();
        }
        let mut inflight = proxy
            .balancers
            .start(plan.target, node, crate::clock::now());
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
                failures.push((node.to_owned(), Failed::Dial(e)));
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
                return Ok((node.to_owned(), Tunnel::new(send, recv)));
            }
            Ok(Err(e)) => Failed::Ack(e),
            Err(_) => Failed::NoAck,
        };
        failures.push((node.to_owned(), failed));
        proxy.note(
            plan.target,
            node,
            inflight.finish(false, false, plan.outlier()),
        );
    }
    Err(TcpError::NoInstance {
        service: service.to_string(),
        failures,
    })
}

//! TCP across the mesh: a local listener per `[[upstream]]`, one QUIC stream per accepted
//! connection, and on the serving node a TCP connection to the local instance per stream.
//!
//! After the stream header the serving node answers one byte: [`ACK_OK`] once it is connected
//! to its app, or [`ACK_REFUSED`] plus a length-prefixed reason. The caller copies no byte
//! before the acknowledgement, so a refused or unreachable instance costs the app nothing: the
//! connection moves to the next instance. Then bytes flow both ways, and each direction's end
//! travels on its own (TCP `shutdown(Write)` ⇄ QUIC `finish()`), so half-closed protocols work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use murmur_transport::endpoint::InboundStream;
use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::{Proxy, admission, dial, route};
use crate::balance::Offer;
use crate::telemetry::Outcome;
use crate::telemetry::traffic::Direction;

/// The serving node is connected to its app.
pub const ACK_OK: u8 = 0;
/// The serving node could not connect; a reason follows.
pub const ACK_REFUSED: u8 = 1;
/// Longest refusal reason read.
const MAX_REASON: usize = 1024;
/// Time for the serving node to connect to its app and say so.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts local connections for `service` until the process ends.
pub async fn serve_upstream(proxy: Arc<Proxy>, service: Name, listener: TcpListener) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "upstream accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let (proxy, service) = (proxy.clone(), service.clone());
        tokio::spawn(async move {
            let guard = proxy.telemetry.start(Direction::Outbound, service.as_str());
            match forward(&proxy, &service, client).await {
                Ok(node) => {
                    guard.finish(&node, Outcome::Closed);
                }
                Err(e) => {
                    warn!(%service, %peer, error = %e, "TCP connection not proxied");
                    guard.finish("-", Outcome::Error);
                }
            }
        });
    }
}

/// Carries one local connection to an instance of `service`; returns the node that served it.
async fn forward(proxy: &Proxy, service: &Name, mut client: TcpStream) -> Result<String, String> {
    let view = proxy.view.borrow().clone();
    let (balancer, eps) = route::candidates(&view, service.as_str()).map_err(|e| e.to_string())?;
    let compiled = proxy.traffic.compiled();
    let outlier = compiled
        .service(service.as_str())
        .and_then(|p| p.circuit.as_ref())
        .map(|c| &c.outlier);
    let offers: Vec<Offer<'_>> = eps
        .iter()
        .map(|e| Offer {
            node: &e.node,
            weight: e.weight,
        })
        .collect();
    let order = proxy
        .balancers
        .order(service.as_str(), balancer, &offers, Instant::now(), outlier);
    let header = StreamHeader::new(service.as_str());
    let mut failures = Vec::new();
    for i in order {
        let ep = eps[i];
        if !failures.is_empty() {
            proxy.telemetry.retries.get(&[service.as_str()]).inc();
        }
        let mut inflight = proxy.balancers.start(service.as_str(), &ep.node);
        let (send, mut recv) =
            match dial::open(proxy, ep, &header, StreamKind::Tcp, &[], false).await {
                Ok(s) => s,
                Err(why) => {
                    inflight.finish(false, false, outlier);
                    failures.push(format!("{}: {why}", ep.node));
                    continue;
                }
            };
        inflight.sent();
        match tokio::time::timeout(ACK_TIMEOUT, read_ack(&mut recv)).await {
            Ok(Ok(())) => {
                inflight.finish(true, true, outlier);
                let mut quic = tokio::io::join(recv, send);
                match tokio::io::copy_bidirectional(&mut client, &mut quic).await {
                    Ok((up, down)) => {
                        debug!(%service, node = %ep.node, up, down, "TCP connection done")
                    }
                    Err(e) => debug!(%service, node = %ep.node, error = %e, "TCP connection broke"),
                }
                return Ok(ep.node.clone());
            }
            Ok(Err(why)) => failures.push(format!("{}: {why}", ep.node)),
            Err(_) => failures.push(format!("{}: no answer in {ACK_TIMEOUT:?}", ep.node)),
        }
        inflight.finish(false, false, outlier);
    }
    let _ = client.shutdown().await;
    Err(format!(
        "no reachable instance of service {service:?}: {}",
        failures.join("; ")
    ))
}

async fn read_ack(recv: &mut RecvStream) -> Result<(), String> {
    match recv.read_u8().await.map_err(|e| e.to_string())? {
        ACK_OK => Ok(()),
        ACK_REFUSED => {
            let len = usize::from(recv.read_u16().await.map_err(|e| e.to_string())?);
            let mut reason = vec![0; len.min(MAX_REASON)];
            recv.read_exact(&mut reason)
                .await
                .map_err(|e| e.to_string())?;
            Err(String::from_utf8_lossy(&reason).into_owned())
        }
        other => Err(format!("unknown acknowledgement {other}")),
    }
}

/// Serves one inbound TCP stream: connect to the local instance, acknowledge, copy.
pub async fn serve_inbound(proxy: Arc<Proxy>, stream: InboundStream) {
    super::accounted(&proxy, stream, |s| serve_stream(&proxy, s)).await;
}

async fn serve_stream(proxy: &Proxy, stream: InboundStream) -> Outcome {
    let InboundStream {
        peer,
        header,
        mut send,
        recv,
        ..
    } = stream;
    let service = header.service;
    let Some(local) = proxy.services.get(&service) else {
        refuse(
            &mut send,
            &format!("node {} does not serve {service}", proxy.node),
        )
        .await;
        return Outcome::Error;
    };
    // Authorization and rate limits apply per connection; a TCP connection has no path or
    // method, so only rules on callers alone match it.
    if let Err(r) = admission::check(proxy, &service, &peer, None) {
        refuse(&mut send, &format!("{} ({})", r.message, r.status)).await;
        return Outcome::Error;
    }
    let app = match tokio::time::timeout(ACK_TIMEOUT, TcpStream::connect(local.address)).await {
        Ok(Ok(app)) => app,
        Ok(Err(e)) => {
            let reason = format!(
                "the {service} instance on node {} ({}) is not reachable: {e}",
                proxy.node, local.address
            );
            refuse(&mut send, &reason).await;
            return Outcome::Error;
        }
        Err(_) => {
            refuse(
                &mut send,
                &format!("the {service} instance did not accept in time"),
            )
            .await;
            return Outcome::Error;
        }
    };
    let _ = app.set_nodelay(true);
    if send.write_all(&[ACK_OK]).await.is_err() {
        return Outcome::Error;
    }
    let mut app = app;
    let mut quic = tokio::io::join(recv, send);
    match tokio::io::copy_bidirectional(&mut quic, &mut app).await {
        Ok((down, up)) => {
            debug!(%service, down, up, "inbound TCP connection done");
            Outcome::Closed
        }
        Err(e) => {
            debug!(%service, error = %e, "inbound TCP connection broke");
            Outcome::Error
        }
    }
}

async fn refuse(send: &mut SendStream, reason: &str) {
    info!(%reason, "inbound TCP connection refused");
    let bytes = reason.as_bytes();
    let bytes = &bytes[..bytes.len().min(MAX_REASON)];
    let mut msg = vec![ACK_REFUSED];
    msg.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
    msg.extend_from_slice(bytes);
    let _ = send.write_all(&msg).await;
    let _ = send.finish();
}

//! Inbound TCP streams: for each, a TCP connection to the local instance, the acknowledgement
//! ([`crate::proxy::ack`]), then bytes both ways, under a server span (child of the caller's).

use std::sync::Arc;

use murmur_transport::endpoint::InboundStream;
use murmur_transport::identity::PeerIdentity;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use quinn::{RecvStream, SendStream};
use tokio::net::TcpStream;
use tracing::debug;

use crate::proxy::ack::{self, ACK_OK};
use crate::proxy::admission;
use crate::proxy::runtime::Proxy;
use crate::proxy::tunnel::Tunnel;
use crate::proxy::upstream::ACK_TIMEOUT;
use crate::services::LocalService;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::TraceParent;

/// Serves one inbound TCP stream for `local`: connect to the instance, acknowledge, copy.
pub async fn serve(proxy: &Proxy, local: Arc<LocalService>, stream: InboundStream) -> Outcome {
    let InboundStream {
        peer,
        header,
        send,
        recv,
        ..
    } = stream;
    let service = header.service;
    let parent = header.traceparent.as_deref().and_then(TraceParent::parse);
    let span = proxy.traces.span(SpanKind::Server, parent, || {
        let attrs = vec![
            KeyValue::new("murmur.service", service.clone()),
            KeyValue::new("murmur.node", proxy.node.clone()),
            KeyValue::new("murmur.caller", peer.id.name.to_string()),
            KeyValue::new("network.transport", "tcp"),
        ];
        (format!("TCP {service}"), attrs)
    });
    let outcome = connect_and_copy(proxy, &service, &local, &peer, send, recv).await;
    span.end_connection(outcome == Outcome::Closed);
    outcome
}

async fn connect_and_copy(
    proxy: &Proxy,
    service: &str,
    local: &LocalService,
    peer: &PeerIdentity,
    mut send: SendStream,
    recv: RecvStream,
) -> Outcome {
    // Authorization and rate limits apply per connection; a TCP connection has no path or
    // method, so only rules on callers alone match it.
    let policy = proxy.traffic.service(service);
    if let Err(r) = admission::check(proxy, policy.as_deref(), service, peer, None) {
        ack::refuse(&mut send, &format!("{} ({})", r.message, r.status)).await;
        return Outcome::Error;
    }
    let app = match tokio::time::timeout(ACK_TIMEOUT, TcpStream::connect(local.address)).await {
        Ok(Ok(app)) => app,
        Ok(Err(e)) => {
            let reason = format!(
                "the {service} instance on node {} ({}) is not reachable: {e}",
                proxy.node, local.address
            );
            ack::refuse(&mut send, &reason).await;
            return Outcome::Error;
        }
        Err(_) => {
            let reason = format!("the {service} instance did not accept in time");
            ack::refuse(&mut send, &reason).await;
            return Outcome::Error;
        }
    };
    let _ = app.set_nodelay(true);
    if send.write_all(&[ACK_OK]).await.is_err() {
        return Outcome::Error;
    }
    let mut app = app;
    match Tunnel::new(send, recv).splice(&mut app).await {
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

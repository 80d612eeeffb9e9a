//! Streams from peers for the local services: one preamble for HTTP and TCP alike — account
//! the stream, find the local instance of its service (or refuse, so the caller moves on to
//! another instance) — then [`http`] or [`tcp`] serves it.

pub mod http;
pub mod logline;
pub mod reply;
pub mod tcp;
pub mod upgrade;

use std::sync::Arc;

use murmur_membership::records::Protocol;
use murmur_transport::endpoint::{InboundStream, StreamWork};
use murmur_transport::wire::StreamKind;

use super::ack;
use super::runtime::Proxy;
use crate::api::traffic::Direction;
use crate::services::LocalService;
use crate::telemetry::Outcome;

/// Serves one HTTP or TCP stream from a peer, accounted in metrics as an inbound request of the
/// stream's service from its caller.
///
/// The work is decided here and each kind boxed on its own: one future for all three would be
/// the size of the largest, and an `async fn` around them would hold the stream twice more.
pub fn serve(proxy: Arc<Proxy>, stream: InboundStream) -> StreamWork {
    // The caller's identity is shared with the stream: the account names it without a copy.
    let caller = stream.peer.clone();
    let label = proxy.inbound_label(&stream.header.service);
    let guard = proxy.telemetry.start(Direction::Inbound, label);
    match local_instance(&proxy, stream.kind, &stream.header.service) {
        Ok(local) if stream.kind == StreamKind::Tcp => Box::pin(async move {
            let outcome = tcp::serve(&proxy, local, stream).await;
            guard.finish(caller.id.name.as_str(), outcome);
        }),
        Ok(local) => Box::pin(async move {
            let outcome = http::serve(&proxy, local, stream).await;
            guard.finish(caller.id.name.as_str(), outcome);
        }),
        Err(reason) => Box::pin(async move {
            let mut send = stream.send;
            match stream.kind {
                StreamKind::Tcp => ack::refuse(&mut send, &reason).await,
                _ => reply::refuse(&mut send, &reason).await,
            }
            guard.finish(caller.id.name.as_str(), Outcome::Error);
        }),
    }
}

/// The local instance a `kind` stream for `service` goes to, or why there is none.
fn local_instance(
    proxy: &Proxy,
    kind: StreamKind,
    service: &str,
) -> Result<Arc<LocalService>, String> {
    let Some(local) = proxy.services.get(service) else {
        return Err(format!("node {} does not serve {service}", proxy.node));
    };
    // A caller checked the certificate it saw at the handshake; this node's may have been
    // rotated since and no longer name the service.
    if !proxy.endpoint.tls().certifies_service(service) {
        return Err(format!(
            "the certificate of node {} no longer names {service}",
            proxy.node
        ));
    }
    if kind == StreamKind::Http && local.protocol == Protocol::Tcp {
        return Err(format!("{service} is a TCP service"));
    }
    Ok(local)
}

//! `CONNECT host:port` on the outbound proxy — what gRPC clients (`http_proxy`), `curl -p` and
//! WebSocket clients behind a proxy send.
//!
//! For a mesh service (`<service>[.mesh]:<port>`, or its virtual IP) the tunnel goes to the
//! service as its protocol says: an `http`/`grpc` service has the tunnel's requests served as
//! HTTP with all traffic policy (each one decided and carried like any other), a `tcp` service
//! gets the tunnel as one TCP stream (decided with a TCP subject; the `200` is sent only once
//! an instance acknowledged). A host outside the mesh follows `[outbound] external`.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use murmur_membership::records::Protocol;
use murmur_transport::identity::Name;
use opentelemetry::KeyValue;
use tracing::debug;

use super::body::ProxyBody;
use super::errors::ProxyError;
use super::route::{self, Destination, RouteError};
use super::runtime::Proxy;
use super::{external, upstream};
use crate::api::traffic::Direction;
use crate::telemetry::Outcome;

/// A tunnel the outbound proxy serves as HTTP: to this service, once the app's side is
/// upgraded.
pub type HttpTunnel = (Name, OnUpgrade);

/// Answers a CONNECT request and, once it is accepted, serves the tunnel — or, for an HTTP
/// service, returns it for the outbound proxy to serve.
pub async fn handle(
    proxy: &Arc<Proxy>,
    mut req: Request<Incoming>,
) -> (Response<ProxyBody>, Option<HttpTunnel>) {
    let destination = match req.uri().authority() {
        Some(_) => {
            route::destination_of(req.uri(), req.headers(), &proxy.names, &proxy.vips.borrow())
        }
        None => Err(RouteError::BadTarget(
            "CONNECT needs a host:port target".into(),
        )),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let result = match destination {
        Ok(Destination::Service(service)) => to_service(proxy, service, on_upgrade).await,
        Ok(Destination::External { host, port }) => {
            external::connect(proxy, &host, port, on_upgrade)
                .await
                .map(|()| None)
        }
        Err(e) => Err(ProxyError::Route(e)),
    };
    match result {
        Ok(http) => (established(), http),
        Err(e) => {
            debug!(target = %req.uri(), error = %e, "CONNECT refused");
            (e.response(false), None)
        }
    }
}

/// The `200` that opens a tunnel.
pub fn established() -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::Local(None));
    *resp.status_mut() = StatusCode::OK;
    resp
}

/// A tunnel to a mesh service, by its protocol: a TCP service's is served here, an HTTP one's
/// returned.
async fn to_service(
    proxy: &Arc<Proxy>,
    service: Name,
    on_upgrade: OnUpgrade,
) -> Result<Option<HttpTunnel>, ProxyError> {
    let protocol = route::protocol_of(&proxy.view.borrow(), service.as_str())?;
    match protocol {
        Protocol::Tcp => tcp(proxy, service, on_upgrade).await.map(|()| None),
        Protocol::Http | Protocol::Grpc => Ok(Some((service, on_upgrade))),
    }
}

/// A tunnel to a TCP service: one stream to the first instance that acknowledges, opened
/// before the `200`.
async fn tcp(proxy: &Arc<Proxy>, service: Name, on_upgrade: OnUpgrade) -> Result<(), ProxyError> {
    let guard = proxy.telemetry.start(Direction::Outbound, service.as_str());
    let span = upstream::client_span(proxy, service.as_str());
    let (node, tunnel) = match upstream::connect(proxy, &service, span.traceparent()).await {
        Ok(c) => c,
        Err(e) => {
            span.end_connection(false);
            guard.finish("-", Outcome::Error);
            return Err(ProxyError::Route(e.into_route()));
        }
    };
    span.set(KeyValue::new("murmur.peer", node.clone()));
    tokio::spawn(async move {
        let ok = match on_upgrade.await {
            Ok(upgraded) => tunnel
                .splice(&mut TokioIo::new(upgraded))
                .await
                .inspect_err(|e| debug!(%service, error = %e, "CONNECT tunnel broke"))
                .is_ok(),
            Err(e) => {
                debug!(%service, error = %e, "CONNECT tunnel not opened");
                false
            }
        };
        span.end_connection(ok);
        guard.finish(&node, if ok { Outcome::Closed } else { Outcome::Error });
    });
    Ok(())
}

//! The gateway's plain-HTTP listener (`gateway.http_listen`): every request for a host a route
//! names is answered with a redirect (308) to the same URL over HTTPS; any other host gets 404,
//! so the listener redirects nowhere it does not serve. Nothing is forwarded in plain text.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::LOCATION;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::debug;

use super::host;
use super::per_ip::PerIp;
use crate::listener::{Activity, Admitted, Gate, Tracked};
use crate::proxy::body::ProxyBody;
use crate::proxy::errors::ProxyError;
use crate::proxy::route::RouteError;
use crate::proxy::runtime::Proxy;
use crate::traffic::compiled::EdgeTarget;

/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts plain-HTTP connections until the process ends, under the gateway's gate and
/// per-address share.
pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    gate: Arc<Gate>,
    per_ip: Arc<PerIp>,
    https_port: u16,
) {
    loop {
        let (conn, ip_slot) = per_ip.accept_counted(&gate, &listener, &proxy).await;
        let (proxy, gate) = (proxy.clone(), gate.clone());
        tokio::spawn(async move {
            serve_one(&proxy, &gate, conn, https_port).await;
            drop(ip_slot);
        });
    }
}

async fn serve_one(proxy: &Arc<Proxy>, gate: &Gate, conn: Admitted, https_port: u16) {
    let Admitted { stream, peer, slot } = conn;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let svc = service_fn(|req| {
        let resp = answer(proxy, &req, https_port);
        async move { Ok::<_, Infallible>(resp) }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024);
    let served = http1.serve_connection(io, svc);
    if let Some(Err(e)) = gate.serve(&activity, served).await {
        debug!(%peer, error = %e, "gateway plain-HTTP connection ended");
    }
    drop(slot);
}

/// The redirect for one request, or why there is none.
fn answer(proxy: &Proxy, req: &Request<Incoming>, https_port: u16) -> Response<ProxyBody> {
    let host = match host::host_of(req.uri(), req.headers()) {
        Ok(h) => h,
        Err(why) => return ProxyError::Route(RouteError::BadTarget(why)).response(false),
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let compiled = proxy.traffic.compiled();
    let known = compiled.edge_target(
        &host,
        req.method().as_str(),
        req.uri().path(),
        req.headers(),
    ) != EdgeTarget::UnknownHost;
    if !known {
        return ProxyError::UnknownHost(host::shown(&host).to_owned()).response(false);
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let Ok(location) = HeaderValue::from_str(&format!("https://{host}{port}{path}")) else {
        return ProxyError::Route(RouteError::BadTarget("the target is not text".into()))
            .response(false);
    };
    proxy
        .telemetry
        .gateway_connections
        .get(&["redirected"])
        .inc();
    let mut resp = Response::new(ProxyBody::Local(None));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    resp
}

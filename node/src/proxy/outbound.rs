//! The outbound HTTP listener (`127.0.0.1:7421`): HTTP/1.1 and HTTP/2 with prior knowledge on
//! one port, routed by `Host: <service>` (or `<service>.mesh`) or by an absolute-form target,
//! so `http_proxy=http://127.0.0.1:7421` works; CONNECT goes to [`super::connect`], requests
//! for hosts outside the mesh to [`super::external`]. The same server serves captured
//! connections and CONNECT tunnels to HTTP services, with their service fixed. An HTTP/1.1
//! upgrade (WebSocket) is forwarded as a request and, once answered `101`, carried on as the
//! upgraded connection over the same stream.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderValue, Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use murmur_transport::identity::Name;
use murmur_transport::wire::StreamHeader;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use tokio::net::TcpListener;
use tracing::debug;

use super::body::{self, ProxyBody};
use super::errors::ProxyError;
use super::exchange::Answer;
use super::frame::{BodyKind, FRAME_VERSION, RequestHead};
use super::headers::{next_hop, strip_hop_by_hop};
use super::plan::{self, Subject};
use super::record::Record;
use super::route::Destination;
use super::runtime::Proxy;
use super::tunnel::Tunnel;
use super::{connect, exchange, external, route};
use crate::listener::{Activity, Admitted, Gate, Tracked};
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::traffic::compiled::Compiled;
use crate::traffic::normalize;

/// A client connection must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 streams one client connection may have open.
const H2_MAX_STREAMS: u32 = 1024;

/// Accepts app connections until the process ends, under `gate`'s cap and timeouts.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, gate: Arc<Gate>) {
    let builder = Arc::new(builder());
    loop {
        let conn = gate.accept(&listener).await;
        let _ = conn.stream.set_nodelay(true);
        tokio::spawn(serve_admitted(
            proxy.clone(),
            builder.clone(),
            gate.clone(),
            conn,
            None,
        ));
    }
}

/// The HTTP server of app connections: HTTP/1.1 (with upgrades and CONNECT) and HTTP/2.
pub fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS);
    builder
}

/// Serves one connection `gate` admitted until it ends or falls silent (see
/// [`serve_connection`] for `fixed`); only then is its place under the cap free.
pub async fn serve_admitted(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    gate: Arc<Gate>,
    conn: Admitted,
    fixed: Option<Name>,
) {
    let Admitted { stream, peer, slot } = conn;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let served = serve_connection(proxy, builder, io, fixed, peer, Some(activity.clone()));
    gate.serve(&activity, served).await;
    drop(slot);
}

/// Serves one app connection; with `fixed` (a captured connection, a CONNECT tunnel) every
/// request goes to that service, whatever it names. (A named future type: a CONNECT tunnel
/// serves a connection from inside a request of one.)
pub fn serve_connection<I>(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: I,
    fixed: Option<Name>,
    peer: SocketAddr,
    activity: Option<Activity>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Box::pin(async move {
        let svc = service_fn(move |req| {
            // Counted in flight, so the idle timeout never closes a connection mid-request.
            let in_flight = activity.as_ref().map(Activity::request);
            // Made (and boxed) here: hyper's dispatcher holds a pointer to the request's work,
            // not the work itself, which it would copy in and out for every request.
            let work = handle(&proxy, req, fixed.as_ref(), peer);
            async move {
                let resp = work.await;
                drop(in_flight);
                Ok::<_, Infallible>(resp)
            }
        });
        if let Err(e) = builder.serve_connection_with_upgrades(io, svc).await {
            debug!(%peer, error = %e, "outbound connection ended");
        }
    })
}

/// The work of one request from an app, boxed once: CONNECT, a request for a host outside the
/// mesh, or one for a mesh service.
fn handle(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    fixed: Option<&Name>,
    peer: SocketAddr,
) -> Work {
    if req.method() == Method::CONNECT {
        let proxy = proxy.clone();
        return Box::pin(async move {
            let (resp, http) = connect::handle(&proxy, req).await;
            if let Some((service, on_upgrade)) = http {
                tokio::spawn(serve_tunnel(proxy.clone(), service, on_upgrade, peer));
            }
            resp
        });
    }
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let destination = match fixed {
        Some(s) => Ok(Destination::Service(s.clone())),
        None => route::destination_of(req.uri(), req.headers(), &proxy.names, &proxy.vips.borrow()),
    };
    match destination {
        Ok(Destination::Service(s)) => Box::pin(to_service(proxy.clone(), req, s, grpc, None)),
        Ok(Destination::External { host, port }) => {
            let proxy = proxy.clone();
            Box::pin(async move { external::http(&proxy, req, &host, port).await })
        }
        Err(e) => Box::pin(std::future::ready(ProxyError::Route(e).response(grpc))),
    }
}

/// The work of one request, as hyper's dispatcher holds it.
type Work = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// A request for a mesh service: accounted, traced, decided and carried out. `gateway_host` is
/// the host of a request that came in through the gateway (only routes naming it apply).
///
/// Not an `async fn`: one taking the request would hold it twice for as long as it ran. The
/// request is taken apart into its head and body before the returned future exists.
pub fn to_service<'a, P>(
    proxy: P,
    mut req: Request<Incoming>,
    service: Name,
    grpc: bool,
    gateway_host: Option<&'a str>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a
where
    P: Deref<Target = Proxy> + Send + 'a,
{
    let upgrade = upgrade_of(&mut req);
    let (span, traceparent) = client_span(&proxy, &mut req, service.as_str());
    let label = proxy.outbound_label(service.as_str());
    let mut record = Record::start(&proxy.telemetry, label, grpc);
    let protocol = upgrade.as_ref().map(|(p, _)| p.clone());
    let prepared = prepare(&proxy, req, &service, traceparent, protocol, &mut record);
    async move {
        let answer = match prepared {
            Ok(prepared) => forward(&proxy, prepared, &service, gateway_host, &mut record).await,
            Err(e) => Err(e),
        };
        let answer = answer.unwrap_or_else(|e| {
            debug!(error = %e, "outbound request answered locally");
            Answer {
                response: e.response(grpc),
                node: "-".to_owned(),
                tunnel: None,
            }
        });
        let Answer {
            response,
            node,
            tunnel,
        } = answer;
        let status = response.status().as_u16();
        span.set(KeyValue::new("murmur.peer", node.clone()));
        span.end(Some(status));
        match (tunnel, upgrade) {
            (Some(tunnel), Some((_, on_upgrade))) => {
                // The upgraded connection counts as one request, until it closes.
                tokio::spawn(async move {
                    let outcome = splice_upgraded(&service, tunnel, on_upgrade).await;
                    record.close(&node, outcome);
                });
                response
            }
            _ => record.finish(response, &node),
        }
    }
}

/// Copies between the app's upgraded connection and the stream, once hyper hands it over.
async fn splice_upgraded(service: &Name, tunnel: Tunnel, on_upgrade: OnUpgrade) -> Outcome {
    let upgraded = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            debug!(%service, error = %e, "the app's side of the upgrade failed");
            return Outcome::Error;
        }
    };
    match tunnel.splice(&mut TokioIo::new(upgraded)).await {
        Ok(_) => Outcome::Status(101),
        Err(e) => {
            debug!(%service, error = %e, "upgraded connection broke");
            Outcome::Error
        }
    }
}

/// Serves a CONNECT tunnel to an HTTP service as the app's connection to it.
async fn serve_tunnel(proxy: Arc<Proxy>, service: Name, on_upgrade: OnUpgrade, peer: SocketAddr) {
    match on_upgrade.await {
        Ok(upgraded) => {
            let builder = Arc::new(builder());
            serve_connection(proxy, builder, upgraded, Some(service), peer, None).await;
        }
        Err(e) => debug!(%service, error = %e, "CONNECT tunnel not opened"),
    }
}

/// The protocol an HTTP/1.1 request without a body asks to switch to (`Connection: upgrade`
/// and `Upgrade: ...`), and its half of the switch.
fn upgrade_of(req: &mut Request<Incoming>) -> Option<(HeaderValue, OnUpgrade)> {
    let asks = req.version() == http::Version::HTTP_11
        && req.body().is_end_stream()
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = req.headers().get(UPGRADE).filter(|_| asks)?.clone();
    Some((protocol, hyper::upgrade::on(req)))
}

/// The client span of an outbound request, child of the app's `traceparent` if it sent one;
/// the request carries the span's context onwards, and so does the returned `traceparent`.
fn client_span(
    proxy: &Proxy,
    req: &mut Request<Incoming>,
    service: &str,
) -> (ProxySpan, Option<String>) {
    let parent = req
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let span = proxy.traces.span(SpanKind::Client, parent, || {
        let attrs = vec![
            KeyValue::new("murmur.service", service.to_owned()),
            KeyValue::new("murmur.node", proxy.node.clone()),
            KeyValue::new("http.request.method", req.method().to_string()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
        ];
        (format!("{} {service}", req.method()), attrs)
    });
    let traceparent = span.traceparent();
    if let Some(tp) = traceparent
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        req.headers_mut().insert(TRACEPARENT.clone(), tp);
    }
    (span, traceparent)
}

/// A request ready to be forwarded: its head as the stream carries it, and its body.
struct Prepared {
    started: Instant,
    compiled: Arc<Compiled>,
    head: RequestHead,
    body: Incoming,
    traceparent: Option<String>,
    /// The caller's configuration logs the service's requests.
    logs: bool,
}

/// Takes the request apart for forwarding. The path is normalized first ([`normalize`]):
/// routing, and authorization on the serving node, decide on it, and the app receives it.
fn prepare(
    proxy: &Proxy,
    req: Request<Incoming>,
    service: &Name,
    traceparent: Option<String>,
    upgrade: Option<HeaderValue>,
    record: &mut Record,
) -> Result<Prepared, ProxyError> {
    // The request's deadline counts from its arrival, as its metrics do.
    let started = record.started();
    let compiled = proxy.traffic.compiled();
    let caller = proxy.caller(service.as_str());
    let policy = compiled.service(service.as_str()).map(|p| &**p);
    if plan::logs(policy, caller, || proxy.traffic.random()) {
        let raw = req.uri().path_and_query().map_or("/", |p| p.as_str());
        record.log(
            &proxy.id,
            service.as_str(),
            req.method().as_str(),
            raw,
            traceparent.as_deref(),
        );
    }
    let (mut parts, body) = req.into_parts();
    let raw = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = normalize::path_and_query(raw)
        .map_err(ProxyError::BadPath)?
        .into_owned();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map_or_else(
            || service.to_string(),
            |a| normalize::authority(a).into_owned(),
        );
    strip_hop_by_hop(&mut parts.headers);
    next_hop(&mut parts.headers).map_err(ProxyError::Loop)?;
    let kind = match upgrade {
        Some(protocol) => {
            parts.headers.insert(UPGRADE, protocol);
            BodyKind::Upgrade
        }
        None => body::body_kind(&body),
    };
    let head = RequestHead {
        version: FRAME_VERSION,
        method: parts.method.as_str().to_owned(),
        path,
        authority,
        headers: std::mem::take(&mut parts.headers),
        body: kind,
    };
    record.head(&head);
    Ok(Prepared {
        started,
        logs: caller.logs,
        compiled,
        head,
        body,
        traceparent,
    })
}

/// Forwards a prepared request; returns the response and the node that served it. As an
/// `async fn` it holds `prepared` twice (about 270 bytes each), and the caller's future once
/// more: borrowing the head instead is the next cut of the request's box.
async fn forward(
    proxy: &Proxy,
    prepared: Prepared,
    service: &Name,
    gateway_host: Option<&str>,
    record: &mut Record,
) -> Result<Answer, ProxyError> {
    let Prepared {
        started,
        compiled,
        head,
        body,
        traceparent,
        logs,
    } = prepared;
    let view = proxy.view.borrow().clone();
    let subject = Subject::Http {
        host: gateway_host,
        method: &head.method,
        path: normalize::strip_query(&head.path),
        headers: &head.headers,
    };
    let caller = proxy.caller_logging(logs);
    let mut plan = plan::decide(
        &compiled,
        &view,
        service.as_str(),
        subject,
        caller,
        || proxy.traffic.random(),
        proxy.order(started),
    )?;
    let mut header = StreamHeader::new(plan.target);
    header.traceparent = traceparent;
    let mut request = exchange::Request {
        service,
        head,
        header,
        started,
    };
    exchange::run(proxy, &mut plan, &mut request, body, record).await
}

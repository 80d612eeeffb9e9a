//! The outbound HTTP listener (`127.0.0.1:7421`): HTTP/1.1 and HTTP/2 with prior knowledge on
//! one port, routed by `Host: <service>` (or `<service>.mesh`) or by an absolute-form target,
//! so `HTTP_PROXY=http://127.0.0.1:7421` works.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
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
use super::frame::{self, FRAME_VERSION, RequestHead};
use super::headers::{next_hop, strip_hop_by_hop};
use super::plan::{self, Subject};
use super::runtime::Proxy;
use super::{exchange, route};
use crate::api::traffic::Direction;
use crate::listener::{Activity, Admitted, Gate, Tracked};
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::traffic::normalize;

/// A client connection must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 streams one client connection may have open.
const H2_MAX_STREAMS: u32 = 1024;

/// Accepts app connections until the process ends, under `gate`'s cap and timeouts.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, gate: Arc<Gate>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS);
    let builder = Arc::new(builder);
    loop {
        let conn = gate.accept(&listener).await;
        let _ = conn.stream.set_nodelay(true);
        let (proxy, builder, gate) = (proxy.clone(), builder.clone(), gate.clone());
        tokio::spawn(async move {
            let Admitted { stream, peer, slot } = conn;
            let activity = Activity::new();
            let busy = activity.clone();
            let svc = service_fn(move |req| {
                let (proxy, in_flight) = (proxy.clone(), busy.request());
                async move {
                    let resp = handle(&proxy, req).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(resp)
                }
            });
            let io = TokioIo::new(Tracked::new(stream, activity.clone()));
            let served = gate
                .serve(&activity, builder.serve_connection(io, svc))
                .await;
            if let Some(Err(e)) = served {
                debug!(%peer, error = %e, "outbound connection ended");
            }
            // Only now is its place under the cap free.
            drop(slot);
        });
    }
}

async fn handle(proxy: &Proxy, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let service = match route::service_of(req.uri(), req.headers()) {
        Ok(s) => s,
        Err(e) => return ProxyError::Route(e).response(grpc),
    };
    let (span, traceparent) = client_span(proxy, &mut req, service.as_str());
    let label = proxy.outbound_label(service.as_str());
    let guard = proxy.telemetry.start(Direction::Outbound, label);
    let (resp, peer) = match forward(proxy, req, &service, traceparent).await {
        Ok(answered) => answered,
        Err(e) => {
            debug!(error = %e, "outbound request answered locally");
            (e.response(grpc), "-".to_owned())
        }
    };
    let status = resp.status().as_u16();
    guard.finish(&peer, Outcome::Status(status));
    span.set(KeyValue::new("murmur.peer", peer));
    span.end(Some(status));
    resp
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
        .get(TRACEPARENT)
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
        req.headers_mut().insert(TRACEPARENT, tp);
    }
    (span, traceparent)
}

/// Forwards a request for `service`; returns the response and the node that served it.
/// The path is normalized first ([`normalize`]): routing, and authorization on the serving
/// node, decide on it, and the app receives it.
async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    service: &Name,
    traceparent: Option<String>,
) -> Result<(Response<ProxyBody>, String), ProxyError> {
    let started = crate::clock::now();
    if req.method() == Method::CONNECT {
        return Err(ProxyError::Unsupported(
            "CONNECT is not proxied: give TCP services an [[upstream]] listener".into(),
        ));
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
    let kind = body::body_kind(&body);
    let head = RequestHead {
        version: FRAME_VERSION,
        method: parts.method.as_str().to_owned(),
        path,
        authority,
        headers: frame::fields(&parts.headers),
        body: kind,
    };
    let mut head_buf = BytesMut::with_capacity(256);
    frame::put_head(&head, &mut head_buf).map_err(|e| ProxyError::HeadTooLarge(e.to_string()))?;

    let compiled = proxy.traffic.compiled();
    let view = proxy.view.borrow().clone();
    let subject = Subject::Http {
        method: &head.method,
        path: normalize::strip_query(&head.path),
        headers: &parts.headers,
    };
    let plan = plan::decide(
        &compiled,
        &view,
        service.as_str(),
        subject,
        || proxy.traffic.random(),
        proxy.order(),
    )?;
    let mut header = StreamHeader::new(plan.target);
    header.traceparent = traceparent;
    let request = exchange::Request {
        service,
        method: &head.method,
        head: head_buf.freeze(),
        kind,
        header,
        started,
    };
    exchange::run(proxy, plan, request, body).await
}

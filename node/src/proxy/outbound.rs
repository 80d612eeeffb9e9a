//! The outbound HTTP listener (`127.0.0.1:7421`): HTTP/1.1 and HTTP/2 with prior knowledge on
//! one port, routed by `Host: <service>` (or `<service>.mesh`) or by an absolute-form target,
//! so `HTTP_PROXY=http://127.0.0.1:7421` works.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use tokio::net::TcpListener;
use tracing::debug;

use super::Proxy;
use super::body::{self, FrameBody, ProxyBody};
use super::errors::ProxyError;
use super::frame::{self, BodyKind, FRAME_VERSION, Frame, FrameReader, RequestHead, ResponseHead};
use super::headers::strip_hop_by_hop;
use super::{dial, route};
use crate::balance::Offer;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::telemetry::traffic::Direction;

/// A client connection must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 streams one client connection may have open.
const H2_MAX_STREAMS: u32 = 1024;

/// Accepts app connections until the process ends.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
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
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "outbound accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (proxy, builder) = (proxy.clone(), builder.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(handle(&proxy, req).await) }
            });
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                debug!(%peer, error = %e, "outbound connection ended");
            }
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
    let span = client_span(proxy, &mut req, service.as_str());
    let guard = proxy.telemetry.start(Direction::Outbound, service.as_str());
    let (resp, peer) = match forward(proxy, req, &service, span.traceparent()).await {
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
/// the request carries the span's context onwards.
fn client_span(proxy: &Proxy, req: &mut Request<Incoming>, service: &str) -> ProxySpan {
    let parent = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let attrs = vec![
        KeyValue::new("murmur.service", service.to_owned()),
        KeyValue::new("murmur.node", proxy.node.clone()),
        KeyValue::new("http.request.method", req.method().to_string()),
        KeyValue::new("url.path", req.uri().path().to_owned()),
    ];
    let span = proxy.traces.span(
        SpanKind::Client,
        format!("{} {service}", req.method()),
        parent,
        attrs,
    );
    if let Some(tp) = span
        .traceparent()
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        req.headers_mut().insert(TRACEPARENT, tp);
    }
    span
}

/// Methods whose repetition has no further effect (RFC 9110, 9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Forwards a request for `service`; returns the response and the node that served it.
/// A request that could not be delivered moves to the next instance; so does an idempotent
/// request without a body whose connection dies before the answer.
async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    service: &Name,
    traceparent: Option<String>,
) -> Result<(Response<ProxyBody>, String), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::Unsupported(
            "CONNECT is not proxied: give TCP services an [[upstream]] listener".into(),
        ));
    }
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| service.to_string());
    strip_hop_by_hop(&mut parts.headers);
    let kind = body::body_kind(&body);
    let head = RequestHead {
        version: FRAME_VERSION,
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        authority,
        headers: frame::fields(&parts.headers),
        body: kind,
    };
    let mut head_buf = BytesMut::with_capacity(256);
    frame::put_head(&head, &mut head_buf).map_err(|e| ProxyError::HeadTooLarge(e.to_string()))?;
    let head_bytes = head_buf.freeze();

    let view = proxy.view.borrow().clone();
    let (balancer, eps) = route::candidates(&view, service.as_str())?;
    let offers: Vec<Offer<'_>> = eps
        .iter()
        .map(|e| Offer {
            node: &e.node,
            weight: e.weight,
        })
        .collect();
    let order = proxy
        .balancers
        .order(service.as_str(), balancer, &offers, Instant::now());
    let mut header = StreamHeader::new(service.as_str());
    header.traceparent = traceparent;
    let mut body = Some(body);
    let mut failures = Vec::new();
    let replayable = kind == BodyKind::Empty && idempotent(&parts.method);
    for i in order {
        let ep = eps[i];
        if !failures.is_empty() {
            // Time has passed: skip instances the mesh has given up on meanwhile.
            let now = proxy.view.borrow().clone();
            if !now
                .endpoints(service.as_str())
                .iter()
                .any(|e| e.node == ep.node)
            {
                continue;
            }
            proxy.telemetry.retries.get(&[service.as_str()]).inc();
        }
        let mut inflight = proxy.balancers.start(service.as_str(), &ep.node);
        let empty = kind == BodyKind::Empty;
        let (mut send, recv) =
            match dial::open(proxy, ep, &header, StreamKind::Http, &head_bytes, empty).await {
                Ok(s) => s,
                Err(why) => {
                    inflight.failed();
                    failures.push(format!("{}: {why}", ep.node));
                    continue;
                }
            };
        inflight.sent();
        if let Some(b) = body.take().filter(|_| !empty) {
            tokio::spawn(async move {
                if let Err(e) = body::send(&mut send, BytesMut::new(), b).await {
                    debug!(error = %e, "request body not fully forwarded");
                }
            });
        }
        let mut reader = FrameReader::new(recv);
        let upstream = |detail: String| ProxyError::Upstream {
            service: service.to_string(),
            node: ep.node.clone(),
            detail,
        };
        match reader.next().await {
            Ok(Some(Frame::Head(bytes))) => {
                inflight.answered();
                let head: ResponseHead =
                    frame::decode_head(&bytes).map_err(|e| upstream(e.to_string()))?;
                let mut resp = Response::new(ProxyBody::Remote(FrameBody::new(reader, head.body)));
                *resp.status_mut() = http::StatusCode::from_u16(head.status)
                    .map_err(|_| upstream(format!("invalid status {}", head.status)))?;
                *resp.headers_mut() =
                    frame::header_map(head.headers).map_err(|e| upstream(e.to_string()))?;
                return Ok((resp, ep.node.clone()));
            }
            Ok(Some(Frame::Refused(r))) => {
                inflight.failed();
                failures.push(format!("{}: {}", ep.node, r.reason));
                // Only a request whose body we still hold (none) can go to another instance.
                if !empty {
                    break;
                }
            }
            Ok(Some(_)) => {
                inflight.failed();
                return Err(upstream("protocol error: no response head".into()));
            }
            Ok(None) => {
                inflight.failed();
                if !replayable {
                    return Err(upstream("stream closed before a response".into()));
                }
                failures.push(format!("{}: stream closed before a response", ep.node));
            }
            Err(e) => {
                inflight.failed();
                debug!(node = %ep.node, error = ?e, "stream failed before the response head");
                if !replayable {
                    return Err(upstream(e.to_string()));
                }
                // The connection died under the request (a node crashed, or a partition was
                // detected): an idempotent request without a body is safe to send again, to
                // each remaining instance at most once.
                failures.push(format!("{}: {e}", ep.node));
            }
        }
    }
    Err(ProxyError::Route(route::RouteError::NoInstance {
        service: service.to_string(),
        detail: failures.join("; "),
    }))
}

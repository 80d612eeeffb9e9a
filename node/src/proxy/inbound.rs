//! Inbound HTTP streams: a verified peer's request, forwarded to the local instance over a
//! pooled connection, and the response framed back.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Uri};
use murmur_membership::records::Protocol;
use murmur_transport::endpoint::InboundStream;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use quinn::SendStream;
use tracing::debug;

use super::Proxy;
use super::body::{self, BAD_FRAMES, FrameBody};
use super::frame::{self, FRAME_VERSION, Frame, FrameReader, RequestHead, ResponseHead};
use super::headers::strip_hop_by_hop;
use crate::config::ServiceConfig;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::telemetry::traffic::Direction;

/// The request head must follow the stream header within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one inbound HTTP stream, accounted in metrics and traced as a server span.
pub async fn serve(proxy: Arc<Proxy>, stream: InboundStream) {
    let service = stream.header.service.clone();
    let caller = stream.peer.id.name.to_string();
    let guard = proxy.telemetry.start(Direction::Inbound, &service);
    let outcome = handle(&proxy, stream).await;
    guard.finish(&caller, outcome);
}

async fn handle(proxy: &Proxy, stream: InboundStream) -> Outcome {
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
    if local.protocol == Protocol::Tcp {
        refuse(&mut send, &format!("{service} is a TCP service")).await;
        return Outcome::Error;
    }
    let mut reader = FrameReader::new(recv);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Frame::Head(bytes)))) => frame::decode_head::<RequestHead>(&bytes),
        _ => {
            let _ = send.reset(BAD_FRAMES);
            reader.stop(BAD_FRAMES);
            return Outcome::Error;
        }
    };
    let head = match head {
        Ok(h) => h,
        Err(e) => {
            debug!(peer = %peer.id, error = %e, "malformed request head");
            let _ = send.reset(BAD_FRAMES);
            reader.stop(BAD_FRAMES);
            return Outcome::Error;
        }
    };
    let span = server_span(
        proxy,
        &service,
        &head,
        header.traceparent.as_deref(),
        &peer.id.name,
    );
    let mut req = match build_request(head, local.address, local.protocol, reader) {
        Ok(r) => r,
        Err(e) => {
            respond_error(&mut send, 400, &e).await;
            span.end(Some(400));
            return Outcome::Status(400);
        }
    };
    if let Some(tp) = span
        .traceparent()
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        req.headers_mut().insert(TRACEPARENT, tp);
    }
    let outcome = answer(proxy, &service, &local, req, &mut send).await;
    span.end(match outcome {
        Outcome::Status(s) => Some(s),
        _ => None,
    });
    outcome
}

/// The server span of an inbound request: child of the caller's client span.
fn server_span(
    proxy: &Proxy,
    service: &str,
    head: &RequestHead,
    traceparent: Option<&str>,
    caller: &impl std::fmt::Display,
) -> ProxySpan {
    let attrs = vec![
        KeyValue::new("murmur.service", service.to_owned()),
        KeyValue::new("murmur.node", proxy.node.clone()),
        KeyValue::new("murmur.caller", caller.to_string()),
        KeyValue::new("http.request.method", head.method.clone()),
        KeyValue::new(
            "url.path",
            head.path.split('?').next().unwrap_or("/").to_owned(),
        ),
    ];
    proxy.traces.span(
        SpanKind::Server,
        format!("{} {service}", head.method),
        traceparent.and_then(TraceParent::parse),
        attrs,
    )
}

/// Sends `req` to the local instance and frames the answer back.
async fn answer(
    proxy: &Proxy,
    service: &str,
    local: &ServiceConfig,
    req: Request<FrameBody>,
    send: &mut SendStream,
) -> Outcome {
    match proxy.local.client(local.protocol).request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let head = ResponseHead {
                version: FRAME_VERSION,
                status: parts.status.as_u16(),
                headers: frame::fields(&parts.headers),
                body: body::body_kind(&body),
            };
            let status = head.status;
            let mut buf = BytesMut::with_capacity(256);
            if let Err(e) = frame::put_head(&head, &mut buf) {
                respond_error(send, 502, &format!("response head: {e}")).await;
                return Outcome::Status(502);
            }
            if let Err(e) = body::send(send, buf, body).await {
                debug!(%service, error = %e, "response not fully forwarded");
            }
            Outcome::Status(status)
        }
        Err(e) if e.is_connect() => {
            let reason = format!(
                "the {service} instance on node {} ({}) is not reachable: {}",
                proxy.node,
                local.address,
                source_chain(&e)
            );
            refuse(send, &reason).await;
            Outcome::Error
        }
        Err(e) => {
            let msg = format!(
                "the {service} instance on node {} failed: {}",
                proxy.node,
                source_chain(&e)
            );
            respond_error(send, 502, &msg).await;
            Outcome::Status(502)
        }
    }
}

fn build_request(
    head: RequestHead,
    app: std::net::SocketAddr,
    protocol: Protocol,
    reader: FrameReader,
) -> Result<Request<FrameBody>, String> {
    let method = Method::from_bytes(head.method.as_bytes()).map_err(|_| "invalid method")?;
    let uri: Uri = format!("http://{app}{}", head.path)
        .parse()
        .map_err(|_| format!("invalid path {:?}", head.path))?;
    let mut headers = frame::header_map(head.headers).map_err(|e| e.to_string())?;
    if protocol == Protocol::Http
        && let Ok(host) = HeaderValue::from_str(&head.authority)
    {
        headers.insert(HOST, host);
    }
    let mut req = Request::new(FrameBody::new(reader, head.body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Tells the caller nothing was processed, so it may try another instance.
async fn refuse(send: &mut SendStream, reason: &str) {
    debug!(%reason, "inbound request refused");
    let _ = send.write_all(&frame::refused(reason)).await;
    let _ = send.finish();
}

/// Answers with a plain-text error response made here.
async fn respond_error(send: &mut SendStream, status: u16, message: &str) {
    let body = format!("{message}\n");
    let head = ResponseHead {
        version: FRAME_VERSION,
        status,
        headers: vec![
            (
                "content-type".into(),
                frame::Value(b"text/plain; charset=utf-8".to_vec()),
            ),
            (
                "x-murmur-error".into(),
                frame::Value(b"upstream-failed".to_vec()),
            ),
        ],
        body: frame::BodyKind::Length(body.len() as u64),
    };
    let mut buf = BytesMut::new();
    if frame::put_head(&head, &mut buf).is_err() {
        let _ = send.reset(BAD_FRAMES);
        return;
    }
    if let Ok(h) = frame::data_header(body.len()) {
        buf.extend_from_slice(&h);
        buf.extend_from_slice(body.as_bytes());
    }
    let _ = send.write_all(&buf).await;
    let _ = send.finish();
}

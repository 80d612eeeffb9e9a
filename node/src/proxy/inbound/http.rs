//! Inbound HTTP streams: a verified peer's request for a local service, forwarded to the local
//! instance over a pooled connection, and the response framed back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::header::HOST;
use http::{HeaderValue, Method, Request, Uri};
use murmur_membership::records::Protocol;
use murmur_transport::endpoint::InboundStream;
use murmur_transport::identity::PeerIdentity;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use quinn::SendStream;
use tracing::debug;

use crate::proxy::admission;
use crate::proxy::body::{self, BAD_FRAMES, DEADLINE_EXPIRED, FrameBody};
use crate::proxy::errors::{LocalReply, grpc_code};
use crate::proxy::frame::{
    self, FRAME_VERSION, Frame, FrameError, FrameReader, RequestHead, ResponseHead,
};
use crate::proxy::headers::strip_hop_by_hop;
use crate::proxy::runtime::Proxy;
use crate::services::LocalService;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::traffic::normalize;

/// The request head must follow the stream header within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one inbound HTTP stream for `local`, traced as a server span.
pub async fn serve(proxy: &Proxy, local: Arc<LocalService>, stream: InboundStream) -> Outcome {
    let InboundStream {
        peer,
        header,
        mut send,
        recv,
        ..
    } = stream;
    let service = header.service;
    // The caller's deadline counts from the moment the stream arrived.
    let deadline = header
        .deadline_ms
        .map(|ms| crate::clock::now() + Duration::from_millis(u64::from(ms)));
    let mut reader = FrameReader::new(recv);
    let Some(mut head) = read_head(&mut reader, &mut send, &peer).await else {
        return Outcome::Error;
    };
    let grpc = is_grpc(&head.headers);
    let span = server_span(
        proxy,
        &service,
        &head,
        header.traceparent.as_deref(),
        &peer.id.name,
    );
    if let Err(r) = check(proxy, &service, &peer, &mut head) {
        return reply_locally(&mut send, &r, grpc, span).await;
    }
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
    let outcome = answer_by(proxy, &service, &local, req, &mut send, deadline, grpc).await;
    span.end(match outcome {
        Outcome::Status(s) => Some(s),
        _ => None,
    });
    outcome
}

/// Reads and decodes the request head; a stream without a valid one is reset.
async fn read_head(
    reader: &mut FrameReader,
    send: &mut SendStream,
    peer: &PeerIdentity,
) -> Option<RequestHead> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Frame::Head(bytes)))) => frame::decode_head::<RequestHead>(&bytes),
        _ => Err(FrameError::Unexpected("missing head")),
    };
    match head {
        Ok(h) => Some(h),
        Err(e) => {
            debug!(peer = %peer.id, error = %e, "malformed or missing request head");
            let _ = send.reset(BAD_FRAMES);
            reader.stop(BAD_FRAMES);
            None
        }
    }
}

/// Normalizes the path again (an honest caller already did, and this changes nothing; but
/// only what is checked here is trusted), then authorization and rate limits.
fn check(
    proxy: &Proxy,
    service: &str,
    peer: &PeerIdentity,
    head: &mut RequestHead,
) -> Result<(), LocalReply> {
    match normalize::path_and_query(&head.path) {
        Ok(Cow::Borrowed(_)) => {}
        Ok(Cow::Owned(p)) => head.path = p,
        Err(e) => {
            let message = format!("the request path is refused: {e}");
            return Err(LocalReply::new(400, "bad-path", 3, message));
        }
    }
    let subject = Some((head.method.as_str(), normalize::strip_query(&head.path)));
    admission::check(proxy, service, peer, subject)
}

/// Sends `req` to the app and frames the answer back, within the caller's deadline if any, and
/// only for as long as the caller wants the answer.
async fn answer_by(
    proxy: &Proxy,
    service: &str,
    local: &LocalService,
    req: Request<FrameBody>,
    send: &mut SendStream,
    deadline: Option<Instant>,
    grpc: bool,
) -> Outcome {
    let mut head_sent = false;
    let gone = caller_gone(send);
    let work = answer(proxy, service, local, req, send, &mut head_sent);
    // Dropping `work` drops the call to the app, which closes its connection: the app sees the
    // cancellation, whether the deadline ran out or the caller went away.
    let work = async {
        tokio::select! {
            outcome = work => Some(outcome),
            () = gone => None,
        }
    };
    let Some(at) = deadline else {
        return work.await.unwrap_or_else(|| cancelled(service));
    };
    match tokio::time::timeout_at(at.into(), work).await {
        Ok(outcome) => outcome.unwrap_or_else(|| cancelled(service)),
        Err(_) => expired(proxy, service, send, head_sent, grpc).await,
    }
}

/// Resolves once the caller has stopped reading the answer (its client went away and its node
/// dropped the stream) or its connection is lost; never once the answer was delivered whole.
fn caller_gone(send: &SendStream) -> impl Future<Output = ()> + use<> {
    let stopped = send.stopped();
    async move {
        if let Ok(None) = stopped.await {
            std::future::pending::<()>().await;
        }
    }
}

fn cancelled(service: &str) -> Outcome {
    debug!(%service, "the caller went away; request to the app cancelled");
    Outcome::Error
}

/// The caller's deadline ran out: a 504 if the response has not started, else the stream is cut.
async fn expired(
    proxy: &Proxy,
    service: &str,
    send: &mut SendStream,
    head_sent: bool,
    grpc: bool,
) -> Outcome {
    debug!(%service, head_sent, "deadline expired; request to the app cancelled");
    if head_sent {
        let _ = send.reset(DEADLINE_EXPIRED);
        return Outcome::Error;
    }
    let r = LocalReply::new(
        504,
        "deadline-expired",
        4,
        format!(
            "the caller's deadline expired on node {} before {service} answered; the request to \
             the app was cancelled",
            proxy.node
        ),
    );
    send_reply(send, &r, grpc).await;
    Outcome::Status(504)
}

/// Answers with a reply made here and ends the span.
async fn reply_locally(
    send: &mut SendStream,
    r: &LocalReply,
    grpc: bool,
    span: ProxySpan,
) -> Outcome {
    send_reply(send, r, grpc).await;
    span.end(Some(r.status));
    Outcome::Status(r.status)
}

fn is_grpc(headers: &frame::Fields) -> bool {
    headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.0.starts_with(b"application/grpc"))
}

/// The server span of an inbound request: child of the caller's client span.
fn server_span(
    proxy: &Proxy,
    service: &str,
    head: &RequestHead,
    traceparent: Option<&str>,
    caller: &impl std::fmt::Display,
) -> ProxySpan {
    let parent = traceparent.and_then(TraceParent::parse);
    proxy.traces.span(SpanKind::Server, parent, || {
        let attrs = vec![
            KeyValue::new("murmur.service", service.to_owned()),
            KeyValue::new("murmur.node", proxy.node.clone()),
            KeyValue::new("murmur.caller", caller.to_string()),
            KeyValue::new("http.request.method", head.method.clone()),
            KeyValue::new("url.path", normalize::strip_query(&head.path).to_owned()),
        ];
        (format!("{} {service}", head.method), attrs)
    })
}

/// Sends `req` to the local instance and frames the answer back.
async fn answer(
    proxy: &Proxy,
    service: &str,
    local: &LocalService,
    req: Request<FrameBody>,
    send: &mut SendStream,
    head_sent: &mut bool,
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
            *head_sent = true;
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
    let uri = app_uri(app, &head.path)?;
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

/// The URI of a request to the app at `app` for `path` (origin-form, or `*` for a server-wide
/// OPTIONS: pasted after the address it would be read as part of the port).
fn app_uri(app: std::net::SocketAddr, path: &str) -> Result<Uri, String> {
    Uri::builder()
        .scheme("http")
        .authority(app.to_string())
        .path_and_query(path)
        .build()
        .map_err(|_| format!("invalid path {path:?}"))
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
pub async fn refuse(send: &mut SendStream, reason: &str) {
    debug!(%reason, "inbound request refused");
    let _ = send.write_all(&frame::refused(reason)).await;
    let _ = send.finish();
}

/// Answers with a plain-text error response made here.
async fn respond_error(send: &mut SendStream, status: u16, message: &str) {
    let r = LocalReply::new(
        status,
        "upstream-failed",
        grpc_code(status),
        message.to_owned(),
    );
    send_reply(send, &r, false).await;
}

/// Frames a reply made here (as gRPC for gRPC callers) and ends the stream.
async fn send_reply(send: &mut SendStream, r: &LocalReply, grpc: bool) {
    let (status, headers, body) = r.parts(grpc);
    let head = ResponseHead {
        version: FRAME_VERSION,
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), frame::Value(v.as_bytes().to_vec())))
            .collect(),
        body: if body.is_empty() {
            frame::BodyKind::Empty
        } else {
            frame::BodyKind::Length(body.len() as u64)
        },
    };
    let mut buf = BytesMut::new();
    if frame::put_head(&head, &mut buf).is_err() {
        let _ = send.reset(BAD_FRAMES);
        return;
    }
    if !body.is_empty()
        && let Ok(h) = frame::data_header(body.len())
    {
        buf.extend_from_slice(&h);
        buf.extend_from_slice(body.as_bytes());
    }
    let _ = send.write_all(&buf).await;
    let _ = send.finish();
}

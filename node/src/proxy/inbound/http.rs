//! Inbound HTTP streams: a verified peer's request for a local service, forwarded to the local
//! instance over a pooled connection, and the response framed back ([`super::reply`]). An
//! upgrade request, once admitted, goes on to [`super::upgrade`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use murmur_membership::policy::spec::GrpcCode;
use murmur_membership::records::Protocol;
use murmur_transport::endpoint::InboundStream;
use murmur_transport::identity::PeerIdentity;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use quinn::SendStream;
use tracing::debug;

use crate::proxy::admission;
use crate::proxy::body::{BAD_FRAMES, FrameBody};
use crate::proxy::errors::LocalReply;
use crate::proxy::frame::{self, BodyKind, Frame, FrameError, FrameReader, RequestHead};
use crate::proxy::inbound::logline::{Line, Seen};
use crate::proxy::inbound::{reply, upgrade};
use crate::proxy::local::AppCall;
use crate::proxy::plan::{self, Caller};
use crate::proxy::runtime::Proxy;
use crate::services::LocalService;
use crate::telemetry::Outcome;
use crate::telemetry::traceparent::{TRACEPARENT, TraceParent};
use crate::telemetry::traces::ProxySpan;
use crate::traffic::compiled::ServicePolicy;
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
    let service = header.service.as_str();
    // The caller's deadline counts from the moment the stream arrived.
    let started = crate::clock::now();
    let deadline = header
        .deadline_ms
        .map(|ms| started + Duration::from_millis(u64::from(ms)));
    let mut reader = FrameReader::new(recv);
    let Some(head) = read_head(&mut reader, &mut send, &peer).await else {
        return Outcome::Error;
    };
    let policy = proxy.traffic.service(service);
    let stream = Stream {
        proxy,
        policy: policy.as_deref(),
        service,
        local: &local,
        peer: &peer,
        deadline,
    };
    let traceparent = header.traceparent.as_deref();
    let (admitted, line, mut seen) = stream.admit(head, reader, traceparent);
    let outcome = stream.answer(admitted, send, &mut seen).await;
    if let Some(l) = line {
        l.finish(proxy, outcome, &seen, started);
    }
    outcome
}

/// One inbound request's stream, past its head.
struct Stream<'a> {
    proxy: &'a Proxy,
    policy: Option<&'a ServicePolicy>,
    service: &'a str,
    local: &'a LocalService,
    peer: &'a PeerIdentity,
    deadline: Option<Instant>,
}

/// What the request's head decided, before anything is awaited.
struct Admitted {
    span: ProxySpan,
    grpc: bool,
    next: Next,
}

/// What follows the head.
enum Next {
    /// A reply made here: refused by policy.
    Refused(LocalReply),
    /// The head does not make a request for the app.
    Bad(String),
    /// An upgrade request, and its stream's reader for the tunnel that may follow (rare, so
    /// boxed: the request is large).
    Upgrade(Box<(Request<FrameBody>, FrameReader)>),
    /// On its way to the app.
    App(AppCall),
}

impl Stream<'_> {
    /// Begins the span and the access log line (if the request is logged), admits the request
    /// and, if admitted, sends it on to the app. The head is consumed here, without an await:
    /// neither it nor the request made of it is held while the answer comes.
    fn admit(
        &self,
        mut head: RequestHead,
        reader: FrameReader,
        traceparent: Option<&str>,
    ) -> (Admitted, Option<Box<Line>>, Seen) {
        let (proxy, service, local) = (self.proxy, self.service, self.local);
        let caller = Caller {
            logs: proxy.telemetry.access_log.configured(service),
            ..Caller::default()
        };
        let mut seen = Seen {
            watch: plan::logs(self.policy, caller, || proxy.traffic.random()),
            ..Seen::default()
        };
        // Boxed: a request that is not logged carries one pointer.
        let line = seen.watch.then(|| {
            Box::new(Line::begin(
                self.peer,
                service,
                &head,
                traceparent,
                &proxy.node,
            ))
        });
        let grpc = is_grpc(&head.headers);
        let span = server_span(proxy, service, &head, traceparent, &self.peer.id.name);
        let next = match check(proxy, self.policy, service, self.peer, &mut head) {
            Err(r) => {
                seen.error = Some(r.tag);
                Next::Refused(r)
            }
            Ok(()) => match build_request(head, local, reader) {
                Err(e) => {
                    seen.error = Some("upstream-failed");
                    Next::Bad(e)
                }
                Ok((req, Some(reader))) => Next::Upgrade(Box::new((traced(req, &span), reader))),
                Ok((req, None)) => {
                    let req = traced(req, &span);
                    Next::App(proxy.local.request(local.protocol, local.address, req))
                }
            },
        };
        (Admitted { span, grpc, next }, line, seen)
    }

    /// Has the app answer an admitted request (or goes on to an upgrade), or replies here.
    async fn answer(&self, admitted: Admitted, mut send: SendStream, seen: &mut Seen) -> Outcome {
        let Admitted { span, grpc, next } = admitted;
        let app = match next {
            Next::App(app) => app,
            Next::Refused(r) => return reply_locally(&mut send, &r, grpc, span).await,
            Next::Bad(e) => {
                reply::respond_error(&mut send, 400, &e).await;
                span.end(Some(400));
                return Outcome::Status(400);
            }
            Next::Upgrade(upgrade) => {
                let (req, reader) = *upgrade;
                let call = upgrade::Call {
                    proxy: self.proxy,
                    service: self.service,
                    local: self.local,
                    deadline: self.deadline,
                    grpc,
                };
                return Box::pin(call.serve(req, reader, send, span)).await;
            }
        };
        let outcome = answer_by(self, app, &mut send, grpc, seen).await;
        span.end(match outcome {
            Outcome::Status(s) | Outcome::Grpc(s, _) => Some(s),
            _ => None,
        });
        outcome
    }
}

/// `req`, carrying the server span's context on to the app.
fn traced(mut req: Request<FrameBody>, span: &ProxySpan) -> Request<FrameBody> {
    if let Some(tp) = span
        .traceparent()
        .and_then(|t| HeaderValue::from_str(&t).ok())
    {
        req.headers_mut().insert(TRACEPARENT.clone(), tp);
    }
    req
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
    policy: Option<&ServicePolicy>,
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
    admission::check(proxy, policy, service, peer, subject)
}

/// Frames the app's answer to `app` back, within the caller's deadline if any, and only for as
/// long as the caller wants the answer.
async fn answer_by(
    stream: &Stream<'_>,
    app: AppCall,
    send: &mut SendStream,
    grpc: bool,
    seen: &mut Seen,
) -> Outcome {
    let Stream { proxy, service, .. } = *stream;
    let mut head_sent = false;
    let gone = caller_gone(send);
    let watch = reply::Watch {
        grpc,
        bytes: seen.watch,
    };
    // Boxed, as is the rarer upgrade's: each `async fn` a future awaits is moved into it whole,
    // so without a box the answer's kilobyte would be copied again at every level.
    let work = Box::pin(answer(stream, app, send, &mut head_sent, watch, seen));
    // Dropping `work` drops the call to the app, which closes its connection: the app sees the
    // cancellation, whether the deadline ran out or the caller went away.
    let work = async {
        tokio::select! {
            outcome = work => Some(outcome),
            () = gone => None,
        }
    };
    let Some(at) = stream.deadline else {
        return work.await.unwrap_or_else(|| cancelled(service));
    };
    match tokio::time::timeout_at(at.into(), work).await {
        Ok(outcome) => outcome.unwrap_or_else(|| cancelled(service)),
        Err(_) => {
            seen.error = Some("deadline-expired");
            reply::expired(proxy, service, send, head_sent, grpc).await
        }
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

/// Answers with a reply made here and ends the span.
async fn reply_locally(
    send: &mut SendStream,
    r: &LocalReply,
    grpc: bool,
    span: ProxySpan,
) -> Outcome {
    reply::send_reply(send, r, grpc).await;
    span.end(Some(r.status));
    if grpc {
        // A gRPC caller got HTTP 200 with the status as a gRPC status.
        Outcome::Grpc(200, GrpcCode::from_number(u32::from(r.grpc_code)))
    } else {
        Outcome::Status(r.status)
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
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

/// Frames the local instance's answer to `app` back, watched as `watch` says.
async fn answer(
    stream: &Stream<'_>,
    app: AppCall,
    send: &mut SendStream,
    head_sent: &mut bool,
    watch: reply::Watch,
    seen: &mut Seen,
) -> Outcome {
    let Stream {
        proxy,
        service,
        local,
        ..
    } = *stream;
    let answered = app.await;
    match answered {
        Ok(resp) => {
            let (outcome, bytes) = reply::relay(service, resp, send, head_sent, watch).await;
            seen.bytes = bytes;
            outcome
        }
        Err(e) => {
            let outcome = reply::app_failed(proxy, service, local, &e, send).await;
            if outcome != Outcome::Error {
                seen.error = Some("upstream-failed");
            }
            outcome
        }
    }
}

/// The request for the app. An upgrade request has no body and gets its `Connection:
/// upgrade` back; its stream's reader is returned for the tunnel that may follow.
fn build_request(
    head: RequestHead,
    local: &LocalService,
    reader: FrameReader,
) -> Result<(Request<FrameBody>, Option<FrameReader>), String> {
    let protocol = local.protocol;
    let method = Method::from_bytes(head.method.as_bytes()).map_err(|_| "invalid method")?;
    let uri = app_uri(local, &head.path)?;
    let mut headers = head.headers;
    let upgrade = head.body == BodyKind::Upgrade;
    if (protocol == Protocol::Http || upgrade)
        && let Ok(host) = HeaderValue::from_str(&head.authority)
    {
        headers.insert(HOST, host);
    }
    let (body, kept) = if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        (FrameBody::empty(), Some(reader))
    } else {
        (FrameBody::new(reader, head.body), None)
    };
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok((req, kept))
}

/// The URI of a request to `local`'s app for `path` (origin-form, or `*` for a server-wide
/// OPTIONS: pasted after the address it would be read as part of the port).
fn app_uri(local: &LocalService, path: &str) -> Result<Uri, String> {
    // Made once from the address (`LocalService::with_defaults`): what did not parse then
    // would not now.
    let authority = local
        .authority
        .clone()
        .ok_or_else(|| format!("invalid app address {}", local.address))?;
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|_| format!("invalid path {path:?}"))
}

//! What a serving node sends back on an HTTP stream: the app's response framed ([`relay`]), a
//! reply of its own ([`send_reply`], [`respond_error`]), or a refusal that lets the caller try
//! elsewhere ([`refuse`]).

use bytes::BytesMut;
use http::Response;
use http::header::CONTENT_TYPE;
use quinn::SendStream;
use tracing::debug;

use crate::proxy::body::{self, BAD_FRAMES, DEADLINE_EXPIRED, Observed, grpc_status};
use crate::proxy::errors::{LocalReply, grpc_code};
use crate::proxy::frame::{self, FRAME_VERSION, ResponseHead};
use crate::proxy::headers::strip_hop_by_hop;
use crate::proxy::local::{AppBody, AppError};
use crate::proxy::runtime::Proxy;
use crate::services::LocalService;
use crate::telemetry::Outcome;

/// The head of an app's response, hop-by-hop headers removed.
pub fn head_of(resp: &mut Response<AppBody>) -> ResponseHead {
    strip_hop_by_hop(resp.headers_mut());
    ResponseHead {
        version: FRAME_VERSION,
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: body::body_kind(resp.body()),
    }
}

/// The caller's deadline ran out: a 504 if the response has not started, else the stream is cut.
pub async fn expired(
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

/// What to look at in a relayed response body.
#[derive(Clone, Copy, Debug, Default)]
pub struct Watch {
    /// The call is gRPC: its status, if not in the head, comes in the trailers.
    pub grpc: bool,
    /// Count the body's bytes (for the access log).
    pub bytes: bool,
}

/// Frames the app's response back; `head_sent` tells the caller's deadline whether it may
/// still answer 504. Returns how it ended and, if watched, the body bytes sent.
///
/// The head is encoded before the returned future is: only the body and what the answer needs
/// are held while it is sent, not the response whole beside them.
pub fn relay<'a>(
    service: &'a str,
    mut resp: Response<AppBody>,
    send: &'a mut SendStream,
    head_sent: &'a mut bool,
    watch: Watch,
) -> impl Future<Output = (Outcome, u64)> + 'a {
    strip_hop_by_hop(resp.headers_mut());
    let status = resp.status().as_u16();
    let head = frame::ResponseHeadOf {
        version: FRAME_VERSION,
        status,
        headers: frame::FieldsOf(resp.headers()),
        body: body::body_kind(resp.body()),
    };
    let mut buf = BytesMut::with_capacity(256);
    let encoded = frame::put_head(&head, &mut buf).map(|()| buf);
    // Only a gRPC call has a gRPC answer: other answers are not looked into.
    let grpc = watch.grpc
        && resp
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let in_head = grpc.then(|| grpc_status(resp.headers())).flatten();
    let body = resp.into_body();
    async move {
        let buf = match encoded {
            Ok(buf) => buf,
            Err(e) => {
                respond_error(send, 502, &format!("response head: {e}")).await;
                return (Outcome::Status(502), 0);
            }
        };
        *head_sent = true;
        let (sent, code, bytes) = if watch.bytes || (grpc && in_head.is_none()) {
            let mut watched = Observed::new(body, None);
            let sent = body::send(send, buf, &mut watched).await;
            let tally = watched.tally();
            (sent, in_head.or(tally.grpc), tally.bytes)
        } else {
            (body::send(send, buf, body).await, in_head, 0)
        };
        if let Err(e) = sent {
            debug!(%service, error = %e, "response not fully forwarded");
        }
        let outcome = match code {
            Some(c) => Outcome::Grpc(status, c),
            None => Outcome::Status(status),
        };
        (outcome, bytes)
    }
}

/// The app could not be called: a refusal if it could not be reached (nothing was processed),
/// else a 502.
pub async fn app_failed(
    proxy: &Proxy,
    service: &str,
    local: &LocalService,
    e: &AppError,
    send: &mut SendStream,
) -> Outcome {
    if e.is_connect() {
        let reason = format!(
            "the {service} instance on node {} ({}) is not reachable: {}",
            proxy.node,
            local.address,
            source_chain(e)
        );
        refuse(send, &reason).await;
        return Outcome::Error;
    }
    let msg = format!(
        "the {service} instance on node {} failed: {}",
        proxy.node,
        source_chain(e)
    );
    respond_error(send, 502, &msg).await;
    Outcome::Status(502)
}

pub fn source_chain(e: &dyn std::error::Error) -> String {
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
pub async fn respond_error(send: &mut SendStream, status: u16, message: &str) {
    let r = LocalReply::new(
        status,
        "upstream-failed",
        grpc_code(status),
        message.to_owned(),
    );
    send_reply(send, &r, false).await;
}

/// Frames a reply made here (as gRPC for gRPC callers) and ends the stream.
pub async fn send_reply(send: &mut SendStream, r: &LocalReply, grpc: bool) {
    let (status, headers, body) = r.parts(grpc);
    let head = ResponseHead {
        version: FRAME_VERSION,
        status,
        headers: headers.into_iter().collect(),
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

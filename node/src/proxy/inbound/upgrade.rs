//! An upgrade request (WebSocket, ...) on the serving side, once authorization and rate limits
//! let it through: sent to the app over a connection of its own (HTTP/1.1, as upgrades are);
//! within the caller's deadline the app answers. A `101` is framed back and the stream becomes
//! the upgraded connection, copied to the app's until both ends close; any other answer is
//! relayed as usual.

use bytes::BytesMut;
use http::header::UPGRADE;
use http::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use murmur_membership::records::Protocol;
use quinn::SendStream;
use tracing::debug;

use crate::proxy::body::{BAD_FRAMES, FrameBody};
use crate::proxy::frame::{self, BodyKind, FrameReader};
use crate::proxy::inbound::reply;
use crate::proxy::runtime::Proxy;
use crate::proxy::tunnel::Tunnel;
use crate::services::LocalService;
use crate::telemetry::Outcome;
use crate::telemetry::traces::ProxySpan;

/// One upgrade request for a local instance.
pub struct Call<'a> {
    /// The data path.
    pub proxy: &'a Proxy,
    /// The service.
    pub service: &'a str,
    /// Its local instance.
    pub local: &'a LocalService,
    /// The caller's deadline, until the app answers.
    pub deadline: Option<std::time::Instant>,
    /// Whether the caller speaks gRPC (for replies made here).
    pub grpc: bool,
}

impl Call<'_> {
    /// Sends `req` to the app and serves what it answers; `reader` is the stream's, past the
    /// head. The span ends with the app's answer; the outcome comes when the stream ends.
    pub async fn serve(
        self,
        req: Request<FrameBody>,
        reader: FrameReader,
        mut send: SendStream,
        span: ProxySpan,
    ) -> Outcome {
        let call = self
            .proxy
            .local
            .request(Protocol::Http, self.local.address, req);
        let answered = match self.deadline {
            Some(at) => tokio::time::timeout_at(at.into(), call).await.ok(),
            None => Some(call.await),
        };
        let mut resp = match answered {
            Some(Ok(resp)) => resp,
            Some(Err(e)) => {
                let outcome =
                    reply::app_failed(self.proxy, self.service, self.local, &e, &mut send).await;
                return ended(span, outcome);
            }
            None => {
                let outcome =
                    reply::expired(self.proxy, self.service, &mut send, false, self.grpc).await;
                return ended(span, outcome);
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let mut head_sent = false;
            let watch = reply::Watch {
                grpc: self.grpc,
                bytes: false,
            };
            let (outcome, _) =
                reply::relay(self.service, resp, &mut send, &mut head_sent, watch).await;
            return ended(span, outcome);
        }
        let protocol = resp.headers().get(UPGRADE).cloned();
        let on_upgrade = hyper::upgrade::on(&mut resp);
        let mut head = reply::head_of(&mut resp);
        head.body = BodyKind::Empty;
        if let Some(p) = protocol {
            head.headers.append(UPGRADE, p);
        }
        let mut buf = BytesMut::with_capacity(256);
        if frame::put_head(&head, &mut buf).is_err() || send.write_all(&buf).await.is_err() {
            let _ = send.reset(BAD_FRAMES);
            return ended(span, Outcome::Error);
        }
        span.end(Some(101));
        let service = self.service;
        let app = match on_upgrade.await {
            Ok(app) => app,
            Err(e) => {
                debug!(%service, error = %e, "the app's side of the upgrade failed");
                let _ = send.reset(BAD_FRAMES);
                return Outcome::Error;
            }
        };
        match Tunnel::after_frames(send, reader)
            .splice(&mut TokioIo::new(app))
            .await
        {
            Ok((up, down)) => {
                debug!(%service, up, down, "upgraded connection done");
                Outcome::Status(101)
            }
            Err(e) => {
                debug!(%service, error = %e, "upgraded connection broke");
                Outcome::Error
            }
        }
    }
}

fn ended(span: ProxySpan, outcome: Outcome) -> Outcome {
    span.end(match outcome {
        Outcome::Status(s) | Outcome::Grpc(s, _) => Some(s),
        _ => None,
    });
    outcome
}

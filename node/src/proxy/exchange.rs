//! Doing what a [`Plan`] decided for one HTTP request: the pending cap, injected faults, then
//! attempts in the balancer's order, each bounded by its deadline (sent along in the stream
//! header), with retries as the policy and its budget allow, and every result fed to the
//! balancer and, with a circuit policy, to outlier ejection.
//!
//! Without any policy this is the plain data path: one attempt, and on to the next instance only
//! while nothing reached an app (no connection, or the node refused before its app saw the
//! request and the body is still whole), or when the connection died under an idempotent
//! request without a body. Instances the mesh gave up on meanwhile are skipped.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::Response;
use hyper::body::Incoming;
use murmur_membership::policy::spec::RetrySpec;
use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use quinn::SendStream;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::body::{self, CANCELLED, FrameBody, ProxyBody};
use super::dial::{self, DialError};
use super::errors::ProxyError;
use super::frame::{self, BodyKind, Frame, FrameReader, ResponseHead};
use super::plan::{self, Plan, Target};
use super::replay::Source;
use super::route::RouteError;
use super::runtime::Proxy;
use super::timed::TimedBody;
use super::tunnel::Tunnel;
use crate::balance::InFlight;
use crate::traffic::Circuit;
use crate::traffic::circuit::{OutlierConfig, PendingGuard};
use crate::traffic::fault::Injected;
use crate::traffic::retry::{self, Failure};
use crate::traffic::timeout::{self, Fired, Timeouts};

/// The request as the outbound listener prepared it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The service the app addressed.
    pub service: &'a Name,
    /// Method.
    pub method: &'a str,
    /// The encoded HEAD frame.
    pub head: Bytes,
    /// What body follows the head.
    pub kind: BodyKind,
    /// Stream header (target service, trace context); the deadline is set per attempt.
    pub header: StreamHeader,
    /// When the request arrived: the request timeout counts from here.
    pub started: Instant,
}

/// The response and the node that gave it.
#[derive(Debug)]
pub struct Answer {
    /// For the app.
    pub response: Response<ProxyBody>,
    /// The node that answered.
    pub node: String,
    /// After a `101` to an upgrade request: the stream, now the upgraded connection.
    pub tunnel: Option<Tunnel>,
}

/// How one attempt ended.
enum Attempt {
    /// A response head arrived.
    Answered {
        head: ResponseHead,
        reader: FrameReader,
        task: BodyTask,
        /// Our side of an upgrade request's stream, kept open for the switch.
        held: Option<SendStream>,
    },
    /// Nothing reached the app.
    NotSent(NotSent),
    /// The stream failed after the request was sent.
    Broken(String),
    /// A timeout fired before the response head.
    TimedOut(Fired),
    /// The app's request body failed (malformed chunking, cut short): not the instance's fault.
    BadBody(String),
}

/// Why an attempt reached no app: the request may go to another instance.
#[derive(Debug)]
enum NotSent {
    /// No stream to the instance.
    Dial(DialError),
    /// The serving node refused before its app saw the request.
    Refused(String),
    /// A retry needs the body again, and it could not be kept.
    BodyGone,
}

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dial(e) => e.fmt(f),
            Self::Refused(why) => f.write_str(why),
            Self::BodyGone => f.write_str("the request body is no longer available"),
        }
    }
}

/// The task writing the request body; dropping it resets the stream (an abandoned attempt
/// must not look like a complete body), [`BodyTask::detach`] lets it run to the end.
struct BodyTask(Option<oneshot::Sender<()>>);

impl BodyTask {
    fn none() -> Self {
        Self(None)
    }

    fn spawn<B>(mut send: SendStream, body: B, failed: Arc<OnceLock<String>>) -> Self
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display + Send,
    {
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let cancelled = async {
                if rx.await.is_err() {
                    // Detached: never cancelled.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                r = body::send_noting(&mut send, BytesMut::new(), body, &failed) => {
                    if let Err(e) = r {
                        debug!(error = %e, "request body not fully forwarded");
                    }
                }
                () = cancelled => {
                    let _ = send.reset(CANCELLED);
                }
            }
        });
        Self(Some(tx))
    }

    fn detach(mut self) {
        self.0.take();
    }
}

impl Drop for BodyTask {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the exchange; `body` is the app's request body.
pub async fn run(
    proxy: &Proxy,
    plan: Plan<'_>,
    mut req: Request<'_>,
    body: Incoming,
) -> Result<Answer, ProxyError> {
    let mut plan = plan;
    let timeouts = plan.timeouts.take().unwrap_or_default();
    let mut call = Call {
        proxy,
        service: req.service.as_str(),
        target: plan.target,
        retry: plan.retry,
        outlier: plan.circuit.map(|c| &c.outlier),
        deadline: timeouts.request.map(|d| req.started + d),
        timeouts,
        source: Source::new(
            body,
            matches!(req.kind, BodyKind::Empty | BodyKind::Upgrade),
            plan.retry.map(|r| r.max_body_bytes),
        ),
        retries: 0,
        failures: Vec::new(),
    };
    // The balancer may have made the first target this request's ejection probe: if the request
    // ends before an attempt starts there, the probe is freed for the next one.
    let _probe = plan
        .circuit
        .zip(plan.targets.first())
        .map(|(_, t)| ProbeRelease {
            proxy,
            service: plan.target,
            node: &t.endpoint.node,
        });
    let _pending = call.enter_pending(plan.circuit)?;
    if plan.injected != Injected::default() {
        call.inject(&plan).await?;
    }
    let order = &plan.targets;
    if let Some(spec) = call.retry {
        proxy.traffic.budget_request(spec, crate::clock::now());
    }
    let (mut i, mut skipped) = (0usize, 0usize);
    while let Some(target) = order.get(i % order.len().max(1)) {
        let ep = target.endpoint;
        i += 1;
        // Time has passed since the first attempt: skip instances the mesh has given up on.
        if i > 1 && !plan::still_listed(&proxy.view.borrow(), call.target, &ep.node) {
            skipped += 1;
            if skipped >= order.len() {
                break;
            }
            continue;
        }
        skipped = 0;
        let now = crate::clock::now();
        let limit = call.timeouts.attempt_limit(call.deadline, now);
        if let Some((at, fired)) = limit
            && at <= now
        {
            return Err(call.expired(fired));
        }
        req.header.deadline_ms = limit.map(|(at, _)| timeout::millis_left(at, now));
        let mut inflight = proxy.balancers.start(call.target, &ep.node);
        let outcome = attempt(proxy, target, &req, &mut call, limit, &mut inflight).await;
        let more = i < order.len();
        let failure = match call.conclude(outcome, ep, inflight, req.method, more) {
            Next::Retry(failure) => failure,
            Next::Done(answer) => return answer,
        };
        proxy.telemetry.retries.get(&[call.service]).inc();
        debug!(service = %call.service, node = %ep.node, ?failure, "retrying");
        call.backoff().await?;
    }
    Err(ProxyError::Route(RouteError::NoInstance {
        service: call.target.to_owned(),
        detail: call.failures.join("; "),
    }))
}

/// Frees an unused ejection probe when dropped ([`crate::balance::Balancers::release_probe`]).
struct ProbeRelease<'a> {
    proxy: &'a Proxy,
    service: &'a str,
    node: &'a str,
}

impl Drop for ProbeRelease<'_> {
    fn drop(&mut self) {
        self.proxy.balancers.release_probe(self.service, self.node);
    }
}

/// What follows an attempt.
// Moved once per attempt; boxing the answer would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// Another attempt, after this failure.
    Retry(Failure),
    /// The answer for the app (errors included).
    Done(Result<Answer, ProxyError>),
}

/// What one call keeps across its attempts.
struct Call<'a> {
    proxy: &'a Proxy,
    /// The service the app addressed.
    service: &'a str,
    /// The service its instances serve.
    target: &'a str,
    retry: Option<&'a RetrySpec>,
    outlier: Option<&'a OutlierConfig>,
    timeouts: Timeouts,
    /// The request deadline.
    deadline: Option<Instant>,
    source: Source,
    retries: u32,
    failures: Vec<String>,
}

impl Call<'_> {
    /// The 504 for a timeout that fired, counted.
    fn expired(&self, fired: Fired) -> ProxyError {
        self.proxy
            .telemetry
            .timeouts
            .get(&[self.service, fired.as_str()])
            .inc();
        ProxyError::Timeout {
            fired,
            message: self.timeouts.message(fired, self.service),
        }
    }

    /// Counts the request against the circuit's `max_pending`, or refuses it.
    fn enter_pending(&self, circuit: Option<&Circuit>) -> Result<Option<PendingGuard>, ProxyError> {
        let Some((c, max)) = circuit.and_then(|c| Some((c, c.max_pending?))) else {
            return Ok(None);
        };
        match self.proxy.traffic.pending(self.target).enter(max) {
            Some(guard) => Ok(Some(guard)),
            None => {
                self.proxy.telemetry.overloaded.get(&[self.target]).inc();
                Err(ProxyError::Overloaded {
                    service: self.target.to_owned(),
                    max,
                    doc: c.doc.clone(),
                })
            }
        }
    }

    /// The route's faults: the delay (within the request deadline), then the abort.
    async fn inject(&self, plan: &Plan<'_>) -> Result<(), ProxyError> {
        let route = plan.route.unwrap_or("-");
        let faults = &self.proxy.telemetry.faults;
        if let Some(delay) = plan.injected.delay {
            faults.get(&[self.service, route, "delay"]).inc();
            match self.deadline {
                Some(d) if d < crate::clock::now() + delay => {
                    tokio::time::sleep_until(d.into()).await;
                    return Err(self.expired(Fired::Request));
                }
                _ => tokio::time::sleep(delay).await,
            }
        }
        if let Some(status) = plan.injected.abort {
            faults.get(&[self.service, route, "abort"]).inc();
            return Err(ProxyError::Fault {
                route: route.to_owned(),
                status,
            });
        }
        Ok(())
    }

    /// Feeds an attempt's outcome to the balancer and outlier ejection, and decides what
    /// follows. `more`: the balancer's order has instances not tried yet.
    fn conclude(
        &mut self,
        outcome: Attempt,
        ep: &murmur_membership::view::Endpoint,
        inflight: InFlight,
        method: &str,
        more: bool,
    ) -> Next {
        let node = || ep.node.clone();
        let upstream = |detail| ProxyError::Upstream {
            service: self.target.to_owned(),
            node: node(),
            detail,
        };
        let (answered, ok) = match &outcome {
            Attempt::Answered { head, .. } => (true, head.status < 500),
            // The app's fault: the instance is neither slower nor worse for it.
            Attempt::BadBody(_) => (true, true),
            _ => (false, false),
        };
        self.proxy.note(
            self.target,
            &ep.node,
            inflight.finish(answered, ok, self.outlier),
        );
        match outcome {
            Attempt::Answered {
                head,
                reader,
                task,
                held,
            } => {
                let status = head.status;
                let wanted = self.retry.is_some_and(|s| s.statuses.contains(&status));
                if wanted && self.may_retry(method, Failure::Status(status)) {
                    self.failures.push(format!("{}: status {status}", ep.node));
                    return Next::Retry(Failure::Status(status));
                }
                task.detach();
                Next::Done(
                    match (status, held) {
                        (101, Some(send)) => switched(head).map(|response| Answer {
                            response,
                            node: node(),
                            tunnel: Some(Tunnel::after_frames(send, reader)),
                        }),
                        (101, None) => Err("101 to a request that asked for no upgrade".into()),
                        (_, held) => {
                            // Not switching: our side of an upgrade request ends here.
                            if let Some(mut send) = held {
                                let _ = send.finish();
                            }
                            respond(head, reader, self.deadline, self.timeouts.idle).map(
                                |response| Answer {
                                    response,
                                    node: node(),
                                    tunnel: None,
                                },
                            )
                        }
                    }
                    .map_err(upstream),
                )
            }
            Attempt::NotSent(why) => {
                if let NotSent::Dial(e) = &why
                    && e.is_impostor()
                {
                    info!(service = %self.target, node = %ep.node, error = %e,
                        "instance is not who the view says");
                }
                self.failures.push(format!("{}: {why}", ep.node));
                // Without a policy, the next instance is tried while nothing reached an app.
                let fallback = self.retry.is_none() && self.source.available() && more;
                if fallback || self.may_retry(method, Failure::Unreachable) {
                    return Next::Retry(Failure::Unreachable);
                }
                Next::Done(Err(ProxyError::Route(RouteError::NoInstance {
                    service: self.target.to_owned(),
                    detail: self.failures.join("; "),
                })))
            }
            Attempt::Broken(detail) => {
                // Without a policy, an idempotent request without a body whose connection died
                // under it (a node crashed, a partition was detected) goes to the next instance.
                let fallback = self.retry.is_none()
                    && self.source.is_empty()
                    && retry::idempotent(method)
                    && more;
                if fallback || self.may_retry(method, Failure::Broken) {
                    self.failures.push(format!("{}: {detail}", ep.node));
                    return Next::Retry(Failure::Broken);
                }
                Next::Done(Err(upstream(detail)))
            }
            Attempt::BadBody(why) => Next::Done(Err(ProxyError::BadBody(why))),
            Attempt::TimedOut(fired) => {
                if fired == Fired::PerTry && self.may_retry(method, Failure::PerTryTimeout) {
                    self.failures.push(format!("{}: per-try timeout", ep.node));
                    return Next::Retry(Failure::PerTryTimeout);
                }
                Next::Done(Err(self.expired(fired)))
            }
        }
    }

    /// Whether the retry policy lets this failure be retried, the budget included.
    fn may_retry(&self, method: &str, failure: Failure) -> bool {
        let Some(spec) = self.retry else {
            return false;
        };
        let replayable = self.source.available();
        if let Err(why) = retry::decide(spec, method, failure, replayable, self.retries) {
            debug!(service = %self.service, ?failure, ?why, "not retried");
            return false;
        }
        if !self
            .proxy
            .traffic
            .budget_try_retry(spec, crate::clock::now())
        {
            self.proxy
                .telemetry
                .retry_budget_exhausted
                .get(&[self.service])
                .inc();
            return false;
        }
        true
    }

    /// Waits before the next retry of the policy (none for the plain fallback), within the
    /// request deadline.
    async fn backoff(&mut self) -> Result<(), ProxyError> {
        let Some(spec) = self.retry else {
            return Ok(());
        };
        self.retries += 1;
        let wait = retry::backoff(spec, self.retries, self.proxy.traffic.unit());
        match self.deadline {
            Some(d) if d <= crate::clock::now() + wait => {
                tokio::time::sleep_until(d.into()).await;
                Err(self.expired(Fired::Request))
            }
            _ => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
        }
    }
}

/// One attempt: open the stream (header and head), send the body, wait for the response head,
/// all before `limit`.
async fn attempt(
    proxy: &Proxy,
    target: &Target<'_>,
    req: &Request<'_>,
    call: &mut Call<'_>,
    limit: Option<(Instant, Fired)>,
    inflight: &mut InFlight,
) -> Attempt {
    let idle = call.timeouts.idle;
    let source = &mut call.source;
    let failed: Arc<OnceLock<String>> = Arc::default();
    let exchange = async {
        let empty = source.is_empty();
        let upgrade = req.kind == BodyKind::Upgrade;
        let opened = dial::open(
            &proxy.endpoint,
            target,
            &req.header,
            StreamKind::Http,
            &req.head,
            empty && !upgrade,
        )
        .await;
        let (send, recv) = match opened {
            Ok(s) => s,
            Err(e) => return Attempt::NotSent(NotSent::Dial(e)),
        };
        inflight.sent();
        let mut held = None;
        let task = if upgrade {
            held = Some(send);
            BodyTask::none()
        } else if empty {
            BodyTask::none()
        } else {
            match source.next() {
                Some(b) => BodyTask::spawn(send, TimedBody::new(b, None, idle), failed.clone()),
                None => {
                    let mut send = send;
                    let _ = send.reset(CANCELLED);
                    return Attempt::NotSent(NotSent::BodyGone);
                }
            }
        };
        let mut reader = FrameReader::new(recv);
        match reader.next().await {
            Ok(Some(Frame::Head(bytes))) => match frame::decode_head::<ResponseHead>(&bytes) {
                // The deadline this attempt sent ran out on the serving node a moment before it
                // did here: the same timeout.
                Ok(head) if limit.is_some() && deadline_expired(&head) => {
                    Attempt::TimedOut(limit.map_or(Fired::Request, |(_, f)| f))
                }
                Ok(head) => Attempt::Answered {
                    head,
                    reader,
                    task,
                    held,
                },
                Err(e) => Attempt::Broken(e.to_string()),
            },
            Ok(Some(Frame::Refused(r))) => Attempt::NotSent(NotSent::Refused(r.reason)),
            Ok(Some(_)) => Attempt::Broken("protocol error: no response head".into()),
            Ok(None) => Attempt::Broken("stream closed before a response".into()),
            Err(e) => Attempt::Broken(e.to_string()),
        }
    };
    let outcome = match limit {
        Some((at, fired)) => tokio::time::timeout_at(at.into(), exchange)
            .await
            .unwrap_or(Attempt::TimedOut(fired)),
        None => exchange.await,
    };
    // Whatever the instance answered to a body that broke on our side is about that.
    match failed.get() {
        Some(why) => Attempt::BadBody(why.clone()),
        None => outcome,
    }
}

/// Whether the serving node answered that the deadline it was sent ran out.
fn deadline_expired(head: &ResponseHead) -> bool {
    head.status == 504
        && head
            .headers
            .iter()
            .any(|(k, v)| k == "x-murmur-error" && v.0 == b"deadline-expired")
}

/// The `101` for the app: the head's headers, and the upgrade's own (hop-by-hop, so each hop
/// sets them).
fn switched(head: ResponseHead) -> Result<Response<ProxyBody>, String> {
    let mut resp = Response::new(ProxyBody::Local(None));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = frame::header_map(head.headers).map_err(|e| e.to_string())?;
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    Ok(resp)
}

/// The response for the app: status and headers from the head, the body read from the stream
/// (under the request deadline and idle timeout, if any).
fn respond(
    head: ResponseHead,
    reader: FrameReader,
    deadline: Option<Instant>,
    idle: Option<Duration>,
) -> Result<Response<ProxyBody>, String> {
    let frames = FrameBody::new(reader, head.body);
    let body = if deadline.is_some() || idle.is_some() {
        ProxyBody::Timed(TimedBody::new(frames, deadline, idle))
    } else {
        ProxyBody::Remote(frames)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(head.status)
        .map_err(|_| format!("invalid status {}", head.status))?;
    *resp.headers_mut() = frame::header_map(head.headers).map_err(|e| e.to_string())?;
    Ok(resp)
}

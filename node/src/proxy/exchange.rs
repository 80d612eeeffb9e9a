//! Doing what a [`Plan`] decided for one HTTP request: a redirect answered at once; else the
//! route's edits of the request head, the pending cap, injected faults, then attempts in the
//! balancer's order, each bounded by its deadline (sent along in the stream header), with
//! retries as the policy and its budget allow (on statuses, and on gRPC statuses before any
//! response message), every result fed to the balancer and, with a circuit policy, to outlier
//! ejection; the route's edits of the response head; and a mirrored copy, if the plan has one.
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

use super::body::{self, CANCELLED, FrameBody, ProxyBody, grpc_status};
use super::dial::{self, DialError};
use super::edits;
use super::errors::ProxyError;
use super::frame::{self, BodyKind, Frame, FrameReader, RequestHead, ResponseHead};
use super::mirror::{self, MIRROR_BODY_LIMIT};
use super::plan::{self, Plan, Target};
use super::record::Record;
use super::replay::Source;
use super::route::RouteError;
use super::runtime::Proxy;
use super::timed::TimedBody;
use super::tunnel::Tunnel;
use crate::balance::InFlight;
use crate::traffic::Circuit;
use crate::traffic::circuit::{OutlierConfig, PendingGuard};
use crate::traffic::fault::Injected;
use crate::traffic::retry::{self, Failure, Pushback};
use crate::traffic::routes::Route;
use crate::traffic::timeout::{self, Fired, Timeouts};
use murmur_membership::policy::spec::GrpcCode;

/// The request as the outbound listener prepared it.
#[derive(Debug)]
pub struct Request<'a> {
    /// The service the app addressed.
    pub service: &'a Name,
    /// The head, as the app sent it (path normalized); the route's edits apply here.
    pub head: RequestHead,
    /// Stream header (target service, trace context); the deadline is set per attempt.
    pub header: StreamHeader,
    /// When the request arrived: the request timeout counts from here.
    pub started: Instant,
}

/// The request head, encoded once for every attempt.
struct Encoded<'r> {
    bytes: Bytes,
    method: &'r str,
    kind: BodyKind,
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
        /// What was looked at for a gRPC status (only when something acts on one).
        peeked: Option<Box<Peeked>>,
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

/// A gRPC status looked for in an answer.
#[derive(Debug)]
struct Peeked {
    /// The call's status, when it came before any response message.
    grpc: Option<(GrpcCode, Pushback)>,
    /// The frame read after the head looking for it.
    first: Option<Frame>,
}

/// The gRPC status of an answer, if one was looked for and found.
fn grpc_of(peeked: Option<&Peeked>) -> Option<(GrpcCode, Pushback)> {
    peeked.and_then(|p| p.grpc)
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
struct BodyTask(Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>);

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
        let task = tokio::spawn(async move {
            let cancelled = async {
                if rx.await.is_err() {
                    // Detached: never cancelled.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                r = body::send_noting(&mut send, BytesMut::new(), body, Some(&failed)) => {
                    if let Err(e) = r {
                        debug!(error = %e, "request body not fully forwarded");
                    }
                }
                () = cancelled => {
                    let _ = send.reset(CANCELLED);
                }
            }
        });
        Self(Some((tx, task)))
    }

    fn detach(mut self) {
        self.0.take();
    }

    /// Stops sending and waits until the task has let go of the body (a recorded body hands
    /// back what it had not read yet).
    async fn abandon(mut self) {
        if let Some((tx, task)) = self.0.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }
}

impl Drop for BodyTask {
    fn drop(&mut self) {
        if let Some((tx, _)) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs the exchange; `body` is the app's request body. What the account of the request needs
/// (route, retries, the path sent) goes to `record`.
///
/// The plan and the request are borrowed, not moved in: an `async fn` holds what it is given
/// by value twice, for as long as it runs.
pub async fn run(
    proxy: &Proxy,
    plan: &mut Plan<'_>,
    req: &mut Request<'_>,
    body: Incoming,
    record: &mut Record,
) -> Result<Answer, ProxyError> {
    if let Some(route) = plan.route {
        record.route(&route.name);
        if let Some(r) = plan.redirect {
            return Ok(Answer {
                response: edits::redirect(&route.name, r),
                node: "-".to_owned(),
                tunnel: None,
            });
        }
        edits::request(route, &mut req.head);
        record.path(&req.head.path);
    }
    let encoded = encode(&req.head)?;
    let timeouts = plan.timeouts.take().unwrap_or_default();
    // A mirrored copy of a request with a body is sent from the recording of the body.
    let keep = plan
        .mirror
        .as_ref()
        .filter(|_| encoded.kind != BodyKind::Empty)
        .map(|_| MIRROR_BODY_LIMIT);
    let mut call = Call {
        proxy,
        service: req.service.as_str(),
        target: plan.target,
        route: plan.route,
        retry: plan.retry,
        outlier: plan.circuit.map(|c| &c.outlier),
        deadline: timeouts.request.map(|d| req.started + d),
        timeouts,
        source: Source::new(
            body,
            matches!(encoded.kind, BodyKind::Empty | BodyKind::Upgrade),
            plan.retry.map(|r| r.max_body_bytes).max(keep),
        ),
        retries: 0,
        pushback: None,
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
            node: t.endpoint.node.as_str(),
        });
    let _pending = call.enter_pending(plan.circuit)?;
    if plan.injected != Injected::default() {
        call.inject(plan).await?;
    }
    if let Some(m) = &plan.mirror
        && call.source.is_empty()
    {
        if encoded.kind == BodyKind::Upgrade {
            // An upgrade is not copied: what follows its 101 is not requests.
            mirror::count(proxy, m, route_label(plan), mirror::Outcome::Skipped);
        } else {
            mirror::spawn(proxy, m, route_label(plan), &req.head, None);
        }
    }
    let answer = attempts(&mut call, plan, &mut req.header, &encoded).await;
    for _ in 0..call.retries {
        record.retried();
    }
    if let Some(m) = &plan.mirror
        && !call.source.is_empty()
    {
        match call.source.replay() {
            Some(b) => mirror::spawn(proxy, m, route_label(plan), &req.head, Some(b)),
            None => mirror::count(proxy, m, route_label(plan), mirror::Outcome::Skipped),
        }
    }
    answer
}

/// The route's name for labels, `-` if none.
fn route_label<'p>(plan: &'p Plan<'_>) -> &'p str {
    plan.route_name().unwrap_or("-")
}

/// Encodes the head for every attempt.
fn encode(head: &RequestHead) -> Result<Encoded<'_>, ProxyError> {
    let mut buf = BytesMut::with_capacity(256);
    frame::put_head(head, &mut buf).map_err(|e| ProxyError::HeadTooLarge(e.to_string()))?;
    Ok(Encoded {
        bytes: buf.freeze(),
        method: &head.method,
        kind: head.body,
    })
}

/// The attempts, in the plan's order, until one answers for good.
async fn attempts(
    call: &mut Call<'_>,
    plan: &Plan<'_>,
    header: &mut StreamHeader,
    head: &Encoded<'_>,
) -> Result<Answer, ProxyError> {
    let proxy = call.proxy;
    let order = &plan.targets;
    if let Some(spec) = call.retry {
        proxy.traffic.budget_request(spec, crate::clock::now());
    }
    let (mut i, mut skipped) = (0usize, 0usize);
    while let Some(target) = order.get(i % order.len().max(1)) {
        let ep = target.endpoint;
        i += 1;
        // Time has passed since the first attempt: skip instances the mesh has given up on.
        if i > 1 && !plan::still_listed(&proxy.view.borrow(), call.target, ep.node.as_str()) {
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
        header.deadline_ms = limit.map(|(at, _)| timeout::millis_left(at, now));
        if let Some(zone) = target.cross_zone {
            proxy.telemetry.cross_zone.get(&[call.target, zone]).inc();
        }
        let mut inflight = proxy.balancers.start(call.target, ep.node.as_str(), now);
        let mut outcome = attempt(proxy, target, header, head, call, limit, &mut inflight).await;
        // An answer to retry that came before the whole body was sent: stop sending it, so
        // that the rest of the body is handed back for the retry.
        if let Attempt::Answered {
            head, task, peeked, ..
        } = &mut outcome
            && call.retryable(head, grpc_of(peeked.as_deref())).is_some()
            && call.source.partly_recorded()
        {
            std::mem::replace(task, BodyTask::none()).abandon().await;
        }
        let more = i < order.len();
        let failure = match call.conclude(outcome, ep, inflight, head.method, more) {
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
    /// The route taken, if any.
    route: Option<&'a Route>,
    retry: Option<&'a RetrySpec>,
    outlier: Option<&'a OutlierConfig>,
    timeouts: Timeouts,
    /// The request deadline.
    deadline: Option<Instant>,
    source: Source,
    retries: u32,
    /// The wait a gRPC server asked for before the next retry.
    pushback: Option<Duration>,
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
        let route = route_label(plan);
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
        let node = || ep.node.to_string();
        let upstream = |detail| ProxyError::Upstream {
            service: self.target.to_owned(),
            node: node(),
            detail,
        };
        let (answered, ok) = match &outcome {
            Attempt::Answered { head, peeked, .. } => (
                true,
                head.status < 500
                    && grpc_of(peeked.as_deref()).is_none_or(|(c, _)| c.http_status() < 500),
            ),
            // The app's fault: the instance is neither slower nor worse for it.
            Attempt::BadBody(_) => (true, true),
            _ => (false, false),
        };
        self.proxy.note(
            self.target,
            ep.node.as_str(),
            inflight.finish(answered, ok, self.outlier),
        );
        match outcome {
            Attempt::Answered {
                head,
                reader,
                task,
                peeked,
                held,
            } => {
                let grpc = grpc_of(peeked.as_deref());
                if let Some(failure) = self.retryable(&head, grpc)
                    && self.may_retry(method, failure)
                {
                    self.failures.push(format!("{}: {failure:?}", ep.node));
                    self.pushback = match grpc {
                        Some((_, Pushback::After(d))) => Some(d),
                        _ => None,
                    };
                    return Next::Retry(failure);
                }
                task.detach();
                let first = peeked.and_then(|p| p.first);
                Next::Done(
                    self.answer(head, reader, first, held, node())
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

    /// The answer for the app: a switch to the upgraded connection after a `101` to an upgrade
    /// request, else the response (the held side of an upgrade request that was not switched
    /// ends here).
    fn answer(
        &self,
        head: ResponseHead,
        reader: FrameReader,
        first: Option<Frame>,
        held: Option<SendStream>,
        node: String,
    ) -> Result<Answer, String> {
        let (response, tunnel) = match (head.status, held) {
            (101, Some(send)) => (switched(head), Some(Tunnel::after_frames(send, reader))),
            (101, None) => return Err("101 to a request that asked for no upgrade".into()),
            (_, held) => {
                if let Some(mut send) = held {
                    let _ = send.finish();
                }
                (respond(head, reader, first, self)?, None)
            }
        };
        Ok(Answer {
            response,
            node,
            tunnel,
        })
    }

    /// The failure an answer is, if the retry policy retries it: its status, or its gRPC
    /// status unless the server refused retries (`grpc-retry-pushback-ms`).
    fn retryable(
        &self,
        head: &ResponseHead,
        grpc: Option<(GrpcCode, Pushback)>,
    ) -> Option<Failure> {
        let spec = self.retry?;
        if spec.statuses.contains(&head.status) {
            return Some(Failure::Status(head.status));
        }
        match grpc {
            Some((code, pushback))
                if pushback != Pushback::Refused && spec.grpc_statuses.contains(&code) =>
            {
                Some(Failure::Grpc(code))
            }
            _ => None,
        }
    }

    /// Whether a gRPC status in trailers is worth waiting for before the answer goes on: a retry
    /// policy or outlier ejection would act on it.
    fn wants_grpc_status(&self) -> bool {
        self.outlier.is_some() || self.retry.is_some_and(|r| !r.grpc_statuses.is_empty())
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
        let wait = match self.pushback.take() {
            Some(asked) => asked,
            None => retry::backoff(spec, self.retries, self.proxy.traffic.unit()),
        };
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

/// One attempt: open the stream (header and head), send the body, wait for the response head
/// (and, when a gRPC status would change what follows, for the frame after it), all before
/// `limit`.
async fn attempt(
    proxy: &Proxy,
    target: &Target<'_>,
    header: &StreamHeader,
    head: &Encoded<'_>,
    call: &mut Call<'_>,
    limit: Option<(Instant, Fired)>,
    inflight: &mut InFlight,
) -> Attempt {
    let idle = call.timeouts.idle;
    let peek = call.wants_grpc_status();
    let source = &mut call.source;
    let failed: Arc<OnceLock<String>> = Arc::default();
    let exchange = async {
        let empty = source.is_empty();
        let upgrade = head.kind == BodyKind::Upgrade;
        let opened = dial::open(
            &proxy.endpoint,
            target,
            header,
            StreamKind::Http,
            &head.bytes,
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
                Ok(head) if !peek => Attempt::Answered {
                    head,
                    reader,
                    task,
                    peeked: None,
                    held,
                },
                // Boxed: the plain path does not carry its state.
                Ok(head) => Box::pin(peek_grpc(head, reader, task, held)).await,
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

/// An answer with its gRPC status, for a retry policy or outlier ejection to act on: from its
/// head, or from trailers that come before any response message (every failed unary call's do).
async fn peek_grpc(
    head: ResponseHead,
    mut reader: FrameReader,
    task: BodyTask,
    held: Option<SendStream>,
) -> Attempt {
    let field = |name: &str| head.headers.get(name).map(http::HeaderValue::as_bytes);
    let in_head = field("grpc-status")
        .and_then(GrpcCode::from_header)
        .map(|c| (c, Pushback::of(field(PUSHBACK))));
    let grpc_body = head.body != BodyKind::Empty
        && field("content-type").is_some_and(|v| v.starts_with(b"application/grpc"));
    let peeked = if in_head.is_some() || !grpc_body {
        Peeked {
            grpc: in_head,
            first: None,
        }
    } else {
        let first = match reader.next().await {
            Ok(first) => first,
            Err(e) => return Attempt::Broken(e.to_string()),
        };
        let grpc = match &first {
            Some(Frame::Trailers(t)) => grpc_status(t).map(|c| {
                let pushback = t.get(PUSHBACK).map(|v| v.as_bytes());
                (c, Pushback::of(pushback))
            }),
            _ => None,
        };
        Peeked { grpc, first }
    };
    Attempt::Answered {
        head,
        reader,
        task,
        peeked: Some(Box::new(peeked)),
        held,
    }
}

/// The header a gRPC server asks for a retry delay with.
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Whether the serving node answered that the deadline it was sent ran out.
fn deadline_expired(head: &ResponseHead) -> bool {
    head.status == 504
        && head
            .headers
            .get_all("x-murmur-error")
            .iter()
            .any(|v| v == "deadline-expired")
}

/// The `101` for the app: the head's headers, and the upgrade's own (hop-by-hop, so each hop
/// sets them).
fn switched(head: ResponseHead) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::Local(None));
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = head.headers;
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("upgrade"),
    );
    resp
}

/// The response for the app: status and headers from the head (edited as the route says),
/// the body read from the stream (under the request deadline and idle timeout, if any).
fn respond(
    mut head: ResponseHead,
    reader: FrameReader,
    first: Option<Frame>,
    call: &Call<'_>,
) -> Result<Response<ProxyBody>, String> {
    let frames = match first {
        Some(f) => FrameBody::resume(reader, head.body, f).map_err(|e| e.to_string())?,
        None => FrameBody::new(reader, head.body),
    };
    let (deadline, idle) = (call.deadline, call.timeouts.idle);
    let body = if deadline.is_some() || idle.is_some() {
        ProxyBody::Timed(TimedBody::new(frames, deadline, idle))
    } else {
        ProxyBody::Remote(frames)
    };
    if let Some(route) = call.route {
        edits::response(route, &mut head.headers);
    }
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(head.status)
        .map_err(|_| format!("invalid status {}", head.status))?;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

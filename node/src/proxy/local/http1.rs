//! HTTP/1.1 to one app address: idle connections on a stack (the most recently used on top, so
//! in a quiet period the others age out), each driven by a task of its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tracing::debug;

use super::body::{AppBody, GiveBack, Return};
use super::conn::{AppAnswer, AppCall, AppError, IDLE, Kept, MAX_IDLE, connect, sweep_while_kept};
use crate::proxy::body::FrameBody;
use crate::proxy::headers::origin_form;

type Sender = SendRequest<FrameBody>;

/// The idle connections to one app.
#[derive(Debug)]
pub struct Pool {
    address: SocketAddr,
    host: Option<HeaderValue>,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Oldest at the bottom.
    stack: Vec<(Sender, Instant)>,
    /// A task drops connections idle too long while any is kept.
    swept: bool,
}

impl Kept for Pool {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            host: HeaderValue::from_str(&address.to_string()).ok(),
            idle: Mutex::new(Idle::default()),
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().stack.is_empty()
    }

    fn sweep(&self) -> bool {
        let mut idle = self.lock();
        let now = Instant::now();
        idle.stack
            .retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < IDLE);
        idle.swept = !idle.stack.is_empty();
        idle.swept
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` on an idle connection, or a new one; once more on a new one if the kept
    /// connection closed before the request was written.
    ///
    /// On a kept connection the request is handed to it here, and only hyper's wait for the
    /// answer is boxed with it: what a new connection takes (connecting, the handshake) is a
    /// future of its own, boxed only when needed. Together they were one future of 2.5 KB,
    /// allocated and copied whole for every request.
    pub fn request(self: Arc<Self>, mut req: Request<FrameBody>) -> AppCall {
        for_http1(&mut req, self.host.as_ref());
        match self.take() {
            Some(mut sender) => {
                let answer = Box::pin(sender.try_send_request(req));
                Box::pin(self.on_kept(sender, answer))
            }
            None => Box::pin(self.on_new(req)),
        }
    }

    /// The answer on a kept connection; if it closed before the request was written, the
    /// request goes again on a new one.
    async fn on_kept<F>(self: Arc<Self>, sender: Sender, answer: Pin<Box<F>>) -> AppAnswer
    where
        F: Future<Output = Result<Response<Incoming>, TrySendError<Request<FrameBody>>>>,
    {
        let again = match answer.await {
            Ok(resp) => return Ok(self.answered(resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(req) => req,
                None => return Err(AppError::Request(e.into_error())),
            },
        };
        debug!(app = %self.address, "kept connection closed; sending on a new one");
        Box::pin(self.on_new(again)).await
    }

    /// The answer on a new connection.
    async fn on_new(self: Arc<Self>, req: Request<FrameBody>) -> AppAnswer {
        let mut sender = self.open().await?;
        let resp = sender
            .try_send_request(req)
            .await
            .map_err(|e| AppError::Request(e.into_error()))?;
        Ok(self.answered(resp, sender))
    }

    /// An upgraded connection is the caller's now; any other goes back once its answer is read.
    fn answered(self: Arc<Self>, resp: Response<Incoming>, sender: Sender) -> Response<AppBody> {
        let back = (resp.status() != StatusCode::SWITCHING_PROTOCOLS)
            .then(|| Return { pool: self, sender });
        resp.map(|body| AppBody::new(body, back))
    }

    /// The most recently used idle connection, if it is still open and not idle too long.
    fn take(&self) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some((sender, since)) = idle.stack.pop() {
            if sender.is_ready() && since.elapsed() < IDLE {
                return Some(sender);
            }
        }
        None
    }

    fn keep(self: Arc<Self>, sender: Sender) {
        let mut idle = self.lock();
        if idle.stack.len() >= MAX_IDLE {
            return;
        }
        idle.stack.push((sender, Instant::now()));
        if !idle.swept {
            idle.swept = true;
            drop(idle);
            sweep_while_kept(&self);
        }
    }

    /// A new connection, driven by a task of its own until it closes.
    async fn open(&self) -> Result<Sender, AppError> {
        let address = self.address;
        let stream = connect(address).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| AppError::Handshake { address, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(app = %address, error = %e, "connection to the app ended");
            }
        });
        Ok(sender)
    }
}

impl GiveBack for Pool {
    /// Keeps `sender` for the next request. Its connection is usually ready for one when the
    /// answer has been read; if not yet (its task has not run since, or the app answered before
    /// reading the whole request), a task waits for it, as long as it may stay idle.
    fn give_back(self: Arc<Self>, mut sender: Sender) {
        if sender.is_ready() {
            self.keep(sender);
        } else if !sender.is_closed() {
            tokio::spawn(async move {
                if let Ok(Ok(())) = tokio::time::timeout(IDLE, sender.ready()).await {
                    self.keep(sender);
                }
            });
        }
    }
}

/// HTTP/1.1 requests name the path alone; the host goes in `Host` if the caller gave none.
fn for_http1(req: &mut Request<FrameBody>, host: Option<&HeaderValue>) {
    *req.uri_mut() = origin_form(req.uri());
    if let Some(h) = host
        && !req.headers().contains_key(HOST)
    {
        req.headers_mut().insert(HOST, h.clone());
    }
}

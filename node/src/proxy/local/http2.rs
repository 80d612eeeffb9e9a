//! HTTP/2 (prior knowledge) to one app address: one connection shared by every request,
//! opened again once it closes, closed after a minute without a request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Request, Response};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;
use tracing::debug;

use super::body::AppBody;
use super::conn::{AppError, IDLE, Kept, connect, sweep_while_kept};
use crate::proxy::body::FrameBody;

type Sender = SendRequest<FrameBody>;

#[derive(Debug, Default)]
struct State {
    /// The connection's handle and when a request last took it.
    conn: Option<(Sender, Instant)>,
    /// A task drops the connection once idle too long.
    swept: bool,
}

/// The shared connection to one app.
#[derive(Debug)]
pub struct Shared {
    address: SocketAddr,
    state: Mutex<State>,
    /// Held while a connection is being opened, so concurrent first requests open one.
    opening: tokio::sync::Mutex<()>,
}

impl Kept for Shared {
    fn new(address: SocketAddr) -> Self {
        Self {
            address,
            state: Mutex::new(State::default()),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn is_empty(&self) -> bool {
        self.lock().conn.is_none()
    }

    fn sweep(&self) -> bool {
        let mut state = self.lock();
        // Dropping our handle lets the connection close once its last stream ends.
        if state
            .conn
            .as_ref()
            .is_some_and(|(s, used)| s.is_closed() || used.elapsed() >= IDLE)
        {
            state.conn = None;
        }
        state.swept = state.conn.is_some();
        state.swept
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` on the shared connection (opened if there is none); once more on a new one
    /// if it closed before the request was written.
    pub async fn request(
        self: Arc<Self>,
        req: Request<FrameBody>,
    ) -> Result<Response<AppBody>, AppError> {
        let mut sender = self.sender().await?;
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    debug!(app = %self.address, "shared connection closed; sending on a new one");
                    self.sender()
                        .await?
                        .try_send_request(req)
                        .await
                        .map_err(|e| AppError::Request(e.into_error()))?
                }
                None => return Err(AppError::Request(e.into_error())),
            },
        };
        Ok(resp.map(|body| AppBody::new(body, None)))
    }

    /// The open connection's handle, marked used now; a new connection if there is none.
    async fn sender(self: &Arc<Self>) -> Result<Sender, AppError> {
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let _opening = self.opening.lock().await;
        // Someone else may have opened one meanwhile.
        if let Some(s) = self.current() {
            return Ok(s);
        }
        let sender = self.open().await?;
        let mut state = self.lock();
        state.conn = Some((sender.clone(), Instant::now()));
        let start = !std::mem::replace(&mut state.swept, true);
        drop(state);
        if start {
            sweep_while_kept(self);
        }
        Ok(sender)
    }

    /// The open connection's handle, if there is one; marked used now.
    fn current(&self) -> Option<Sender> {
        let mut state = self.lock();
        let (sender, used) = state.conn.as_mut()?;
        if sender.is_closed() {
            state.conn = None;
            return None;
        }
        *used = Instant::now();
        Some(sender.clone())
    }

    async fn open(&self) -> Result<Sender, AppError> {
        let address = self.address;
        let stream = connect(address).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| AppError::Handshake { address, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(app = %address, error = %e, "HTTP/2 connection to the app ended");
            }
        });
        Ok(sender)
    }
}

//! What the app clients share: their limits, answers and errors, a TCP connection to the app,
//! and the sweep that closes idle connections when no request comes to do it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tokio::net::TcpStream;

use super::body::AppBody;

/// Idle connections live this long.
pub const IDLE: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per app.
pub const MAX_IDLE: usize = 256;
/// A connection to the app must be accepted within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// App addresses with kept connections, at most. Addresses come from the config and runtime
/// registrations; past this, those with nothing kept are forgotten first.
pub const MAX_APPS: usize = 1024;

/// The app's answer to a request, or why there is none.
pub type AppAnswer = Result<Response<AppBody>, AppError>;

/// A request on its way to the app, until its answer's head.
pub type AppCall = Pin<Box<dyn Future<Output = AppAnswer> + Send>>;

/// Why the app could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// No connection could be made: the request went nowhere.
    #[error("cannot connect to {address}")]
    Connect {
        /// The app's address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection was made, but HTTP could not start on it: the request went nowhere.
    #[error("cannot start HTTP with {address}")]
    Handshake {
        /// The app's address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The request failed on its way or waiting for the answer: the app may have seen it.
    #[error("the request to the app failed")]
    Request(#[source] hyper::Error),
}

impl AppError {
    /// Whether nothing reached the app, so the caller may try another instance.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Handshake { .. })
    }
}

/// What is kept for one app address.
pub trait Kept {
    fn new(address: SocketAddr) -> Self;
    /// Nothing is kept (the address may be forgotten).
    fn is_empty(&self) -> bool;
    /// Drops what has been idle too long or closed; whether anything is still kept (if not,
    /// the next connection kept starts a new sweep).
    fn sweep(&self) -> bool;
}

/// A TCP connection to the app, without Nagle's delay (requests and answers are small writes).
pub async fn connect(address: SocketAddr) -> Result<TcpStream, AppError> {
    let failed = |source| AppError::Connect { address, source };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| {
            failed(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not accepted within {CONNECT_TIMEOUT:?}"),
            ))
        })?
        .map_err(failed)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// While `kept` holds anything, drops what has been idle too long, every quarter of the time
/// allowed: without requests nothing else would. Ends once nothing is kept, or `kept` is gone.
pub fn sweep_while_kept<C: Kept + Send + Sync + 'static>(kept: &Arc<C>) {
    let kept = Arc::downgrade(kept);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(IDLE / 4).await;
            match kept.upgrade() {
                Some(k) if k.sweep() => {}
                _ => return,
            }
        }
    });
}

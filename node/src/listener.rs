//! Local listeners (outbound HTTP, `[[upstream]]` TCP, admin API) under limits: at most
//! `max_connections` open at once (a connection over the cap is accepted and closed at once, so
//! the client sees a reset rather than a silent queue, and is counted), and a connection that
//! sends nothing for `first_byte_timeout`, or stays idle with nothing in flight for
//! `idle_timeout`, is closed. Without these, a client that opens connections and sends nothing
//! (or only an HTTP/2 preface) holds file descriptors forever, and enough of them take every
//! listener down with it, the admin API included.

mod activity;
mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

pub use activity::{Activity, Tracked};
pub use limits::{ListenerLimits, ListenerSettings};

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed for sending nothing in time.
    pub first_byte_timeouts: AtomicU64,
    /// Connections closed for idling.
    pub idle_timeouts: AtomicU64,
}

/// A listener with its limits.
#[derive(Debug)]
pub struct Gate {
    /// What it serves (for logs and metrics): `outbound`, `upstream:<service>`, `admin`.
    pub name: String,
    /// Its limits.
    pub limits: ListenerLimits,
    /// Its counters.
    pub stats: Arc<ListenerStats>,
    slots: Arc<Semaphore>,
}

/// One accepted connection. Its `slot` holds its place under the cap until dropped: keep it
/// as long as the connection (a task that takes only `stream` would let it go at once).
#[derive(Debug)]
pub struct Admitted {
    /// The connection.
    pub stream: TcpStream,
    /// The client.
    pub peer: SocketAddr,
    /// Its place under the cap.
    pub slot: Slot,
}

/// A connection's place under its listener's cap, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ListenerStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    /// A gate named `name` with `limits`.
    pub fn new(name: impl Into<String>, limits: ListenerLimits) -> Self {
        Self {
            name: name.into(),
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            stats: Arc::default(),
        }
    }

    /// Serves `conn` (a connection this gate admitted, whose I/O records into `activity`)
    /// until it ends or the watchdog finds it silent; then the connection is dropped (closed)
    /// and its slot freed.
    pub async fn serve<F: std::future::Future>(
        &self,
        activity: &Activity,
        conn: F,
    ) -> Option<F::Output> {
        tokio::select! {
            out = conn => Some(out),
            () = self.watch(activity) => None,
        }
    }

    /// The next connection under the cap; connections over it are closed as they come.
    pub async fn accept(&self, listener: &TcpListener) -> Admitted {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    debug!(listener = %self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    self.stats.open.fetch_add(1, Ordering::Relaxed);
                    let slot = Slot {
                        _permit: permit,
                        stats: self.stats.clone(),
                    };
                    return Admitted { stream, peer, slot };
                }
                Err(_) => {
                    let n = self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    // Once, then every 1 000: a flood must not flood the log too.
                    if n.is_multiple_of(1000) {
                        warn!(
                            listener = %self.name, %peer, max = self.limits.max_connections,
                            refused = n + 1,
                            "connection refused: the listener is at its connection cap"
                        );
                    }
                    drop(stream);
                }
            }
        }
    }

    /// Resolves when a connection with `activity` should be closed for silence, counting why.
    pub async fn watch(&self, activity: &Activity) {
        let why = activity.silence(self.limits).await;
        let counter = match why {
            activity::Silence::FirstByte => &self.stats.first_byte_timeouts,
            activity::Silence::Idle => &self.stats.idle_timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        debug!(listener = %self.name, reason = ?why, "connection closed for silence");
    }
}

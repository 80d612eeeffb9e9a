//! Process signals: SIGTERM and SIGINT stop the node gracefully, SIGHUP reloads credentials.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tracing::{info, warn};

/// Why the node is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// The node's signal handlers. Installed before the node starts, so a SIGTERM that arrives
/// while it is still starting (binding, joining, loading capture rules) stops it gracefully
/// once started, rather than killing it by the default action with its rules in place.
#[derive(Debug)]
pub struct Signals(Option<[Signal; 3]>);

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP (needs a runtime).
    pub fn install() -> Self {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Self(Some([term, int, hup])),
            _ => {
                warn!("signal handlers could not be installed; stop the node with SIGKILL");
                Self(None)
            }
        }
    }

    /// Waits for SIGTERM or SIGINT (also one received before this call); meanwhile every
    /// SIGHUP notifies `reload`.
    pub async fn wait_for_stop(self, reload: Arc<Notify>) -> Stop {
        let Some([mut term, mut int, mut hup]) = self.0 else {
            return std::future::pending().await;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return Stop::Terminate,
                _ = int.recv() => return Stop::Interrupt,
                _ = hup.recv() => {
                    info!("SIGHUP: reloading credentials");
                    reload.notify_one();
                }
            }
        }
    }
}

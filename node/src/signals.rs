//! Process signals: SIGTERM and SIGINT stop the node gracefully, SIGHUP reloads credentials.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
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

/// Waits for SIGTERM or SIGINT; meanwhile every SIGHUP notifies `reload`.
pub async fn wait_for_stop(reload: Arc<Notify>) -> Stop {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("signal handlers could not be installed; stop the node with SIGKILL");
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

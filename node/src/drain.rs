//! Graceful drain: stop attracting traffic, let peers notice, finish what is in progress.
//!
//! 1. Gossip `draining`: peers stop choosing this node for new requests (they still use it if
//!    it is the only instance left, rather than fail).
//! 2. Keep serving until no new inbound request has arrived for a quiet period — the sign that
//!    every peer has heard — but at least a few gossip rounds, at most the drain timeout.
//! 3. Wait for the requests in progress to finish, within the same timeout.
//!
//! On SIGTERM the node then leaves and exits; `murmur drain` stops here and the node keeps
//! running (drained) until `murmur drain --undo` or a restart.

use std::sync::atomic::Ordering;
use std::time::Duration;

use murmur_membership::Membership;
use murmur_membership::records::NodeStatus;
use tokio::time::Instant;
use tracing::info;

use crate::api::drain::DrainReport;
use crate::clock::unix_now_ms;
use crate::telemetry::Telemetry;

/// How a drain proceeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainSettings {
    /// Longest the whole drain may take.
    pub timeout: Duration,
    /// Inbound silence that shows peers have stopped choosing this node.
    pub quiet: Duration,
    /// Shortest wait after announcing, so the news has time to spread.
    pub min_wait: Duration,
}

/// How often a drain that is taking long says why.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Drains this node (see the module documentation): announces it through `membership`, and
/// reads inbound traffic off `telemetry`.
pub async fn drain(
    membership: &Membership,
    telemetry: &Telemetry,
    s: DrainSettings,
) -> DrainReport {
    let start = Instant::now();
    let deadline = start + s.timeout;
    if let Err(e) = membership.set_status(NodeStatus::Draining).await {
        tracing::warn!(error = %e, "could not announce draining");
    }
    info!(timeout = ?s.timeout, "draining: peers are told to stop choosing this node");
    let t = telemetry;
    let announced_ms = unix_now_ms();
    let mut next_progress = start + PROGRESS_EVERY;
    loop {
        let now = Instant::now();
        let since_last = unix_now_ms()
            .saturating_sub(t.last_inbound_ms.load(Ordering::Relaxed).max(announced_ms));
        if now >= deadline
            || (now - start >= s.min_wait && since_last >= s.quiet.as_millis() as u64)
        {
            break;
        }
        // A drain normally ends within seconds: say what holds a long one up.
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            info!(
                last_request_ms_ago = since_last,
                in_flight = t.inbound_in_flight.load(Ordering::Relaxed),
                "still draining: peers are still sending requests"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Nudge peers now and then in case the first announcement was lost.
        if (now - start).as_millis() % 1000 < 50 {
            membership.announce().await;
        }
    }
    let quiet_after = start.elapsed();
    while t.inbound_in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= next_progress {
            next_progress += PROGRESS_EVERY;
            info!(
                in_flight = t.inbound_in_flight.load(Ordering::Relaxed),
                "still draining: requests in flight"
            );
        }
    }
    let left = t.inbound_in_flight.load(Ordering::Relaxed).max(0);
    let report = DrainReport {
        quiet_after_ms: quiet_after.as_millis() as u64,
        took_ms: start.elapsed().as_millis() as u64,
        in_flight_left: left,
        complete: left == 0 && Instant::now() <= deadline,
    };
    info!(?report, "drained");
    report
}

/// Takes traffic again after a drain.
pub async fn undrain(membership: &Membership) -> Result<(), murmur_membership::MembershipError> {
    info!("serving again");
    membership.set_status(NodeStatus::Serving).await
}

//! The node's clocks: monotonic time for deadlines and rates (tokio's, so tests can pause it),
//! and wall-clock time as the mesh exchanges it (Unix seconds and milliseconds). The only
//! place the node reads either.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Monotonic now.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Milliseconds since the Unix epoch.
#[allow(
    clippy::disallowed_methods,
    reason = "the one reading of the wall clock"
)]
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds since the Unix epoch.
#[allow(
    clippy::disallowed_methods,
    reason = "the one reading of the wall clock"
)]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Wall-clock now, as certificates state their validity.
pub fn wall_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_now_ms())
}

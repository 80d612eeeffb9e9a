//! `POST /v1/drain`: what a drain did.

use serde::{Deserialize, Serialize};

/// What a drain did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DrainReport {
    /// Time from announcing to the end of new traffic, ms.
    pub quiet_after_ms: u64,
    /// Total time, ms.
    pub took_ms: u64,
    /// Requests still in progress when the drain gave up (0 when it completed).
    pub in_flight_left: i64,
    /// Whether the drain finished within its timeout.
    pub complete: bool,
}

//! `retry`: which failures are retried, and how much retrying a service may cause.

use std::time::Duration;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, PolicyDuration, check_duration, check_len};
use super::grpc::GrpcCode;

/// Retries of requests to `service` (or only those taking `route`). Requests are retried on a
/// connection failure, on the listed statuses and on the listed gRPC statuses; only idempotent
/// methods (so no gRPC call, which is a POST) unless
/// `non_idempotent` is set; a body is replayed only if it is at most `max_body_bytes`; and all
/// retries together stay within the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Document name.
    pub name: Name,
    /// Service whose requests are retried.
    pub service: Name,
    /// Only requests taking this route; none means every route of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Name>,
    /// Retries per request after the first attempt (default 2).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Retry when no connection to the endpoint could be made (default true).
    #[serde(default = "yes")]
    pub on_connect_failure: bool,
    /// Response statuses that are retried, e.g. `[502, 503]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
    /// gRPC statuses that are retried, e.g. `["UNAVAILABLE"]`, whether they come in the
    /// response headers or in the trailers before any response message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grpc_statuses: Vec<GrpcCode>,
    /// Also retry methods that are not idempotent (POST, PATCH). Default false.
    #[serde(default)]
    pub non_idempotent: bool,
    /// Largest request body kept for replay (default 64 KiB); larger requests are not retried.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Waiting between attempts.
    #[serde(default)]
    pub backoff: Backoff,
    /// How many retries the service may cause in all.
    #[serde(default)]
    pub budget: RetryBudget,
}

/// Exponential backoff with jitter between `base` and `max`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// First wait (default 25ms).
    pub base: PolicyDuration,
    /// Longest wait (default 250ms).
    pub max: PolicyDuration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: PolicyDuration::from_millis(25),
            max: PolicyDuration::from_millis(250),
        }
    }
}

/// Retries allowed: `ratio` of the requests of the last `window`, plus `min_per_second`.
/// The default is 20 % + 10/s over 10 s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries per request, 0..1 (default 0.2).
    pub ratio: f64,
    /// Retries always allowed per second (default 10).
    pub min_per_second: u32,
    /// Window the ratio is computed over (default 10s).
    pub window: PolicyDuration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: PolicyDuration::from_secs(10),
        }
    }
}

fn default_max_retries() -> u32 {
    2
}

fn yes() -> bool {
    true
}

fn default_max_body() -> u64 {
    64 * 1024
}

impl RetrySpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(1..=10).contains(&self.max_retries) {
            return Err(FieldError::new(
                "max_retries",
                format!("{} is outside 1..10", self.max_retries),
            ));
        }
        check_len("statuses", &self.statuses, 16)?;
        for (i, s) in self.statuses.iter().enumerate() {
            if !(400..=599).contains(s) {
                return Err(FieldError::new(
                    format!("statuses[{i}]"),
                    format!("{s} is not an error status (400..599)"),
                ));
            }
        }
        check_len("grpc_statuses", &self.grpc_statuses, 16)?;
        if let Some(i) = self.grpc_statuses.iter().position(|c| *c == GrpcCode::Ok) {
            return Err(FieldError::new(
                format!("grpc_statuses[{i}]"),
                "OK is a success, not a status to retry",
            ));
        }
        if self.max_body_bytes > 16 << 20 {
            return Err(FieldError::new(
                "max_body_bytes",
                "at most 16 MiB of body can be kept for replay",
            ));
        }
        let (ms, hour) = (Duration::from_millis(1), Duration::from_secs(3600));
        check_duration("backoff.base", self.backoff.base, ms, hour)?;
        check_duration("backoff.max", self.backoff.max, self.backoff.base.0, hour)?;
        let b = &self.budget;
        if !(0.0..=1.0).contains(&b.ratio) {
            return Err(FieldError::new(
                "budget.ratio",
                format!("{} is outside 0..1 (0.2 means 20 %)", b.ratio),
            ));
        }
        check_duration(
            "budget.window",
            b.window,
            Duration::from_secs(1),
            Duration::from_secs(600),
        )
    }
}

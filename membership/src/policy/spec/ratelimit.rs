//! `ratelimit`: inbound token buckets.

use std::time::Duration;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, PolicyDuration, check_duration};

/// A token bucket on requests arriving for `service`: `rate` tokens per `per`, holding at most
/// `burst`. A request without a token is answered 429 with `retry-after`. Several documents for
/// one service all apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Document name.
    pub name: Name,
    /// Service whose inbound requests are limited.
    pub service: Name,
    /// Tokens added per `per`.
    pub rate: u32,
    /// Refill period (default 1s).
    #[serde(default = "one_second")]
    pub per: PolicyDuration,
    /// Bucket size (default: `rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// One bucket for all callers, or one per caller identity.
    #[serde(default)]
    pub by: LimitKey,
    /// Whether `rate` is per instance, or for the whole service and split among its live
    /// instances.
    #[serde(default)]
    pub scope: LimitScope,
}

/// What a bucket is kept for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKey {
    /// One bucket for every caller.
    #[default]
    Service,
    /// One bucket per caller identity (SPIFFE ID).
    Caller,
}

/// Where the rate applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    /// Each instance enforces the full rate.
    #[default]
    Instance,
    /// The rate is the service's total, divided among its live instances.
    Global,
}

fn one_second() -> PolicyDuration {
    PolicyDuration::from_secs(1)
}

impl RateLimitSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.rate == 0 {
            return Err(FieldError::new("rate", "must be greater than 0"));
        }
        check_duration(
            "per",
            self.per,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )?;
        if self.burst == Some(0) {
            return Err(FieldError::new("burst", "must be greater than 0"));
        }
        Ok(())
    }
}

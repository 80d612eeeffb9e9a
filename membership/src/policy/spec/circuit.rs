//! `circuit`: outlier ejection per endpoint and a cap on pending requests per service.

use std::time::Duration;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, PolicyDuration, check_duration, check_percent};

/// Circuit breaking for `service`. An endpoint that fails `consecutive_failures` times in a row
/// is ejected for `base_ejection`, doubled on every further ejection up to `max_ejection`; when
/// the time is up it gets one probe request, and a success brings it back. At most
/// `max_ejected_percent` of the endpoints are ejected at once. With `max_pending`, requests
/// beyond that many in flight to the service fail at once (503) instead of queueing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitSpec {
    /// Document name.
    pub name: Name,
    /// Service whose endpoints are watched.
    pub service: Name,
    /// Failures in a row that eject an endpoint (default 7).
    #[serde(default = "default_failures")]
    pub consecutive_failures: u32,
    /// First ejection time (default 30s).
    #[serde(default = "default_base")]
    pub base_ejection: PolicyDuration,
    /// Longest ejection time (default 5m).
    #[serde(default = "default_max")]
    pub max_ejection: PolicyDuration,
    /// Largest share of endpoints ejected at once, 0..100 (default 50).
    #[serde(default = "default_percent")]
    pub max_ejected_percent: f64,
    /// Requests in flight to the service beyond which new ones fail fast; none means no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending: Option<u32>,
}

fn default_failures() -> u32 {
    7
}

fn default_base() -> PolicyDuration {
    PolicyDuration::from_secs(30)
}

fn default_max() -> PolicyDuration {
    PolicyDuration::from_secs(300)
}

fn default_percent() -> f64 {
    50.0
}

impl CircuitSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(1..=1000).contains(&self.consecutive_failures) {
            return Err(FieldError::new(
                "consecutive_failures",
                format!("{} is outside 1..1000", self.consecutive_failures),
            ));
        }
        let hour = Duration::from_secs(3600);
        check_duration(
            "base_ejection",
            self.base_ejection,
            Duration::from_millis(100),
            hour,
        )?;
        check_duration(
            "max_ejection",
            self.max_ejection,
            self.base_ejection.0,
            hour * 24,
        )?;
        check_percent("max_ejected_percent", self.max_ejected_percent)?;
        if self.max_pending == Some(0) {
            return Err(FieldError::new("max_pending", "must be greater than 0"));
        }
        Ok(())
    }
}

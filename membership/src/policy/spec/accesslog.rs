//! `accesslog`: whether the requests of a service are written to the nodes' access logs.

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, check_percent};

/// Access logging of `service`'s requests: with `enabled`, every node calling or serving it
/// writes one JSON line per request (`sample_percent` of them), wherever its configuration
/// sends access logs. A document overrides what the node's configuration says for the service,
/// so `enabled = false` silences a service the configuration logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSpec {
    /// Document name.
    pub name: Name,
    /// Service whose requests are logged.
    pub service: Name,
    /// Logged (default) or not.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Share of requests logged, 0..100 (default 100).
    #[serde(default = "all")]
    pub sample_percent: f64,
}

fn yes() -> bool {
    true
}

fn all() -> f64 {
    100.0
}

impl AccessLogSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_percent("sample_percent", self.sample_percent)
    }
}

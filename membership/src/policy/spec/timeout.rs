//! `timeout`: deadlines for a service's requests.

use std::time::Duration;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, PolicyDuration, check_duration};

/// Deadlines for requests to `service` (or only those taking `route`). A request whose deadline
/// passes is answered 504 with a body naming the timeout that fired; the remaining time travels
/// with the request to the serving node, which stops work after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutSpec {
    /// Document name.
    pub name: Name,
    /// Service whose requests it bounds.
    pub service: Name,
    /// Only requests taking this route; none means every route of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Name>,
    /// The whole exchange, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<PolicyDuration>,
    /// Each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try: Option<PolicyDuration>,
    /// Longest silence on a streaming request or response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<PolicyDuration>,
}

impl TimeoutSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        let fields = [
            ("request", self.request),
            ("per_try", self.per_try),
            ("idle", self.idle),
        ];
        if fields.iter().all(|(_, d)| d.is_none()) {
            return Err(FieldError::new(
                "request",
                "give at least one of `request`, `per_try` and `idle`",
            ));
        }
        for (field, d) in fields {
            if let Some(d) = d {
                check_duration(
                    field,
                    d,
                    Duration::from_millis(1),
                    Duration::from_secs(3600),
                )?;
            }
        }
        if let (Some(total), Some(per_try)) = (self.request, self.per_try)
            && per_try > total
        {
            return Err(FieldError::new(
                "per_try",
                format!("{per_try} is longer than `request` ({total})"),
            ));
        }
        Ok(())
    }
}

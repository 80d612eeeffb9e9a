//! The kinds of policy document.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a policy document configures. Encoded by index in signed payloads: append only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Request routing: matches, weighted backends, fault injection.
    Route,
    /// Retries of failed requests, with a budget.
    Retry,
    /// Request and per-try deadlines.
    Timeout,
    /// Inbound token buckets.
    Ratelimit,
    /// Outlier ejection and pending-request caps.
    Circuit,
    /// Allow/deny rules on caller, path and method.
    Authz,
    /// Access logging of a service's requests.
    Accesslog,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 7] = [
        Self::Route,
        Self::Retry,
        Self::Timeout,
        Self::Ratelimit,
        Self::Circuit,
        Self::Authz,
        Self::Accesslog,
    ];

    /// The kind's name as written in files, keys and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Retry => "retry",
            Self::Timeout => "timeout",
            Self::Ratelimit => "ratelimit",
            Self::Circuit => "circuit",
            Self::Authz => "authz",
            Self::Accesslog => "accesslog",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The known kind names, for error messages: `route, retry, ...`.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! `route`: which requests for a service go where.

use std::collections::BTreeMap;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::actions::{HashPolicy, HeaderActions, Mirror, Redirect, Rewrite};
use super::common::{
    FieldError, PathMatch, PolicyDuration, PolicyRegex, check_duration, check_host_pattern,
    check_len, check_methods, check_percent, is_header_token,
};

/// A routing rule for requests addressed to `service`. Of the routes of one service, the one
/// with the highest `priority` whose `match` holds is used (ties: by name); a request no route
/// matches goes to the service itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Document name.
    pub name: Name,
    /// The service whose requests this route takes.
    pub service: Name,
    /// Higher priorities are tried first.
    #[serde(default)]
    pub priority: i32,
    /// Conditions, all of which must hold; none means every request.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Where matching requests go, split by weight (required unless `redirect` is given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
    /// Faults injected into matching requests (for testing resilience).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Edits of the request's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<HeaderActions>,
    /// Edits of the response's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderActions>,
    /// Replaces the matched path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Answers with a redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Copies a share of the requests elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// Consistent hashing onto the backend's instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashPolicy>,
}

/// The conditions of a route.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Host names (exact, or `*.example.com` for any name under it) of requests that came in
    /// through a gateway. A route with hosts takes only such requests, for one of its hosts; a
    /// route without takes only requests from inside the mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Methods, any of which matches; empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// One header condition: exactly one of `exact`, `regex` and `present`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The whole value matches this regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<PolicyRegex>,
    /// The header is present (`true`) or absent (`false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// A destination of a route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Service to send to.
    pub service: Name,
    /// Only instances carrying all these labels (e.g. `version = "v2"`); empty means all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subset: BTreeMap<String, String>,
    /// Relative share of requests (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Faults to inject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Delay some requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayFault>,
    /// Answer some requests with an error status instead of forwarding them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortFault>,
}

/// A fixed delay for a percentage of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayFault {
    /// How long.
    pub duration: PolicyDuration,
    /// Share of requests, 0..100.
    pub percent: f64,
}

/// An error status for a percentage of requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortFault {
    /// HTTP status to answer with (400..599).
    pub status: u16,
    /// Share of requests, 0..100.
    pub percent: f64,
}

impl RouteSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.matches.validate().map_err(|e| e.within("match"))?;
        if let Some(r) = &self.redirect {
            r.validate().map_err(|e| e.within("redirect"))?;
            return self.validate_redirect();
        }
        if self.backends.is_empty() {
            return Err(FieldError::new(
                "backends",
                "at least one backend is required (or a `redirect`)",
            ));
        }
        check_len("backends", &self.backends, 16)?;
        for (i, b) in self.backends.iter().enumerate() {
            b.validate()
                .map_err(|e| e.within(&format!("backends[{i}]")))?;
        }
        if let Some(f) = &self.fault {
            f.validate().map_err(|e| e.within("fault"))?;
        }
        self.validate_actions()
    }

    /// A redirect is answered by the calling node: nothing else of a route applies to it.
    fn validate_redirect(&self) -> Result<(), FieldError> {
        let others = [
            ("backends", !self.backends.is_empty()),
            ("fault", self.fault.is_some()),
            ("request_headers", self.request_headers.is_some()),
            ("response_headers", self.response_headers.is_some()),
            ("rewrite", self.rewrite.is_some()),
            ("mirror", self.mirror.is_some()),
            ("hash", self.hash.is_some()),
        ];
        match others.iter().find(|(_, given)| *given) {
            Some((field, _)) => Err(FieldError::new(
                *field,
                "a route with a `redirect` answers the request itself: it takes no other action",
            )),
            None => Ok(()),
        }
    }

    fn validate_actions(&self) -> Result<(), FieldError> {
        if let Some(h) = &self.request_headers {
            h.validate().map_err(|e| e.within("request_headers"))?;
        }
        if let Some(h) = &self.response_headers {
            h.validate().map_err(|e| e.within("response_headers"))?;
        }
        if let Some(r) = &self.rewrite {
            r.validate().map_err(|e| e.within("rewrite"))?;
            if !matches!(self.matches.path, Some(PathMatch::Prefix(_))) {
                return Err(FieldError::new(
                    "rewrite.prefix",
                    "a rewrite replaces the prefix the route matched: give the route \
                     `match.path = { prefix = \"...\" }`",
                ));
            }
        }
        if let Some(m) = &self.mirror {
            m.validate().map_err(|e| e.within("mirror"))?;
        }
        if let Some(h) = &self.hash {
            h.validate().map_err(|e| e.within("hash"))?;
        }
        Ok(())
    }
}

impl RouteMatch {
    fn validate(&self) -> Result<(), FieldError> {
        check_len("hosts", &self.hosts, 16)?;
        for (i, h) in self.hosts.iter().enumerate() {
            check_host_pattern(&format!("hosts[{i}]"), h)?;
        }
        if let Some(p) = &self.path {
            p.validate("path")?;
        }
        check_methods("methods", &self.methods)?;
        check_len("headers", &self.headers, 16)?;
        for (i, h) in self.headers.iter().enumerate() {
            h.validate()
                .map_err(|e| e.within(&format!("headers[{i}]")))?;
        }
        Ok(())
    }
}

impl HeaderMatch {
    fn validate(&self) -> Result<(), FieldError> {
        if !is_header_token(&self.name) {
            return Err(FieldError::new(
                "name",
                format!("{:?} is not a header name", self.name),
            ));
        }
        let given = [
            self.exact.is_some(),
            self.regex.is_some(),
            self.present.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(FieldError::new(
                "exact",
                "give exactly one of `exact`, `regex` and `present`",
            ));
        }
        Ok(())
    }
}

impl Backend {
    fn validate(&self) -> Result<(), FieldError> {
        if self.weight == 0 {
            return Err(FieldError::new("weight", "must be greater than 0"));
        }
        if self.subset.len() > 8 {
            return Err(FieldError::new("subset", "at most 8 labels are allowed"));
        }
        Ok(())
    }
}

impl Fault {
    fn validate(&self) -> Result<(), FieldError> {
        if self.delay.is_none() && self.abort.is_none() {
            return Err(FieldError::new("delay", "give `delay`, `abort` or both"));
        }
        if let Some(d) = &self.delay {
            check_percent("delay.percent", d.percent)?;
            check_duration(
                "delay.duration",
                d.duration,
                std::time::Duration::from_millis(1),
                std::time::Duration::from_secs(3600),
            )?;
        }
        if let Some(a) = &self.abort {
            check_percent("abort.percent", a.percent)?;
            if !(400..=599).contains(&a.status) {
                return Err(FieldError::new(
                    "abort.status",
                    format!("{} is not an error status (400..599)", a.status),
                ));
            }
        }
        Ok(())
    }
}

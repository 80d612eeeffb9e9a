//! `authz`: who may call a service.

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, PathMatch, check_len, check_methods};

/// Authorization of requests arriving for `service`. Rules are tried in order and the first
/// that matches decides; when none matches, `default` does. In `shadow` mode a request that
/// would be denied is let through and logged and counted instead. A denial answers 403 naming
/// the rule (or `default`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzSpec {
    /// Document name.
    pub name: Name,
    /// Service whose inbound requests are checked.
    pub service: Name,
    /// What happens when no rule matches.
    pub default: Action,
    /// Enforce, or only log and count would-be denials.
    #[serde(default)]
    pub mode: AuthzMode,
    /// Rules, tried in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthzRule>,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Answer 403.
    Deny,
}

/// Whether denials are enforced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzMode {
    /// Deny.
    #[default]
    Enforce,
    /// Log and count, but let through.
    Shadow,
}

/// One rule: it matches when every condition given holds (an empty list matches anything).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzRule {
    /// Rule name, quoted in denials and logs.
    pub name: Name,
    /// What a match does.
    pub action: Action,
    /// Callers, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerMatch>,
    /// Paths, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// Methods, any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

/// Who a caller is: `{ spiffe = "spiffe://murmur.local/node/web-*" }` (a `*` stands for any
/// characters except `/`) or `{ service = "frontend" }` (a node whose certificate carries that
/// service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum CallerMatch {
    /// SPIFFE ID pattern.
    Spiffe(String),
    /// Service name.
    Service(Name),
}

impl AuthzSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_len("rules", &self.rules, 64)?;
        for (i, r) in self.rules.iter().enumerate() {
            r.validate().map_err(|e| e.within(&format!("rules[{i}]")))?;
        }
        Ok(())
    }
}

impl AuthzRule {
    fn validate(&self) -> Result<(), FieldError> {
        check_len("callers", &self.callers, 32)?;
        for (i, c) in self.callers.iter().enumerate() {
            if let CallerMatch::Spiffe(p) = c {
                check_spiffe_pattern(p).map_err(|m| FieldError::new(format!("callers[{i}]"), m))?;
            }
        }
        check_len("paths", &self.paths, 32)?;
        for (i, p) in self.paths.iter().enumerate() {
            p.validate(&format!("paths[{i}]"))?;
        }
        check_methods("methods", &self.methods)
    }
}

pub(super) fn check_spiffe_pattern(p: &str) -> Result<(), String> {
    let rest = p
        .strip_prefix("spiffe://")
        .ok_or_else(|| format!("{p:?} is not a SPIFFE ID pattern (spiffe://<domain>/<path>)"))?;
    let ok = !rest.is_empty()
        && p.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._/*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{p:?} may hold only lowercase letters, digits, '-', '.', '_', '/' and '*'"
        ))
    }
}

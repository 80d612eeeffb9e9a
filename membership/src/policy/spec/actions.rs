//! What a `route` does to the requests it takes besides choosing their backend: header edits,
//! a prefix rewrite of the path, a redirect answered by the calling node, a mirror, and
//! consistent hashing onto the backend's instances.

use std::collections::BTreeMap;

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::{FieldError, check_len, check_percent, is_header_token};

/// Edits of request or response headers: `remove` first, then `set` (replaces every value),
/// then `add` (appends a value, keeping those already there). Names are case-insensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderActions {
    /// Headers set to this value, replacing any the message had.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Values appended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Headers removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Replaces the prefix the route matched (`match.path.prefix`) with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// The new prefix.
    pub prefix: String,
}

/// Answers the request with a redirect instead of forwarding it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// 301, 302 (default), 303, 307 or 308.
    #[serde(default = "found")]
    pub status: u16,
    /// The `location` answered: an absolute URL or a path.
    pub location: String,
}

fn found() -> u16 {
    302
}

/// A share of the route's requests copied to another service or subset; the copies'
/// answers are discarded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// The service the copies go to.
    pub service: Name,
    /// Only its instances carrying these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subset: BTreeMap<String, String>,
    /// Share of requests copied, 0..100.
    pub percent: f64,
}

/// Consistent hashing: requests with the same key go to the same instance, from every caller.
/// Exactly one of `header`, `cookie` and `caller`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicy {
    /// The key is this request header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The key is this cookie's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The key is the calling node's identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caller: bool,
    /// Bounded load: no instance takes more than this times the average of the requests in
    /// flight from a caller (default 1.25); a key whose instance is full goes to the next one.
    #[serde(default = "default_load_factor")]
    pub load_factor: f64,
}

fn default_load_factor() -> f64 {
    1.25
}

/// Headers the mesh itself manages, or that frame the message: no route may edit them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Checks a header name as a route may edit it.
pub fn check_header_name(field: &str, name: &str) -> Result<(), FieldError> {
    if !is_header_token(name) {
        return Err(FieldError::new(
            field,
            format!("{name:?} is not a header name"),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str())
        || lower.starts_with("proxy-")
        || lower.starts_with("x-murmur-")
    {
        return Err(FieldError::new(
            field,
            format!("{name:?} is managed by the mesh and cannot be edited by a route"),
        ));
    }
    Ok(())
}

/// Checks a header value: visible ASCII, spaces and tabs, at most 4096 bytes.
fn check_header_value(field: &str, value: &str) -> Result<(), FieldError> {
    let ok = value.len() <= 4096
        && value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if !ok {
        return Err(FieldError::new(
            field,
            "a header value is at most 4096 printable ASCII characters (no line breaks)",
        ));
    }
    Ok(())
}

impl HeaderActions {
    /// Checks names and values.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.set.is_empty() && self.add.is_empty() && self.remove.is_empty() {
            return Err(FieldError::new("set", "give `set`, `add` or `remove`"));
        }
        for (field, map) in [("set", &self.set), ("add", &self.add)] {
            if map.len() > 16 {
                return Err(FieldError::new(
                    field,
                    format!("{} entries; at most 16 are allowed", map.len()),
                ));
            }
            for (k, v) in map {
                check_header_name(&format!("{field}.{k}"), k)?;
                check_header_value(&format!("{field}.{k}"), v)?;
            }
        }
        check_len("remove", &self.remove, 16)?;
        for (i, k) in self.remove.iter().enumerate() {
            check_header_name(&format!("remove[{i}]"), k)?;
        }
        Ok(())
    }
}

impl Rewrite {
    /// Checks the prefix.
    pub fn validate(&self) -> Result<(), FieldError> {
        let ok = self.prefix.starts_with('/')
            && self.prefix.len() <= 1024
            && !self.prefix.contains(['?', '#'])
            && self.prefix.bytes().all(|b| (b'!'..=b'~').contains(&b));
        if !ok {
            return Err(FieldError::new(
                "prefix",
                format!(
                    "{:?} is not a path prefix: it starts with '/' and has no spaces, '?' or '#'",
                    self.prefix
                ),
            ));
        }
        Ok(())
    }
}

impl Redirect {
    /// Checks the status and the location.
    pub fn validate(&self) -> Result<(), FieldError> {
        if ![301, 302, 303, 307, 308].contains(&self.status) {
            return Err(FieldError::new(
                "status",
                format!(
                    "{} is not a redirect status (301, 302, 303, 307 or 308)",
                    self.status
                ),
            ));
        }
        let l = &self.location;
        let shaped = l.starts_with('/')
            || l.split_once("://")
                .is_some_and(|(scheme, rest)| !rest.is_empty() && scheme_ok(scheme));
        let ok = shaped && l.len() <= 2048 && l.bytes().all(|b| (b'!'..=b'~').contains(&b));
        if !ok {
            return Err(FieldError::new(
                "location",
                format!(
                    "{l:?} is not a location: give an absolute URL (\"https://host/path\") or a \
                     path (\"/new\"), without spaces"
                ),
            ));
        }
        Ok(())
    }
}

fn scheme_ok(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

impl Mirror {
    /// Checks the share and the subset.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_percent("percent", self.percent)?;
        if self.subset.len() > 8 {
            return Err(FieldError::new("subset", "at most 8 labels are allowed"));
        }
        Ok(())
    }
}

impl HashPolicy {
    /// Checks that exactly one key is given, and the load factor.
    pub fn validate(&self) -> Result<(), FieldError> {
        let given = [self.header.is_some(), self.cookie.is_some(), self.caller];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(FieldError::new(
                "header",
                "give exactly one of `header`, `cookie` and `caller = true`",
            ));
        }
        if let Some(h) = &self.header
            && !is_header_token(h)
        {
            return Err(FieldError::new(
                "header",
                format!("{h:?} is not a header name"),
            ));
        }
        if let Some(c) = &self.cookie {
            let token = !c.is_empty()
                && c.len() <= 128
                && c.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !token {
                return Err(FieldError::new(
                    "cookie",
                    format!("{c:?} is not a cookie name"),
                ));
            }
        }
        if !(1.0..=100.0).contains(&self.load_factor) {
            return Err(FieldError::new(
                "load_factor",
                format!(
                    "{} is outside 1..100 (1.25: no instance takes over 125 % of the average)",
                    self.load_factor
                ),
            ));
        }
        Ok(())
    }
}

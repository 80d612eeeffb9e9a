//! Building blocks shared by the document kinds: durations, regexes, path matches, and the
//! error that names the field at fault.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest regex source accepted.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-size limit of one regex (bytes of automaton).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A field of a document that fails validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `backends[1].weight`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error under a parent path: `backends[1]` + `weight`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// Checks that a list is no longer than `max`.
pub fn check_len<T>(field: &str, items: &[T], max: usize) -> Result<(), FieldError> {
    if items.len() > max {
        return Err(FieldError::new(
            field,
            format!("{} entries; at most {max} are allowed", items.len()),
        ));
    }
    Ok(())
}

/// Checks that `v` is a percentage in 0..=100.
pub fn check_percent(field: &str, v: f64) -> Result<(), FieldError> {
    if !(0.0..=100.0).contains(&v) {
        return Err(FieldError::new(
            field,
            format!("{v} is not a percentage between 0 and 100"),
        ));
    }
    Ok(())
}

/// Checks that `d` is in `min..=max`.
pub fn check_duration(
    field: &str,
    d: PolicyDuration,
    min: Duration,
    max: Duration,
) -> Result<(), FieldError> {
    if d.0 < min || d.0 > max {
        return Err(FieldError::new(
            field,
            format!(
                "{d} is outside {}..{}",
                PolicyDuration(min),
                PolicyDuration(max)
            ),
        ));
    }
    Ok(())
}

/// Whether `name` is a header name a document may give: 1 to 128 of `a-z A-Z 0-9 - _ .`.
pub fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Checks a host name pattern: a DNS name in lower case (`api.example.com`), or `*.` and one
/// (`*.example.com`: any name under it); no port, no trailing dot, no IP address.
pub fn check_host_pattern(field: &str, pattern: &str) -> Result<(), FieldError> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let all_digits = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if name.len() > 253 || !name.split('.').all(label_ok) || all_digits {
        return Err(FieldError::new(
            field,
            format!(
                "{pattern:?} is not a host name in lower case such as \"api.example.com\" or \
                 \"*.example.com\" (no port, no IP address)"
            ),
        ));
    }
    Ok(())
}

/// Whether `host` (lower case, without port) is matched by `pattern` ([`check_host_pattern`]):
/// equal, or for `*.example.com` any name ending in `.example.com`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// Checks HTTP method names: upper-case tokens such as `GET`.
pub fn check_methods(field: &str, methods: &[String]) -> Result<(), FieldError> {
    check_len(field, methods, 16)?;
    for (i, m) in methods.iter().enumerate() {
        let ok = !m.is_empty() && m.len() <= 20 && m.bytes().all(|b| b.is_ascii_uppercase());
        if !ok {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{m:?} is not an HTTP method in upper case, such as \"GET\""),
            ));
        }
    }
    Ok(())
}

/// A duration written `"500ms"`, `"2s"`, `"5m"` or `"1h"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyDuration(pub Duration);

impl PolicyDuration {
    /// Parses `"500ms"`, `"2s"`, `"5m"`, `"1h"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration such as \"500ms\", \"2s\" or \"5m\""))?;
        let secs = |per: u64| {
            n.checked_mul(per)
                .map(Duration::from_secs)
                .ok_or_else(|| format!("{s:?} is too long a duration"))
        };
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => secs(60)?,
            "h" => secs(3600)?,
            _ => {
                return Err(format!(
                    "{s:?} has no unit: write it as \"500ms\", \"2s\", \"5m\" or \"1h\""
                ));
            }
        };
        Ok(Self(d))
    }

    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// From seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }
}

impl fmt::Display for PolicyDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) || ms == 0 {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for PolicyDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A regular expression, compiled when the document is read so that a bad one is refused then.
#[derive(Clone)]
pub struct PolicyRegex {
    source: String,
    regex: regex::Regex,
}

impl PolicyRegex {
    /// Compiles `source` within the size limits.
    pub fn new(source: &str) -> Result<Self, String> {
        if source.len() > MAX_REGEX_LEN {
            return Err(format!(
                "regex of {} characters; at most {MAX_REGEX_LEN} are allowed",
                source.len()
            ));
        }
        let regex = regex::RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex {source:?}: {e}"))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }
}

impl PartialEq for PolicyRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for PolicyRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyRegex({:?})", self.source)
    }
}

impl Serialize for PolicyRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for PolicyRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// How a request path is matched: `{ exact = "/" }`, `{ prefix = "/api" }` or
/// `{ regex = "^/v[0-9]+/" }` (a regex must match the whole path).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this, at a segment boundary (`/api` matches `/api/x`, not `/apix`).
    Prefix(String),
    /// The whole path matches this regex.
    Regex(PolicyRegex),
}

impl PathMatch {
    /// Checks that literal paths start with `/`.
    pub fn validate(&self, field: &str) -> Result<(), FieldError> {
        match self {
            Self::Exact(p) | Self::Prefix(p) if !p.starts_with('/') => Err(FieldError::new(
                field,
                format!("path {p:?} must start with '/'"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_are_names_or_wildcards_and_match_as_written() {
        for ok in ["api.example.com", "*.example.com", "shop", "a-1.b2.test"] {
            assert!(check_host_pattern("h", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "API.example.com",
            "api.example.com:443",
            "api.example.com.",
            "*",
            "*.",
            "a.*.com",
            "10.0.0.1",
            "-a.example.com",
            "a..b",
        ] {
            assert!(check_host_pattern("h", bad).is_err(), "{bad}");
        }
        // (pattern, host, matches)
        let cases = [
            ("api.example.com", "api.example.com", true),
            ("api.example.com", "www.example.com", false),
            ("*.example.com", "api.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "badexample.com", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(host_matches(pattern, host), want, "{pattern} {host}");
        }
    }
}

//! Matching a request against the conditions of routes and authorization rules: paths (exact,
//! prefix at a segment boundary, whole-path regex), methods and headers. Compiled once per
//! policy change; matched against the *normalized* path ([`super::normalize`]).

use http::HeaderMap;
use murmur_membership::policy::spec::{HeaderMatch, PathMatch};

/// Compiled-size limit of one anchored regex (the documents' own limit).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `source` so that it must match the whole input.
fn anchored(source: &str) -> Option<regex::Regex> {
    regex::RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .ok()
}

/// A path condition, ready to match.
#[derive(Clone, Debug)]
pub enum PathPattern {
    /// The path equals this.
    Exact(String),
    /// The path starts with this at a segment boundary.
    Prefix(String),
    /// The whole path matches.
    Regex(regex::Regex),
    /// A regex that could not be anchored (cannot happen for a validated document): matches
    /// nothing, so an allow rule never widens and a route is never taken by mistake.
    Never,
}

impl PathPattern {
    /// Compiles a document's path match.
    pub fn new(m: &PathMatch) -> Self {
        match m {
            PathMatch::Exact(p) => Self::Exact(p.clone()),
            PathMatch::Prefix(p) => Self::Prefix(p.clone()),
            PathMatch::Regex(r) => anchored(r.as_str()).map_or(Self::Never, Self::Regex),
        }
    }

    /// Whether `path` (normalized, without query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => prefix_at_boundary(path, p),
            Self::Regex(r) => r.is_match(path),
            Self::Never => false,
        }
    }
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`; `/api/` matches `/api/x`.
fn prefix_at_boundary(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Whether `method` is one of `methods` (an empty list allows any).
pub fn method_matches(methods: &[String], method: &str) -> bool {
    methods.is_empty() || methods.iter().any(|m| m == method)
}

/// A header condition, ready to match.
#[derive(Clone, Debug)]
pub struct HeaderPattern {
    name: http::HeaderName,
    test: HeaderTest,
}

#[derive(Clone, Debug)]
enum HeaderTest {
    Exact(Vec<u8>),
    Regex(regex::Regex),
    Present(bool),
    Never,
}

impl HeaderPattern {
    /// Compiles a document's header match; `None` if the name is not a header name (a validated
    /// document always has one).
    pub fn new(m: &HeaderMatch) -> Option<Self> {
        let name = http::HeaderName::from_bytes(m.name.to_ascii_lowercase().as_bytes()).ok()?;
        let test = if let Some(v) = &m.exact {
            HeaderTest::Exact(v.as_bytes().to_vec())
        } else if let Some(r) = &m.regex {
            anchored(r.as_str()).map_or(HeaderTest::Never, HeaderTest::Regex)
        } else {
            HeaderTest::Present(m.present.unwrap_or(true))
        };
        Some(Self { name, test })
    }

    /// Whether `headers` satisfy the condition: some value of the header equals or matches; or
    /// the header is present or absent as asked.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        match &self.test {
            HeaderTest::Present(want) => values.peek().is_some() == *want,
            HeaderTest::Exact(v) => values.any(|h| h.as_bytes() == v.as_slice()),
            HeaderTest::Regex(r) => values.any(|h| h.to_str().is_ok_and(|s| r.is_match(s))),
            HeaderTest::Never => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use murmur_membership::policy::spec::PolicyRegex;

    use super::*;

    #[test]
    fn path_patterns_table() {
        let exact = PathPattern::new(&PathMatch::Exact("/a".into()));
        let prefix = PathPattern::new(&PathMatch::Prefix("/api".into()));
        let slash = PathPattern::new(&PathMatch::Prefix("/api/".into()));
        let root = PathPattern::new(&PathMatch::Prefix("/".into()));
        let re = PathPattern::new(&PathMatch::Regex(PolicyRegex::new("/v[0-9]+/.*").unwrap()));
        let unanchored = PathPattern::new(&PathMatch::Regex(PolicyRegex::new("admin").unwrap()));
        // (pattern, path, matches)
        let cases: &[(&PathPattern, &str, bool)] = &[
            (&exact, "/a", true),
            (&exact, "/a/", false),
            (&exact, "/ab", false),
            (&prefix, "/api", true),
            (&prefix, "/api/", true),
            (&prefix, "/api/x/y", true),
            (&prefix, "/apix", false),
            (&prefix, "/ap", false),
            (&slash, "/api/x", true),
            (&slash, "/api", false),
            (&root, "/anything", true),
            (&re, "/v2/x", true),
            (&re, "/v2", false),
            (&re, "/x/v2/x", false),
            (&unanchored, "/admin", false),
            (&unanchored, "admin", true),
        ];
        for (p, path, want) in cases {
            assert_eq!(p.matches(path), *want, "{p:?} {path}");
        }
    }

    #[test]
    fn header_patterns_table() {
        let hm = |name: &str, exact: Option<&str>, regex: Option<&str>, present: Option<bool>| {
            HeaderPattern::new(&HeaderMatch {
                name: name.into(),
                exact: exact.map(str::to_owned),
                regex: regex.map(|r| PolicyRegex::new(r).unwrap()),
                present,
            })
            .unwrap()
        };
        let mut h = HeaderMap::new();
        h.append("x-tester", HeaderValue::from_static("0"));
        h.append("x-tester", HeaderValue::from_static("1"));
        h.insert("x-user", HeaderValue::from_static("alice-42"));
        let cases = [
            (hm("X-Tester", Some("1"), None, None), true),
            (hm("x-tester", Some("2"), None, None), false),
            (hm("x-user", None, Some("[a-z]+-[0-9]+"), None), true),
            (hm("x-user", None, Some("[a-z]+"), None), false),
            (hm("x-user", None, None, Some(true)), true),
            (hm("x-none", None, None, Some(false)), true),
            (hm("x-none", None, None, Some(true)), false),
            (hm("x-none", Some(""), None, None), false),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            assert_eq!(p.matches(&h), *want, "case {i}: {p:?}");
        }
        assert!(method_matches(&[], "PATCH"));
        assert!(method_matches(&["GET".into(), "HEAD".into()], "HEAD"));
        assert!(!method_matches(&["GET".into()], "get"));
    }
}

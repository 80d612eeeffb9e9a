//! What a route does to the requests it takes besides routing them: header edits, a prefix
//! rewrite of the path, and the key consistent hashing reads. Pure.

use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};
use murmur_membership::policy::spec::{HashPolicy, HeaderActions};

/// Header edits, compiled: names and values parsed once, in the order they apply (remove,
/// set, add).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Removed.
    pub remove: Vec<HeaderName>,
    /// Replaced by one value.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appended.
    pub add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderEdits {
    /// Compiles a document's edits. Its names and values were checked when it was accepted
    /// (`spec::actions`); one that still would not parse is left out rather than sent.
    pub fn new(a: &HeaderActions) -> Self {
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .filter_map(|(k, v)| Some((name(k)?, HeaderValue::from_str(v).ok()?)))
                .collect()
        };
        Self {
            remove: a.remove.iter().filter_map(|k| name(k)).collect(),
            set: pairs(&a.set),
            add: pairs(&a.add),
        }
    }

    /// Applies the edits to the fields of a message head.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for k in self.remove.iter().chain(self.set.iter().map(|(k, _)| k)) {
            headers.remove(k);
        }
        for (k, v) in self.set.iter().chain(&self.add) {
            headers.append(k, v.clone());
        }
    }
}

fn name(k: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(k.as_bytes()).ok()
}

/// `path_and_query` with the prefix `from` (which the route matched, at a segment boundary)
/// replaced by `to`; the query is kept. `None` if the path does not start with `from`.
pub fn rewrite_prefix(path_and_query: &str, from: &str, to: &str) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let rest = path.strip_prefix(from)?;
    let mut out = String::with_capacity(to.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(to);
    // `/api` → `/v2/` on `/api/x` gives `/v2/x`, not `/v2//x`.
    let rest = if to.ends_with('/') {
        rest.trim_start_matches('/')
    } else if !rest.is_empty() && !rest.starts_with('/') && !to.is_empty() {
        // `from` ended with '/': keep the segment boundary.
        out.push('/');
        rest
    } else {
        rest
    };
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// What consistent hashing hashes, compiled.
#[derive(Clone, Debug, PartialEq)]
pub enum HashKey {
    /// A request header's value (name lower-case).
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// The calling node's identity.
    Caller,
}

/// A route's consistent hashing, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct Hashing {
    /// The key.
    pub key: HashKey,
    /// Bounded load factor.
    pub load_factor: f64,
}

impl Hashing {
    /// Compiles a document's hash policy; `None` for a header name that is not one (cannot
    /// happen for a validated document).
    pub fn new(h: &HashPolicy) -> Option<Self> {
        let key = match (&h.header, &h.cookie) {
            (Some(name), _) => HashKey::Header(http::HeaderName::from_bytes(name.as_bytes()).ok()?),
            (None, Some(c)) => HashKey::Cookie(c.clone()),
            (None, None) => HashKey::Caller,
        };
        Some(Self {
            key,
            load_factor: h.load_factor,
        })
    }

    /// The hash of this request's key: of the header's first value, the cookie's value, or
    /// `caller`. `None` when the request has no key (then the balancer chooses).
    pub fn key_of(&self, headers: &HeaderMap, caller: &str) -> Option<u64> {
        match &self.key {
            HashKey::Header(name) => headers.get(name).map(|v| hash(v.as_bytes())),
            HashKey::Cookie(name) => cookie(headers, name).map(hash),
            HashKey::Caller => Some(hash(caller.as_bytes())),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| {
                let v = pair[eq + 1..].trim_ascii();
                v.strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v)
            })
        })
}

/// A 64-bit hash that is the same on every node and in every version (FNV-1a, then the
/// finalizer of MurmurHash3 to spread the bits): callers must agree on where a key lands.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_remove_then_set_then_add() {
        let a = HeaderActions {
            set: [("X-Env".to_owned(), "prod".to_owned())].into(),
            add: [("x-tag".to_owned(), "b".to_owned())].into(),
            remove: vec!["X-Debug".to_owned()],
        };
        let e = HeaderEdits::new(&a);
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("x-debug", "1"),
            ("x-env", "dev"),
            ("x-env", "test"),
            ("x-tag", "a"),
            ("accept", "*/*"),
        ] {
            headers.append(k, HeaderValue::from_static(v));
        }
        e.apply(&mut headers);
        let values = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert!(values("x-debug").is_empty());
        assert_eq!(values("x-env"), ["prod"]);
        assert_eq!(values("x-tag"), ["a", "b"]);
        assert_eq!(values("accept"), ["*/*"]);
        assert_eq!(headers.len(), 4);
    }

    #[test]
    fn rewrite_table() {
        // (path and query, from, to, expected)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("/api/users?id=1", "/api", "/v2", Some("/v2/users?id=1")),
            ("/api", "/api", "/v2", Some("/v2")),
            ("/api/", "/api", "/v2", Some("/v2/")),
            ("/api/users", "/api", "/", Some("/users")),
            ("/api", "/api", "/", Some("/")),
            ("/api/users", "/api/", "/v2", Some("/v2/users")),
            ("/api/users", "/api/", "/v2/", Some("/v2/users")),
            ("/api/users", "/api", "/v2/", Some("/v2/users")),
            ("/other", "/api", "/v2", None),
        ];
        for (p, from, to, want) in cases {
            assert_eq!(
                rewrite_prefix(p, from, to).as_deref(),
                *want,
                "{p} {from} -> {to}"
            );
        }
    }

    #[test]
    fn keys_come_from_a_header_a_cookie_or_the_caller() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("alice"));
        h.append(COOKIE, HeaderValue::from_static("theme=dark; sid=\"abc\""));
        h.append(COOKIE, HeaderValue::from_static("lang=en"));
        let policy = |header: Option<&str>, cookie: Option<&str>, caller: bool| {
            Hashing::new(&HashPolicy {
                header: header.map(str::to_owned),
                cookie: cookie.map(str::to_owned),
                caller,
                load_factor: 1.25,
            })
            .unwrap()
        };
        let me = "spiffe://murmur.local/node/n1";
        assert_eq!(
            policy(Some("X-User"), None, false).key_of(&h, me),
            Some(hash(b"alice"))
        );
        assert_eq!(policy(Some("x-none"), None, false).key_of(&h, me), None);
        assert_eq!(
            policy(None, Some("sid"), false).key_of(&h, me),
            Some(hash(b"abc"))
        );
        assert_eq!(
            policy(None, Some("lang"), false).key_of(&h, me),
            Some(hash(b"en"))
        );
        assert_eq!(policy(None, Some("si"), false).key_of(&h, me), None);
        assert_eq!(
            policy(None, None, true).key_of(&h, me),
            Some(hash(me.as_bytes()))
        );
        // The hash is fixed: callers on any version agree.
        assert_eq!(hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(hash(b"alice"), 0x3507_d047_a67c_08f4);
    }
}

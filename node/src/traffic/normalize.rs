//! Path and host normalization, done once where a request enters the mesh, before routing and
//! authorization look at it; the same normalized path is what the serving app receives.
//!
//! The rules (Envoy's `normalize_path` plus `merge_slashes`, with encoded separators refused):
//!
//! - percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`) are decoded (`%61` → `a`,
//!   `%2e` → `.`); other escapes are kept, with upper-case hex (`%c3` → `%C3`);
//! - an encoded separator (`%2F`, `%5C`, any case), an encoded NUL (`%00`), a raw backslash, a
//!   malformed escape (`%zz`, `%4`), a control character, a space or a non-ASCII byte make the
//!   request **refused** (400): no reading of them is safe for every app behind the mesh;
//! - repeated slashes are merged (`//a///b` → `/a/b`);
//! - dot segments are removed (`/a/./b/../c` → `/a/c`); `..` never climbs above the root;
//! - a segment that is a dot segment followed by parameters (`..;x`, `.;`), which some servers
//!   read as `..`, is refused;
//! - a trailing slash is kept; the query is kept as it is and is not part of matching.
//!
//! Normalizing is idempotent: a normalized path comes back unchanged, so the serving node can
//! normalize again what its caller sent (it trusts only what it checks) at no cost when the
//! caller was honest.

use std::borrow::Cow;

/// Why a path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not an origin-form path (`/...`).
    #[error("the request target must be a path starting with '/'")]
    NotAPath,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// `%2F` or `%5C` (or a raw `\`).
    #[error("encoded path separators (%2F, %5C) and backslashes are refused")]
    EncodedSeparator,
    /// `%00`.
    #[error("an encoded NUL (%00) is refused")]
    Nul,
    /// A byte that has no place in a path.
    #[error("the path holds a character that is not allowed (control, space or non-ASCII)")]
    BadByte,
    /// `..;` or `.;`.
    #[error("dot segments with parameters (`..;`) are refused")]
    DotParams,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether the path needs the full treatment; false for most real paths, which then cost one
/// scan and no allocation.
fn needs_work(path: &str) -> bool {
    let mut prev = 0u8;
    for &c in path.as_bytes() {
        let suspect = c == b'%'
            || c == b'\\'
            || !(0x21..0x7f).contains(&c)
            || (prev == b'/' && (c == b'/' || c == b'.'));
        if suspect {
            return true;
        }
        prev = c;
    }
    false
}

/// Normalizes a path without query. Returns the input itself when it is already normal.
pub fn path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAPath);
    }
    if !needs_work(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    let out = remove_dots(&decoded)?;
    Ok(if out == raw {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(out)
    })
}

/// Normalizes `path?query`: the path part as [`path`], the query untouched. `*` (for
/// `OPTIONS *`) is kept as it is.
pub fn path_and_query(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if raw == "*" {
        return Ok(Cow::Borrowed(raw));
    }
    let (p, q) = match raw.find('?') {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    };
    if let Some(q) = q
        && q.bytes().any(|c| !(0x21..0x7f).contains(&c))
    {
        return Err(PathError::BadByte);
    }
    match (path(p)?, q) {
        (Cow::Borrowed(_), _) => Ok(Cow::Borrowed(raw)),
        (Cow::Owned(mut s), Some(q)) => {
            s.push_str(q);
            Ok(Cow::Owned(s))
        }
        (Cow::Owned(s), None) => Ok(Cow::Owned(s)),
    }
}

/// The path part of `path?query`.
pub fn strip_query(raw: &str) -> &str {
    raw.split_once('?').map_or(raw, |(p, _)| p)
}

fn decode_unreserved(raw: &str) -> Result<String, PathError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::Nul),
                    v if unreserved(v) => out.push(char::from(v)),
                    v => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 15)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            c if !(0x21..0x7f).contains(&c) => return Err(PathError::BadByte),
            c => {
                out.push(char::from(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Merges slashes and removes dot segments (RFC 3986 §5.2.4, clamped at the root).
fn remove_dots(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    // Whether the output ends with a slash after the last segment.
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        let name = seg.split(';').next().unwrap_or(seg);
        if seg.contains(';') && (name == "." || name == "..") {
            return Err(PathError::DotParams);
        }
        match seg {
            "" => trailing = true,
            "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The authority with its host in lower case, without a trailing dot and without userinfo
/// (`user:pw@Web.Mesh.:80` → `web.mesh:80`: credentials in a URL are not the app's `Host`).
/// Returns the input when already normal.
pub fn authority(raw: &str) -> Cow<'_, str> {
    let raw = match raw.rsplit_once('@') {
        Some((_, rest)) => rest,
        None => raw,
    };
    let (host, port) = match raw.rfind(':') {
        Some(i) if !raw[i..].contains(']') => (&raw[..i], &raw[i..]),
        _ => (raw, ""),
    };
    let stripped = host.strip_suffix('.').unwrap_or(host);
    if stripped.len() == host.len() && !host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Cow::Borrowed(raw);
    }
    let mut out = stripped.to_ascii_lowercase();
    out.push_str(port);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn authorities_lose_userinfo_case_and_trailing_dot() {
        assert_eq!(authority("web:8080"), "web:8080");
        assert_eq!(authority("Web.Mesh.:80"), "web.mesh:80");
        assert_eq!(authority("user:secret@web"), "web");
        assert_eq!(authority("a@b@Web.:81"), "web:81");
        assert_eq!(authority("[::1]:7421"), "[::1]:7421");
    }

    #[test]
    fn paths_table() {
        use PathError::*;
        // (input, expected normalized path or refusal)
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/a/b", Ok("/a/b")),
            ("/a/b/", Ok("/a/b/")),
            ("//a///b//", Ok("/a/b/")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/a/b/..", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/..", Ok("/")),
            ("/../../etc/passwd", Ok("/etc/passwd")),
            ("/public/../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2E%2E/admin", Ok("/admin")),
            ("/public/.%2e/admin", Ok("/admin")),
            ("/public//../admin", Ok("/admin")),
            ("/%61dmin", Ok("/admin")),
            ("/a%7e%5f", Ok("/a~_")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/a%20b", Ok("/a%20b")),
            ("/public/%252e%252e/admin", Ok("/public/%252e%252e/admin")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a/..b/c", Ok("/a/..b/c")),
            ("/a;v=1/b", Ok("/a;v=1/b")),
            ("/public/..%2Fadmin", Err(EncodedSeparator)),
            ("/public/..%2fadmin", Err(EncodedSeparator)),
            ("/public%5C..%5Cadmin", Err(EncodedSeparator)),
            ("/public\\..\\admin", Err(EncodedSeparator)),
            ("/public/..;/admin", Err(DotParams)),
            ("/public/.;x/admin", Err(DotParams)),
            ("/a%00", Err(Nul)),
            ("/a%zz", Err(BadEscape)),
            ("/a%4", Err(BadEscape)),
            ("/a b", Err(BadByte)),
            ("/caf\u{e9}", Err(BadByte)),
            ("admin", Err(NotAPath)),
            ("", Err(NotAPath)),
        ];
        for (input, want) in cases {
            let got = path(input);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{input:?}");
        }
    }

    #[test]
    fn a_normal_path_is_borrowed_and_the_query_is_kept() {
        assert!(matches!(path("/api/v1/items"), Ok(Cow::Borrowed(_))));
        assert!(matches!(path("/a/.well-known"), Ok(Cow::Borrowed(_))));
        assert_eq!(
            path_and_query("/a//b/../c?x=/../y&z=%2F").unwrap(),
            "/a/c?x=/../y&z=%2F"
        );
        assert!(matches!(path_and_query("/a?b=c"), Ok(Cow::Borrowed(_))));
        assert_eq!(path_and_query("*").unwrap(), "*");
        assert_eq!(path_and_query("/a?b c"), Err(PathError::BadByte));
        assert_eq!(strip_query("/a/b?c=d"), "/a/b");
    }

    #[test]
    fn authorities_table() {
        let cases = [
            ("web", "web"),
            ("Web.Mesh", "web.mesh"),
            ("web.mesh.", "web.mesh"),
            ("WEB.:8080", "web:8080"),
            ("[::1]:80", "[::1]:80"),
        ];
        for (input, want) in cases {
            assert_eq!(authority(input), want, "{input}");
        }
        assert!(matches!(authority("web:80"), Cow::Borrowed(_)));
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just("//".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%41".to_owned()),
            Just("%c3".to_owned()),
            Just("%".to_owned()),
            Just(";".to_owned()),
            "[a-z~_-]{1,3}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn normalizing_is_idempotent_and_leaves_no_tricks(p in path_strategy()) {
            if let Ok(once) = path(&p) {
                let twice = path(&once).expect("a normalized path is accepted");
                prop_assert_eq!(&*twice, &*once);
                prop_assert!(matches!(twice, Cow::Borrowed(_)));
                prop_assert!(once.starts_with('/'));
                prop_assert!(!once.contains("//"), "{}", once);
                for seg in once.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{}", once);
                }
                // No escape of an unreserved character survives.
                let b = once.as_bytes();
                for i in 0..b.len() {
                    if b[i] == b'%' {
                        let v = hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap();
                        prop_assert!(!unreserved(v) && v != b'/' , "{}", once);
                    }
                }
            }
        }
    }
}

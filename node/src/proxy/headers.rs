//! Header handling at the edges of the hop: what is end-to-end and travels, what is
//! hop-by-hop and stays (RFC 9110 §7.6.1).

use http::header::{
    CONNECTION, HOST, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri};

/// Hop-by-hop headers removed in both directions (`te` is handled apart: `te: trailers` is
/// end-to-end meaning for gRPC and is kept). Names, not strings: removing by a string parses
/// it into a name first, on every request.
static HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

/// Counts the mesh hops a request has made, so that a service whose address leads back into
/// a node's own proxy (directly or through a chain of apps forwarding headers) is cut off
/// instead of looping until every resource is taken.
pub static HOPS: HeaderName = HeaderName::from_static("x-murmur-hops");
/// Hops a request may make through outbound proxies before it is refused.
pub const MAX_HOPS: u32 = 16;

/// The hop counts a request can carry on, as values: the `n`th is `n + 1`. Static, so that
/// counting a hop allocates nothing.
static HOP_COUNTS: [HeaderValue; MAX_HOPS as usize] = {
    const fn v(text: &'static str) -> HeaderValue {
        HeaderValue::from_static(text)
    }
    [
        v("1"),
        v("2"),
        v("3"),
        v("4"),
        v("5"),
        v("6"),
        v("7"),
        v("8"),
        v("9"),
        v("10"),
        v("11"),
        v("12"),
        v("13"),
        v("14"),
        v("15"),
        v("16"),
    ]
};

/// Adds one hop to `headers`; `Err` with the count when the request has made too many.
pub fn next_hop(headers: &mut HeaderMap) -> Result<u32, u32> {
    let hops: u32 = headers
        .get(&HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let Some(next) = HOP_COUNTS.get(hops as usize) else {
        return Err(hops);
    };
    headers.insert(HOPS.clone(), next.clone());
    Ok(hops + 1)
}

/// Removes hop-by-hop headers, those named by `Connection`, and `Host` (the authority travels
/// apart). Keeps `te: trailers` only.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present: most messages carry none of these or one
    // (`Connection`), and removing each name blindly costs a hash and a probe apiece.
    let mut found: Vec<HeaderName> = Vec::new();
    let mut te = false;
    for name in headers.keys() {
        if HOP_BY_HOP.contains(name) || name == HOST {
            found.push(name.clone());
        }
        te |= name == TE;
    }
    if found.contains(&CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        found.extend(listed);
    }
    for name in found {
        headers.remove(name);
    }
    if te && let Some(value) = headers.get(TE) {
        let trailers = value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
        headers.remove(TE);
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
}

/// `uri` in origin form (the path and query alone, `/` if it has none), as an HTTP/1.1 request
/// names its target to the server it is sent to.
pub fn origin_form(uri: &Uri) -> Uri {
    Uri::from(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_count_up_to_the_limit() {
        let mut h = HeaderMap::new();
        assert_eq!(next_hop(&mut h), Ok(1));
        assert_eq!(next_hop(&mut h), Ok(2));
        h.insert(HOPS.clone(), HeaderValue::from(MAX_HOPS));
        assert_eq!(next_hop(&mut h), Err(MAX_HOPS));
        h.insert(HOPS.clone(), HeaderValue::from_static("garbage"));
        assert_eq!(next_hop(&mut h), Ok(1));
    }

    #[test]
    fn each_hop_count_reads_as_its_number() {
        let mut h = HeaderMap::new();
        for n in 1..=MAX_HOPS {
            assert_eq!(next_hop(&mut h), Ok(n));
            assert_eq!(
                h.get(&HOPS).map(HeaderValue::as_bytes),
                Some(n.to_string().as_bytes())
            );
        }
    }

    #[test]
    fn hop_by_hop_headers_go_and_end_to_end_ones_stay() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "secret"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "keep-alive"),
            ("trailer", "x-checksum"),
            ("host", "web"),
            ("te", "gzip, trailers"),
            ("content-type", "application/grpc"),
            ("x-keep", "yes"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<(&str, &str)> = h
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-keep", "yes")
            ]
        );
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
        // Without a `Connection` header naming it, `keep-alive` goes as a hop-by-hop name.
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }
}

//! What the gateway tells the service about the client: `X-Forwarded-For` and `Forwarded`
//! (RFC 7239) get the client's address appended (what earlier proxies wrote stays before it:
//! the last entry is the one the gateway vouches for), `X-Forwarded-Proto` and
//! `X-Forwarded-Host` are set. Headers of the mesh's own (`x-murmur-*`) are not taken from
//! outside.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

const XFF: &str = "x-forwarded-for";
const XF_PROTO: &str = "x-forwarded-proto";
const XF_HOST: &str = "x-forwarded-host";
const FORWARDED: &str = "forwarded";

/// Edits `headers` of a request from `client` for `host` (a host name a route named).
pub fn add(headers: &mut HeaderMap, client: IpAddr, host: &str) {
    let own: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-murmur-"))
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        IpAddr::V4(_) => client,
    };
    append(headers, XFF, &client.to_string());
    let node = match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    append(
        headers,
        FORWARDED,
        &format!("for={node};host={host};proto=https"),
    );
    set(headers, XF_PROTO, "https");
    set(headers, XF_HOST, host);
}

/// Joins every value of `name` and `value` into one header, comma-separated.
fn append(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let mut joined: Vec<String> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    joined.push(value.to_owned());
    set(headers, name, &joined.join(", "));
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name, v);
        }
        // Only a value the client sent can be unprintable: drop it rather than pass it on.
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edited(before: &[(&'static str, &'static str)], client: &str) -> Vec<(String, String)> {
        let mut h = HeaderMap::new();
        for (k, v) in before {
            h.append(*k, HeaderValue::from_static(v));
        }
        add(&mut h, client.parse().unwrap(), "shop.example.com");
        let mut out: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_client_is_appended_and_the_mesh_headers_are_dropped() {
        let got = edited(
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
                ("x-murmur-hops", "3"),
                ("x-keep", "1"),
            ],
            "192.0.2.1",
        );
        let want: Vec<(String, String)> = [
            (
                "forwarded",
                "for=192.0.2.1;host=shop.example.com;proto=https",
            ),
            ("x-forwarded-for", "198.51.100.7, 10.0.0.1, 192.0.2.1"),
            ("x-forwarded-host", "shop.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-keep", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(got, want);
        let v6 = edited(&[], "2001:db8::1");
        assert!(v6.contains(&(
            "forwarded".into(),
            "for=\"[2001:db8::1]\";host=shop.example.com;proto=https".into()
        )));
        let mapped = edited(&[], "::ffff:192.0.2.9");
        assert!(mapped.contains(&("x-forwarded-for".into(), "192.0.2.9".into())));
    }
}

//! The host a request from outside the mesh names: its `:authority` (HTTP/2, or an
//! absolute-form target) or its one `Host` header, in lower case, without port or trailing dot.

use http::header::HOST;
use http::{HeaderMap, Uri};

/// Longest host name shown back in an answer.
const SHOWN: usize = 253;

/// The host of a request, or why it has none that can be used.
pub fn host_of(uri: &Uri, headers: &HeaderMap) -> Result<String, String> {
    let authority = match uri.authority() {
        Some(a) => a.clone(),
        None => {
            let mut hosts = headers.get_all(HOST).iter();
            let value = hosts
                .next()
                .ok_or_else(|| "the request has no Host header".to_owned())?;
            if hosts.next().is_some() {
                return Err("the request has more than one Host header".into());
            }
            let text = value
                .to_str()
                .map_err(|_| "the Host header is not text".to_owned())?;
            text.parse()
                .map_err(|_| format!("Host {:?} is not a host name", shown(text)))?
        }
    };
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return Err("the request names an empty host".into());
    }
    Ok(host)
}

/// `host` cut to a length fit for a message.
pub fn shown(host: &str) -> &str {
    match host.char_indices().nth(SHOWN) {
        Some((i, _)) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn host(uri: &str, hosts: &[&'static str]) -> Result<String, String> {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(HOST, HeaderValue::from_static(v));
        }
        host_of(&uri.parse().unwrap(), &h)
    }

    #[test]
    fn the_host_comes_from_the_authority_or_the_one_host_header() {
        assert_eq!(
            host("/x", &["Shop.Example.COM:8443"]).unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            host("/x", &["shop.example.com."]).unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            host("https://api.example.com/x", &["ignored"]).unwrap(),
            "api.example.com"
        );
        assert!(host("/x", &[]).unwrap_err().contains("no Host"));
        assert!(
            host("/x", &["a", "b"])
                .unwrap_err()
                .contains("more than one")
        );
        assert!(host("/x", &["bad host"]).is_err());
        assert_eq!(shown(&"a".repeat(300)).len(), 253);
    }
}

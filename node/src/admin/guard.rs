//! What every admin request must show before it is routed, so that a web page the operator
//! happens to open cannot use the API (it has no authentication: it trusts whoever can reach
//! it):
//!
//! - `Host` names the admin API itself: `localhost`, a loopback address, or the address it
//!   listens on, with its port. A DNS name is refused: a page that rebinds its own name to
//!   127.0.0.1 would otherwise read and change the node as a same-origin page.
//! - A request that changes something (any method but GET and HEAD) carries `Content-Type:
//!   application/json` (a page can send text/plain, form and multipart bodies cross-origin
//!   without asking; JSON needs a CORS preflight, which this API never grants), and no foreign
//!   `Origin` or cross-site `Sec-Fetch-Site`.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{CONTENT_TYPE, HOST, ORIGIN};
use hyper::{Method, Request};

/// Why a request was refused: status and message.
pub type Refusal = (u16, String);

/// Checks `req`, sent to the admin API listening on `admin`.
pub fn check<B>(req: &Request<B>, admin: SocketAddr) -> Result<(), Refusal> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .ok_or_else(|| (400, "the request has no Host header".to_owned()))?;
    check_host(host, admin)?;
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(());
    }
    if let Some(origin) = req.headers().get(ORIGIN) {
        let same = origin
            .to_str()
            .is_ok_and(|o| o.eq_ignore_ascii_case(&format!("http://{host}")));
        if !same {
            return Err((
                403,
                format!(
                    "cross-origin requests are refused (Origin {:?}): the admin API takes \
                     changes only from the CLI or its own page",
                    String::from_utf8_lossy(origin.as_bytes())
                ),
            ));
        }
    }
    if let Some(site) = req.headers().get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err((403, "cross-site requests are refused".to_owned()));
    }
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err((
            415,
            format!(
                "{} {} needs `Content-Type: application/json`",
                req.method(),
                req.uri().path()
            ),
        ));
    }
    Ok(())
}

fn check_host(host: &str, admin: SocketAddr) -> Result<(), Refusal> {
    let refuse = || {
        (
            421,
            format!(
                "Host {host:?} is not this admin API: use {admin} or localhost:{} (names other \
                 than localhost are refused, so that no web page can reach the API by DNS \
                 rebinding)",
                admin.port()
            ),
        )
    };
    let authority: hyper::http::uri::Authority = host.parse().map_err(|_| refuse())?;
    if authority.port_u16() != Some(admin.port()) {
        return Err(refuse());
    }
    let name = authority.host();
    if name.eq_ignore_ascii_case("localhost") {
        return Ok(());
    }
    let ip: IpAddr = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| refuse())?;
    if ip.is_loopback() || ip == admin.ip() || admin.ip().is_unspecified() {
        Ok(())
    } else {
        Err(refuse())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "127.0.0.1:7422";

    fn req(method: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/v1/drain");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn verdict(method: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
        check(&req(method, headers), ADMIN.parse().unwrap()).map_err(|e| e.0)
    }

    #[test]
    fn the_cli_s_requests_pass() {
        let json = ("content-type", "application/json");
        assert_eq!(verdict("POST", &[("host", ADMIN), json]), Ok(()));
        assert_eq!(
            verdict("DELETE", &[("host", "localhost:7422"), json]),
            Ok(())
        );
        assert_eq!(verdict("POST", &[("host", "[::1]:7422"), json]), Ok(()));
        assert_eq!(verdict("GET", &[("host", "127.0.0.1:7422")]), Ok(()));
        // Same-origin from the node's own page.
        let own = ("origin", "http://127.0.0.1:7422");
        assert_eq!(verdict("POST", &[("host", ADMIN), json, own]), Ok(()));
        let charset = ("content-type", "Application/JSON; charset=utf-8");
        assert_eq!(verdict("PUT", &[("host", ADMIN), charset]), Ok(()));
    }

    #[test]
    fn web_pages_are_refused() {
        let json = ("content-type", "application/json");
        // A cross-origin simple POST.
        let text = ("content-type", "text/plain");
        assert_eq!(verdict("POST", &[("host", ADMIN), text]), Err(415));
        assert_eq!(verdict("POST", &[("host", ADMIN)]), Err(415));
        let form = ("content-type", "application/x-www-form-urlencoded");
        assert_eq!(verdict("POST", &[("host", ADMIN), form]), Err(415));
        let evil = ("origin", "http://evil.example");
        assert_eq!(verdict("POST", &[("host", ADMIN), json, evil]), Err(403));
        assert_eq!(
            verdict("POST", &[("host", ADMIN), json, ("origin", "null")]),
            Err(403)
        );
        let site = ("sec-fetch-site", "cross-site");
        assert_eq!(verdict("POST", &[("host", ADMIN), json, site]), Err(403));
        // DNS rebinding: a foreign name, for reads too.
        assert_eq!(verdict("GET", &[("host", "evil.example:7422")]), Err(421));
        assert_eq!(verdict("GET", &[("host", "127.0.0.1")]), Err(421));
        assert_eq!(verdict("GET", &[("host", "127.0.0.1:80")]), Err(421));
        assert_eq!(verdict("GET", &[("host", "10.0.0.9:7422")]), Err(421));
        assert_eq!(verdict("GET", &[]), Err(400));
    }

    #[test]
    fn an_api_on_every_interface_takes_any_address_but_no_name() {
        let any: SocketAddr = "0.0.0.0:7422".parse().unwrap();
        let get = |host: &str| check(&req("GET", &[("host", host)]), any).map_err(|e| e.0);
        assert_eq!(get("10.0.0.9:7422"), Ok(()));
        assert_eq!(get("node.example:7422"), Err(421));
    }
}

//! Requests for hosts outside the mesh — `CONNECT example.com:443`, `GET http://example.com/` —
//! as `[outbound] external` says: passed straight through (`allow`, the default, like a plain
//! forward proxy), or refused with a 403 that names the host and the setting (`deny`).
//!
//! These connections are the node's own: while it captures, they carry its firewall mark so
//! no capture rule ever takes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tracing::debug;

use super::body::ProxyBody;
use super::errors::ProxyError;
use super::headers::strip_hop_by_hop;
use super::runtime::{External, Proxy};

/// Time to resolve and connect to a host outside the mesh.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` as written in messages (IPv6 in brackets).
fn shown(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether the setting lets requests out; counts the decision.
fn admit(proxy: &Proxy, kind: &str, host: &str, port: u16) -> Result<(), ProxyError> {
    match proxy.external {
        External::Allow => {
            proxy.telemetry.external.get(&[kind, "allowed"]).inc();
            Ok(())
        }
        External::Deny => {
            proxy.telemetry.external.get(&[kind, "denied"]).inc();
            Err(ProxyError::ExternalDenied {
                host: shown(host, port),
            })
        }
    }
}

/// A CONNECT to `host:port`: connects, and once the app's side is upgraded, copies both ways.
pub async fn connect(
    proxy: &Arc<Proxy>,
    host: &str,
    port: u16,
    on_upgrade: OnUpgrade,
) -> Result<(), ProxyError> {
    admit(proxy, "connect", host, port)?;
    let mut remote = dial(proxy, host, port).await?;
    let target = shown(host, port);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut app = TokioIo::new(upgraded);
                if let Err(e) = tokio::io::copy_bidirectional(&mut app, &mut remote).await {
                    debug!(%target, error = %e, "CONNECT tunnel outside the mesh broke");
                }
            }
            Err(e) => debug!(%target, error = %e, "CONNECT tunnel not opened"),
        }
    });
    Ok(())
}

/// An absolute-form request for `host:port`: sent over a connection of its own, the response
/// passed back as it streams.
pub async fn http(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    host: &str,
    port: u16,
) -> Response<ProxyBody> {
    match forward(proxy, req, host, port).await {
        Ok(resp) => resp,
        Err(e) => {
            debug!(error = %e, "request outside the mesh answered locally");
            e.response(false)
        }
    }
}

async fn forward(
    proxy: &Arc<Proxy>,
    req: Request<Incoming>,
    host: &str,
    port: u16,
) -> Result<Response<ProxyBody>, ProxyError> {
    admit(proxy, "http", host, port)?;
    let failed = |detail: String| ProxyError::ExternalFailed {
        host: shown(host, port),
        detail,
    };
    let stream = dial(proxy, host, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "connection outside the mesh ended");
        }
    });
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    strip_hop_by_hop(&mut parts.headers);
    if let Some(a) = authority.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
        parts.headers.insert(http::header::HOST, a);
    }
    // Origin form towards the server.
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = path.parse::<Uri>().map_err(|e| failed(e.to_string()))?;
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::Direct(body)))
}

/// Resolves `host` and connects to the first address that answers, with the node's mark.
async fn dial(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
    let failed = |detail: String| ProxyError::ExternalFailed {
        host: shown(host, port),
        detail,
    };
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| failed(format!("cannot resolve it: {e}")))?
            .collect();
        let mut last = failed("it has no address".into());
        for addr in addrs {
            match connect_marked(addr, proxy.mark).await {
                Ok(s) => return Ok(s),
                Err(e) => last = failed(format!("{addr}: {e}")),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| failed(format!("no connection in {CONNECT_TIMEOUT:?}")))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect_marked(addr: SocketAddr, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(m) = mark {
        // Needs CAP_NET_ADMIN, which a capturing node has.
        if let Err(e) = socket2::SockRef::from(&socket).set_mark(m) {
            debug!(error = %e, "cannot mark a connection outside the mesh");
        }
    }
    socket.connect(addr).await
}

//! Requests for hosts outside the mesh — `CONNECT example.com:443`, `GET http://example.com/` —
//! as the `external` documents and `[outbound] external` say. A host a document names (and
//! port) passes for the callers the document allows (403 for others), and an absolute-form
//! request to it is sent over TLS the node originates when the document asks for it
//! ([`origination`]); any other host is passed straight through (`allow`, the default, like a
//! plain forward proxy), or refused with a 403 that names the host and the setting (`deny`).
//!
//! These connections are the node's own: while it captures, they carry its firewall mark so
//! no capture rule ever takes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tracing::debug;

use murmur_membership::policy::spec::Originate;
use rustls_pki_types::ServerName;

use super::body::ProxyBody;
use super::errors::ProxyError;
use super::headers::{origin_form, strip_hop_by_hop};
use super::runtime::{External, Proxy};
use crate::traffic::authz::{Caller, caller_matches};

pub mod origination;

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

/// Whether the request may leave: by the document naming the host (and how: with TLS the
/// node originates, or as it is), else by the setting. Counts the decision.
fn admit(
    proxy: &Proxy,
    kind: &str,
    host: &str,
    port: u16,
) -> Result<Option<Originate>, ProxyError> {
    let compiled = proxy.traffic.compiled();
    if let Some(doc) = compiled.external_for(host, port) {
        let cert = proxy.endpoint.tls().local_cert();
        let caller = Caller {
            id: &proxy.id,
            services: &cert.services,
        };
        if !doc.callers.is_empty() && !doc.callers.iter().any(|c| caller_matches(c, &caller)) {
            proxy.telemetry.external.get(&[kind, "caller_denied"]).inc();
            return Err(ProxyError::ExternalCaller {
                host: shown(host, port),
                doc: doc.name.to_string(),
                caller: proxy.id.clone(),
            });
        }
        let tls = doc.tls.clone().filter(|_| kind == "http");
        let decision = if tls.is_some() {
            "originated"
        } else {
            "documented"
        };
        proxy.telemetry.external.get(&[kind, decision]).inc();
        return Ok(tls);
    }
    match proxy.external {
        External::Allow => {
            proxy.telemetry.external.get(&[kind, "allowed"]).inc();
            Ok(None)
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
    // A tunnel carries the app's own TLS, if any: the document's callers apply, not its `tls`.
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
    let originate = admit(proxy, "http", host, port)?;
    let failed = |detail: String| ProxyError::ExternalFailed {
        host: shown(host, port),
        detail,
    };
    let mut sender = match originate {
        None => handshake(dial(proxy, host, port).await?).await,
        Some(tls) => {
            let stream = dial(proxy, host, tls.port).await?;
            let config = proxy
                .origination
                .config(tls.ca.as_deref())
                .await
                .map_err(|e| failed(format!("no TLS client: {e}")))?;
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| failed(format!("not a TLS server name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| failed(format!("TLS to port {}: {e}", tls.port)))?;
            handshake(stream).await
        }
    }
    .map_err(|e| failed(e.to_string()))?;
    let (mut parts, body) = req.into_parts();
    let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
    strip_hop_by_hop(&mut parts.headers);
    if let Some(a) = authority.and_then(|a| http::HeaderValue::from_str(&a).ok()) {
        parts.headers.insert(http::header::HOST, a);
    }
    parts.uri = origin_form(&parts.uri);
    let resp = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::Direct(body)))
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own.
async fn handshake<I>(
    io: I,
) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "connection outside the mesh ended");
        }
    });
    Ok(sender)
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

//! Connections the capture rules redirected here (`crate::capture`): the original destination
//! (`SO_ORIGINAL_DST`, IPv4 or IPv6) is a service's virtual IP, and the connection goes to that
//! service as its protocol says — an `http`/`grpc` service is served as HTTP by the outbound
//! proxy with all traffic policy, a `tcp` service is carried as TCP. Which port the app dialled
//! does not matter: the virtual IP names the service.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use murmur_membership::records::Protocol;
use murmur_transport::identity::Name;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

use super::runtime::Proxy;
use super::{outbound, route, upstream};
use crate::listener::Gate;

/// Accepts captured connections until the process ends, under `gate`'s cap and timeouts.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, gate: Arc<Gate>) {
    let builder = Arc::new(outbound::builder());
    loop {
        let conn = gate.accept(&listener).await;
        let _ = conn.stream.set_nodelay(true);
        let service = match service_of(&proxy, &conn.stream) {
            Ok(s) => s,
            Err(why) => {
                refused(&proxy, &why);
                continue;
            }
        };
        let protocol = route::protocol_of(&proxy.view.borrow(), service.as_str());
        let protocol = match protocol {
            Ok(p) => p,
            Err(e) => {
                refused(&proxy, &e.to_string());
                continue;
            }
        };
        proxy.telemetry.captured.get(&["accepted"]).inc();
        let (proxy, gate) = (proxy.clone(), gate.clone());
        match protocol {
            Protocol::Tcp => {
                tokio::spawn(upstream::serve_admitted(proxy, service, gate, conn));
            }
            Protocol::Http | Protocol::Grpc => {
                let builder = builder.clone();
                let fixed = Some(service);
                tokio::spawn(outbound::serve_admitted(proxy, builder, gate, conn, fixed));
            }
        }
    }
}

/// Counts a captured connection closed unserved, and says why (at most every 10 s per reason:
/// an app retrying in a loop must not flood the log).
fn refused(proxy: &Proxy, why: &str) {
    proxy.telemetry.captured.get(&["refused"]).inc();
    if proxy.traffic.should_log(&format!("captured {why}")) {
        info!("captured connection closed: {why}");
    }
}

/// The service whose virtual IP the app dialled.
fn service_of(proxy: &Proxy, stream: &TcpStream) -> Result<Name, String> {
    let dst = original_destination(stream)?;
    let vips = proxy.vips.borrow();
    let service = vips
        .service_at(dst.ip())
        .ok_or_else(|| format!("no service has the virtual IP {}", dst.ip()))?;
    Name::parse("service name", service).map_err(|e| e.to_string())
}

/// Where the app meant to connect, before the redirect: `SO_ORIGINAL_DST` for IPv4 (also for
/// an IPv4 connection accepted on an IPv6 socket), `IP6T_SO_ORIGINAL_DST` for IPv6.
pub fn original_destination(stream: &TcpStream) -> Result<SocketAddr, String> {
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let v4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    let sock = SockRef::from(stream);
    let raw = if v4 {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    }
    .map_err(|e| format!("no original destination ({e}): not a redirected connection"))?;
    let dst = raw
        .as_socket()
        .ok_or_else(|| "the original destination is not an IP address".to_owned())?;
    if dst == local {
        return Err(format!("{dst} was dialled directly, not redirected"));
    }
    Ok(dst)
}

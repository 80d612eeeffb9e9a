//! The admin HTTP API (JSON), on loopback by default. The CLI is a client of it.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | the dashboard (self-contained HTML) |
//! | GET | `/healthz` | `ok` while the process runs |
//! | GET | `/readyz` | 200 once joined and serving; 503 with the reason otherwise |
//! | GET | `/v1/mesh` | members with gossiped traffic, services with endpoints ([`mesh::MeshResponse`]) |
//! | GET | `/v1/members[?all=true]` | members as this node sees them ([`members::MembersResponse`]) |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/v1/traffic` | per-service rate, success rate, p50/p99 over the last minute |
//! | POST | `/v1/drain` | drain: stop attracting traffic, wait for peers and in-flight requests ([`crate::api::drain::DrainReport`]) |
//! | POST | `/v1/undrain` | take traffic again |
//! | GET | `/v1/status` | this node: identity, certificate, gossip counters ([`status::StatusResponse`]) |
//! | GET, POST | `/v1/policies[/<kind>/<name>]` | policy documents, digest, apply ([`crate::policy::api`]) |
//! | GET | `/v1/services` | every service in the mesh and its instances ([`services::ServicesResponse`]) |
//! | POST | `/v1/services` | register a local service ([`services::RegisterRequest`]) |
//! | DELETE | `/v1/services/<name>` | deregister a local service |

pub mod dashboard;
pub mod guard;
pub mod http;
pub mod members;
pub mod mesh;
pub mod metrics;
pub mod policy;
pub mod services;
pub mod state;
pub mod status;
pub mod traffic;

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use self::http::{Body, error, text};
pub use self::state::{AdminState, NodeFacts};
use crate::listener::{Activity, Admitted, Gate, Tracked};

/// Serves the admin API on `listener` until the process ends, under `gate`'s cap and timeouts
/// (its own: a flood of the proxy's listeners leaves it reachable).
pub async fn serve(state: Arc<AdminState>, listener: TcpListener, gate: Arc<Gate>) {
    if let Ok(addr) = listener.local_addr()
        && !addr.ip().is_loopback()
    {
        warn!(%addr, "the admin API is reachable from other hosts and has no authentication");
    }
    let header_timeout = gate.limits.first_byte_timeout;
    loop {
        let conn = gate.accept(&listener).await;
        let (state, gate) = (state.clone(), gate.clone());
        tokio::spawn(async move {
            let Admitted { stream, peer, slot } = conn;
            let activity = Activity::new();
            let busy = activity.clone();
            let svc = service_fn(move |req| {
                let (state, in_flight) = (state.clone(), busy.request());
                async move {
                    let resp = route(&state, req).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(resp)
                }
            });
            let io = TokioIo::new(Tracked::new(stream, activity.clone()));
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let served = gate
                .serve(&activity, builder.serve_connection(io, svc))
                .await;
            if let Some(Err(e)) = served {
                debug!(%peer, error = %e, "admin connection ended");
            }
            // Only now is its place under the cap free.
            drop(slot);
        });
    }
}

/// Ready: serving and joined ([`crate::readiness::check`], the rule systemd is told too).
fn readyz(state: &AdminState) -> Response<Body> {
    let view = state.membership.view();
    match crate::readiness::check(state.membership.status(), &view, state.node.has_seeds) {
        Ok(()) => text(200, "ready\n"),
        Err(why) => text(503, &format!("not ready: {why}\n")),
    }
}

async fn route(state: &Arc<AdminState>, req: Request<Incoming>) -> Response<Body> {
    if let Err((status, why)) = guard::check(&req, state.node.admin) {
        return error(status, &why);
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/" | "/index.html") => dashboard::get(),
        (Method::GET, "/healthz") => text(200, "ok\n"),
        (Method::GET, "/readyz") => readyz(state),
        (Method::GET, "/v1/mesh") => mesh::get(state),
        (Method::GET, "/v1/members") => members::list(state, req.uri().query()),
        (Method::GET, "/v1/status") => status::get(state),
        (Method::POST, "/v1/drain") => {
            let report =
                crate::drain::drain(&state.membership, &state.telemetry, state.node.drain).await;
            http::json(200, &report)
        }
        (Method::POST, "/v1/undrain") => match crate::drain::undrain(&state.membership).await {
            Ok(()) => text(200, "serving\n"),
            Err(e) => error(500, &e.to_string()),
        },
        (Method::GET, "/v1/services") => services::list(state),
        (Method::POST, "/v1/services") => services::register(state, req.into_body()).await,
        (Method::DELETE, p) if p.starts_with("/v1/services/") => {
            services::deregister(state, &p["/v1/services/".len()..]).await
        }
        (_, p) if crate::api::policies::is_policy_path(p) => policy::route(state, req).await,
        (Method::GET, "/metrics") => metrics::get(state).await,
        (Method::GET, "/v1/traffic") => traffic::get(state),
        (
            _,
            "/" | "/healthz" | "/readyz" | "/v1/members" | "/v1/mesh" | "/v1/status" | "/metrics"
            | "/v1/traffic" | "/v1/services" | "/v1/drain" | "/v1/undrain",
        ) => error(405, "method not allowed"),
        _ => error(404, &format!("no such endpoint: {path}")),
    }
}

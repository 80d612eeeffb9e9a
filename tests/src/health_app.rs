//! An HTTP app whose health check can be made to fail: `GET /healthz` answers 200 while
//! healthy and 503 otherwise; every other request is echoed like [`crate::apps::EchoApp`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The app.
#[derive(Debug, Clone)]
pub struct HealthApp {
    /// Its address.
    pub addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
}

impl HealthApp {
    /// Starts a healthy app on `addr`, answering as `name`.
    pub async fn start(addr: SocketAddr, name: &str) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind health app");
        let healthy = Arc::new(AtomicBool::new(true));
        let served = Arc::new(AtomicU64::new(0));
        let (h, c, name) = (healthy.clone(), served.clone(), name.to_owned());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, c, name) = (h.clone(), c.clone(), name.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (h, c, name) = (h.clone(), c.clone(), name.clone());
                        async move {
                            let mut resp = Response::new(Full::new(Bytes::new()));
                            if req.uri().path() == "/healthz" {
                                if !h.load(Ordering::Relaxed) {
                                    *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                                }
                            } else {
                                c.fetch_add(1, Ordering::Relaxed);
                                *resp.body_mut() = Full::new(Bytes::from(format!(
                                    "{name} {}\n",
                                    req.uri().path()
                                )));
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            healthy,
            served,
        }
    }

    /// Makes the health check pass or fail from now on.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Requests served (health checks excluded).
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

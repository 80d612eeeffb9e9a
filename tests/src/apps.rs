//! Apps behind nodes in tests: small HTTP servers that say who they are and count requests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTP app answering `<name> <method> <path>` plus the request body.
#[derive(Debug, Clone)]
pub struct EchoApp {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests served.
    pub hits: Arc<AtomicU64>,
}

impl EchoApp {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr, name: &str) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind echo app");
        let hits = Arc::new(AtomicU64::new(0));
        let (name, counter) = (name.to_owned(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, counter) = (name.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, counter) = (name.clone(), counter.clone());
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            let head = format!("{name} {} {}\n", req.method(), req.uri().path());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut out = head.into_bytes();
                            out.extend_from_slice(&body);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    /// Requests served so far.
    pub fn count(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

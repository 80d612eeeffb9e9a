//! Pooled connections to the local app: HTTP/1.1 for `http` services, HTTP/2 with prior
//! knowledge for `grpc` ones. Connections are reused across requests and closed after a minute
//! idle (the pool has a timer, so idle ones are evicted in the background).

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use murmur_membership::records::Protocol;

use super::body::FrameBody;

/// Idle pooled connections live this long.
const IDLE: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per app.
const MAX_IDLE: usize = 256;

/// A pooled client whose request bodies come off QUIC streams.
pub type AppClient = Client<HttpConnector, FrameBody>;

/// One client per protocol.
#[derive(Clone, Debug)]
pub struct LocalClients {
    http1: AppClient,
    http2: AppClient,
}

impl Default for LocalClients {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalClients {
    /// Builds the clients (no connection is made until a request needs one).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { http1, http2 }
    }

    /// The client for a service speaking `protocol`.
    pub fn client(&self, protocol: Protocol) -> &AppClient {
        match protocol {
            Protocol::Grpc => &self.http2,
            Protocol::Http | Protocol::Tcp => &self.http1,
        }
    }
}

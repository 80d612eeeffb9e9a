//! Connections to the local app, kept and reused: HTTP/1.1 for `http` services, a stack of idle
//! connections per app address ([`http1`]); HTTP/2 with prior knowledge for `grpc` ones, one
//! shared connection per address ([`http2`]). Idle connections close after a minute.
//!
//! Our own rather than hyper-util's pooled client: that one spawns a task for an HTTP/1.1
//! request whose connection is not ready again when the answer's head arrives (the body is
//! still coming), to put the connection back later. Here an HTTP/1.1 connection goes back when
//! the response body has been read to its end ([`AppBody`]), on the request's own task. A
//! request the app's connection closed under before it was written is sent again on a new
//! connection; one already written is not (it may have been processed).

#![allow(
    clippy::disallowed_types,
    reason = "each app's kept connections behind their own lock, held for a push or a pop and never across an await; the map of apps is locked exclusively only when an app is first called"
)]

mod body;
mod conn;
mod http1;
mod http2;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use foldhash::HashMap;
use http::Request;
use murmur_membership::records::Protocol;

use super::body::FrameBody;

pub use body::AppBody;
pub use conn::{AppCall, AppError};

use conn::{Kept, MAX_APPS};

/// The kept connections to every local app, by address and protocol, for each shard: a
/// connection is driven by the runtime that made it, so each shard keeps its own
/// (`murmur_transport::shard`).
#[derive(Debug)]
pub struct LocalClients {
    shards: Box<[Kinds]>,
}

/// One shard's kept connections.
#[derive(Debug, Default)]
struct Kinds {
    http1: Apps<http1::Pool>,
    http2: Apps<http2::Shared>,
}

impl LocalClients {
    /// For `shards` runtimes (at least one). No connection is made until a request needs one.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Kinds::default()).collect(),
        }
    }

    /// Sends `req` to the app at `address` speaking `protocol`, on a kept connection if one is
    /// free. An HTTP/1.1 request's URI is sent in origin form.
    ///
    /// The future is boxed: unboxed it would sit inside the request's own future, copied each
    /// time that one moves (measured: a quarter of the serving node's instructions per request
    /// went to those copies when it was 2.5 KB).
    pub fn request(
        &self,
        protocol: Protocol,
        address: SocketAddr,
        req: Request<FrameBody>,
    ) -> AppCall {
        let kinds = self.shard();
        match protocol {
            Protocol::Grpc => Box::pin(kinds.http2.get(address).request(req)),
            Protocol::Http | Protocol::Tcp => kinds.http1.get(address).request(req),
        }
    }

    /// The current thread's shard's connections.
    fn shard(&self) -> &Kinds {
        murmur_transport::shard::item(&self.shards, murmur_transport::shard::current())
    }
}

/// One kind of app client per address, made on first use.
#[derive(Debug)]
struct Apps<C> {
    by_address: RwLock<HashMap<SocketAddr, Arc<C>>>,
}

impl<C> Default for Apps<C> {
    fn default() -> Self {
        Self {
            by_address: RwLock::new(HashMap::default()),
        }
    }
}

impl<C: Kept> Apps<C> {
    fn get(&self, address: SocketAddr) -> Arc<C> {
        let known = self
            .by_address
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&address)
            .cloned();
        if let Some(c) = known {
            return c;
        }
        let mut map = self
            .by_address
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(&address) {
            return Arc::clone(c);
        }
        if map.len() >= MAX_APPS {
            map.retain(|_, c| !c.is_empty());
        }
        let c = Arc::new(C::new(address));
        if map.len() < MAX_APPS {
            map.insert(address, Arc::clone(&c));
        }
        c
    }
}

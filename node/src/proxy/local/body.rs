//! The body of an app's answer. For HTTP/1.1 it carries the connection it came on, which goes
//! back to the pool once the body has been read to its end; a body dropped before its end takes
//! its connection with it (the rest of the answer is still on the wire, so the connection is
//! closed).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::proxy::body::FrameBody;

/// Where a connection goes back to.
pub trait GiveBack: std::fmt::Debug + Send + Sync {
    /// Takes `sender` back for the next request.
    fn give_back(self: Arc<Self>, sender: SendRequest<FrameBody>);
}

/// A connection to give back once the answer on it is read.
#[derive(Debug)]
pub struct Return {
    /// Its pool.
    pub pool: Arc<dyn GiveBack>,
    /// The connection.
    pub sender: SendRequest<FrameBody>,
}

/// An app's answer body.
#[derive(Debug)]
pub struct AppBody {
    inner: Incoming,
    back: Option<Return>,
}

impl AppBody {
    /// The answer `inner`, whose connection (if any) goes back with `back`.
    pub fn new(inner: Incoming, back: Option<Return>) -> Self {
        Self { inner, back }
    }

    fn give_back(&mut self) {
        if let Some(r) = self.back.take() {
            r.pool.give_back(r.sender);
        }
    }
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            // A broken answer leaves the connection in no state to reuse.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AppBody {
    fn drop(&mut self) {
        // An answer without a body (or whose last frame was read without polling past it) is
        // complete too.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}

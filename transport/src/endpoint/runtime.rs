//! The runtime quinn's drivers run on: tokio's, with the mesh port's own socket wrapper
//! ([`super::udp`]) and one difference on a multi-threaded runtime, where a woken driver goes
//! to the back of the queue before it is polled. The node
//! itself runs only single-threaded runtimes (one per thread, [`crate::shard`]), where none of
//! this applies; what runs an endpoint on a multi-threaded runtime (some tests) still gets it.
//!
//! Every write to a stream wakes its connection's driver, which encrypts and sends what the
//! streams have written since it last ran. On tokio's current-thread runtime the woken driver
//! joins the back of the queue, so by the time it runs the other streams ready in the same
//! turn have written too and one packet carries them all. A multi-threaded runtime puts a task
//! woken by another in the waker's "next task" slot instead: the driver then runs right after
//! each stream's write and sends one packet per stream. With `threads = 2` at 32 connections
//! a node sent ten times the UDP packets of `threads = 1`, and used about a quarter more CPU
//! per request than with the drivers deferred as here (README, "Performance"). The price, at
//! one connection with `threads = 2`: tokio wakes a parked worker whenever a task is queued at
//! the back, so each requeue wakes the idle worker for nothing (twice the `futex` calls per
//! request), and the added latency grew by about a fifth. The current-thread runtime needs no
//! deferral, and gets none.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};
use tokio::runtime::{Handle, RuntimeFlavor};

/// tokio's runtime for quinn, deferring woken drivers on a multi-threaded runtime.
#[derive(Debug)]
pub(super) struct DriverRuntime;

impl Runtime for DriverRuntime {
    fn new_timer(&self, i: Instant) -> Pin<Box<dyn AsyncTimer>> {
        TokioRuntime.new_timer(i)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        match Handle::current().runtime_flavor() {
            RuntimeFlavor::CurrentThread => tokio::spawn(future),
            _ => tokio::spawn(Deferred {
                driver: future,
                queued: false,
            }),
        };
    }

    fn wrap_udp_socket(&self, t: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Ok(Arc::new(super::udp::MeshSocket::new(t)?))
    }
}

/// A driver that, each time it is woken, first wakes itself: tokio queues a task that wakes
/// itself at the back of the worker's queue (not in the "next task" slot), so the tasks already
/// queued run first. Wakes that come while it waits there add nothing: the task is already
/// queued, so no stream write can pull the driver ahead. A worker that never runs out of tasks
/// still reaches the back of its queue, so the driver is not starved.
struct Deferred {
    driver: Pin<Box<dyn Future<Output = ()> + Send>>,
    queued: bool,
}

impl Future for Deferred {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.queued {
            self.queued = false;
            return self.driver.as_mut().poll(cx);
        }
        self.queued = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;

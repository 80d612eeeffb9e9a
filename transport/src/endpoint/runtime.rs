//! The runtime quinn's drivers run on: tokio's, with one difference on a multi-threaded
//! runtime, where a woken driver waits for the tasks already queued before it is polled.
//!
//! Every write to a stream wakes its connection's driver, which encrypts and sends what the
//! streams have written since it last ran. On tokio's current-thread runtime the woken driver
//! joins the back of the queue, so by the time it runs the other streams ready in the same
//! turn have written too and one packet carries them all. A multi-threaded runtime puts a task
//! woken by another in the waker's "next task" slot instead: the driver then runs right after
//! each stream's write and sends one packet per stream. With `threads = 2` at 32 connections
//! a node sent ten times the UDP packets of `threads = 1`, and used 17-25 % more CPU per
//! request than with the drivers deferred as here (README, "Performance"). On the
//! current-thread runtime the deferral would only add a turn of the scheduler to every wake
//! (about 25 µs more per request at one connection, measured), so it is not applied there.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
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
            _ => tokio::spawn(deferred(future)),
        };
    }

    fn wrap_udp_socket(&self, t: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        TokioRuntime.wrap_udp_socket(t)
    }
}

/// Polls `driver` each time it is woken, after the tasks queued on this worker have run.
///
/// tokio's `yield_now` hands a waker to the worker, which calls it when its queue is empty or at
/// its next periodic look at the I/O driver (so the driver cannot be starved). That waker is our
/// [`Turn`]: a wake from elsewhere while the turn is pending (another stream writing) must not
/// cut in, so the driver is polled only once the turn has come.
struct Deferred {
    driver: Pin<Box<dyn Future<Output = ()> + Send>>,
    turn: Arc<Turn>,
    waiting_for_turn: bool,
}

fn deferred(driver: Pin<Box<dyn Future<Output = ()> + Send>>) -> Deferred {
    Deferred {
        driver,
        turn: Arc::new(Turn::default()),
        waiting_for_turn: false,
    }
}

impl Future for Deferred {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.waiting_for_turn {
            if !this.turn.came(cx.waker()) {
                return Poll::Pending;
            }
            this.waiting_for_turn = false;
            return this.driver.as_mut().poll(cx);
        }
        // The first poll (the driver starts at once) or a wake by the driver's waker: ask for a
        // turn. The yield's future is only the means to hand tokio the turn's waker.
        this.turn.expect(cx.waker());
        let turn = Waker::from(this.turn.clone());
        let yielding = std::pin::pin!(tokio::task::yield_now());
        // Always pending when first polled; the turn's waker is then with tokio (or, outside a
        // worker, already woken).
        let _ = yielding.poll(&mut Context::from_waker(&turn));
        this.waiting_for_turn = true;
        Poll::Pending
    }
}

/// The waker handed to tokio for a deferred driver's turn: notes that the turn came and wakes
/// the driver's task.
#[derive(Default)]
struct Turn {
    come: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Turn {
    /// A new turn is awaited by the task `waker` wakes.
    fn expect(&self, waker: &Waker) {
        self.come.store(false, Ordering::Release);
        self.set_task(waker);
    }

    /// Whether the turn has come; if not, keeps `waker` (the task's, which tokio may change)
    /// to be woken when it does.
    fn came(&self, waker: &Waker) -> bool {
        if self.come.load(Ordering::Acquire) {
            return true;
        }
        self.set_task(waker);
        // The turn may have come between the check and the waker's update.
        self.come.load(Ordering::Acquire)
    }

    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        match task.as_ref() {
            Some(w) if w.will_wake(waker) => {}
            _ => *task = Some(waker.clone()),
        }
    }
}

impl Wake for Turn {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.come.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = task {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests;

//! The mesh port's socket as quinn drives it, registered with the reactor for reading only.
//!
//! tokio's `UdpSocket` (what quinn's own tokio glue wraps) registers for writing too. The
//! kernel reports a UDP socket writable again each time a datagram it sent is freed, which on
//! loopback or any fast path is each time the peer reads one: so every packet sent woke its
//! sender's reactor once more for nothing (`epoll_wait` returning only `EPOLLOUT`; at one
//! connection, one wake-up of three per request). Here sends go straight to the socket. quinn
//! asks whether the socket is writable before every send: the answer is yes until the kernel
//! refuses a send for want of buffer space; only then does the next question wait for
//! writability, on a duplicate of the socket registered for that wait alone.
//!
//! A receive that fills fewer messages than it asked for has emptied the queue, so readiness
//! is cleared then without the extra `recvmmsg` that would only return `EAGAIN`: a datagram
//! that arrives later is a new edge, and wakes the reader.
//!
//! A GSO batch larger than one send may carry goes out as several sends ([`in_sends`]).

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use quinn::udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::socket::in_sends;

/// A UDP socket read through the reactor and written directly.
pub(super) struct MeshSocket {
    io: AsyncFd<UdpSocket>,
    state: UdpSocketState,
    /// A send was refused for want of buffer space, and no wait has seen the socket writable
    /// since.
    refused: AtomicBool,
}

impl MeshSocket {
    /// Registers `socket` with the current runtime's reactor, for reading.
    pub(super) fn new(socket: UdpSocket) -> io::Result<Self> {
        // Also makes the socket non-blocking.
        let state = UdpSocketState::new((&socket).into())?;
        let io = register(socket, Interest::READABLE)?;
        Ok(Self {
            io,
            state,
            refused: AtomicBool::new(false),
        })
    }
}

impl fmt::Debug for MeshSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshSocket")
            .field("socket", self.io.get_ref())
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for MeshSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable {
            socket: self,
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let sent = in_sends(transmit, |t| self.state.send(self.io.get_ref().into(), t));
        if let Err(e) = &sent
            && e.kind() == io::ErrorKind::WouldBlock
        {
            self.refused.store(true, Ordering::Relaxed);
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // What quinn-udp asks the kernel for in one call.
        let asked = bufs.len().min(BATCH_SIZE);
        loop {
            let mut guard = ready!(self.io.poll_read_ready(cx))?;
            match self.state.recv(self.io.get_ref().into(), bufs, meta) {
                Ok(n) => {
                    if n < asked {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

/// Registers `socket` with the current runtime's reactor for `interest`.
#[allow(
    deprecated,
    reason = "tokio deprecates this constructor because a generic `T` could change or close the \
              descriptor it reports while registered; a `std::net::UdpSocket` owns its \
              descriptor, reports the same one for its whole life and closes it only when dropped, \
              after the `AsyncFd` has deregistered it. The replacement is an `unsafe fn`, and the \
              workspace forbids unsafe code"
)]
fn register(socket: UdpSocket, interest: Interest) -> io::Result<AsyncFd<UdpSocket>> {
    AsyncFd::with_interest(socket, interest)
}

/// Whether the socket may take a send: at once, unless a send was refused since the last wait;
/// then once it is writable, seen through a duplicate of it registered for writing while the
/// wait lasts and dropped (deregistered) once it is over.
struct Writable {
    socket: Arc<MeshSocket>,
    waiting: Option<AsyncFd<UdpSocket>>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable")
            .field("waiting", &self.waiting.is_some())
            .finish_non_exhaustive()
    }
}

impl UdpPoller for Writable {
    fn poll_writable(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let fd = match self.waiting.take() {
            Some(fd) => fd,
            None if !self.socket.refused.load(Ordering::Relaxed) => return Poll::Ready(Ok(())),
            None => register(self.socket.io.get_ref().try_clone()?, Interest::WRITABLE)?,
        };
        let Poll::Ready(result) = fd.poll_write_ready(cx).map(|r| r.map(drop)) else {
            self.waiting = Some(fd);
            return Poll::Pending;
        };
        self.socket.refused.store(false, Ordering::Relaxed);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests;

//! Replies go back on the connection the message came on.
//!
//! chitchat answers a Syn or a SynAck by sending to the address the message came from. On QUIC
//! that address is only the sender's claim (the frame's `from`), and dialling whatever a frame
//! claims would let one member point our replies, and our dials, anywhere. So chitchat is given
//! a stand-in address for each received message, unique and never routable (inside
//! 2001:db8::/32, the documentation prefix), and a send to a stand-in goes out on the
//! connection the message arrived on. Stand-ins are forgotten after a short time or when too
//! many are waiting; a reply that comes later is dropped, as a late datagram would be.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::endpoint::PeerConnection;

/// chitchat replies at once; a stand-in older than this is of no use.
const LIFETIME: Duration = Duration::from_secs(5);
/// Stand-ins remembered at most (a few seconds of messages at a high rate).
const CAPACITY: usize = 4096;
const PREFIX: u128 = 0x2001_0db8 << 96;
const PREFIX_MASK: u128 = 0xffff_ffff << 96;

/// Stand-in addresses and the connections behind them.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    routes: HashMap<SocketAddr, PeerConnection>,
    order: VecDeque<(SocketAddr, Instant)>,
}

impl Replies {
    /// A fresh stand-in address for a message that arrived on `conn`.
    pub(crate) fn stand_in(&self, conn: &PeerConnection) -> SocketAddr {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some((addr, at)) = inner.order.front().copied() {
            if inner.order.len() < CAPACITY && now.duration_since(at) < LIFETIME {
                break;
            }
            inner.order.pop_front();
            inner.routes.remove(&addr);
        }
        inner.next = inner.next.wrapping_add(1);
        let addr = SocketAddr::new(Ipv6Addr::from(PREFIX | u128::from(inner.next)).into(), 1);
        inner.routes.insert(addr, conn.clone());
        inner.order.push_back((addr, now));
        addr
    }

    /// Whether `addr` is a stand-in (a reply), known or forgotten.
    pub(crate) fn is_stand_in(addr: SocketAddr) -> bool {
        match addr.ip() {
            std::net::IpAddr::V6(ip) => u128::from(ip) & PREFIX_MASK == PREFIX,
            std::net::IpAddr::V4(_) => false,
        }
    }

    /// The connection behind a stand-in, once: a message gets one reply.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<PeerConnection> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.routes.remove(&addr)
    }
}

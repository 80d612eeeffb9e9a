//! A cap on the connections one client address may hold open at the gateway, so that one
//! client flooding it (idle or slow connections) takes its own share and leaves the listener's
//! cap to the others. The map holds only addresses with a connection open: it is never larger
//! than the listener's cap.
#![allow(
    clippy::disallowed_types,
    reason = "one map operation per connection (not per request), never held across an await"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::listener::{Admitted, Gate};
use crate::proxy::runtime::Proxy;

/// Open connections per client address.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: std::sync::Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its address's share, given back when dropped.
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// At most `max` connections per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: std::sync::Mutex::default(),
        })
    }

    /// A place for one more connection from `ip`, unless it has `max` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = canonical(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: self.clone(),
            ip,
        })
    }

    /// [`Self::accept`] for one of the gateway's listeners: each refusal is counted in the
    /// gateway's connection counter under `per_ip_cap`.
    pub async fn accept_counted(
        self: &Arc<Self>,
        gate: &Gate,
        listener: &TcpListener,
        proxy: &Proxy,
    ) -> (Admitted, IpSlot) {
        let counter = &proxy.telemetry.gateway_connections;
        self.accept(gate, listener, || counter.get(&["per_ip_cap"]).inc())
            .await
    }

    /// The next connection `gate` admits from an address with room in its share; the others
    /// are closed as they come, and `refused` is called for each.
    pub async fn accept(
        self: &Arc<Self>,
        gate: &Gate,
        listener: &TcpListener,
        refused: impl Fn(),
    ) -> (Admitted, IpSlot) {
        loop {
            let conn = gate.accept(listener).await;
            match self.admit(conn.peer.ip()) {
                Some(slot) => return (conn, slot),
                None => refused(),
            }
        }
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> usize {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An IPv4 client seen on an IPv6 socket counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_share_and_gets_it_back() {
        let per_ip = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = per_ip.admit(a).unwrap();
        let two = per_ip.admit(a6).unwrap();
        assert!(per_ip.admit(a).is_none(), "a has its two");
        let other = per_ip.admit(b);
        assert!(other.is_some(), "b is not held back by a");
        drop(one);
        assert_eq!(per_ip.open(a), 1);
        let three = per_ip.admit(a);
        assert!(three.is_some());
        drop((two, three, other));
        assert_eq!(per_ip.open(a), 0);
        assert!(
            per_ip.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}

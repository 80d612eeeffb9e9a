//! Requests per second per client address (`gateway.rate_per_ip`): a token bucket for each
//! address, as many tokens as the rate at most. A request without a token gets 429 with
//! `retry-after`. The buckets are kept for at most 65 536 addresses; beyond that they all start
//! afresh (full), so the map cannot grow with the addresses a flood comes from.
#![allow(
    clippy::disallowed_types,
    reason = "one map operation per gateway request, never held across an await"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::traffic::ratelimit::Bucket;

/// Addresses whose buckets are kept at once.
const MAX_ADDRESSES: usize = 65_536;

/// The buckets of the client addresses.
#[derive(Debug)]
pub struct PerIpRate {
    rate: f64,
    buckets: std::sync::Mutex<HashMap<IpAddr, Bucket>>,
}

impl PerIpRate {
    /// `rate` requests per second per address.
    pub fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            buckets: std::sync::Mutex::default(),
        }
    }

    /// Takes a token for a request from `ip` at `now`, or says how long until there is one.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&ip) {
            buckets.clear();
        }
        buckets
            .entry(ip)
            .or_insert_with(|| Bucket::full(self.rate, now))
            .try_take(self.rate, self.rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_bucket() {
        let rate = PerIpRate::new(2);
        let t = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(rate.take(a, t).is_ok());
        assert!(rate.take(a, t).is_ok());
        let wait = rate.take(a, t).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(rate.take(b, t).is_ok(), "b is not held back by a");
        assert!(rate.take(a, t + Duration::from_millis(500)).is_ok());
    }
}

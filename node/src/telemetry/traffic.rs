//! Traffic over the last minute, per direction and service: rate, success rate, p50 and p99.
//! This is what `murmur status`, `murmur top` and the dashboard show.
//!
//! Each (direction, service) has its own window behind its own lock; the request path reaches
//! it through a handle resolved once per service ([`Traffic::window`]), so no lock shared by
//! every service is taken per request.

#![allow(
    clippy::disallowed_types,
    reason = "a lock per service's window, taken once per request of that service; the map of windows is locked only when a service is first seen and when summaries are read"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::metrics::LATENCY_BUCKETS;
use crate::api::traffic::{Direction, TrafficSummary};

/// Seconds of history kept.
pub const WINDOW_SECS: u64 = 60;
/// Windows kept at most (one per direction and service); a new one beyond is not recorded.
pub const MAX_WINDOWS: usize = 1024;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    second: u64,
    requests: u64,
    failures: u64,
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

#[derive(Debug)]
struct Slots {
    slots: Vec<Slot>,
}

impl Slots {
    fn new() -> Self {
        Self {
            slots: vec![Slot::default(); WINDOW_SECS as usize],
        }
    }

    fn slot(&mut self, second: u64) -> &mut Slot {
        let i = (second % WINDOW_SECS) as usize;
        let s = &mut self.slots[i];
        if s.second != second {
            *s = Slot {
                second,
                ..Slot::default()
            };
        }
        s
    }
}

/// The one-minute window of one direction and service.
#[derive(Debug)]
pub struct Window(Mutex<Slots>);

impl Window {
    fn new() -> Self {
        Self(Mutex::new(Slots::new()))
    }

    /// Records one finished request at unix second `now`.
    pub fn record(&self, failed: bool, latency: Duration, now: u64) {
        let secs = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.slot(now);
        slot.requests += 1;
        slot.failures += u64::from(failed);
        slot.buckets[i] += 1;
    }
}

/// Rolling per-service windows.
#[derive(Debug, Default)]
pub struct Traffic {
    windows: Mutex<BTreeMap<(Direction, String), Arc<Window>>>,
}

impl Traffic {
    /// The window of `service` in direction `dir`, made if new; `None` once [`MAX_WINDOWS`]
    /// are kept. Keep the handle: this takes the lock of every window.
    pub fn window(&self, dir: Direction, service: &str) -> Option<Arc<Window>> {
        let mut map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (dir, service.to_owned());
        if let Some(w) = map.get(&key) {
            return Some(w.clone());
        }
        if map.len() >= MAX_WINDOWS {
            return None;
        }
        Some(
            map.entry(key)
                .or_insert_with(|| Arc::new(Window::new()))
                .clone(),
        )
    }

    /// Records one finished request at unix second `now` (looking its window up: the request
    /// path keeps the handle instead).
    #[cfg(test)]
    pub fn record(&self, dir: Direction, service: &str, failed: bool, latency: Duration, now: u64) {
        if let Some(w) = self.window(dir, service) {
            w.record(failed, latency, now);
        }
    }

    /// Summaries over the last [`WINDOW_SECS`] seconds before `now`.
    pub fn summaries(&self, now: u64) -> Vec<TrafficSummary> {
        let map = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|((dir, service), w)| {
                let slots = w.0.lock().unwrap_or_else(PoisonError::into_inner);
                summarize(*dir, service, &slots, now)
            })
            .collect()
    }
}

fn summarize(direction: Direction, service: &str, w: &Slots, now: u64) -> TrafficSummary {
    let recent = w
        .slots
        .iter()
        .filter(|s| s.second + WINDOW_SECS > now && s.second <= now);
    let (mut requests, mut failures) = (0, 0);
    let mut buckets = [0u64; LATENCY_BUCKETS.len() + 1];
    for s in recent {
        requests += s.requests;
        failures += s.failures;
        for (b, n) in buckets.iter_mut().zip(&s.buckets) {
            *b += n;
        }
    }
    TrafficSummary {
        direction,
        service: service.to_owned(),
        requests,
        rate: requests as f64 / WINDOW_SECS as f64,
        success_rate: if requests == 0 {
            1.0
        } else {
            (requests - failures) as f64 / requests as f64
        },
        p50_ms: quantile(&buckets, requests, 0.5),
        p99_ms: quantile(&buckets, requests, 0.99),
    }
}

fn quantile(buckets: &[u64], total: u64, q: f64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let rank = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(60.0);
            return bound * 1000.0;
        }
    }
    60_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_cover_the_last_minute_only() {
        let t = Traffic::default();
        for i in 0..99 {
            t.record(
                Direction::Outbound,
                "web",
                false,
                Duration::from_micros(800),
                1000 + i % 10,
            );
        }
        t.record(
            Direction::Outbound,
            "web",
            true,
            Duration::from_millis(400),
            1005,
        );
        t.record(
            Direction::Outbound,
            "old",
            false,
            Duration::from_millis(1),
            100,
        );
        let s = t.summaries(1010);
        let web = s.iter().find(|s| s.service == "web").unwrap();
        assert_eq!(web.requests, 100);
        assert!((web.success_rate - 0.99).abs() < 1e-9);
        assert_eq!(web.p50_ms, 1.0);
        assert_eq!(web.p99_ms, 1.0);
        let old = s.iter().find(|s| s.service == "old").unwrap();
        assert_eq!(old.requests, 0);
    }
}

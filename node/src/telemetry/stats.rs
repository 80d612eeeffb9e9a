//! What one request of a (direction, service) feeds, resolved once per service: its gauge of
//! requests in flight, its latency histogram, its one-minute window, and its request counters
//! by peer and outcome as they are met. A request reaches them through one `Arc` found by the
//! service's name under a shared read lock: no exclusive lock and no allocation per request
//! once a service, peer and outcome have been seen.

use std::sync::{Arc, PoisonError, RwLock};

use foldhash::HashMap;

use super::metrics::{Counter, Gauge, Histogram, MAX_INSTANCES};
use super::traffic::Window;
use crate::api::traffic::Direction;

/// Counters by (peer, outcome) one service keeps handles to; others are looked up each time.
pub const MAX_CACHED_COUNTERS: usize = 64;

/// One counter handle: the peer, the status class and the gRPC status label it counts.
type Cached = (String, &'static str, &'static str, Arc<Counter>);

/// The handles of one (direction, service).
#[derive(Debug)]
pub struct ServiceStats {
    /// The direction.
    pub direction: Direction,
    service: String,
    /// `murmur_requests_in_flight`.
    pub in_flight: Arc<Gauge>,
    /// `murmur_request_duration_seconds`.
    pub duration: Arc<Histogram>,
    /// The one-minute window (`None` once the node keeps as many as it may).
    pub window: Option<Arc<Window>>,
    counters: RwLock<Vec<Cached>>,
}

impl ServiceStats {
    /// The handles of `service`, as resolved by the caller.
    pub fn new(
        direction: Direction,
        service: &str,
        in_flight: Arc<Gauge>,
        duration: Arc<Histogram>,
        window: Option<Arc<Window>>,
    ) -> Self {
        Self {
            direction,
            service: service.to_owned(),
            in_flight,
            duration,
            window,
            counters: RwLock::new(Vec::new()),
        }
    }

    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Adds one to the request counter of `peer` and the labels `class` and `grpc`, which
    /// `lookup` finds in its family the first time.
    pub fn count(
        &self,
        peer: &str,
        class: &'static str,
        grpc: &'static str,
        lookup: impl FnOnce() -> Arc<Counter>,
    ) {
        {
            let cached = self.counters.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(c) = cached
                .iter()
                .find(|(p, k, g, _)| p == peer && *k == class && *g == grpc)
            {
                c.3.inc();
                return;
            }
        }
        let counter = lookup();
        counter.inc();
        let mut cached = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.len() < MAX_CACHED_COUNTERS {
            cached.push((peer.to_owned(), class, grpc, counter));
        }
    }
}

/// The [`ServiceStats`] of every service seen, per direction.
#[derive(Debug, Default)]
pub struct StatsMap {
    outbound: RwLock<HashMap<String, Arc<ServiceStats>>>,
    inbound: RwLock<HashMap<String, Arc<ServiceStats>>>,
}

impl StatsMap {
    /// The handles of (`direction`, `service`), made by `make` the first time. Past
    /// [`MAX_INSTANCES`] services they are made anew each time (the families bound their own
    /// labels).
    pub fn get(
        &self,
        direction: Direction,
        service: &str,
        make: impl FnOnce() -> ServiceStats,
    ) -> Arc<ServiceStats> {
        let map = match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        };
        if let Some(s) = map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            return s.clone();
        }
        let made = Arc::new(make());
        let mut map = map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_INSTANCES {
            return made;
        }
        map.entry(service.to_owned()).or_insert(made).clone()
    }
}

//! Load balancing over the instances of a service: power of two choices over peak-EWMA latency
//! (the default), round robin, or least request, as each service's owner publishes.
//!
//! [`choose::order`] is the pure decision; [`Balancers`] keeps what it needs between requests
//! (requests in flight, latency estimates, round-robin turns) for every service this node calls.

#![allow(
    clippy::disallowed_types,
    reason = "each service's balancer state behind its own lock; the map of services is locked exclusively only when a service is first called"
)]

pub mod choose;
pub mod ewma;
pub mod locality;
pub mod ring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use murmur_membership::records::Balancer;

pub use choose::{Load, Rng, order};
use ewma::PeakEwma;
use ring::Ring;

use crate::traffic::circuit::{Outlier, OutlierConfig, Standing, Transition};

/// Latency charged to an endpoint whose connection or stream failed: failures should make it
/// look expensive to P2C until it answers well again.
pub const FAILURE_PENALTY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct EndpointState {
    /// Its node's name, the same allocation as its key: an attempt's [`InFlight`] holds a
    /// reference to it instead of a copy.
    node: Arc<str>,
    pending: u32,
    ewma: PeakEwma,
    /// Outlier ejection (used only while the service has a `circuit` policy).
    outlier: Outlier,
}

impl EndpointState {
    fn new(node: Arc<str>) -> Self {
        Self {
            node,
            pending: 0,
            ewma: PeakEwma::default(),
            outlier: Outlier::default(),
        }
    }
}

#[derive(Debug, Default)]
struct ServiceState {
    turn: u64,
    endpoints: HashMap<Arc<str>, EndpointState>,
    /// Endpoints offered at the last choice: the base of `max_ejected_percent`.
    offered: usize,
    /// The hash ring of the instances last offered to a route with consistent hashing.
    ring: Option<Ring>,
}

/// One service's state, locked on its own.
type Cell = Arc<Mutex<ServiceState>>;

/// Balancer state of every service this node calls. Shared by all requests; a request locks
/// only its service's state.
#[derive(Debug, Default)]
pub struct Balancers {
    services: RwLock<HashMap<String, Cell>>,
    seed: AtomicU64,
}

fn lock(cell: &Cell) -> MutexGuard<'_, ServiceState> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the first instance is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Choice {
    /// By the balancer the service's owner chose.
    Balancer(Balancer),
    /// By consistent hashing of a request key ([`ring`]), under a bounded load.
    Ring {
        /// The key's hash.
        key: u64,
        /// The load bound, times the average.
        load_factor: f64,
    },
}

/// One endpoint offered to [`Balancers::order`].
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// Its node.
    pub node: &'a str,
    /// Its weight.
    pub weight: u32,
}

impl Balancers {
    /// New state, seeding the random choices from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            services: RwLock::default(),
            seed: AtomicU64::new(seed),
        }
    }

    /// The state of `service`, made the first time (services are the mesh's, which the view
    /// bounds; endpoints that left are forgotten in [`Balancers::order`]).
    fn cell(&self, service: &str) -> Cell {
        if let Some(c) = self
            .services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            return c.clone();
        }
        self.services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(service.to_owned())
            .or_default()
            .clone()
    }

    /// The state of `service` if it has any.
    fn existing(&self, service: &str) -> Option<Cell> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .cloned()
    }

    /// The order in which to try `offers` for one request to `service`. With outlier ejection
    /// (`outlier`), ejected endpoints are left out, and an endpoint whose ejection is over
    /// comes first: it gets the probe. If every endpoint is out, ejection is ignored.
    pub fn order(
        &self,
        service: &str,
        choice: Choice,
        offers: &[Offer<'_>],
        now: Instant,
        outlier: Option<&OutlierConfig>,
    ) -> Vec<usize> {
        let mut rng = Rng::new(self.seed.fetch_add(1, Ordering::Relaxed));
        let cell = self.cell(service);
        let mut guard = lock(&cell);
        let state = &mut *guard;
        state.offered = offers.len();
        // With outlier ejection: which offers may be chosen, and which one is due a probe.
        // Without, every offer (and no list is made).
        let ejection = outlier.map(|_| {
            let mut eligible = Vec::with_capacity(offers.len());
            let mut probe = None;
            for (i, o) in offers.iter().enumerate() {
                let standing = state
                    .endpoints
                    .get(o.node)
                    .map_or(Standing::In, |e| e.outlier.standing(now));
                match standing {
                    Standing::In => eligible.push(i),
                    Standing::ProbeDue if probe.is_none() => probe = Some(i),
                    _ => {}
                }
            }
            if eligible.is_empty() && probe.is_none() {
                eligible = (0..offers.len()).collect();
            }
            (eligible, probe)
        });
        // Forget endpoints that left, so the map stays as small as the service.
        if state.endpoints.len() > offers.len() * 2 + 8 {
            state
                .endpoints
                .retain(|node, e| e.pending > 0 || offers.iter().any(|o| o.node == &**node));
        }
        let eligible = ejection.as_ref().map(|(e, _)| e.as_slice());
        let chosen = match choice {
            Choice::Balancer(kind) => by_balancer(state, kind, offers, eligible, now, &mut rng),
            Choice::Ring { key, load_factor } => by_ring(state, key, load_factor, offers, eligible),
        };
        let Some((_, probe)) = ejection else {
            return chosen;
        };
        let mut out = Vec::with_capacity(chosen.len() + 1);
        if let Some(p) = probe {
            if let Some(e) = state.endpoints.get_mut(offers[p].node) {
                e.outlier.start_probe();
            }
            out.push(p);
        }
        out.extend(chosen);
        out
    }

    /// Counts a request to `node`, started `now`, as in flight until the returned guard is
    /// finished or dropped.
    pub fn start(&self, service: &str, node: &str, now: Instant) -> InFlight {
        let cell = self.cell(service);
        let node = with(&cell, node, |e| {
            e.pending += 1;
            e.node.clone()
        });
        InFlight {
            cell,
            node,
            started: now,
            done: false,
        }
    }

    /// Frees the probe of `node` if no request is in flight to it: a plan chose it as the probe,
    /// but its request ended (refused, aborted, expired) before any attempt started.
    pub fn release_probe(&self, service: &str, node: &str) {
        let Some(cell) = self.existing(service) else {
            return;
        };
        if let Some(e) = lock(&cell).endpoints.get_mut(node)
            && e.pending == 0
        {
            e.outlier.abandon_probe();
        }
    }

    /// `(node, pending, ewma ms)` of every endpoint of `service` this node has called.
    pub fn snapshot(&self, service: &str) -> Vec<(String, u32, f64)> {
        let now = crate::clock::now();
        let mut out: Vec<_> = self
            .existing(service)
            .map(|c| {
                lock(&c)
                    .endpoints
                    .iter()
                    .map(|(n, e)| (n.to_string(), e.pending, e.ewma.estimate_ns(now) / 1e6))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Applies `f` to `node`'s state in `cell`, made if new.
fn with<T>(cell: &Cell, node: &str, f: impl FnOnce(&mut EndpointState) -> T) -> T {
    let mut state = lock(cell);
    // Look up before inserting: the hot path allocates no key.
    if let Some(e) = state.endpoints.get_mut(node) {
        return f(e);
    }
    let node: Arc<str> = Arc::from(node);
    f(state
        .endpoints
        .entry(node.clone())
        .or_insert_with(|| EndpointState::new(node)))
}

/// The balancer's order of the `eligible` offers (all without a list), as offer indexes.
fn by_balancer(
    state: &mut ServiceState,
    kind: Balancer,
    offers: &[Offer<'_>],
    eligible: Option<&[usize]>,
    now: Instant,
    rng: &mut Rng,
) -> Vec<usize> {
    let load = |i: usize| {
        let e = state.endpoints.get(offers[i].node);
        Load {
            pending: e.map_or(0, |e| e.pending),
            ewma_ns: e.map_or_else(
                || PeakEwma::default().estimate_ns(now),
                |e| e.ewma.estimate_ns(now),
            ),
            weight: offers[i].weight,
        }
    };
    let loads: Vec<Load> = match eligible {
        Some(eligible) => eligible.iter().map(|&i| load(i)).collect(),
        None => (0..offers.len()).map(load).collect(),
    };
    let turn = state.turn;
    state.turn = state.turn.wrapping_add(1);
    let chosen = order(kind, &loads, turn, rng);
    match eligible {
        Some(eligible) => chosen.into_iter().map(|k| eligible[k]).collect(),
        None => chosen,
    }
}

/// The ring's order for `key` over the `eligible` offers (all without a list); the ring is
/// built again only when the offered instances change.
fn by_ring(
    state: &mut ServiceState,
    key: u64,
    load_factor: f64,
    offers: &[Offer<'_>],
    eligible: Option<&[usize]>,
) -> Vec<usize> {
    let members: Vec<ring::Member<'_>> = offers.iter().map(|o| (o.node, o.weight)).collect();
    if !state.ring.as_ref().is_some_and(|r| r.is_of(&members)) {
        state.ring = Some(Ring::new(&members));
    }
    let pending: Vec<u32> = offers
        .iter()
        .map(|o| state.endpoints.get(o.node).map_or(0, |e| e.pending))
        .collect();
    let ok: Vec<bool> = match eligible {
        Some(e) => (0..offers.len()).map(|i| e.contains(&i)).collect(),
        None => vec![true; offers.len()],
    };
    state
        .ring
        .as_ref()
        .map(|r| ring::order(r, key, &pending, &ok, load_factor))
        .unwrap_or_default()
}

/// A request in flight to one endpoint. Finish it with the outcome; dropping it unfinished
/// (the caller went away) only ends the pending count.
#[derive(Debug)]
pub struct InFlight {
    cell: Cell,
    node: Arc<str>,
    started: Instant,
    done: bool,
}

impl InFlight {
    /// The stream is open and the request sent: latency counts from here, so a connection
    /// handshake (paid once per peer) does not make an endpoint look slow.
    pub fn sent(&mut self) {
        self.started = crate::clock::now();
    }

    /// The attempt ended, well (`ok`) or not. If a response head arrived (`answered`) its
    /// latency feeds the estimate, else the endpoint is charged [`FAILURE_PENALTY`]; with
    /// `outlier` the result counts toward ejecting the endpoint. Returns what that did.
    pub fn finish(
        mut self,
        answered: bool,
        ok: bool,
        outlier: Option<&OutlierConfig>,
    ) -> Transition {
        let now = crate::clock::now();
        let rtt = if answered {
            now.saturating_duration_since(self.started)
        } else {
            FAILURE_PENALTY
        };
        self.done = true;
        let mut guard = lock(&self.cell);
        let state = &mut *guard;
        let may_eject = outlier.is_some_and(|c| {
            let ejected = state
                .endpoints
                .values()
                .filter(|e| e.outlier.is_ejected())
                .count();
            c.may_eject(ejected, state.offered)
        });
        let Some(e) = state.endpoints.get_mut(&*self.node) else {
            return Transition::None;
        };
        e.pending = e.pending.saturating_sub(1);
        e.ewma.observe(rtt, now);
        match outlier {
            Some(cfg) => e.outlier.record(ok, now, cfg, may_eject),
            None => Transition::None,
        }
    }

    fn end(&mut self, f: impl FnOnce(&mut EndpointState)) {
        if self.done {
            return;
        }
        self.done = true;
        with(&self.cell, &self.node, |e| {
            e.pending = e.pending.saturating_sub(1);
            f(e);
        });
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Gone without a result: a probe it carried is to be sent again.
        self.end(|e| e.outlier.abandon_probe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_counts_follow_guards_and_slow_answers_steer_away() {
        let b = Arc::new(Balancers::new(1));
        let offers = [
            Offer {
                node: "a",
                weight: 1,
            },
            Offer {
                node: "b",
                weight: 1,
            },
        ];
        let g = b.start("web", "a", Instant::now());
        assert_eq!(b.snapshot("web")[0].1, 1);
        drop(g);
        assert_eq!(b.snapshot("web")[0].1, 0);
        // a answers slowly once: every P2C choice then prefers b.
        let slow = b.start("web", "a", Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        slow.finish(true, true, None);
        let fast = b.start("web", "b", Instant::now());
        fast.finish(true, true, None);
        for _ in 0..20 {
            let o = b.order(
                "web",
                Choice::Balancer(Balancer::P2cEwma),
                &offers,
                Instant::now(),
                None,
            );
            assert_eq!(o, [1, 0]);
        }
    }

    #[test]
    fn ejected_endpoints_are_left_out_and_probed_back() {
        let b = Arc::new(Balancers::new(1));
        let offers: Vec<Offer<'_>> = ["a", "b", "c"]
            .iter()
            .map(|n| Offer { node: n, weight: 1 })
            .collect();
        let cfg = OutlierConfig {
            consecutive_failures: 2,
            base: Duration::from_millis(50),
            max: Duration::from_secs(1),
            max_ejected_percent: 50.0,
        };
        let order = |b: &Balancers| {
            b.order(
                "web",
                Choice::Balancer(Balancer::RoundRobin),
                &offers,
                Instant::now(),
                Some(&cfg),
            )
        };
        order(&b);
        assert_eq!(
            b.start("web", "a", Instant::now())
                .finish(true, false, Some(&cfg)),
            Transition::None
        );
        assert!(matches!(
            b.start("web", "a", Instant::now())
                .finish(true, false, Some(&cfg)),
            Transition::Ejected(_)
        ));
        // Never more than half of three: b is not ejected however often it fails.
        for _ in 0..5 {
            assert_eq!(
                b.start("web", "b", Instant::now())
                    .finish(false, false, Some(&cfg)),
                Transition::None
            );
        }
        for _ in 0..6 {
            let o = order(&b);
            assert!(!o.contains(&0) && o.len() == 2, "{o:?}");
        }
        // Without the policy, ejection state is ignored.
        assert_eq!(
            b.order(
                "web",
                Choice::Balancer(Balancer::RoundRobin),
                &offers,
                Instant::now(),
                None
            )
            .len(),
            3
        );
        std::thread::sleep(Duration::from_millis(60));
        // The ejection is over: a comes first, once; while its probe is out it gets nothing else.
        let probe = order(&b);
        assert_eq!(probe[0], 0, "{probe:?}");
        let o = order(&b);
        assert!(!o.contains(&0), "{o:?}");
        let g = b.start("web", "a", Instant::now());
        assert_eq!(g.finish(true, true, Some(&cfg)), Transition::Returned);
        assert_eq!(order(&b).len(), 3);
    }
}

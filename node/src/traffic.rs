//! Traffic policy in the data path: what each policy kind does to requests, live, on every
//! node the documents reach.
//!
//! The policy set ([`PolicySet`], from gossip) is compiled into per-service [`ServicePolicy`]
//! whenever it changes ([`Compiled`]); requests read the compiled form (an `Arc` clone) and the
//! state that outlives a request lives in [`Traffic`]: retry budgets, rate-limit buckets,
//! pending counts. Outlier ejection state lives with the balancer ([`crate::balance`]).
//!
//! | kind | where | module |
//! |---|---|---|
//! | `route` (match, split, subset, fault) | calling node | [`routes`], [`split`], [`fault`] |
//! | `timeout` | calling node; deadline enforced on the serving node too | [`timeout`] |
//! | `retry` | calling node | [`retry`], [`budget`] |
//! | `circuit` | calling node | [`circuit`] |
//! | `ratelimit` | serving node | [`ratelimit`], [`share`] |
//! | `authz` | serving node | [`authz`] |
//!
//! Paths are normalized once ([`normalize`]) before routing and authorization see them.
//! A service no document names costs one hash lookup per request.

pub mod authz;
pub mod budget;
pub mod circuit;
pub mod fault;
pub mod matching;
pub mod normalize;
pub mod ratelimit;
pub mod retry;
pub mod routes;
pub mod share;
pub mod split;
pub mod timeout;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use murmur_membership::policy::spec::{
    LimitScope, RateLimitSpec, RetryBudget, RetrySpec, TimeoutSpec,
};
use murmur_membership::policy::{PolicyBody, PolicySet};
use murmur_transport::identity::Name;
use tokio::sync::watch;

use self::budget::Budget;
use self::circuit::{OutlierConfig, Pending};
use self::ratelimit::{Admission, Limiter};
use crate::balance::Rng;

/// A service's `circuit` document, compiled.
#[derive(Clone, Debug)]
pub struct Circuit {
    /// Document name.
    pub doc: String,
    /// Outlier ejection.
    pub outlier: OutlierConfig,
    /// Cap on requests pending for the service.
    pub max_pending: Option<u32>,
}

/// Everything that applies to one service, ready to use.
#[derive(Clone, Debug, Default)]
pub struct ServicePolicy {
    /// Routes, in the order they are tried.
    pub routes: Vec<routes::Route>,
    /// Timeout documents, by name.
    pub timeouts: Vec<TimeoutSpec>,
    /// Retry documents, by name.
    pub retries: Vec<Arc<RetrySpec>>,
    /// The first circuit document by name.
    pub circuit: Option<Circuit>,
    /// Rate limits, by name.
    pub ratelimits: Vec<RateLimitSpec>,
    /// Authorization documents, by name.
    pub authz: Vec<authz::Authz>,
}

impl ServicePolicy {
    /// The retry document for requests taking `route` (see [`scoped`]).
    pub fn retry_for(&self, route: Option<&str>) -> Option<&Arc<RetrySpec>> {
        scoped(&self.retries, route, |r| r.route.as_ref())
    }

    /// The timeouts for requests taking `route` (see [`scoped`]).
    pub fn timeouts_for(&self, route: Option<&str>) -> Option<timeout::Timeouts> {
        scoped(&self.timeouts, route, |t| t.route.as_ref()).map(timeout::Timeouts::of)
    }
}

/// Of documents sorted by name, the one for `route`: the first naming that route, else the first
/// naming none (it applies to every route of the service).
pub fn scoped<'a, T>(
    items: &'a [T],
    route: Option<&str>,
    route_of: impl Fn(&T) -> Option<&Name>,
) -> Option<&'a T> {
    let named = route.and_then(|r| {
        items
            .iter()
            .find(|i| route_of(i).is_some_and(|n| n.as_str() == r))
    });
    named.or_else(|| items.iter().find(|i| route_of(i).is_none()))
}

/// The policy set, compiled per service.
#[derive(Debug, Default)]
pub struct Compiled {
    services: HashMap<String, Arc<ServicePolicy>>,
}

impl Compiled {
    /// Compiles a set (documents come in (kind, name) order, so each list is by name).
    pub fn new(set: &PolicySet) -> Self {
        Self::from_bodies(set.iter().filter_map(|d| d.body()))
    }

    /// Compiles bodies given in (kind, name) order.
    pub fn from_bodies<'a>(bodies: impl IntoIterator<Item = &'a PolicyBody>) -> Self {
        let mut services: HashMap<String, ServicePolicy> = HashMap::new();
        for body in bodies {
            let p = services.entry(body.service().to_string()).or_default();
            match body {
                PolicyBody::Route(r) => p.routes.push(routes::Route::new(r)),
                PolicyBody::Timeout(t) => p.timeouts.push(t.clone()),
                PolicyBody::Retry(r) => p.retries.push(Arc::new(r.clone())),
                PolicyBody::Circuit(c) => {
                    if p.circuit.is_none() {
                        p.circuit = Some(Circuit {
                            doc: c.name.to_string(),
                            outlier: OutlierConfig::of(c),
                            max_pending: c.max_pending,
                        });
                    }
                }
                PolicyBody::Ratelimit(r) => p.ratelimits.push(r.clone()),
                PolicyBody::Authz(a) => p.authz.push(authz::Authz::new(a)),
            }
        }
        for p in services.values_mut() {
            routes::sort(&mut p.routes);
        }
        Self {
            services: services
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        }
    }

    /// What applies to `service`, if anything.
    pub fn service(&self, service: &str) -> Option<&Arc<ServicePolicy>> {
        if self.services.is_empty() {
            return None;
        }
        self.services.get(service)
    }
}

/// Compiled policy plus the state that outlives requests.
#[derive(Debug)]
pub struct Traffic {
    compiled: watch::Receiver<Arc<Compiled>>,
    seed: AtomicU64,
    budgets: Mutex<HashMap<String, (RetryBudget, Budget)>>,
    /// Rate limiters per service, in document order.
    limits: Mutex<HashMap<String, Vec<Limiter>>>,
    /// Shares of global limits, by document.
    shares: Mutex<HashMap<String, f64>>,
    pending: Mutex<HashMap<String, Arc<Pending>>>,
    logged: Mutex<HashMap<String, Instant>>,
}

/// How often one kind of event is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Traffic {
    /// Follows `policy`, recompiling on every change, until the sender goes away.
    pub fn start(mut policy: watch::Receiver<Arc<PolicySet>>, seed: u64) -> Arc<Self> {
        let first = Arc::new(Compiled::new(&policy.borrow_and_update()));
        let (tx, rx) = watch::channel(first);
        let traffic = Arc::new(Self::with(rx, seed));
        let weak: Weak<Self> = Arc::downgrade(&traffic);
        tokio::spawn(async move {
            while policy.changed().await.is_ok() {
                let compiled = Arc::new(Compiled::new(&policy.borrow_and_update()));
                let Some(t) = weak.upgrade() else { break };
                t.prune(&compiled);
                tx.send_replace(compiled);
            }
        });
        traffic
    }

    /// A fixed policy (tests).
    #[cfg(test)]
    pub fn fixed(compiled: Compiled, seed: u64) -> Arc<Self> {
        let (_tx, rx) = watch::channel(Arc::new(compiled));
        Arc::new(Self::with(rx, seed))
    }

    fn with(compiled: watch::Receiver<Arc<Compiled>>, seed: u64) -> Self {
        Self {
            compiled,
            seed: AtomicU64::new(seed),
            budgets: Mutex::default(),
            limits: Mutex::default(),
            shares: Mutex::default(),
            pending: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    /// The compiled policy in force.
    pub fn compiled(&self) -> Arc<Compiled> {
        self.compiled.borrow().clone()
    }

    /// What applies to `service`, if anything.
    pub fn service(&self, service: &str) -> Option<Arc<ServicePolicy>> {
        self.compiled.borrow().service(service).cloned()
    }

    /// 64 random bits (for splits and faults).
    pub fn random(&self) -> u64 {
        Rng::new(
            self.seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        )
        .next_u64()
    }

    /// A uniform draw in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        (self.random() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn prune(&self, compiled: &Compiled) {
        let retry_docs: Vec<&str> = compiled
            .services
            .values()
            .flat_map(|p| p.retries.iter().map(|r| r.name.as_str()))
            .collect();
        lock(&self.budgets).retain(|doc, _| retry_docs.contains(&doc.as_str()));
        lock(&self.limits).retain(|service, _| {
            compiled
                .service(service)
                .is_some_and(|p| !p.ratelimits.is_empty())
        });
    }

    /// Counts a request against the budget of `spec`.
    pub fn budget_request(&self, spec: &RetrySpec, now: Instant) {
        self.with_budget(spec, now, |b| b.request(now));
    }

    /// Takes a retry from the budget of `spec`, if one is left.
    pub fn budget_try_retry(&self, spec: &RetrySpec, now: Instant) -> bool {
        self.with_budget(spec, now, |b| b.try_retry(now))
    }

    fn with_budget<T>(
        &self,
        spec: &RetrySpec,
        now: Instant,
        f: impl FnOnce(&mut Budget) -> T,
    ) -> T {
        let mut budgets = lock(&self.budgets);
        let fresh = || (spec.budget.clone(), Budget::new(&spec.budget, now));
        if let Some(entry) = budgets.get_mut(spec.name.as_str()) {
            // A changed budget starts over.
            if entry.0 != spec.budget {
                *entry = fresh();
            }
            return f(&mut entry.1);
        }
        // The name is copied only the first time, not on every request.
        let entry = budgets.entry(spec.name.to_string()).or_insert_with(fresh);
        f(&mut entry.1)
    }

    /// The pending count of requests from this node to `service`.
    pub fn pending(&self, service: &str) -> Arc<Pending> {
        let mut p = lock(&self.pending);
        if let Some(c) = p.get(service) {
            return c.clone();
        }
        p.entry(service.to_owned()).or_default().clone()
    }

    /// Admits one request from `caller` to `service` under `specs` (the service's limits).
    /// `first_share` gives a global limit's share before [`share`] has computed one.
    pub fn admit(
        &self,
        service: &str,
        specs: &[RateLimitSpec],
        caller: &str,
        now: Instant,
        first_share: impl Fn() -> f64,
    ) -> Admission {
        let mut limits = lock(&self.limits);
        let current = limits.get(service).is_some_and(|ls| {
            ls.len() == specs.len() && ls.iter().zip(specs).all(|(l, s)| l.spec() == s)
        });
        if !current {
            let shares = lock(&self.shares);
            let fresh: Vec<Limiter> = specs
                .iter()
                .map(|s| {
                    let share = match s.scope {
                        LimitScope::Global => shares
                            .get(s.name.as_str())
                            .copied()
                            .unwrap_or_else(&first_share),
                        LimitScope::Instance => 1.0,
                    };
                    Limiter::new(s.clone(), share, now)
                })
                .collect();
            limits.insert(service.to_owned(), fresh);
        }
        match limits.get_mut(service) {
            Some(ls) => ratelimit::admit(ls, caller, now),
            None => Admission::Admitted,
        }
    }

    /// `(document, service)` of every global rate limit on a service `serves` says this node
    /// serves.
    pub fn global_limits(&self, serves: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let compiled = self.compiled();
        let mut out: Vec<(String, String)> = compiled
            .services
            .iter()
            .filter(|(s, _)| serves(s))
            .flat_map(|(s, p)| {
                p.ratelimits
                    .iter()
                    .filter(|r| r.scope == LimitScope::Global)
                    .map(move |r| (r.name.to_string(), s.clone()))
            })
            .collect();
        out.sort();
        out
    }

    /// Arrivals counted by the limiter of `doc` since the last call.
    pub fn take_arrivals(&self, doc: &str) -> u64 {
        let mut limits = lock(&self.limits);
        limits
            .values_mut()
            .flatten()
            .filter(|l| l.spec().name.as_str() == doc)
            .map(Limiter::take_arrivals)
            .sum()
    }

    /// Sets this node's share of the global limit `doc`.
    pub fn set_share(&self, doc: &str, share: f64) {
        lock(&self.shares).insert(doc.to_owned(), share);
        for l in lock(&self.limits).values_mut().flatten() {
            if l.spec().name.as_str() == doc {
                l.set_share(share);
            }
        }
    }

    /// This node's shares of global limits, by document.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = lock(&self.shares)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Whether an event of kind `key` should be logged now (at most once per 10 s per key).
    pub fn should_log(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut logged = lock(&self.logged);
        if logged.len() > 1024 {
            logged.retain(|_, t| now.saturating_duration_since(*t) < LOG_EVERY);
        }
        match logged.get_mut(key) {
            Some(t) if now.saturating_duration_since(*t) < LOG_EVERY => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                logged.insert(key.to_owned(), now);
                true
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

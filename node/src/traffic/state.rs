//! The state traffic policy keeps between requests: retry budgets, rate-limit buckets and
//! shares, pending counts, and the compiled policy it follows.

#![allow(
    clippy::disallowed_types,
    reason = "budgets, limiters and shares behind process-wide locks, taken when a policy applies; the data-path work replaces them with per-service state"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use murmur_membership::policy::PolicySet;
use murmur_membership::policy::spec::{LimitScope, RateLimitSpec, RetryBudget, RetrySpec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::budget::Budget;
use super::circuit::Pending;
use super::compiled::{Compiled, ServicePolicy};
use super::ratelimit::{self, Admission, Limiter};
use crate::balance::Rng;

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
    mirrors: Arc<Semaphore>,
}

/// How often one kind of event is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Kinds of events whose last log time is remembered at once.
pub const MAX_LOG_KEYS: usize = 1024;
/// Mirrored copies of requests in flight from this node at most; beyond, copies are skipped.
pub const MAX_MIRRORS: usize = 256;

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
            mirrors: Arc::new(Semaphore::new(MAX_MIRRORS)),
        }
    }

    /// A slot for one mirrored copy in flight, if one is free.
    pub fn mirror_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.mirrors.clone().try_acquire_owned().ok()
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
            .services()
            .flat_map(|(_, p)| p.retries.iter().map(|r| r.name.as_str()))
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
            .services()
            .filter(|(s, _)| serves(s))
            .flat_map(|(s, p)| {
                p.ratelimits
                    .iter()
                    .filter(|r| r.scope == LimitScope::Global)
                    .map(move |r| (r.name.to_string(), s.to_owned()))
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
    /// Keys can carry what a peer or app sent, so at most [`MAX_LOG_KEYS`] are remembered: past
    /// that, within 10 s, a new kind of event is not logged (its metric still counts it).
    pub fn should_log(&self, key: &str) -> bool {
        let now = crate::clock::now();
        let mut logged = lock(&self.logged);
        if logged.len() >= MAX_LOG_KEYS && !logged.contains_key(key) {
            logged.retain(|_, t| now.saturating_duration_since(*t) < LOG_EVERY);
            if logged.len() >= MAX_LOG_KEYS {
                return false;
            }
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

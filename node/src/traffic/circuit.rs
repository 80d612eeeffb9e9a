//! `circuit`: outlier ejection per endpoint (Linkerd's failure accrual, Envoy's consecutive
//! errors) and the cap on requests pending for a service. Pure: time is an argument; the
//! balancer ([`crate::balance`]) keeps one [`Outlier`] per endpoint and asks it.
//!
//! An endpoint that fails `consecutive_failures` times in a row (a 5xx, no connection, a broken
//! stream, a per-try timeout) is ejected for `base_ejection`, doubled on each further ejection
//! in a row up to `max_ejection`. When the time is up it gets exactly one probe request, put
//! first in the balancer's order: a success brings it back, a failure ejects it again for
//! longer. An endpoint that stays in for `max_ejection` after coming back starts over at
//! `base_ejection`. Never more than `max_ejected_percent` of a service's endpoints are out at
//! once (rounded down: with 3 endpoints and 50 %, one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use murmur_membership::policy::spec::CircuitSpec;

/// Outlier ejection settings of a service.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// Failures in a row that eject.
    pub consecutive_failures: u32,
    /// First ejection.
    pub base: Duration,
    /// Longest ejection.
    pub max: Duration,
    /// Largest share of endpoints out at once, percent.
    pub max_ejected_percent: f64,
}

impl OutlierConfig {
    /// The settings of a document.
    pub fn of(spec: &CircuitSpec) -> Self {
        Self {
            consecutive_failures: spec.consecutive_failures,
            base: spec.base_ejection.0,
            max: spec.max_ejection.0,
            max_ejected_percent: spec.max_ejected_percent,
        }
    }

    /// Whether one more endpoint may be ejected when `ejected` of `total` already are.
    pub fn may_eject(&self, ejected: usize, total: usize) -> bool {
        let cap = (total as f64 * self.max_ejected_percent / 100.0).floor() as usize;
        ejected < cap
    }
}

/// Where an endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Takes traffic.
    In,
    /// Ejected; takes nothing.
    Out,
    /// Its ejection is over: the next request should probe it.
    ProbeDue,
    /// A probe is in flight; takes nothing else meanwhile.
    Probing,
}

/// What a result did to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// Ejected for this long.
    Ejected(Duration),
    /// The probe succeeded: back in.
    Returned,
}

/// The ejection state of one endpoint.
#[derive(Clone, Debug, Default)]
pub struct Outlier {
    failures: u32,
    until: Option<Instant>,
    probing: bool,
    /// Ejections in a row (reset after staying in for `max`).
    ejections: u32,
    returned: Option<Instant>,
}

impl Outlier {
    /// Where the endpoint stands at `now`.
    pub fn standing(&self, now: Instant) -> Standing {
        match self.until {
            None => Standing::In,
            Some(_) if self.probing => Standing::Probing,
            Some(t) if now < t => Standing::Out,
            Some(_) => Standing::ProbeDue,
        }
    }

    /// Whether it counts against `max_ejected_percent` (out, or not yet back).
    pub fn is_ejected(&self) -> bool {
        self.until.is_some()
    }

    /// A probe request is being sent to it.
    pub fn start_probe(&mut self) {
        if self.until.is_some() {
            self.probing = true;
        }
    }

    /// The probe ended without a result (the caller went away): probe again later.
    pub fn abandon_probe(&mut self) {
        self.probing = false;
    }

    /// Records a result; `may_eject` says whether the ejection cap allows one more.
    pub fn record(
        &mut self,
        ok: bool,
        now: Instant,
        cfg: &OutlierConfig,
        may_eject: bool,
    ) -> Transition {
        // While out, only the probe's result counts: requests sent before the ejection that end
        // now say nothing new.
        if self.until.is_some() && !self.probing {
            return Transition::None;
        }
        if ok {
            self.failures = 0;
            if self.until.take().is_some() {
                self.probing = false;
                self.returned = Some(now);
                return Transition::Returned;
            }
            return Transition::None;
        }
        let probe_failed = self.until.is_some();
        self.failures = self.failures.saturating_add(1);
        if !probe_failed && (self.failures < cfg.consecutive_failures || !may_eject) {
            return Transition::None;
        }
        if self
            .returned
            .is_some_and(|t| now.saturating_duration_since(t) >= cfg.max)
        {
            self.ejections = 0;
        }
        self.ejections = self.ejections.saturating_add(1);
        let factor = 1u32 << (self.ejections - 1).min(20);
        let time = cfg.base.checked_mul(factor).unwrap_or(cfg.max).min(cfg.max);
        self.until = Some(now + time);
        self.probing = false;
        self.failures = 0;
        Transition::Ejected(time)
    }
}

/// Requests in flight from this node to one service, for `max_pending`.
#[derive(Debug, Default)]
pub struct Pending(AtomicU32);

/// One request counted in [`Pending`] until dropped.
#[derive(Debug)]
pub struct PendingGuard(Arc<Pending>);

impl Pending {
    /// Counts a request in, unless `max` are already pending.
    pub fn enter(self: &Arc<Self>, max: u32) -> Option<PendingGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| PendingGuard(self.clone()))
    }

    /// Requests pending now.
    #[cfg(test)]
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(30),
            max_ejected_percent: 50.0,
        }
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_in_between_resets_the_count() {
        let (c, t0) = (cfg(), Instant::now());
        let mut o = Outlier::default();
        assert_eq!(o.record(false, t0, &c, true), Transition::None);
        assert_eq!(o.record(false, t0, &c, true), Transition::None);
        assert_eq!(o.record(true, t0, &c, true), Transition::None);
        assert_eq!(o.record(false, t0, &c, true), Transition::None);
        assert_eq!(o.record(false, t0, &c, true), Transition::None);
        assert_eq!(o.standing(t0), Standing::In);
        assert_eq!(
            o.record(false, t0, &c, true),
            Transition::Ejected(Duration::from_secs(10))
        );
        // Requests sent before the ejection that end while it is out change nothing.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(o.record(false, t1, &c, true), Transition::None);
        assert_eq!(o.record(true, t1, &c, true), Transition::None);
        assert_eq!(o.standing(t0 + Duration::from_secs(9)), Standing::Out);
        assert_eq!(o.standing(t0 + Duration::from_secs(10)), Standing::ProbeDue);
    }

    #[test]
    fn probes_double_the_ejection_on_failure_and_bring_it_back_on_success() {
        let (c, t0) = (cfg(), Instant::now());
        let s = Duration::from_secs;
        let mut o = Outlier::default();
        for _ in 0..3 {
            o.record(false, t0, &c, true);
        }
        // (time, probe ok, transition)
        let steps = [
            (10, false, Transition::Ejected(s(20))),
            (30, false, Transition::Ejected(s(30))),
            (60, false, Transition::Ejected(s(30))),
            (90, true, Transition::Returned),
        ];
        for (at, ok, want) in steps {
            let now = t0 + s(at);
            assert_eq!(o.standing(now), Standing::ProbeDue, "at {at}");
            o.start_probe();
            assert_eq!(o.standing(now), Standing::Probing);
            // A probe failure ejects at once, without counting up to the threshold again.
            assert_eq!(o.record(ok, now, &c, false), want, "at {at}");
        }
        assert_eq!(o.standing(t0 + s(90)), Standing::In);
        // Failing again soon after coming back continues the doubling; after staying in for
        // `max`, it starts over at `base`.
        for _ in 0..3 {
            o.record(false, t0 + s(100), &c, true);
        }
        assert_eq!(o.standing(t0 + s(129)), Standing::Out);
        o.start_probe();
        o.record(true, t0 + s(130), &c, true);
        for _ in 0..2 {
            o.record(false, t0 + s(200), &c, true);
        }
        assert_eq!(
            o.record(false, t0 + s(200), &c, true),
            Transition::Ejected(s(10))
        );
    }

    #[test]
    fn the_cap_keeps_endpoints_in_and_an_abandoned_probe_is_retried() {
        let (c, t0) = (cfg(), Instant::now());
        let mut o = Outlier::default();
        for _ in 0..5 {
            assert_eq!(o.record(false, t0, &c, false), Transition::None);
        }
        assert_eq!(o.standing(t0), Standing::In);
        // (ejected, total, may eject one more)
        for (ejected, total, want) in [(0, 3, true), (1, 3, false), (1, 4, true), (0, 1, false)] {
            assert_eq!(c.may_eject(ejected, total), want, "{ejected}/{total}");
        }
        o.record(false, t0, &c, true);
        let later = t0 + Duration::from_secs(10);
        o.start_probe();
        o.abandon_probe();
        assert_eq!(o.standing(later), Standing::ProbeDue);
    }

    #[test]
    fn pending_requests_are_capped() {
        let p = Arc::new(Pending::default());
        let a = p.enter(2).unwrap();
        let _b = p.enter(2).unwrap();
        assert!(p.enter(2).is_none());
        drop(a);
        assert_eq!(p.get(), 1);
        assert!(p.enter(2).is_some());
    }
}

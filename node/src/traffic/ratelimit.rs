//! `ratelimit`: token buckets on requests arriving for a service, checked by the serving node
//! after authorization. Every document for a service applies; a request needs a token from each
//! (and takes none if one is missing). `by = "caller"` keeps one bucket per caller identity;
//! `scope = "global"` scales the rate by this instance's share of the service
//! ([`super::share`]). A refused request gets 429 and `retry-after`: the whole seconds until
//! the bucket has a token again. Pure: time is an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use murmur_membership::policy::spec::{LimitKey, RateLimitSpec};

/// Most per-caller buckets kept per document; beyond it, full (idle) buckets are forgotten.
const MAX_CALLERS: usize = 4096;

/// A token bucket.
#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
    }

    /// `Ok` if a token is there (not taken), else the time until there is one.
    fn check(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.refill(rate, burst, now);
        // Tolerate the rounding of many small refills.
        if self.tokens >= 1.0 - 1e-9 {
            Ok(())
        } else if rate <= 0.0 {
            Err(Duration::from_secs(1))
        } else {
            Err(Duration::from_secs_f64(
                ((1.0 - self.tokens) / rate).min(3600.0),
            ))
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }

    /// Takes a token if there is one, else says how long until there is.
    pub fn try_take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        self.check(rate, burst, now)?;
        self.take();
        Ok(())
    }
}

/// The buckets of one `ratelimit` document on this node.
#[derive(Clone, Debug)]
pub struct Limiter {
    spec: RateLimitSpec,
    /// This instance's share of the rate (1 unless the scope is global).
    share: f64,
    shared: Bucket,
    callers: HashMap<String, Bucket>,
    /// Requests that arrived since [`Limiter::take_arrivals`], admitted or not.
    arrivals: u64,
}

impl Limiter {
    /// A limiter for `spec` with full buckets, at `share` of the rate.
    pub fn new(spec: RateLimitSpec, share: f64, now: Instant) -> Self {
        let mut l = Self {
            spec,
            share: share.clamp(0.0, 1.0),
            shared: Bucket::full(0.0, now),
            callers: HashMap::new(),
            arrivals: 0,
        };
        l.shared = Bucket::full(l.burst(), now);
        l
    }

    /// The document it enforces.
    pub fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Tokens per second at this instance.
    pub fn rate(&self) -> f64 {
        f64::from(self.spec.rate) / self.spec.per.0.as_secs_f64().max(1e-3) * self.share
    }

    /// Bucket size at this instance (at least one token, so a small share still admits).
    pub fn burst(&self) -> f64 {
        (f64::from(self.spec.burst.unwrap_or(self.spec.rate)) * self.share).max(1.0)
    }

    /// Sets this instance's share of a global rate (0..=1).
    pub fn set_share(&mut self, share: f64) {
        self.share = share.clamp(0.0, 1.0);
    }

    /// Requests that arrived since the last call (the demand measure of global limits).
    pub fn take_arrivals(&mut self) -> u64 {
        std::mem::take(&mut self.arrivals)
    }

    fn bucket(&mut self, caller: &str, now: Instant) -> &mut Bucket {
        if self.spec.by == LimitKey::Service {
            return &mut self.shared;
        }
        if !self.callers.contains_key(caller) {
            let (rate, burst) = (self.rate(), self.burst());
            if self.callers.len() >= MAX_CALLERS {
                self.callers.retain(|_, b| {
                    b.refill(rate, burst, now);
                    b.tokens < burst
                });
            }
            self.callers
                .insert(caller.to_owned(), Bucket::full(burst, now));
        }
        // Present: inserted just above when missing.
        self.callers.get_mut(caller).unwrap_or(&mut self.shared)
    }

    fn check(&mut self, caller: &str, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.rate(), self.burst());
        self.bucket(caller, now).check(rate, burst, now)
    }

    fn take(&mut self, caller: &str, now: Instant) {
        self.bucket(caller, now).take();
    }
}

/// The verdict on one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Tokens taken from every bucket.
    Admitted,
    /// Refused by this document; try again after this long.
    Limited {
        /// Document name.
        doc: String,
        /// Time until the bucket has a token.
        retry_after: Duration,
        /// Tokens per second at this instance.
        rate: f64,
    },
}

/// Admits one request from `caller` (its SPIFFE ID) if every limiter has a token for it.
pub fn admit(limiters: &mut [Limiter], caller: &str, now: Instant) -> Admission {
    for l in limiters.iter_mut() {
        l.arrivals += 1;
    }
    for l in limiters.iter_mut() {
        if let Err(wait) = l.check(caller, now) {
            return Admission::Limited {
                doc: l.spec.name.to_string(),
                retry_after: wait,
                rate: l.rate(),
            };
        }
    }
    for l in limiters.iter_mut() {
        l.take(caller, now);
    }
    Admission::Admitted
}

/// The `retry-after` value: whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::{Kind, PolicyBody};

    use super::*;

    fn spec(extra: &str) -> RateLimitSpec {
        let text = format!("name = \"rl\"\nservice = \"web\"\n{extra}");
        let v: toml::Value = toml::from_str(&text).unwrap();
        match PolicyBody::from_value(Kind::Ratelimit, v).unwrap() {
            PolicyBody::Ratelimit(r) => r,
            _ => unreachable!(),
        }
    }

    fn admitted(l: &mut [Limiter], caller: &str, now: Instant) -> bool {
        admit(l, caller, now) == Admission::Admitted
    }

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = [Limiter::new(spec("rate = 10\nburst = 5"), 1.0, t0)];
        let burst = (0..20).filter(|_| admitted(&mut l, "a", t0)).count();
        assert_eq!(burst, 5);
        match admit(&mut l, "a", t0) {
            Admission::Limited {
                doc, retry_after, ..
            } => {
                assert_eq!(doc, "rl");
                assert_eq!(retry_after, Duration::from_millis(100));
                assert_eq!(retry_after_secs(retry_after), 1);
            }
            other => panic!("{other:?}"),
        }
        // 10 per second: over 2 s, 20 more (sampled every 10 ms).
        let mut n = 0;
        for i in 1..=200 {
            if admitted(&mut l, "a", t0 + Duration::from_millis(10 * i)) {
                n += 1;
            }
        }
        assert_eq!(n, 20);
        assert_eq!(retry_after_secs(Duration::from_millis(2500)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn per_caller_buckets_are_apart_and_all_documents_must_admit() {
        let t0 = Instant::now();
        let mut l = [
            Limiter::new(spec("rate = 2\nby = \"caller\""), 1.0, t0),
            Limiter::new(spec("rate = 3"), 1.0, t0),
        ];
        assert!(admitted(&mut l, "a", t0));
        assert!(admitted(&mut l, "a", t0));
        assert!(!admitted(&mut l, "a", t0), "a's own bucket is empty");
        assert!(admitted(&mut l, "b", t0), "b has its own");
        // The shared bucket (3) is now empty too: c is refused, and took no per-caller token.
        assert!(!admitted(&mut l, "c", t0));
        let later = t0 + Duration::from_secs(1);
        assert!(admitted(&mut l, "c", later));
        assert!(admitted(&mut l, "c", later));
    }

    #[test]
    fn a_share_scales_rate_and_burst() {
        let t0 = Instant::now();
        let spec90 = spec("rate = 90\nper = \"1s\"\nburst = 30\nscope = \"global\"");
        let mut l = Limiter::new(spec90, 1.0 / 3.0, t0);
        assert!((l.rate() - 30.0).abs() < 1e-9);
        assert!((l.burst() - 10.0).abs() < 1e-9);
        l.set_share(0.0);
        assert_eq!(l.burst(), 1.0);
        let per_minute = Limiter::new(spec("rate = 60\nper = \"1m\""), 1.0, t0);
        assert!((per_minute.rate() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn idle_callers_are_forgotten_when_the_map_is_full() {
        let t0 = Instant::now();
        let mut l = [Limiter::new(spec("rate = 1\nby = \"caller\""), 1.0, t0)];
        for i in 0..MAX_CALLERS {
            assert!(admitted(&mut l, &format!("c{i}"), t0));
        }
        let later = t0 + Duration::from_secs(5);
        assert!(admitted(&mut l, "new", later));
        assert!(l[0].callers.len() <= 2, "{}", l[0].callers.len());
        assert_eq!(l[0].take_arrivals(), MAX_CALLERS as u64 + 1);
        assert_eq!(l[0].take_arrivals(), 0);
    }
}

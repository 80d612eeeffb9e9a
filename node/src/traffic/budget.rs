//! The retry budget (Linkerd's): over the last `window`, retries may number at most `ratio` of
//! the requests plus `min_per_second · window`. With the default (20 %, 10/s, 10 s) a service
//! answering nothing but errors sees at most 1.2× its request rate plus a trickle, never a retry
//! storm; the fixed part lets a quiet service retry at all.
//!
//! The window slides in ten slots; a slot's counts leave the window all at once. Pure: time is
//! an argument.

use std::time::{Duration, Instant};

use murmur_membership::policy::spec::RetryBudget;

const SLOTS: usize = 10;

/// The budget of one retry document.
#[derive(Clone, Debug)]
pub struct Budget {
    ratio: f64,
    reserve: f64,
    slot: Duration,
    /// `(requests, retries)` per slot; `current` is the newest.
    counts: [(u64, u64); SLOTS],
    current: usize,
    current_start: Instant,
}

impl Budget {
    /// An empty budget as configured, starting at `now`.
    pub fn new(spec: &RetryBudget, now: Instant) -> Self {
        let window = spec.window.0.max(Duration::from_millis(10));
        Self {
            ratio: spec.ratio,
            reserve: f64::from(spec.min_per_second) * window.as_secs_f64(),
            slot: window / SLOTS as u32,
            counts: [(0, 0); SLOTS],
            current: 0,
            current_start: now,
        }
    }

    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.current_start);
        let steps = (elapsed.as_nanos() / self.slot.as_nanos().max(1)) as u64;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS as u64) {
            self.current = (self.current + 1) % SLOTS;
            self.counts[self.current] = (0, 0);
        }
        // Slot boundaries stay on the grid, also after a long idle time.
        self.current_start += self.slot * u32::try_from(steps).unwrap_or(u32::MAX);
    }

    fn totals(&self) -> (u64, u64) {
        self.counts
            .iter()
            .fold((0, 0), |(a, b), (r, t)| (a + r, b + t))
    }

    /// Counts a request (its first attempt).
    pub fn request(&mut self, now: Instant) {
        self.advance(now);
        self.counts[self.current].0 += 1;
    }

    /// Takes a retry from the budget if there is one left.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.advance(now);
        let (requests, retries) = self.totals();
        let allowed = self.ratio * requests as f64 + self.reserve;
        if (retries as f64) < allowed.floor() {
            self.counts[self.current].1 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::spec::PolicyDuration;
    use proptest::prelude::*;

    use super::*;

    fn spec(ratio: f64, min: u32, window_ms: u64) -> RetryBudget {
        RetryBudget {
            ratio,
            min_per_second: min,
            window: PolicyDuration::from_millis(window_ms),
        }
    }

    #[test]
    fn the_default_allows_a_fifth_of_requests_plus_the_reserve() {
        let t0 = Instant::now();
        let mut b = Budget::new(&RetryBudget::default(), t0);
        // Reserve: 10/s over 10 s.
        let first: usize = (0..200).filter(|_| b.try_retry(t0)).count();
        assert_eq!(first, 100);
        for _ in 0..1000 {
            b.request(t0);
        }
        let more: usize = (0..1000).filter(|_| b.try_retry(t0)).count();
        assert_eq!(more, 200, "20 % of 1000 requests");
        // Once the window has passed, everything is forgotten.
        let later = t0 + Duration::from_secs(11);
        assert_eq!((0..200).filter(|_| b.try_retry(later)).count(), 100);
    }

    #[test]
    fn without_a_reserve_no_requests_mean_no_retries() {
        let t0 = Instant::now();
        let mut b = Budget::new(&spec(0.5, 0, 1000), t0);
        assert!(!b.try_retry(t0));
        b.request(t0);
        b.request(t0);
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0));
    }

    #[test]
    fn the_reserve_comes_back_whole_when_its_slot_expires() {
        // Spent in the first slot, the reserve returns at once nine slots later: a run of 12 s
        // can be granted twice the reserve, not a reserve spread at 10/s.
        let t0 = Instant::now();
        let mut b = Budget::new(&RetryBudget::default(), t0);
        let early = (0..300).filter(|_| b.try_retry(t0)).count();
        let t12 = t0 + Duration::from_secs(12);
        let late = (0..300).filter(|_| b.try_retry(t12)).count();
        assert_eq!((early, late), (100, 100));
    }

    proptest! {
        /// Over a whole run of `T`, grants stay within ratio · requests + reserve · ⌈T / 0.9 W⌉:
        /// each grant's window reaches back at least nine of its ten slots, so that many
        /// disjoint windows hold every grant (the bound the end-to-end retry tests use).
        #[test]
        fn granted_retries_over_a_run_stay_within_the_disjoint_windows(
            events in proptest::collection::vec((0u64..80, any::<bool>()), 1..800),
            ratio in 0.0f64..1.0,
            min in 0u32..5,
        ) {
            let t0 = Instant::now();
            let mut b = Budget::new(&spec(ratio, min, 1000), t0);
            let (mut now, mut requests, mut granted) = (t0, 0u64, 0u64);
            for (gap_ms, is_request) in events {
                now += Duration::from_millis(gap_ms);
                if is_request {
                    b.request(now);
                    requests += 1;
                } else if b.try_retry(now) {
                    granted += 1;
                }
            }
            let run = now.duration_since(t0).as_secs_f64();
            let windows = (run / 0.9).ceil().max(1.0);
            let bound = ratio * requests as f64 + f64::from(min) * windows;
            prop_assert!(granted as f64 <= bound + 1e-9, "{granted} > {bound} over {run} s");
        }

        /// Against an independent log: whenever a retry is granted at t, the retries granted in
        /// (t - 0.9 W, t] are within ratio · requests in (t - W, t] + reserve.
        #[test]
        fn granted_retries_stay_within_every_window(
            events in proptest::collection::vec((0u64..50, any::<bool>()), 1..600),
            ratio in 0.0f64..1.0,
            min in 0u32..5,
        ) {
            let window = Duration::from_millis(1000);
            let t0 = Instant::now();
            let mut b = Budget::new(&spec(ratio, min, 1000), t0);
            let mut now = t0;
            let mut requests: Vec<Instant> = Vec::new();
            let mut retries: Vec<Instant> = Vec::new();
            for (gap_ms, is_request) in events {
                now += Duration::from_millis(gap_ms);
                if is_request {
                    b.request(now);
                    requests.push(now);
                } else if b.try_retry(now) {
                    retries.push(now);
                    let recent = retries
                        .iter()
                        .filter(|t| now.duration_since(**t) < window.mul_f64(0.9))
                        .count() as f64;
                    let reqs = requests
                        .iter()
                        .filter(|t| now.duration_since(**t) < window)
                        .count() as f64;
                    let reserve = f64::from(min) * window.as_secs_f64();
                    prop_assert!(recent <= ratio * reqs + reserve + 1e-9,
                        "{recent} retries vs {reqs} requests");
                }
            }
        }
    }
}

//! Peak-EWMA latency estimate of one endpoint (the Finagle / Linkerd load metric).
//!
//! A slower observation replaces the estimate at once (the *peak*), so an endpoint that turns
//! slow is avoided from its next answer on; faster observations pull it down smoothly. While an
//! endpoint gets no traffic its estimate decays toward zero, so an endpoint that was slow once is
//! probed again after a while instead of being shunned forever. Pure: time is an argument.

use std::time::{Duration, Instant};

/// Time constant of the decay: after this long the old estimate weighs 1/e.
pub const DECAY: Duration = Duration::from_secs(10);
/// Estimate of an endpoint that has not answered yet: small, so new endpoints get tried soon.
pub const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// The estimate and when it was last touched.
#[derive(Clone, Copy, Debug)]
pub struct PeakEwma {
    estimate_ns: f64,
    updated: Option<Instant>,
}

impl Default for PeakEwma {
    fn default() -> Self {
        Self {
            estimate_ns: nanos(DEFAULT_RTT),
            updated: None,
        }
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

fn weight(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
}

impl PeakEwma {
    /// Folds in one observed latency.
    pub fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt = nanos(rtt);
        let current = self.estimate_ns(now);
        self.estimate_ns = if rtt > current {
            rtt
        } else {
            let w = self
                .updated
                .map_or(0.0, |t| weight(now.saturating_duration_since(t)));
            // A burst of fast answers within microseconds still moves the estimate a little.
            let w = w.min(0.9);
            current * w + rtt * (1.0 - w)
        };
        self.updated = Some(now);
    }

    /// The estimate at `now`, in nanoseconds, decayed by the time since the last observation.
    pub fn estimate_ns(&self, now: Instant) -> f64 {
        match self.updated {
            Some(t) => self.estimate_ns * weight(now.saturating_duration_since(t)),
            None => self.estimate_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_slow_answer_is_taken_at_once_and_fast_ones_pull_it_down_gradually() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(MS * 50, t0);
        assert!((e.estimate_ns(t0) - 50e6).abs() < 1.0);
        let mut t = t0;
        let mut last = e.estimate_ns(t);
        for _ in 0..20 {
            t += MS * 100;
            e.observe(MS, t);
            let now = e.estimate_ns(t);
            assert!(now < last, "fast answers lower the estimate");
            last = now;
        }
        assert!(last > 1e6, "but not to the floor at once: {last}");
    }

    #[test]
    fn an_idle_estimate_decays_toward_zero() {
        let t0 = Instant::now();
        let mut e = PeakEwma::default();
        e.observe(MS * 50, t0);
        let later = e.estimate_ns(t0 + DECAY * 3);
        assert!(later < 50e6 * 0.06 && later > 0.0, "{later}");
    }
}

//! Fault injection of a route: a fixed delay and/or an abort with a status, each for a share of
//! requests, drawn independently. The delay comes first (it counts toward the request timeout,
//! so timeouts can be tested with it); an aborted request never leaves the calling node. Pure.

use std::time::Duration;

use murmur_membership::policy::spec::Fault;

/// What to do to one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer with this status instead of forwarding.
    pub abort: Option<u16>,
}

/// A uniform draw in `[0, 100)` from 64 random bits.
pub fn percent_of(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// The faults for one request, given two independent draws in `[0, 100)`.
pub fn decide(fault: &Fault, delay_draw: f64, abort_draw: f64) -> Injected {
    Injected {
        delay: fault
            .delay
            .as_ref()
            .filter(|d| delay_draw < d.percent)
            .map(|d| d.duration.0),
        abort: fault
            .abort
            .as_ref()
            .filter(|a| abort_draw < a.percent)
            .map(|a| a.status),
    }
}

#[cfg(test)]
mod tests {
    use murmur_membership::policy::spec::{AbortFault, DelayFault, PolicyDuration};

    use super::*;

    #[test]
    fn faults_table() {
        let f = Fault {
            delay: Some(DelayFault {
                duration: PolicyDuration::from_millis(100),
                percent: 5.0,
            }),
            abort: Some(AbortFault {
                status: 503,
                percent: 1.0,
            }),
        };
        let ms = Duration::from_millis(100);
        // (delay draw, abort draw, expected)
        let cases = [
            (4.99, 99.0, (Some(ms), None)),
            (5.0, 99.0, (None, None)),
            (50.0, 0.5, (None, Some(503))),
            (0.0, 0.0, (Some(ms), Some(503))),
        ];
        for (d, a, (delay, abort)) in cases {
            assert_eq!(decide(&f, d, a), Injected { delay, abort }, "{d} {a}");
        }
        let never = Fault {
            delay: None,
            abort: Some(AbortFault {
                status: 500,
                percent: 0.0,
            }),
        };
        assert_eq!(decide(&never, 0.0, 0.0), Injected::default());
        assert!(percent_of(0) == 0.0 && percent_of(u64::MAX) < 100.0);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let mut rng = crate::balance::Rng::new(9);
        let n = 100_000;
        let below_ten = (0..n).filter(|_| percent_of(rng.next_u64()) < 10.0).count();
        assert!(
            (below_ten as f64 / n as f64 - 0.1).abs() < 0.005,
            "{below_ten}"
        );
    }
}

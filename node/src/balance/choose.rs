//! The pure choice: which endpoint first, and in which order to fall back.

use murmur_membership::records::Balancer;

/// What the balancer knows about one endpoint when choosing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Requests in flight to it from this node.
    pub pending: u32,
    /// Peak-EWMA latency estimate, nanoseconds.
    pub ewma_ns: f64,
    /// Relative weight (at least 1).
    pub weight: u32,
}

impl Load {
    /// Peak-EWMA cost: latency times the queue a new request would join, per unit of weight.
    pub fn ewma_cost(&self) -> f64 {
        self.ewma_ns * f64::from(self.pending.saturating_add(1)) / f64::from(self.weight.max(1))
    }

    /// Least-request cost: requests in flight per unit of weight.
    pub fn request_cost(&self) -> f64 {
        f64::from(self.pending) / f64::from(self.weight.max(1))
    }
}

/// A small, seedable random source (SplitMix64): the choice stays a pure function of its inputs.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        // n is a handful of endpoints: the modulo bias is negligible.
        (self.next_u64() % n as u64) as usize
    }
}

/// Orders `loads` (indexes into it): the chosen endpoint first, then the others as fallbacks
/// for a request whose connection fails before anything was sent, cheapest first.
/// `turn` is the service's round-robin counter.
pub fn order(kind: Balancer, loads: &[Load], turn: u64, rng: &mut Rng) -> Vec<usize> {
    let n = loads.len();
    if n <= 1 {
        return (0..n).collect();
    }
    let first = match kind {
        Balancer::RoundRobin => (turn % n as u64) as usize,
        Balancer::P2cEwma => {
            let a = rng.below(n);
            let b = (a + 1 + rng.below(n - 1)) % n;
            if loads[b].ewma_cost() < loads[a].ewma_cost() {
                b
            } else {
                a
            }
        }
        Balancer::LeastRequest => {
            // Ties are broken by a random rotation so equal endpoints share the load.
            let start = rng.below(n);
            (0..n)
                .map(|k| (start + k) % n)
                .min_by(|&i, &j| loads[i].request_cost().total_cmp(&loads[j].request_cost()))
                .unwrap_or(start)
        }
    };
    let mut rest: Vec<usize> = (0..n).filter(|&i| i != first).collect();
    match kind {
        Balancer::RoundRobin => rest.sort_by_key(|&i| (i + n - first) % n),
        Balancer::P2cEwma => {
            rest.sort_by(|&i, &j| loads[i].ewma_cost().total_cmp(&loads[j].ewma_cost()));
        }
        Balancer::LeastRequest => {
            rest.sort_by(|&i, &j| loads[i].request_cost().total_cmp(&loads[j].request_cost()));
        }
    }
    let mut out = Vec::with_capacity(n);
    out.push(first);
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pending: u32, ms: f64) -> Load {
        Load {
            pending,
            ewma_ns: ms * 1e6,
            weight: 1,
        }
    }

    fn shares(kind: Balancer, loads: &[Load], rounds: u64) -> Vec<u64> {
        let mut rng = Rng::new(7);
        let mut counts = vec![0; loads.len()];
        for turn in 0..rounds {
            counts[order(kind, loads, turn, &mut rng)[0]] += 1;
        }
        counts
    }

    #[test]
    fn every_order_is_a_permutation_with_the_choice_first() {
        let loads = [load(0, 1.0), load(3, 2.0), load(1, 9.0), load(0, 0.5)];
        let mut rng = Rng::new(1);
        for kind in [
            Balancer::P2cEwma,
            Balancer::RoundRobin,
            Balancer::LeastRequest,
        ] {
            for turn in 0..50 {
                let mut o = order(kind, &loads, turn, &mut rng);
                o.sort_unstable();
                assert_eq!(o, [0, 1, 2, 3], "{kind:?}");
            }
        }
        assert!(order(Balancer::P2cEwma, &[], 0, &mut rng).is_empty());
        assert_eq!(order(Balancer::P2cEwma, &[load(9, 9.0)], 0, &mut rng), [0]);
    }

    #[test]
    fn p2c_ewma_table() {
        // (loads, expected share of endpoint 0 out of 3000, tolerance)
        let cases: &[(&[Load], f64, &str)] = &[
            (
                &[load(0, 1.0), load(0, 1.0)],
                0.5,
                "equal endpoints share evenly",
            ),
            (
                &[load(0, 50.0), load(0, 1.0), load(0, 1.0)],
                0.0,
                "a slow endpoint loses every comparison",
            ),
            (
                &[load(8, 1.0), load(0, 1.0)],
                0.0,
                "pending requests make an endpoint costlier",
            ),
        ];
        for (loads, share, why) in cases {
            let c = shares(Balancer::P2cEwma, loads, 3000);
            let got = c[0] as f64 / 3000.0;
            assert!((got - share).abs() < 0.05, "{why}: {c:?}");
        }
    }

    #[test]
    fn weight_scales_cost() {
        let heavy = Load {
            weight: 4,
            ..load(2, 1.0)
        };
        assert!(heavy.ewma_cost() < load(0, 1.0).ewma_cost());
        let c = shares(Balancer::LeastRequest, &[heavy, load(1, 1.0)], 100);
        assert_eq!(c, [100, 0]);
    }

    #[test]
    fn round_robin_takes_turns_and_least_request_picks_the_idlest() {
        let loads = [load(5, 1.0), load(0, 100.0), load(2, 1.0)];
        assert_eq!(shares(Balancer::RoundRobin, &loads, 300), [100, 100, 100]);
        assert_eq!(shares(Balancer::LeastRequest, &loads, 300), [0, 300, 0]);
        let mut rng = Rng::new(3);
        assert_eq!(order(Balancer::RoundRobin, &loads, 4, &mut rng), [1, 2, 0]);
        let even = shares(Balancer::LeastRequest, &[load(1, 1.0), load(1, 1.0)], 2000);
        assert!(even[0].abs_diff(1000) < 150, "ties are shared: {even:?}");
    }
}

//! Small statistics over measured delays and rates.

use std::time::Duration;

/// The `q`-quantile (`0 < q ≤ 1`) of sorted values, nearest rank: the smallest value that at
/// least `q` of the values do not exceed.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// Time until a fraction `q` of `population` had something, from sorted per-node delays.
/// `None` when fewer than that many ever had it.
pub fn reach(sorted: &[Duration], population: usize, q: f64) -> Option<Duration> {
    let needed = (q * population as f64).ceil().max(1.0) as usize;
    sorted.get(needed - 1).copied()
}

/// Seconds as `f64`, or NaN for `None` (written as an empty cell).
pub fn secs(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

/// Mean of values (NaN when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sorted copy of `values` (NaNs last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// A seed for one run, derived from the master seed and the run's name (SplitMix64 over an
/// FNV-1a hash): each run can be repeated alone with the same network randomness.
pub fn derive_seed(master: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = master ^ h;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.01), Some(7));
    }

    #[test]
    fn reach_needs_enough_nodes() {
        let d: Vec<Duration> = (1..=9).map(Duration::from_secs).collect();
        assert_eq!(reach(&d, 10, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(reach(&d, 10, 0.9), Some(Duration::from_secs(9)));
        assert_eq!(reach(&d, 10, 1.0), None);
    }

    #[test]
    fn derived_seeds_differ_by_name_and_repeat() {
        assert_eq!(derive_seed(1, "a"), derive_seed(1, "a"));
        assert_ne!(derive_seed(1, "a"), derive_seed(1, "b"));
        assert_ne!(derive_seed(1, "a"), derive_seed(2, "a"));
    }
}

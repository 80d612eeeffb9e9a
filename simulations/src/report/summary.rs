//! Aggregates shared by the tables, the charts and the markdown.

use std::time::Duration;

use super::Results;
use crate::net::MAX_MESSAGE_BYTES;
use crate::scenarios::Reach;
use crate::scenarios::scale::{self, ScaleResult};
use crate::stats;

/// Propagation over the trials of one run.
#[derive(Clone, Debug, Default)]
pub struct Propagation {
    /// Trials.
    pub trials: usize,
    /// Trials where some node never got the key before the deadline.
    pub incomplete: usize,
    /// Median over trials of the time to 50 %.
    pub t50_med: Option<Duration>,
    /// Median over trials of the time to 99 %.
    pub t99_med: Option<Duration>,
    /// Worst trial's time to 99 %.
    pub t99_max: Option<Duration>,
    /// Median over trials of the time to 100 %.
    pub t100_med: Option<Duration>,
    /// Worst trial's time to 100 %.
    pub t100_max: Option<Duration>,
}

/// Median and maximum; a missing value (never reached) counts as infinitely late.
fn med_max(values: &[Option<Duration>]) -> (Option<Duration>, Option<Duration>) {
    let mut v: Vec<Duration> = values.iter().map(|x| x.unwrap_or(Duration::MAX)).collect();
    v.sort();
    let finite = |d: Option<Duration>| d.filter(|d| *d != Duration::MAX);
    (finite(stats::quantile(&v, 0.5)), finite(v.last().copied()))
}

/// Propagation summary of a run.
pub fn propagation(s: &ScaleResult) -> Propagation {
    let pick = |f: fn(&Reach) -> Option<Duration>| s.propagation.iter().map(f).collect::<Vec<_>>();
    let (t50_med, _) = med_max(&pick(|r| r.t50));
    let (t99_med, t99_max) = med_max(&pick(|r| r.t99));
    let (t100_med, t100_max) = med_max(&pick(|r| r.t100));
    Propagation {
        trials: s.propagation.len(),
        incomplete: s.propagation.iter().filter(|r| !r.complete()).count(),
        t50_med,
        t99_med,
        t99_max,
        t100_med,
        t100_max,
    }
}

/// Detection over all observers of all kills of a run.
pub fn detection(s: &ScaleResult) -> Reach {
    scale::detection_summary(s)
}

/// The run with `nodes` nodes at `interval`.
pub fn find(r: &Results, nodes: usize, interval: Duration) -> Option<&ScaleResult> {
    r.scale
        .iter()
        .find(|s| s.nodes == nodes && s.interval == interval)
}

/// Runs at one interval, by size.
pub fn at_interval(r: &Results, interval: Duration) -> Vec<&ScaleResult> {
    let mut v: Vec<&ScaleResult> = r.scale.iter().filter(|s| s.interval == interval).collect();
    v.sort_by_key(|s| s.nodes);
    v
}

/// A least-squares line `y = a + b·x`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fit {
    /// Intercept.
    pub a: f64,
    /// Slope.
    pub b: f64,
}

impl Fit {
    /// Fits the finite points; `None` with fewer than two.
    pub fn of(points: &[(f64, f64)]) -> Option<Self> {
        let p: Vec<&(f64, f64)> = points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        if p.len() < 2 {
            return None;
        }
        let n = p.len() as f64;
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + q.0, y + q.1));
        let (mx, my) = (sx / n, sy / n);
        let sxx: f64 = p.iter().map(|q| (q.0 - mx).powi(2)).sum();
        let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
        if sxx == 0.0 {
            return None;
        }
        let b = sxy / sxx;
        Some(Self { a: my - b * mx, b })
    }

    /// Where the line reaches one message's limit.
    pub fn limit(&self) -> f64 {
        (MAX_MESSAGE_BYTES as f64 - self.a) / self.b
    }
}

/// Encoded `Syn` size with protocol V0 (no compression), exactly from chitchat's format:
/// header 4 + entry count 2 + cluster id (2 + 6 for "murmur") + per entry: name (2 + its
/// length) + generation 8 + IPv4 address 7 + heartbeat, last GC version and max version 24.
pub fn v0_syn_bytes(entries: usize, name_len: usize) -> f64 {
    14.0 + entries as f64 * (41 + name_len) as f64
}

/// Largest cluster whose V0 `Syn` fits one message.
pub fn v0_limit(name_len: usize) -> usize {
    (MAX_MESSAGE_BYTES - 14) / (41 + name_len)
}

/// (entries, Syn bytes) measured on real clusters (digest = every node, live).
pub fn real_digest_points(r: &Results) -> Vec<(f64, f64)> {
    r.scale
        .iter()
        .map(|s| (s.nodes as f64, s.bandwidth.syn_mean))
        .filter(|p| p.1.is_finite())
        .collect()
}

/// (entries, Syn bytes) measured with planted entries of one naming.
pub fn planted_points(r: &Results, naming: &str) -> Vec<(f64, f64)> {
    r.digest
        .iter()
        .filter(|d| d.naming == naming)
        .map(|d| (d.entries as f64, d.syn_bytes))
        .collect()
}

/// Seconds, or "–".
pub fn fmt_s(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// Bytes per second as KB/s (1 KB = 1 000 bytes).
pub fn fmt_kbs(b: f64) -> String {
    if b.is_finite() {
        format!("{:.1}", b / 1000.0)
    } else {
        "–".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_and_finds_the_limit() {
        let f = Fit::of(&[(0.0, 100.0), (1000.0, 10_100.0), (2000.0, 20_100.0)]).unwrap();
        assert!((f.a - 100.0).abs() < 1e-6 && (f.b - 10.0).abs() < 1e-9);
        assert!((f.limit() - 6540.7).abs() < 0.1);
        assert!(Fit::of(&[(1.0, 1.0)]).is_none());
    }

    #[test]
    fn v0_sizes_follow_the_encoding() {
        assert_eq!(v0_syn_bytes(0, 10), 14.0);
        assert_eq!(v0_syn_bytes(100, 10), 14.0 + 5100.0);
        assert_eq!(v0_limit(10), 1284);
        assert_eq!(v0_limit(25), 992);
    }
}

//! Global rate limits without a central limiter: every instance of a service that has a
//! `scope = "global"` limit measures the requests arriving for it (its *demand*: every arrival,
//! admitted or not, over the last 300 ms), gossips that under `x/ratelimit`, and takes the share
//! of the rate its demand is of the service's total:
//!
//! ```text
//! share_i = d_i / Σ d        (= 1 / N while no instance has demand)
//! ```
//!
//! over the N live instances (passing checks, not draining; this node counts itself, with its
//! own demand measured just now). Every node computes from the same published numbers, so the
//! shares add up to the whole, and where callers send more, more is admitted: a service whose
//! callers all reach one instance still admits its whole rate there. An instance whose demand
//! falls to nothing keeps one token in its bucket, so the first request after a quiet spell
//! passes and makes its demand known. Until an instance has computed its share it takes 1 / N.
//!
//! Trade-offs: shares follow a change of load or membership after the demand window plus
//! gossip propagation (a gossip interval or two, about half a second with 200 ms gossip).
//! When load *moves* between instances (callers' balancers do that: power of two choices over
//! three instances starves the slowest, and which one that is changes every few seconds), the
//! instance gaining it sees stale demand at the one losing it and under-admits meanwhile; when
//! load is *added*, the instances already loaded over-admit until the new demand is known.
//! Each instance's bucket holds its share of `burst`, so the mesh-wide burst is `burst` too.
//! Demand is republished at most once per gossip interval and only when it changed by more
//! than 5 %, so a steady load costs no gossip.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use murmur_membership::records::{self, RECORD_VERSION};
use murmur_membership::view::EXTENSION_PREFIX;
use murmur_membership::{ClusterView, GossipKeys};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::Traffic;

/// Key (without the extension prefix) of the demand record.
pub const RATELIMIT_EXTENSION: &str = "ratelimit";
/// How often demand is measured and shares recomputed.
pub const PERIOD: Duration = Duration::from_millis(100);
/// The record is republished at least this often while it changes a little.
const REFRESH: Duration = Duration::from_secs(5);
/// Shortest gap between two publications, in gossip intervals: publishing faster than gossip
/// carries it only churns every node's view.
const PUBLISH_GAP: u32 = 1;

/// What a node gossips: its demand per global `ratelimit` document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandRecord {
    /// Record version.
    pub version: u16,
    /// `(document, requests per second × 1000)`.
    pub demands: Vec<(String, u64)>,
}

impl DemandRecord {
    /// The demand for `doc`, requests per second.
    pub fn demand(&self, doc: &str) -> Option<f64> {
        self.demands
            .iter()
            .find(|(d, _)| d == doc)
            .map(|(_, m)| *m as f64 / 1000.0)
    }
}

/// This node's share of a global rate, given the live instances (node names, this node among
/// them) and each one's demand (`None`: not known yet, counts as none).
pub fn share(me: &str, instances: &[&str], demand: impl Fn(&str) -> Option<f64>) -> f64 {
    let n = instances.len().max(1) as f64;
    let total: f64 = instances.iter().filter_map(|i| demand(i)).sum();
    if total <= 0.0 {
        return 1.0 / n;
    }
    demand(me).unwrap_or(0.0) / total
}

/// The live instances of `service` by node name, `me` included.
pub fn instances<'v>(view: &'v ClusterView, service: &str, me: &'v str) -> Vec<&'v str> {
    let mut out: Vec<&str> = view
        .endpoints(service)
        .iter()
        .filter(|e| e.accepts_new_traffic())
        .map(|e| e.node.as_str())
        .collect();
    if !out.contains(&me) {
        out.push(me);
    }
    out
}

/// Periods the demand is measured over.
const WINDOW: usize = 3;

/// The arrival rate over the last few periods: short, so a shift of load between instances
/// shows within a third of a second, and long enough that a steady load reads steady.
#[derive(Clone, Debug, Default)]
pub struct Demand {
    recent: std::collections::VecDeque<(u64, Duration)>,
}

impl Demand {
    /// Folds in `arrivals` counted over `period`; returns the new rate.
    pub fn observe(&mut self, arrivals: u64, period: Duration) -> f64 {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back((arrivals, period));
        let (a, p) = self
            .recent
            .iter()
            .fold((0, Duration::ZERO), |(a, p), (x, q)| (a + x, p + *q));
        a as f64 / p.as_secs_f64().max(1e-3)
    }
}

fn material_change(old: &DemandRecord, new: &DemandRecord) -> bool {
    if old.demands.len() != new.demands.len() {
        return true;
    }
    old.demands
        .iter()
        .zip(&new.demands)
        .any(|((a, x), (b, y))| {
            a != b || (*x as f64 - *y as f64).abs() > 0.05 * (*x).max(*y) as f64 + 500.0
        })
}

/// What the share task works with.
pub struct ShareTask {
    /// The limiters whose arrivals it measures and whose shares it sets.
    pub traffic: Arc<Traffic>,
    /// Where this node's demand is published.
    pub keys: GossipKeys,
    /// The cluster view: other instances' demand.
    pub view: watch::Receiver<Arc<ClusterView>>,
    /// Whether this node serves a service (only its own services' limits are measured).
    pub serves: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// Shortest gap between two publications (the gossip interval).
    pub gap: Duration,
}

impl std::fmt::Debug for ShareTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareTask")
            .field("gap", &self.gap)
            .finish_non_exhaustive()
    }
}

/// Measures demand, publishes it and sets this node's shares, until the task is dropped.
pub async fn run(task: ShareTask) {
    let key = format!("{EXTENSION_PREFIX}{RATELIMIT_EXTENSION}");
    let ShareTask {
        traffic,
        keys,
        view,
        serves,
        gap,
    } = task;
    let mut demands: BTreeMap<String, Demand> = BTreeMap::new();
    let mut published: Option<(DemandRecord, Instant)> = None;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = crate::clock::now();
    loop {
        tick.tick().await;
        let period = last.elapsed();
        last = crate::clock::now();
        let globals = traffic.global_limits(&serves);
        demands.retain(|doc, _| globals.iter().any(|(d, _)| d == doc));
        let mut record = DemandRecord {
            version: RECORD_VERSION,
            demands: Vec::new(),
        };
        let mut mine = BTreeMap::new();
        for (doc, _) in &globals {
            let arrivals = traffic.take_arrivals(doc);
            let rate = demands
                .entry(doc.clone())
                .or_default()
                .observe(arrivals, period);
            mine.insert(doc.clone(), rate);
            record
                .demands
                .push((doc.clone(), (rate * 1000.0).round() as u64));
        }
        if published
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= gap * PUBLISH_GAP)
        {
            publish(&keys, &key, record, &mut published).await;
        }
        let view = view.borrow().clone();
        let me = view.self_name.clone();
        for (doc, service) in &globals {
            let live = instances(&view, service, &me);
            let s = share(&me, &live, |node| {
                if node == me {
                    return mine.get(doc).copied();
                }
                view.members
                    .get(node)
                    .and_then(|m| m.extensions.get(RATELIMIT_EXTENSION))
                    .and_then(|v| records::decode::<DemandRecord>(v).ok())
                    .and_then(|r| r.demand(doc))
            });
            traffic.set_share(doc, s);
        }
    }
}

async fn publish(
    keys: &GossipKeys,
    key: &str,
    record: DemandRecord,
    published: &mut Option<(DemandRecord, Instant)>,
) {
    let due = match published {
        None => !record.demands.is_empty(),
        Some((old, at)) => {
            material_change(old, &record) || (at.elapsed() >= REFRESH && old != &record)
        }
    };
    if !due {
        return;
    }
    if record.demands.is_empty() {
        keys.delete(key).await;
        *published = None;
    } else if let Ok(value) = records::encode(&record) {
        keys.set(key, &value).await;
        *published = Some((record, crate::clock::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_table() {
        let nodes = ["a", "b", "c"];
        let demand = |pairs: &'static [(&'static str, f64)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
        };
        // (demands, expected share of a, b, c)
        type Demands = &'static [(&'static str, f64)];
        let cases: &[(Demands, [f64; 3])] = &[
            (&[], [1.0 / 3.0; 3]),
            (&[("a", 10.0), ("b", 10.0), ("c", 10.0)], [1.0 / 3.0; 3]),
            (&[("a", 30.0)], [1.0, 0.0, 0.0]),
            (&[("a", 20.0), ("b", 10.0), ("c", 10.0)], [0.5, 0.25, 0.25]),
            (&[("a", 0.0), ("b", 0.0)], [1.0 / 3.0; 3]),
        ];
        for (d, want) in cases {
            let got: Vec<f64> = nodes.iter().map(|n| share(n, &nodes, demand(d))).collect();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-9, "{d:?}: {got:?}");
            }
            let sum: f64 = got.iter().sum();
            assert!(
                (sum - 1.0).abs() < 1e-9,
                "shares add up to the whole: {sum}"
            );
        }
        assert_eq!(share("a", &["a"], |_| Some(5.0)), 1.0);
    }

    #[test]
    fn demand_is_smoothed_and_small_changes_are_not_republished() {
        let mut d = Demand::default();
        let p = Duration::from_millis(500);
        assert_eq!(d.observe(50, p), 100.0);
        assert_eq!(d.observe(0, p), 50.0);
        assert_eq!(d.observe(25, p), 50.0);
        assert_eq!(d.observe(0, p), 25.0 / 1.5);
        let rec = |v: u64| DemandRecord {
            version: RECORD_VERSION,
            demands: vec![("rl".into(), v)],
        };
        assert!(!material_change(&rec(100_000), &rec(103_000)));
        assert!(material_change(&rec(100_000), &rec(120_000)));
        assert!(!material_change(&rec(0), &rec(400)));
        assert_eq!(rec(1500).demand("rl"), Some(1.5));
        assert_eq!(rec(1500).demand("other"), None);
    }
}

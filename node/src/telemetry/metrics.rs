//! Prometheus metrics: counters, gauges and histograms in labelled families, rendered in the
//! Prometheus text exposition format (0.0.4) that every Prometheus and Grafana reads.
//!
//! Written by hand rather than through a client library so the output is exactly the classic
//! text format (`promtool check metrics` clean) and the hot path is an atomic add on a handle the
//! caller keeps.

#![allow(
    clippy::disallowed_types,
    reason = "metric families look up their label values under a lock per request; the data-path work resolves them once per service"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Label combinations one family keeps at most; beyond, new combinations are counted under
/// [`OVERFLOW`]. Labels come from validated names, but a bound that does not depend on that
/// keeps `/metrics` and memory bounded whatever a peer or app sends.
pub const MAX_INSTANCES: usize = 4096;
/// The label value of every label of the overflow instance.
pub const OVERFLOW: &str = "_overflow";

/// Upper bounds of latency buckets, seconds: 100 µs to about 26 s.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0, 15.0, 20.0, 26.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// What kind of metric a family holds.
pub trait Metric: Default + Send + Sync + 'static {
    /// Prometheus type name.
    const TYPE: &'static str;
    /// Writes the sample lines of one labelled instance.
    fn render(&self, out: &mut String, name: &str, labels: &str);
}

impl Metric for Counter {
    const TYPE: &'static str = "counter";
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let _ = writeln!(out, "{name}{labels} {}", self.get());
    }
}

impl Metric for Gauge {
    const TYPE: &'static str = "gauge";
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let _ = writeln!(out, "{name}{labels} {}", self.get());
    }
}

impl Metric for Histogram {
    const TYPE: &'static str = "histogram";
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let inner = labels.trim_start_matches('{').trim_end_matches('}');
        let sep = if inner.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{inner}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {count}");
    }
}

/// Metrics of one name, one instance per combination of label values.
#[derive(Debug)]
pub struct Family<M> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    instances: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M: Metric> Family<M> {
    /// A family `name` with label names `labels`.
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            labels,
            instances: Mutex::new(BTreeMap::new()),
        }
    }

    /// The instance for `values` (in the order of the label names), or the overflow instance
    /// once the family holds [`MAX_INSTANCES`]. Keep the handle on hot paths: this takes a lock.
    pub fn get(&self, values: &[&str]) -> Arc<M> {
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        let mut map = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_INSTANCES && !map.contains_key(&key) {
            key = vec![OVERFLOW.to_owned(); values.len()];
        }
        map.entry(key).or_default().clone()
    }

    /// Writes HELP, TYPE and every instance.
    pub fn render(&self, out: &mut String) {
        let map = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, M::TYPE);
        for (values, metric) in map.iter() {
            metric.render(out, self.name, &label_text(self.labels, values));
        }
    }
}

/// `{name="value",...}`; a label with an empty value is left out, which Prometheus reads the
/// same (`grpc_status` of a request that is not gRPC).
fn label_text(names: &[&str], values: &[String]) -> String {
    let pairs: Vec<String> = names
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    format!("{{{}}}", pairs.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a metric computed at scrape time: HELP, TYPE and one sample per `(labels, value)`,
/// where labels are `(name, value)` pairs.
pub fn render_now(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(Vec<(&str, String)>, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let names: Vec<&str> = labels.iter().map(|(n, _)| *n).collect();
        let values: Vec<String> = labels.iter().map(|(_, v)| v.clone()).collect();
        let _ = writeln!(out, "{name}{} {value}", label_text(&names, &values));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_past_its_bound_counts_new_labels_under_one_overflow_instance() {
        let f: Family<Counter> = Family::new("murmur_x_total", "Things.", &["service"]);
        for i in 0..MAX_INSTANCES + 500 {
            f.get(&[&format!("s{i}")]).inc();
        }
        f.get(&["s0"]).inc();
        let mut out = String::new();
        f.render(&mut out);
        // HELP, TYPE, the bound's worth of instances (one of them the overflow's).
        assert_eq!(out.lines().count(), 2 + MAX_INSTANCES + 1);
        assert!(
            out.contains("murmur_x_total{service=\"_overflow\"} 500\n"),
            "overflow"
        );
        assert!(out.contains("murmur_x_total{service=\"s0\"} 2\n"));
    }

    #[test]
    fn families_render_the_classic_text_format() {
        let f: Family<Counter> = Family::new("murmur_x_total", "Things.", &["service", "peer"]);
        for _ in 0..3 {
            f.get(&["web", "n\"2"]).inc();
        }
        f.get(&["web", "n1"]).inc();
        f.get(&["", ""]).inc();
        let h: Family<Histogram> = Family::new("murmur_d_seconds", "Time.", &["service"]);
        h.get(&["web"]).observe(Duration::from_millis(3));
        h.get(&["web"]).observe(Duration::from_secs(100));
        let mut out = String::new();
        f.render(&mut out);
        h.render(&mut out);
        assert!(out.contains("# TYPE murmur_x_total counter\n"), "{out}");
        assert!(
            out.contains("\nmurmur_x_total 1\n"),
            "empty labels are left out: {out}"
        );
        assert!(
            out.contains("murmur_x_total{service=\"web\",peer=\"n\\\"2\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("murmur_d_seconds_bucket{service=\"web\",le=\"0.002\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("murmur_d_seconds_bucket{service=\"web\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("murmur_d_seconds_bucket{service=\"web\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("murmur_d_seconds_count{service=\"web\"} 2\n"),
            "{out}"
        );
    }
}

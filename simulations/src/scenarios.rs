//! The scenarios: each builds a cluster, disturbs it and measures, all in virtual time.

pub mod cells;
pub mod churn;
pub mod digest;
pub mod loss;
pub mod partition;
pub mod phantom;
pub mod scale;
pub mod wall;

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use murmur_membership::GossipSettings;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::net::{Flow, SimNet, Traffic};
use crate::stats;

/// Runs `fut` on a fresh single-threaded runtime whose clock is paused: time jumps to the next
/// timer whenever every task is idle, so a simulated minute costs only the CPU the nodes
/// actually use. IO is on for packed gossip's codec (loopback datagrams that are queued before
/// their send returns, so they never hold the clock back).
pub fn run_virtual<F: Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .enable_io()
        .start_paused(true)
        .build()
        .context("building the simulation runtime")?;
    Ok(rt.block_on(fut))
}

/// Runs `f` over `items` on `threads` threads (each call owns its thread, so each can run its
/// own [`run_virtual`] runtime); results in the order of `items`.
pub fn run_parallel<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let n = items.len();
    let queue = std::sync::Mutex::new(items.into_iter().enumerate().collect::<Vec<_>>());
    let done = std::sync::Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    // Taken from the front: the caller orders the longest first.
                    let next = {
                        let mut q = queue
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        (!q.is_empty()).then(|| q.remove(0))
                    };
                    let Some((i, item)) = next else { return };
                    let r = f(item);
                    done.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((i, r));
                }
            });
        }
    });
    let mut done = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

thread_local! {
    static PANICS: Cell<u64> = const { Cell::new(0) };
}

/// Replaces the panic hook with one that counts panics per thread and prints one line each.
/// A panic inside a simulated node (chitchat's gossip task) does not stop the run: tokio keeps
/// the runtime going, as it would in a real node. Each run owns its thread, so
/// [`take_panics`] gives that run's count.
pub fn count_panics() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.with(|p| p.set(p.get() + 1));
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(ToString::to_string).unwrap_or_default();
        eprintln!("panic in a simulated task at {at}: {msg}");
    }));
}

/// Panics on this thread since the last [`take_panics`], without resetting.
pub fn panics_now() -> u64 {
    PANICS.with(Cell::get)
}

/// Panics on this thread since the last call.
pub fn take_panics() -> u64 {
    PANICS.with(|p| p.replace(0))
}

/// Our default gossip settings with another interval (and the failure detector's prior set to
/// it, as the node does).
pub fn gossip_every(interval: Duration) -> GossipSettings {
    GossipSettings {
        interval,
        initial_interval: interval,
        ..GossipSettings::default()
    }
}

/// A value the size of a signed policy document (about 512 base64 characters), different for
/// every `tag` so it does not compress away.
pub fn policy_value(tag: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = stats::derive_seed(tag, "policy");
    (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

/// Gossip traffic per node over a window, from two snapshots of the network's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bandwidth {
    /// Window length (virtual seconds).
    pub window_s: f64,
    /// Nodes measured.
    pub nodes: usize,
    /// Bytes sent per node per second: mean.
    pub sent_mean: f64,
    /// ... median.
    pub sent_p50: f64,
    /// ... 99th percentile.
    pub sent_p99: f64,
    /// ... max.
    pub sent_max: f64,
    /// Bytes received per node per second: mean.
    pub received_mean: f64,
    /// Messages sent per node per second: mean.
    pub msgs_mean: f64,
    /// Mean size of a `Syn` (the whole digest) in bytes.
    pub syn_mean: f64,
    /// Estimated bytes on the wire per node per second ([`crate::net::wire_estimate`]).
    pub wire_mean: f64,
    /// CPU milliseconds the simulation spent per node per simulated second (its thread's CPU
    /// time, so other load on the machine does not count).
    pub cpu_ms_per_node_s: f64,
    /// Messages the measured nodes refused, packed against a base they did not hold (other
    /// than a roster).
    pub refused: u64,
    /// Syns the measured nodes refused, packed against a roster they had not made.
    pub roster_missed: u64,
}

/// Measures traffic over `window` for the nodes at `addrs`.
pub async fn measure_bandwidth(net: &SimNet, addrs: &[SocketAddr], window: Duration) -> Bandwidth {
    let before = net.traffic();
    let cpu_before = thread_cpu();
    tokio::time::sleep(window).await;
    let cpu = thread_cpu().saturating_sub(cpu_before);
    let after = net.traffic();
    bandwidth_between(&before, &after, addrs, window, cpu)
}

/// Traffic per node of `addrs` between two snapshots of the network's counters.
pub fn bandwidth_between(
    before: &HashMap<SocketAddr, Traffic>,
    after: &HashMap<SocketAddr, Traffic>,
    addrs: &[SocketAddr],
    window: Duration,
    cpu: Duration,
) -> Bandwidth {
    let w = window.as_secs_f64();
    let mut sent = Vec::new();
    let mut received = Vec::new();
    let mut msgs = Vec::new();
    let mut wire = Vec::new();
    let mut syn = Flow::default();
    let (mut refused, mut roster_missed) = (0, 0);
    for addr in addrs {
        let a = after.get(addr).copied().unwrap_or_default();
        let b = before.get(addr).copied().unwrap_or_default();
        let s = a.sent_total().since(&b.sent_total());
        sent.push(s.bytes as f64 / w);
        msgs.push(s.msgs as f64 / w);
        received.push(a.received.since(&b.received).bytes as f64 / w);
        wire.push((a.wire_bytes - b.wire_bytes) as f64 / w);
        refused += a.refused - b.refused;
        roster_missed += a.roster_missed - b.roster_missed;
        let sy = a.sent[0].since(&b.sent[0]);
        syn.msgs += sy.msgs;
        syn.bytes += sy.bytes;
    }
    let sorted = stats::sorted(&sent);
    Bandwidth {
        window_s: w,
        nodes: addrs.len(),
        sent_mean: stats::mean(&sent),
        sent_p50: stats::quantile(&sorted, 0.5).unwrap_or(f64::NAN),
        sent_p99: stats::quantile(&sorted, 0.99).unwrap_or(f64::NAN),
        sent_max: sorted.last().copied().unwrap_or(f64::NAN),
        received_mean: stats::mean(&received),
        msgs_mean: stats::mean(&msgs),
        syn_mean: if syn.msgs == 0 {
            f64::NAN
        } else {
            syn.bytes as f64 / syn.msgs as f64
        },
        wire_mean: stats::mean(&wire),
        cpu_ms_per_node_s: cpu.as_secs_f64() * 1e3 / (addrs.len().max(1) as f64 * w),
        refused,
        roster_missed,
    }
}

/// How far something spread: when 50 %, 99 % and 100 % of a population had it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reach {
    /// Nodes that should get it.
    pub population: usize,
    /// Nodes that got it before the deadline.
    pub reached: usize,
    /// Time until half had it.
    pub t50: Option<Duration>,
    /// Time until 99 % had it.
    pub t99: Option<Duration>,
    /// Time until all had it.
    pub t100: Option<Duration>,
}

impl Reach {
    /// From sorted per-node delays.
    pub fn from_delays(sorted: &[Duration], population: usize) -> Self {
        Self {
            population,
            reached: sorted.len(),
            t50: stats::reach(sorted, population, 0.5),
            t99: stats::reach(sorted, population, 0.99),
            t100: stats::reach(sorted, population, 1.0),
        }
    }

    /// Whether everyone got it.
    pub fn complete(&self) -> bool {
        self.reached >= self.population
    }
}

/// Addresses of the nodes that are up.
pub fn up_addrs(cluster: &Cluster) -> Vec<SocketAddr> {
    cluster
        .up()
        .iter()
        .map(|i| cluster.slots[*i].addr)
        .collect()
}

/// CPU time the current thread has used (from `/proc/thread-self/schedstat`; zero where that
/// is unavailable). A run owns its thread, so this is the run's CPU time.
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Seconds of virtual time since `t`.
pub fn since(t: Instant) -> f64 {
    Instant::now().duration_since(t).as_secs_f64()
}

//! The list of runs of a report, with their parameters.

use std::time::Duration;

use murmur_transport::gossip::pack::BASES_BUDGET;

use super::ReportConfig;
use crate::scenarios::churn::ChurnPlan;
use crate::scenarios::gossip_every;
use crate::scenarios::loss::LossPlan;
use crate::scenarios::partition::PartitionPlan;
use crate::scenarios::phantom::Naming;
use crate::scenarios::scale::ScalePlan;
use crate::scenarios::wall::WallPlan;
use crate::stats::derive_seed;

/// The interval the Serf model and our propagation goal use.
pub const SERF_INTERVAL: Duration = Duration::from_millis(200);
/// Our default interval (`GossipSettings::default()`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);
/// Memory one node holds per known peer, measured (the failure detector alone keeps 1 000
/// samples of 8 bytes per peer).
const BYTES_PER_PAIR: f64 = 14_000.0;

/// One run.
#[derive(Clone, Debug)]
pub enum Job {
    /// A scaling run.
    Scale(ScalePlan),
    /// A false-death run.
    Loss(LossPlan),
    /// A partition run.
    Partition(PartitionPlan),
    /// The long churn run.
    Churn(ChurnPlan),
    /// The digest-limit run.
    Wall(WallPlan),
    /// A node whose digest leaves no room for a delta receives a `Syn`.
    Edge {
        /// Seed.
        seed: u64,
    },
    /// Digest sizes for one naming.
    Digest {
        /// Naming of the entries.
        naming: Naming,
        /// Entry counts.
        sizes: Vec<usize>,
        /// Seed.
        seed: u64,
    },
}

impl Job {
    /// A short name.
    pub fn name(&self) -> String {
        match self {
            Self::Scale(p) => format!(
                "scale n={} interval={}ms",
                p.nodes,
                p.gossip.interval.as_millis()
            ),
            Self::Loss(p) => format!("loss n={} loss={}%", p.nodes, p.loss * 100.0),
            Self::Partition(p) => format!("partition n={}", p.nodes),
            Self::Churn(p) => format!("churn n={} for {}s", p.nodes, p.duration.as_secs()),
            Self::Wall(p) => format!("digest wall real={}", p.real),
            Self::Digest { naming, .. } => format!("digest sizes {}", naming.label()),
            Self::Edge { .. } => "delta budget edge".to_owned(),
        }
    }

    /// Estimated peak memory in GiB.
    pub fn mem_gib(&self) -> f64 {
        let pairs = |n: usize, m: usize| n as f64 * m as f64 * BYTES_PER_PAIR / (1u64 << 30) as f64;
        0.1 + match self {
            // Packed, each node also keeps bases of its peers' digests, up to a budget.
            Self::Scale(p) => {
                pairs(p.nodes, p.nodes)
                    + if p.packed {
                        (p.nodes * BASES_BUDGET) as f64 / (1u64 << 30) as f64
                    } else {
                        0.0
                    }
            }
            Self::Loss(p) => pairs(p.nodes, p.nodes),
            Self::Partition(p) => pairs(p.nodes, p.nodes),
            Self::Churn(p) => pairs(p.nodes, p.nodes * 2),
            Self::Wall(p) => pairs(p.real, p.real + p.max_phantoms),
            Self::Digest { sizes, .. } => pairs(2, sizes.iter().copied().max().unwrap_or(0)),
            Self::Edge { .. } => pairs(2, 7600),
        }
    }

    /// Rough relative cost, to start the longest runs first.
    pub fn cost(&self) -> f64 {
        let per_s = |n: usize, i: Duration| (n * n) as f64 / i.as_secs_f64();
        match self {
            Self::Scale(p) => per_s(p.nodes, p.gossip.interval) * 25.0,
            Self::Loss(p) => {
                per_s(p.nodes, p.gossip.interval) * (p.warmup + p.window).as_secs_f64()
            }
            Self::Partition(p) => per_s(p.nodes, p.gossip.interval) * 60.0,
            Self::Churn(p) => per_s(p.nodes, p.gossip.interval) * p.duration.as_secs_f64(),
            Self::Wall(p) => per_s(p.real, p.gossip.interval) * 200.0 * p.observe.as_secs_f64(),
            Self::Digest { .. } | Self::Edge { .. } => 0.0,
        }
    }
}

/// Every run of the report.
pub fn build_jobs(config: &ReportConfig) -> Vec<Job> {
    let seed = |name: &str| derive_seed(config.seed, name);
    let mut jobs = Vec::new();
    for &n in &config.sizes {
        for interval in [SERF_INTERVAL, DEFAULT_INTERVAL] {
            let mut p = ScalePlan::new(n, gossip_every(interval), 0);
            p.seed = seed(&Job::Scale(p.clone()).name());
            size_windows(&mut p, interval, config.quick);
            p.packed = config.packed;
            jobs.push(Job::Scale(p));
        }
    }
    let small = if config.quick { 20 } else { 100 };
    let window = if config.quick { 20 } else { 60 };
    for loss in [0.0, 0.05, 0.2, 0.5] {
        let mut p = LossPlan {
            nodes: small,
            gossip: gossip_every(DEFAULT_INTERVAL),
            loss,
            seed: 0,
            warmup: Duration::from_secs(if config.quick { 10 } else { 30 }),
            window: Duration::from_secs(window),
        };
        p.seed = seed(&Job::Loss(p.clone()).name());
        jobs.push(Job::Loss(p));
    }
    let partition_sizes: &[usize] = if config.quick { &[20] } else { &[50, 100, 250] };
    for &n in partition_sizes {
        let mut p = PartitionPlan {
            nodes: n,
            gossip: gossip_every(DEFAULT_INTERVAL),
            seed: 0,
            hold: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
        };
        p.seed = seed(&Job::Partition(p.clone()).name());
        jobs.push(Job::Partition(p));
    }
    jobs.push(churn_job(config, &seed));
    jobs.extend(digest_jobs(config, &seed));
    if let Some(only) = &config.only {
        jobs.retain(|j| j.name().contains(only.as_str()));
    }
    jobs.sort_by(|a, b| b.cost().total_cmp(&a.cost()));
    jobs
}

/// Windows and trial counts: fewer virtual seconds for the big clusters, whose every second
/// costs about a minute of CPU at 1 000 nodes.
fn size_windows(p: &mut ScalePlan, interval: Duration, quick: bool) {
    let big = p.nodes >= 1000;
    let mid = p.nodes >= 500;
    p.settle = Duration::from_secs(if big { 1 } else { 2 });
    p.bandwidth_window = Duration::from_secs(if big {
        2
    } else if mid {
        3
    } else {
        5
    });
    p.propagation_trials = if big {
        2
    } else if mid {
        3
    } else {
        5
    };
    p.detection_trials = match (interval == DEFAULT_INTERVAL, p.nodes) {
        (_, n) if n >= 1000 => 1,
        (_, n) if n >= 500 => 2,
        (true, n) if n <= 100 => 5,
        _ => 3,
    };
    if quick {
        p.propagation_trials = 2;
        p.detection_trials = 1;
        p.bandwidth_window = Duration::from_secs(2);
    }
}

fn churn_job(config: &ReportConfig, seed: &dyn Fn(&str) -> u64) -> Job {
    let mut p = ChurnPlan {
        nodes: if config.quick { 20 } else { 50 },
        gossip: gossip_every(DEFAULT_INTERVAL),
        seed: 0,
        duration: Duration::from_secs(if config.quick { 180 } else { 1800 }),
        every: Duration::from_secs(10),
        sample: Duration::from_secs(10),
    };
    if config.quick {
        // Short enough that dead incarnations are dropped within the run.
        p.gossip.dead_node_grace = Duration::from_secs(60);
    }
    p.seed = seed(&Job::Churn(p.clone()).name());
    Job::Churn(p)
}

fn digest_jobs(config: &ReportConfig, seed: &dyn Fn(&str) -> u64) -> Vec<Job> {
    let sizes: Vec<usize> = if config.quick {
        vec![2, 500, 1000]
    } else {
        vec![2, 500, 1000, 2000, 4000, 6000, 8000]
    };
    let mut jobs: Vec<Job> = [Naming::Sequential, Naming::Pods]
        .into_iter()
        .map(|naming| Job::Digest {
            naming,
            sizes: sizes.clone(),
            seed: seed(naming.label()),
        })
        .collect();
    let gossip = gossip_every(DEFAULT_INTERVAL);
    // Long enough to see the planted entries leave the digest after half the grace period.
    let observe = if config.quick {
        Duration::from_secs(30)
    } else {
        gossip.dead_node_grace / 2 + Duration::from_secs(60)
    };
    jobs.push(Job::Edge { seed: seed("edge") });
    let mut p = WallPlan {
        real: 10,
        gossip,
        seed: 0,
        // About 61 KB of digest, then 10 entries (about 90 bytes) at a time, as a cluster
        // grows by one node or one restart at a time.
        first_batch: 7000,
        batch: 10,
        batch_every: Duration::from_secs(2),
        max_phantoms: 9000,
        observe,
        sample: Duration::from_secs(2),
    };
    p.seed = seed(&Job::Wall(p.clone()).name());
    jobs.push(Job::Wall(p));
    jobs
}

//! The full report: builds the list of runs, runs them on a few threads (each run on its own
//! paused single-threaded runtime), then writes CSV files, SVG charts and `report.md`.

pub mod cells;
mod charts;
mod markdown;
mod plan;
mod runner;
mod summary;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::scenarios::churn::ChurnResult;
use crate::scenarios::digest::{DigestPoint, EdgeResult};
use crate::scenarios::loss::LossResult;
use crate::scenarios::partition::PartitionResult;
use crate::scenarios::scale::ScaleResult;
use crate::scenarios::wall::WallResult;

pub use plan::{Job, build_jobs};
pub use runner::run_jobs;

/// What to run and where to write.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// Output directory.
    pub out: PathBuf,
    /// Master seed; every run derives its own from it.
    pub seed: u64,
    /// Cluster sizes for the scaling curves.
    pub sizes: Vec<usize>,
    /// Runs at the same time (one thread each).
    pub jobs: usize,
    /// Memory budget for runs at the same time, in GiB (estimated per run).
    pub mem_gib: f64,
    /// Small sizes and short windows: a smoke test of the whole pipeline.
    pub quick: bool,
    /// Only the runs whose name contains this text.
    pub only: Option<String>,
    /// Scaling runs gossip packed, as nodes do between each other.
    pub packed: bool,
    /// The command line, for the report.
    pub command: String,
}

/// Everything measured.
#[derive(Clone, Debug, Default)]
pub struct Results {
    /// Scaling runs, one per (size, interval).
    pub scale: Vec<ScaleResult>,
    /// False-death runs.
    pub loss: Vec<LossResult>,
    /// Partition runs.
    pub partition: Vec<PartitionResult>,
    /// The long churn run.
    pub churn: Option<ChurnResult>,
    /// The digest-limit run.
    pub wall: Option<WallResult>,
    /// Digest size against entries.
    pub digest: Vec<DigestPoint>,
    /// The delta-budget edge probe.
    pub edge: Option<EdgeResult>,
    /// Panics inside simulated nodes, per run.
    pub panics: Vec<(String, u64)>,
    /// Runs not done, and why.
    pub skipped: Vec<(String, String)>,
    /// Wall-clock and CPU seconds per run.
    pub costs: Vec<(String, f64, f64)>,
    /// Wall-clock time of the whole report.
    pub total_wall: Duration,
}

/// Runs everything and writes the report; returns where `report.md` is.
pub fn generate(config: &ReportConfig) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("creating {}", config.out.display()))?;
    let started = std::time::Instant::now();
    let jobs = build_jobs(config);
    eprintln!(
        "murmur-sim: seed {} — {} runs on {} threads, writing to {}",
        config.seed,
        jobs.len(),
        config.jobs,
        config.out.display()
    );
    let mut results = run_jobs(jobs, config.jobs, config.mem_gib);
    results.total_wall = started.elapsed();
    charts::write_all(&results, &config.out)?;
    let path = config.out.join("report.md");
    std::fs::write(&path, markdown::render(&results, config))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

//! `murmur-sim`: runs the gossip-layer simulations and writes the report.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::time::Duration;

use murmur_sim::net::LinkModel;
use murmur_sim::report::cells::{self as cells_report, CellsReport};
use murmur_sim::report::{self, ReportConfig};
use murmur_sim::scenarios::cells::{self, CellsPlan};
use murmur_sim::scenarios::scale::{self, ScalePlan, ScaleResult};
use murmur_sim::scenarios::{gossip_every, run_parallel, run_virtual};

#[derive(Parser)]
#[command(
    name = "murmur-sim",
    about = "Simulates many murmur membership nodes in one process, in virtual time",
    long_about = "Simulates many murmur membership nodes (the real membership code over an in-memory \
network) in one process, with a paused tokio clock, and measures join convergence, propagation, \
failure detection, false deaths under loss, bandwidth, partition healing, long churn and the \
digest-size limit. Build with --release: a 1 000-node cluster costs about a minute of CPU per \
simulated second."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `cells --window-s` when not given (the command line it writes leaves it out).
const DEFAULT_WINDOW_S: u64 = cells::BANDWIDTH_WINDOW.as_secs();
/// `cells --settle-s` when not given.
const DEFAULT_SETTLE_S: u64 = cells::SETTLE.as_secs();

#[derive(Subcommand)]
enum Command {
    /// Runs every scenario and writes CSV files, SVG charts and report.md.
    Report {
        /// Output directory.
        #[arg(long, default_value = "docs/simulations")]
        out: PathBuf,
        /// Master seed (random when omitted; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Cluster sizes for the scaling curves.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100,250,500,1000")]
        sizes: Vec<usize>,
        /// Runs at the same time, one thread each.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Memory budget for runs at the same time, in GiB (estimated per run; a run that
        /// alone needs more is skipped and listed in the report).
        #[arg(long, default_value_t = 20.0)]
        mem_gib: f64,
        /// Small sizes and short windows: checks the whole pipeline in a minute or two.
        #[arg(long)]
        quick: bool,
        /// Only the runs whose name contains this text (e.g. "scale n=100", "churn", "wall").
        #[arg(long)]
        only: Option<String>,
        /// Scaling runs gossip packed, as nodes do between each other (the other runs, and
        /// the default, use chitchat's own encoding).
        #[arg(long)]
        packed: bool,
    },
    /// Runs meshes of cells (one cell of real nodes, the other cells as their custodians) and
    /// writes cells.md, cells.csv, cells_spread.csv and cells_bandwidth.svg.
    Cells {
        /// Output directory.
        #[arg(long, default_value = "docs/simulations")]
        out: PathBuf,
        /// Master seed (random when omitted; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// Numbers of cells: one run each.
        #[arg(long, value_delimiter = ',', default_value = "5,10,25,50")]
        cells: Vec<usize>,
        /// Nodes per cell.
        #[arg(long, default_value_t = 200)]
        cell_size: usize,
        /// The run with this many cells also measures propagation, kills and a partition.
        #[arg(long, default_value_t = 50)]
        full: usize,
        /// Runs with these many cells also measure propagation, one trial of each kind (no
        /// kills, no partition).
        #[arg(long, value_delimiter = ',')]
        spread: Vec<usize>,
        /// Runs at the same time, one thread each.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[command(flatten)]
        curves: FlatCurves,
        /// Gossip interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// An experiment: each node sends at most this many Syns per gossip round to live
        /// peers, below chitchat's own fanout of 3 (both layers, and the flat mesh beside).
        #[arg(long)]
        syn_fanout: Option<usize>,
        /// Gossip in chitchat's own encoding, as a node sends to a peer that does not speak
        /// packed gossip (both layers, and the flat mesh beside). Default: packed, as nodes
        /// gossip between each other.
        #[arg(long)]
        unpacked: bool,
        /// Simulated seconds over which each node's bytes sent are averaged (its rate: a
        /// longer window evens out how often random peer choice picked a node).
        #[arg(long, default_value_t = DEFAULT_WINDOW_S, value_parser = clap::value_parser!(u64).range(1..=3600))]
        window_s: u64,
        /// Simulated seconds from the directory reaching every node to the bandwidth window.
        /// Packed gossip needs a base per pair of nodes, which a pair gets from its first
        /// exchange (before it, a roster both hold, once the view has held for 2 s): in a cell
        /// of 200 that started at once, 38 % of the Syns in the default window still went
        /// without either before rosters (5 cells, seed 42), and ever fewer later.
        #[arg(long, default_value_t = DEFAULT_SETTLE_S, value_parser = clap::value_parser!(u64).range(0..=3600))]
        settle_s: u64,
    },
    /// Draws cells_bandwidth.svg again from a cells run's cells.csv and the flat curves as they
    /// are now (after `report --packed` measured the packed flat mesh again, say).
    CellsChart {
        /// The directory a `cells` run wrote into.
        #[arg(long, default_value = "docs/simulations")]
        dir: PathBuf,
        #[command(flatten)]
        curves: FlatCurves,
        /// Gossip interval in milliseconds of the flat points drawn.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Runs one cluster with custom network conditions and prints what it measured.
    Scale {
        /// Nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Gossip interval in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
        /// Probability that a message is lost, on every link.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Fixed one-way delay in milliseconds.
        #[arg(long, default_value_t = 0.5)]
        delay_ms: f64,
        /// Extra one-way delay, uniform in [0, jitter), in milliseconds.
        #[arg(long, default_value_t = 1.0)]
        jitter_ms: f64,
        /// Network seed (random when omitted; printed either way).
        #[arg(long)]
        seed: Option<u64>,
        /// New keys to propagate.
        #[arg(long, default_value_t = 3)]
        writes: usize,
        /// Nodes to kill.
        #[arg(long, default_value_t = 1)]
        kills: usize,
    },
}

/// Where the cells chart's flat curves come from.
#[derive(clap::Args, Debug)]
struct FlatCurves {
    /// The main report's scale.csv, for the flat curve.
    #[arg(long, default_value = "docs/simulations/scale.csv")]
    flat: PathBuf,
    /// A scale.csv of `report --packed`, for the flat curve of packed gossip.
    #[arg(long, default_value = "docs/simulations/packed/scale.csv")]
    flat_packed: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    murmur_sim::scenarios::count_panics();
    match cli.command {
        Command::Report {
            out,
            seed,
            sizes,
            jobs,
            mem_gib,
            quick,
            only,
            packed,
        } => {
            let seed = seed.unwrap_or_else(random_seed);
            let sizes = if quick { vec![10, 25, 50] } else { sizes };
            let command = format!(
                "cargo run --release -p murmur-sim -- report --out {} --seed {seed}{}",
                out.display(),
                if quick {
                    " --quick".to_owned()
                } else {
                    format!(" --sizes {}", join(&sizes))
                }
            ) + &only
                .as_ref()
                .map_or_else(String::new, |o| format!(" --only '{o}'"))
                + if packed { " --packed" } else { "" };
            let config = ReportConfig {
                out,
                seed,
                sizes,
                jobs,
                mem_gib,
                quick,
                only,
                packed,
                command,
            };
            let path = report::generate(&config).context("generating the report")?;
            eprintln!(
                "murmur-sim: seed {seed}; report written to {}",
                path.display()
            );
            Ok(())
        }
        Command::Cells {
            out,
            seed,
            cells,
            cell_size,
            full,
            spread,
            jobs,
            curves,
            interval_ms,
            syn_fanout,
            unpacked,
            window_s,
            settle_s,
        } => {
            // One full cell and at least one stub: the trials change a stub cell's summary.
            if let Some(n) = cells.iter().find(|n| **n < 2) {
                anyhow::bail!(
                    "--cells: every run needs at least 2 cells (the full one and a stub), got {n}"
                );
            }
            // The crash trial picks a node past the first three that is not a custodian.
            if cell_size < 6 {
                anyhow::bail!("--cell-size: at least 6 nodes per cell, got {cell_size}");
            }
            let seed = seed.unwrap_or_else(random_seed);
            let command = format!(
                "cargo run --release -p murmur-sim -- cells --out {} --seed {seed} --cells {} --cell-size {cell_size} --full {full}{} --interval-ms {interval_ms}",
                out.display(),
                join(&cells),
                if spread.is_empty() {
                    String::new()
                } else {
                    format!(" --spread {}", join(&spread))
                },
            ) + &syn_fanout.map_or(String::new(), |n| format!(" --syn-fanout {n}"))
                + if unpacked { " --unpacked" } else { "" }
                + &if window_s == DEFAULT_WINDOW_S {
                    String::new()
                } else {
                    format!(" --window-s {window_s}")
                }
                + &if settle_s == DEFAULT_SETTLE_S {
                    String::new()
                } else {
                    format!(" --settle-s {settle_s}")
                };
            let gossip = gossip_every(Duration::from_millis(interval_ms));
            let mut report = CellsReport {
                command,
                ..CellsReport::default()
            };
            let mut plans: Vec<CellsPlan> = cells
                .iter()
                .map(|&n| {
                    let mut plan = CellsPlan::new(n, cell_size, gossip.clone(), seed);
                    plan.seed = murmur_sim::stats::derive_seed(seed, &format!("cells {n}"));
                    plan.syn_fanout = syn_fanout;
                    plan.packed = !unpacked;
                    plan.bandwidth_window = Duration::from_secs(window_s);
                    plan.settle = Duration::from_secs(settle_s);
                    if n != full {
                        plan.trials = usize::from(spread.contains(&n));
                        plan.kills = false;
                        plan.partition = None;
                    }
                    plan
                })
                .collect();
            // The biggest first: it sets the wall-clock time.
            plans.sort_by_key(|p| std::cmp::Reverse(p.cells));
            // "Detection as today": a flat mesh of one cell's size, same settings.
            let flat_plan = cells.contains(&full).then(|| {
                let mut plan = ScalePlan::new(cell_size, gossip.clone(), seed);
                plan.syn_fanout = syn_fanout;
                plan.packed = !unpacked;
                plan.seed = murmur_sim::stats::derive_seed(seed, "cells flat detection");
                plan.propagation_trials = 0;
                plan
            });
            let mut work: Vec<CellsJob> = plans.into_iter().map(CellsJob::Cells).collect();
            work.extend(flat_plan.map(CellsJob::Flat));
            let outcomes = run_parallel(work, jobs, |job| match job {
                CellsJob::Cells(plan) => run_cells(&plan).map(|r| CellsDone::Cells(Box::new(r))),
                CellsJob::Flat(plan) => {
                    eprintln!("start flat mesh of {cell_size} for detection");
                    run_virtual(scale::run(&plan))?
                        .map(|r| CellsDone::Flat(scale::detection_summary(&r)))
                }
            });
            for outcome in outcomes {
                match outcome? {
                    CellsDone::Cells(run) => report.runs.push(*run),
                    CellsDone::Flat(flat) => {
                        report.flat_detection = Some((cell_size, flat));
                    }
                }
            }
            report.runs.sort_by_key(|r| r.cells);
            // Read once the runs are done, so a flat run made meanwhile counts.
            let read = |path: &PathBuf, what: &str| {
                cells_report::read_flat(path, interval_ms).unwrap_or_else(|e| {
                    eprintln!("no flat curve of {what}: {e:#}");
                    Vec::new()
                })
            };
            report.flat = read(&curves.flat, "chitchat's encoding");
            report.flat_packed = read(&curves.flat_packed, "packed gossip");
            let path = cells_report::write(&report, &out)?;
            eprintln!(
                "murmur-sim: seed {seed}; cells report written to {}",
                path.display()
            );
            Ok(())
        }
        Command::CellsChart {
            dir,
            curves,
            interval_ms,
        } => {
            let flat = cells_report::read_flat(&curves.flat, interval_ms)?;
            let flat_packed = cells_report::read_flat(&curves.flat_packed, interval_ms)?;
            let path = cells_report::redraw(&dir, &flat, &flat_packed)?;
            eprintln!("murmur-sim: chart written to {}", path.display());
            Ok(())
        }
        Command::Scale {
            nodes,
            interval_ms,
            loss,
            delay_ms,
            jitter_ms,
            seed,
            writes,
            kills,
        } => {
            let seed = seed.unwrap_or_else(random_seed);
            let mut plan = ScalePlan::new(
                nodes,
                gossip_every(Duration::from_millis(interval_ms)),
                seed,
            );
            plan.link = LinkModel {
                loss,
                delay: Duration::from_secs_f64(delay_ms / 1e3),
                jitter: Duration::from_secs_f64(jitter_ms / 1e3),
            };
            plan.propagation_trials = writes;
            plan.detection_trials = kills;
            let r = run_virtual(scale::run(&plan))??;
            print_scale(&r);
            Ok(())
        }
    }
}

fn print_scale(r: &ScaleResult) {
    let s = |d: Option<Duration>| {
        d.map_or_else(
            || "never".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64()),
        )
    };
    println!(
        "seed {} — {} nodes, {} ms interval",
        r.seed,
        r.nodes,
        r.interval.as_millis()
    );
    println!(
        "join: 50 % {}, 99 % {}, 100 % {} ({}/{} nodes)",
        s(r.join.t50),
        s(r.join.t99),
        s(r.join.t100),
        r.join.reached,
        r.join.population
    );
    println!(
        "gossip per node: {:.1} KB/s sent (p99 {:.1}), {:.1} msgs/s, digest {:.0} bytes",
        r.bandwidth.sent_mean / 1e3,
        r.bandwidth.sent_p99 / 1e3,
        r.bandwidth.msgs_mean,
        r.bandwidth.syn_mean
    );
    for (i, p) in r.propagation.iter().enumerate() {
        println!(
            "write {i}: 50 % {}, 99 % {}, 100 % {}",
            s(p.t50),
            s(p.t99),
            s(p.t100)
        );
    }
    let d = scale::detection_summary(r);
    println!(
        "detection over {} observations: p50 {}, p99 {}, max {}",
        d.population,
        s(d.t50),
        s(d.t99),
        s(d.t100)
    );
    println!(
        "{:.1} simulated seconds in {:.1} s of wall-clock time",
        r.virtual_s, r.wall_s
    );
}

fn join(sizes: &[usize]) -> String {
    sizes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// One run of the `cells` command: a mesh of cells, or the flat mesh detection is held against.
enum CellsJob {
    Cells(CellsPlan),
    Flat(ScalePlan),
}

/// What a [`CellsJob`] measured.
enum CellsDone {
    Cells(Box<cells::CellsResult>),
    /// The flat mesh's detection.
    Flat(murmur_sim::scenarios::Reach),
}

fn run_cells(plan: &CellsPlan) -> anyhow::Result<cells::CellsResult> {
    eprintln!("start cells={} size={}", plan.cells, plan.cell_size);
    let r = run_virtual(cells::run(plan))??;
    eprintln!(
        "done  cells={}: ordinary {:.1} KB/s, custodian {:.1} KB/s, {:.0} s wall",
        r.cells,
        r.ordinary.sent_mean / 1e3,
        r.custodian_sent() / 1e3,
        r.wall_s
    );
    Ok(r)
}

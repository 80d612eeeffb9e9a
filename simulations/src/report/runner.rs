//! Runs jobs on a few threads within a memory budget.

use std::sync::{Condvar, Mutex, PoisonError};

use super::Results;
use super::plan::Job;
use crate::scenarios::{self, churn, digest, loss, partition, scale, wall};

enum Outcome {
    Scale(scale::ScaleResult),
    Loss(loss::LossResult),
    Partition(partition::PartitionResult),
    Churn(churn::ChurnResult),
    Wall(wall::WallResult),
    Digest(Vec<digest::DigestPoint>),
    Edge(digest::EdgeResult),
}

struct Queue {
    pending: Vec<Job>,
    used_gib: f64,
    results: Results,
}

/// Runs `jobs` on `threads` threads, never starting a job whose estimated memory would take the
/// running total over `mem_gib`; a job that alone exceeds it is skipped and reported.
pub fn run_jobs(jobs: Vec<Job>, threads: usize, mem_gib: f64) -> Results {
    let mut results = Results::default();
    let mut pending = Vec::new();
    for job in jobs {
        if job.mem_gib() > mem_gib {
            let why = format!(
                "needs about {:.0} GiB (N² failure-detector windows), budget {mem_gib:.0} GiB",
                job.mem_gib()
            );
            eprintln!("skip {}: {why}", job.name());
            results.skipped.push((job.name(), why));
        } else {
            pending.push(job);
        }
    }
    let queue = Mutex::new(Queue {
        pending,
        used_gib: 0.0,
        results,
    });
    let freed = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| worker(&queue, &freed, mem_gib));
        }
    });
    queue
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .results
}

fn worker(queue: &Mutex<Queue>, freed: &Condvar, mem_gib: f64) {
    loop {
        let job = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if q.pending.is_empty() {
                    return;
                }
                let room = mem_gib - q.used_gib;
                if let Some(pos) = q.pending.iter().position(|j| j.mem_gib() <= room) {
                    let job = q.pending.remove(pos);
                    q.used_gib += job.mem_gib();
                    break job;
                }
                q = freed.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let name = job.name();
        eprintln!("start {name} (~{:.1} GiB)", job.mem_gib());
        let wall = std::time::Instant::now();
        let cpu = scenarios::thread_cpu();
        scenarios::take_panics();
        let outcome = scenarios::run_virtual(run_one(&job)).and_then(|r| r);
        let secs = wall.elapsed().as_secs_f64();
        let cpu_s = scenarios::thread_cpu().saturating_sub(cpu).as_secs_f64();
        let panics = scenarios::take_panics();
        let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.used_gib -= job.mem_gib();
        q.results.costs.push((name.clone(), secs, cpu_s));
        if panics > 0 {
            q.results.panics.push((name.clone(), panics));
        }
        match outcome {
            Ok(o) => {
                eprintln!("done  {name} in {secs:.0} s ({cpu_s:.0} s CPU)");
                store(&mut q.results, o);
            }
            Err(e) => {
                eprintln!("FAILED {name}: {e:#}");
                q.results.skipped.push((name, format!("failed: {e:#}")));
            }
        }
        freed.notify_all();
    }
}

async fn run_one(job: &Job) -> anyhow::Result<Outcome> {
    Ok(match job {
        Job::Scale(p) => Outcome::Scale(scale::run(p).await?),
        Job::Loss(p) => Outcome::Loss(loss::run(p).await?),
        Job::Partition(p) => Outcome::Partition(partition::run(p).await?),
        Job::Churn(p) => Outcome::Churn(churn::run(p).await?),
        Job::Wall(p) => Outcome::Wall(wall::run(p).await?),
        Job::Edge { seed } => Outcome::Edge(
            digest::delta_budget_edge(
                scenarios::gossip_every(super::plan::DEFAULT_INTERVAL),
                *seed,
            )
            .await?,
        ),
        Job::Digest {
            naming,
            sizes,
            seed,
        } => Outcome::Digest(
            digest::digest_sizes(
                scenarios::gossip_every(super::plan::DEFAULT_INTERVAL),
                *naming,
                sizes,
                *seed,
            )
            .await?,
        ),
    })
}

fn store(r: &mut Results, o: Outcome) {
    match o {
        Outcome::Scale(x) => {
            r.scale.push(x);
            r.scale.sort_by_key(|s| (s.interval, s.nodes));
        }
        Outcome::Loss(x) => {
            r.loss.push(x);
            r.loss.sort_by(|a, b| a.loss.total_cmp(&b.loss));
        }
        Outcome::Partition(x) => {
            r.partition.push(x);
            r.partition.sort_by_key(|p| p.nodes);
        }
        Outcome::Churn(x) => r.churn = Some(x),
        Outcome::Wall(x) => r.wall = Some(x),
        Outcome::Digest(x) => r.digest.extend(x),
        Outcome::Edge(x) => r.edge = Some(x),
    }
}

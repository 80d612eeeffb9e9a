//! A steady, bounded stream of requests through a node's outbound proxy, recording what
//! happened to each one and when — the probe of the fault scenarios.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request's fate.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was sent, since the load started.
    pub at: Duration,
    /// How long it took.
    pub took: Duration,
    /// The instance that answered (first word of an echo app's body) for a 2xx; the body of an
    /// error answer otherwise.
    pub instance: Option<String>,
    /// The status, or the client-side error.
    pub outcome: Result<u16, String>,
}

impl Sample {
    /// A 2xx answer.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Ok(200..=299))
    }
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// When it started.
    pub started: Instant,
}

/// Summary of a load.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Requests finished.
    pub total: usize,
    /// 2xx answers.
    pub ok: usize,
    /// Everything else, with its time and reason.
    pub failures: Vec<(Duration, String)>,
    /// 2xx answers per instance.
    pub by_instance: BTreeMap<String, usize>,
}

impl Load {
    /// Sends GETs for `service` to `outbound` from `workers` connections, together about `rate`
    /// per second, until stopped or `limit` passes.
    pub fn start(
        outbound: SocketAddr,
        service: &str,
        rate: u32,
        workers: u32,
        limit: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let gap = Duration::from_secs_f64(f64::from(workers) / f64::from(rate.max(1)));
        let tasks = (0..workers)
            .map(|w| {
                let (stop, samples, service) = (stop.clone(), samples.clone(), service.to_owned());
                tokio::spawn(async move {
                    // Spread the workers over the gap.
                    tokio::time::sleep(gap * w / workers.max(1)).await;
                    worker(outbound, service, gap, stop, samples, started, limit).await;
                })
            })
            .collect();
        Self {
            stop,
            samples,
            tasks,
            started,
        }
    }

    /// Every sample so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Stops sending, waits for the requests in progress, and summarizes.
    pub async fn stop(self) -> (Summary, Vec<Sample>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let samples = self.samples.lock().unwrap().clone();
        (summarize(&samples), samples)
    }
}

/// Counts outcomes.
pub fn summarize(samples: &[Sample]) -> Summary {
    let mut s = Summary {
        total: samples.len(),
        ..Summary::default()
    };
    for x in samples {
        if x.ok() {
            s.ok += 1;
            if let Some(i) = &x.instance {
                *s.by_instance.entry(i.clone()).or_default() += 1;
            }
        } else {
            let why = match &x.outcome {
                Ok(status) => format!("HTTP {status}: {}", x.instance.as_deref().unwrap_or("")),
                Err(e) => e.clone(),
            };
            s.failures.push((x.at, why));
        }
    }
    s
}

use crate::http::{Sender, connect, exchange};

async fn worker(
    outbound: SocketAddr,
    service: String,
    gap: Duration,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    started: Instant,
    limit: Duration,
) {
    let mut sender: Option<Sender> = None;
    let mut next = tokio::time::Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
        tokio::time::sleep_until(next).await;
        next += gap;
        i += 1;
        let at = started.elapsed();
        let t0 = Instant::now();
        let outcome = one(&mut sender, outbound, &service, i).await;
        let (outcome, instance) = match outcome {
            Ok((status, body)) if (200..300).contains(&status) => (
                Ok(status),
                body.split_whitespace().next().map(str::to_owned),
            ),
            // Keep the error text: it names the node and the cause.
            Ok((status, body)) => (Ok(status), Some(body.chars().take(300).collect())),
            Err(e) => {
                sender = None;
                (Err(e), None)
            }
        };
        samples.lock().unwrap().push(Sample {
            at,
            took: t0.elapsed(),
            instance,
            outcome,
        });
    }
}

async fn one(
    sender: &mut Option<Sender>,
    addr: SocketAddr,
    service: &str,
    i: u64,
) -> Result<(u16, String), String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().ok_or("no connection")?;
    let reply = exchange(s, service, "GET", &format!("/load/{i}"), &[], Vec::new()).await?;
    Ok((reply.status, reply.text()))
}

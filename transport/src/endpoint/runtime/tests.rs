use std::sync::Mutex;
use std::task::Waker;
use std::time::Duration;

use super::*;

/// Stands in for a quinn driver: logs each poll and keeps the waker the streams call.
#[derive(Default)]
struct Probe {
    log: Mutex<Vec<&'static str>>,
    waker: Mutex<Option<Waker>>,
}

impl Probe {
    fn record(&self, what: &'static str) {
        self.log.lock().expect("log").push(what);
    }

    fn polls(&self) -> usize {
        self.log.lock().expect("log").len()
    }

    fn wake_driver(&self) {
        if let Some(w) = self.waker.lock().expect("waker").as_ref() {
            w.wake_by_ref();
        }
    }

    /// Spawns the driver on [`DriverRuntime`] and waits for its first poll.
    async fn start_driver(self: &Arc<Self>) {
        let this = self.clone();
        DriverRuntime.spawn(Box::pin(std::future::poll_fn(move |cx| {
            this.record("driver");
            *this.waker.lock().expect("waker") = Some(cx.waker().clone());
            Poll::<()>::Pending
        })));
        while self.waker.lock().expect("waker").is_none() {
            tokio::task::yield_now().await;
        }
    }
}

/// Three streams ready in one turn, each waking the driver: the driver runs once, after all
/// three (tokio alone runs it after each, from the waker's "next task" slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_woken_driver_runs_after_the_tasks_queued_before_it() {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    // Spawned, not run on the test's own thread: the worker's queue is what is tested.
    tokio::spawn(async move {
        p.start_driver().await;
        for _ in 0..3 {
            let p = p.clone();
            tokio::spawn(async move {
                p.record("stream");
                p.wake_driver();
            });
        }
    })
    .await
    .expect("task");
    let deadline = Instant::now() + Duration::from_secs(10);
    while probe.polls() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Time for a further (wrong) poll of the driver to show.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = probe.log.lock().expect("log").clone();
    assert_eq!(log, ["driver", "stream", "stream", "stream", "driver"]);
}

/// A worker that is never idle still polls a woken driver: it reaches the back of its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_woken_driver_is_not_starved_by_a_busy_worker() {
    const BOUND: u32 = 100_000;
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let hops = tokio::spawn(async move {
        p.start_driver().await;
        p.wake_driver();
        // Task after task until the driver has run again: the worker's queue is never empty.
        let mut hops = 0;
        while p.polls() < 2 && hops < BOUND {
            tokio::spawn(async {}).await.expect("hop");
            hops += 1;
        }
        hops
    })
    .await
    .expect("task");
    assert!(hops < BOUND, "the driver was not polled in {BOUND} hops");
    assert_eq!(probe.polls(), 2);
}

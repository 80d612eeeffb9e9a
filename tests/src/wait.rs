//! Waiting for conditions with a deadline instead of sleeping fixed times.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `cond` every 50 ms until it returns `Some`, or panics after `limit` with `what` and the
/// last state `describe` gives. Returns the value and the time it took.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut cond: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last;
    loop {
        match cond().await {
            Ok(v) => return (v, start.elapsed()),
            Err(state) => last = state,
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}; last state: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

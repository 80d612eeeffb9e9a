//! Serving the items of a bounded queue, a bounded number at once: what the endpoint's stream
//! handler hands over (control and identity streams) is served here, and while every slot is
//! busy the queue fills and the handler refuses what does not fit.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

/// Serves each item of `items` with `serve`, at most `concurrent` at once, until every sender is
/// gone.
pub async fn serve_bounded<T, F, Fut>(mut items: mpsc::Receiver<T>, concurrent: usize, serve: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrent));
    loop {
        // Wait for a free slot before taking the next item: meanwhile the queue fills.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(item) = items.recv().await else {
            return;
        };
        let work = serve(item);
        tokio::spawn(async move {
            work.await;
            drop(slot);
        });
    }
}

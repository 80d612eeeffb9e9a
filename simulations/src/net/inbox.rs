//! A receiver's queue: messages become available at their delivery time.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chitchat::transport::RecvOutcome;
use murmur_transport::gossip::pack::Packed;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Messages on their way to one socket, ordered by delivery time.
#[derive(Default)]
pub(super) struct Inbox {
    queue: Mutex<BinaryHeap<Pending>>,
    arrived: Notify,
    seq: Mutex<u64>,
}

struct Pending {
    at: Instant,
    seq: u64,
    outcome: RecvOutcome,
    packed: Option<Packed>,
}

impl Inbox {
    fn queue(&self) -> MutexGuard<'_, BinaryHeap<Pending>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a message for delivery at `at`; false when the queue is full (it is dropped).
    pub(super) fn push(
        &self,
        at: Instant,
        outcome: RecvOutcome,
        packed: Option<Packed>,
        capacity: usize,
    ) -> bool {
        let seq = {
            let mut seq = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
            *seq += 1;
            *seq
        };
        {
            let mut queue = self.queue();
            if queue.len() >= capacity {
                return false;
            }
            queue.push(Pending {
                at,
                seq,
                outcome,
                packed,
            });
        }
        // One reader per inbox: a stored permit wakes it even if it is not waiting yet.
        self.arrived.notify_one();
        true
    }

    /// The next message whose delivery time has come. Cancel-safe: a message leaves the queue
    /// only in the same poll that returns it.
    pub(super) async fn pop(&self) -> (RecvOutcome, Option<Packed>) {
        loop {
            let next = {
                let mut queue = self.queue();
                match queue.peek().map(|p| p.at) {
                    Some(at) if at <= Instant::now() => {
                        if let Some(p) = queue.pop() {
                            return (p.outcome, p.packed);
                        }
                        None
                    }
                    other => other,
                }
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.arrived.notified() => {}
                    }
                }
                None => self.arrived.notified().await,
            }
        }
    }
}

// Earliest delivery first, then first sent: a max-heap on the reversed order.
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Pending {}

//! Which of the node's runtimes the current thread runs.
//!
//! With `threads = N` a node runs N single-threaded runtimes, each on its own thread, each with
//! its own share of the data path: a QUIC endpoint on the mesh port with its own connections,
//! and the app connections it accepts. A request's tasks then all run on one thread, and no
//! wake-up crosses to another (on tokio's multi-threaded runtime each stream write woke a
//! connection driver that could be on the other thread). The thread that starts a runtime
//! names its shard with [`enter`]; the endpoint and the app clients pick their share with
//! [`current`]. A thread that never called [`enter`] (the node's first runtime, tests,
//! blocking threads) is shard 0.

use std::cell::Cell;

/// The most shards a node runs: a shard is found from the first byte of a connection ID, and
/// fewer than that leaves some randomness in it.
pub const MAX_SHARDS: usize = 64;

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as running shard `index`.
pub fn enter(index: usize) {
    CURRENT.with(|c| c.set(index));
}

/// The shard the current thread runs (0 unless [`enter`] said otherwise).
pub fn current() -> usize {
    CURRENT.with(Cell::get)
}

/// Shard `index`'s item of `per_shard`, or shard 0's for an index past its end (a thread of
/// another component, or of a node with more shards in the same process). `per_shard` holds
/// at least shard 0's.
pub fn item<T>(per_shard: &[T], index: usize) -> &T {
    per_shard.get(index).unwrap_or(&per_shard[0])
}

//! The node's extra runtimes: with `threads = N`, N - 1 single-threaded runtimes, each on a
//! thread of its own, beside the one the node starts on (shard 0). Each runs its share of the
//! data path (`murmur_transport::shard`); the first also runs everything else.

use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Runtimes 1 to N - 1, running until this is dropped.
#[derive(Debug)]
pub struct Shards {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Shards {
    /// No extra runtime: everything on the first.
    pub fn none() -> Self {
        Self {
            handles: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// Starts `extra` runtimes, shards 1 to `extra`.
    pub fn start(extra: usize) -> std::io::Result<Self> {
        let mut shards = Self::none();
        for index in 1..=extra {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(runtime.handle().clone());
            let thread = std::thread::Builder::new()
                .name(format!("murmur-shard-{index}"))
                .spawn(move || {
                    murmur_transport::shard::enter(index);
                    // Runs the tasks spawned on it until the node stops; dropping the runtime
                    // then cancels what is left.
                    let _ = runtime.block_on(stopped);
                })?;
            shards.threads.push((stop, thread));
        }
        Ok(shards)
    }

    /// The extra runtimes' handles, shard 1 first.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

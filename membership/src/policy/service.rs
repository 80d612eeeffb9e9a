//! Runs policy beside the membership driver: one task owns the [`PolicyStore`], reads every
//! node's `policy/` keys from gossip as soon as one changes, verifies and merges them,
//! republishes what this node is custodian (or origin) of, persists the winning set, and takes
//! applies from the node.
//!
//! Readers never talk to the task: they read the effective set from a watch channel
//! ([`PolicyHandle::current`], [`PolicyHandle::watch`]) and the fuller status (winners with
//! tombstones, clock, rejection counters) from another ([`PolicyHandle::status`]).

mod apply;
mod bridge;
mod scan;
mod settings;
mod wake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::Chitchat;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use self::apply::{ApplyError, ApplyOutcome, ApplyResult};
pub use self::bridge::Bridge;
pub use self::settings::{BundleSource, PolicyConfig, PolicyStatus};
use super::document::{VerifyContext, verify};
use super::persist;
use super::store::{PolicySet, PolicyStore};
use crate::driver::{GossipKeys, Membership};
use crate::view::{ClusterView, MemberState};

enum Command {
    Apply {
        values: Vec<String>,
        dry_run: bool,
        reply: oneshot::Sender<Result<Vec<ApplyResult>, ApplyError>>,
    },
}

/// The policy service of a node. Cheap to clone; the task stops when the last clone is dropped
/// or the membership it follows stops.
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Arc<PolicyStatus>>,
    set: watch::Receiver<Arc<PolicySet>>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PolicyHandle {
    /// Starts the service for `membership`, restoring the persisted set first.
    pub fn start(membership: &Membership, config: PolicyConfig) -> Self {
        // Never bridging: the sender is dropped, so the receiver holds `None` for good.
        let (_, bridge) = watch::channel(None);
        Self::start_bridged(membership, config, bridge)
    }

    /// [`PolicyHandle::start`] for a node in a cell: while `bridge` holds the top layer (the
    /// node is one of its cell's custodians), documents are merged from both layers and carried
    /// across (see [`Bridge`]).
    pub fn start_bridged(
        membership: &Membership,
        config: PolicyConfig,
        bridge: watch::Receiver<Option<Bridge>>,
    ) -> Self {
        let mut store = PolicyStore::new();
        restore(&config, &mut store);
        let (commands, rx) = mpsc::channel(16);
        let first = scan::status_of(&config.node, &store, &BTreeMap::new());
        let (set_tx, set) = watch::channel(first.effective.clone());
        let (status_tx, status) = watch::channel(Arc::new(first));
        let engine = scan::Engine::new(config, store, status_tx, set_tx);
        let task = tokio::spawn(run(
            engine,
            membership.chitchat(),
            membership.keys(),
            membership.watch(),
            bridge,
            rx,
        ));
        Self {
            inner: Arc::new(Inner {
                commands,
                status,
                set,
                task,
            }),
        }
    }

    /// The effective policy set now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.inner.set.borrow().clone()
    }

    /// A receiver of every new effective set.
    pub fn watch(&self) -> watch::Receiver<Arc<PolicySet>> {
        self.inner.set.clone()
    }

    /// Status for the admin API.
    pub fn status(&self) -> Arc<PolicyStatus> {
        self.inner.status.borrow().clone()
    }

    /// Takes signed documents (gossip values) handed to this node directly. All are checked
    /// before any is applied: one refusal refuses the batch. With `dry_run`, nothing changes.
    pub async fn apply(
        &self,
        values: Vec<String>,
        dry_run: bool,
    ) -> Result<Vec<ApplyResult>, ApplyError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Apply {
            values,
            dry_run,
            reply,
        };
        self.inner
            .commands
            .send(cmd)
            .await
            .map_err(|_| ApplyError::Stopped)?;
        rx.await.map_err(|_| ApplyError::Stopped)?
    }
}

async fn run(
    mut engine: scan::Engine,
    chitchat: Arc<tokio::sync::Mutex<Chitchat>>,
    keys: GossipKeys,
    mut view: watch::Receiver<Arc<ClusterView>>,
    mut bridge: watch::Receiver<Option<Bridge>>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut bridged = true;
    let mut wakeups = wake::Wakeups::new(&chitchat).await;
    let mut tick = tokio::time::interval(engine.refresh_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        let mut reply = None;
        tokio::select! {
            biased;
            cmd = commands.recv(), if open => match cmd {
                Some(Command::Apply { values, dry_run, reply: to }) => {
                    // Refused and dry-run applies go through the refresh too, so the answer comes
                    // after the status (rejection counts included) is published.
                    let result = engine.apply(values, dry_run, now_ms());
                    reply = Some((to, result));
                }
                // Nobody can apply any more, but readers may remain: keep merging.
                None => open = false,
            },
            changed = view.changed() => if changed.is_err() { return },
            // A node that stops bridging keeps merging its cell.
            changed = bridge.changed(), if bridged => bridged = changed.is_ok(),
            () = wakeups.changed() => {}
            _ = tick.tick() => {}
        }
        let live = live_names(&view.borrow_and_update());
        let top = bridge.borrow_and_update().clone();
        wakeups.follow(top.as_ref()).await;
        engine
            .refresh(&chitchat, &keys, &live, top.as_ref(), now_ms())
            .await;
        // An apply is answered once its documents are merged, published and persisted.
        if let Some((to, result)) = reply {
            let _ = to.send(result);
        }
    }
}

/// Members that may hold custody: alive (not draining, left or dead), and known from gossip.
fn live_names(view: &ClusterView) -> Vec<String> {
    view.members
        .values()
        .filter(|m| m.state == MemberState::Alive && !m.stale)
        .map(|m| m.name.clone())
        .collect()
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn restore(config: &PolicyConfig, store: &mut PolicyStore) {
    let Some(file) = config.file.as_deref().and_then(persist::load) else {
        return;
    };
    let bundle = (config.bundle)();
    // Persisted documents were accepted under the skew rule once; the clock may have moved
    // since, so only signature, chain and body are checked again.
    let cx = VerifyContext {
        bundle: &bundle,
        now_ms: now_ms(),
        max_skew: Duration::MAX,
    };
    let mut restored = 0;
    for value in &file.documents {
        match verify(value, &cx) {
            Ok(doc) => {
                store.offer(Arc::new(doc));
                restored += 1;
            }
            Err(e) => warn!(reason = %e, "persisted policy document no longer verifies; dropped"),
        }
    }
    let age = Duration::from_millis(now_ms().saturating_sub(file.saved_at_ms));
    if age > config.tombstone_retention {
        warn!(
            age_s = age.as_secs(),
            "the persisted policy set is older than the tombstone retention: documents deleted \
             meanwhile may come back; re-apply deletes if so"
        );
    }
    info!(restored, "policy set restored from disk");
}

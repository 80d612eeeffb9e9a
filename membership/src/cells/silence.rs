//! How long the custodians ranked ahead of this node have been silent in the cell.
//!
//! A standby custodian takes over when every custodian ranked ahead of it has not moved its
//! heartbeat for [`CellSettings::takeover`](super::CellSettings::takeover), without waiting
//! for the failure detector to declare it dead. That detector is tuned to ride out stalls
//! (phi 16: about 6 s in a cell of 200 at the default interval); a standby that waited for it
//! would leave the cell unpublished for as long. Publishing twice is harmless (readers keep
//! the newest header of a cell), publishing late is not, so the standby errs early.

use std::collections::BTreeMap;
use std::time::Duration;

use chitchat::{Chitchat, Heartbeat};
use tokio::time::Instant;

/// When each watched member's heartbeat last moved on, as this node saw it.
#[derive(Debug, Default)]
pub(super) struct Silence {
    seen: BTreeMap<String, (Heartbeat, Instant)>,
}

impl Silence {
    /// Records the heartbeats `chitchat` holds now for `names` (of each name's newest
    /// incarnation) and forgets every other name.
    pub(super) fn observe(&mut self, chitchat: &Chitchat, names: &[String], now: Instant) {
        self.seen.retain(|name, _| names.contains(name));
        for name in names {
            let Some(beat) = newest_heartbeat(chitchat, name) else {
                self.seen.remove(name);
                continue;
            };
            match self.seen.get_mut(name) {
                Some((last, _)) if *last == beat => {}
                Some(entry) => *entry = (beat, now),
                None => {
                    self.seen.insert(name.clone(), (beat, now));
                }
            }
        }
    }

    /// Whether `name`'s heartbeat has not moved for `quiet` (a name chitchat no longer holds
    /// is silent).
    pub(super) fn silent(&self, name: &str, now: Instant, quiet: Duration) -> bool {
        self.seen
            .get(name)
            .is_none_or(|(_, since)| now.saturating_duration_since(*since) >= quiet)
    }
}

fn newest_heartbeat(chitchat: &Chitchat, name: &str) -> Option<Heartbeat> {
    chitchat
        .node_states()
        .iter()
        .filter(|(id, _)| &*id.node_id == name)
        .max_by_key(|(id, _)| id.generation_id)
        .map(|(_, state)| state.heartbeat())
}

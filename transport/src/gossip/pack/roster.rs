//! Rosters: a base two nodes share before their first exchange.
//!
//! A Syn to a peer this node has not yet exchanged with has no base, and a plain digest costs
//! about 13 bytes per member: a name and a generation (a start time, as good as random) per
//! entry, and its heartbeat. Yet the two nodes hold nearly always the same incarnations: the
//! cell's members. So a node keeps the *roster* of its last Syns ([`Digest::roster`]: the
//! digest with every number zeroed) and names it when it has no other base. If the peer made
//! the same roster from its own Syns, the ids match it whole, the heartbeats move against its
//! zeros into the column, and the Syn costs about a quarter. If not (one of the two has not
//! yet seen a join or a death), the peer drops the Syn as for any base it lacks, and the next
//! Syn to it goes plain. So a roster is named only once it has been this node's for
//! [`SETTLED`]: while members come and go (a node joining learns its cell over a few rounds),
//! Syns go plain rather than be dropped.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Base;
use crate::gossip::message::Digest;

/// Rosters kept: the view may flip between two while a change spreads.
const KEPT: usize = 3;
/// How long a roster must have been this node's before its Syns name it: a change reaches a
/// cell of 200 in about a second and a half.
pub(super) const SETTLED: Duration = Duration::from_secs(2);

/// The rosters of this node's last Syns, newest last.
#[derive(Debug, Default)]
pub(super) struct Rosters {
    kept: VecDeque<Base>,
    /// Since when the newest has been this node's.
    since: Option<Instant>,
}

impl Rosters {
    /// Keeps the roster of `raw`, a Syn this node sends at `now`, and returns it once it has
    /// been this node's for [`SETTLED`] (`None` before, and without members).
    pub(super) fn note(&mut self, raw: &[u8], now: Instant) -> std::io::Result<Option<Base>> {
        let Some(roster) = Digest::read(raw)
            .ok()
            .filter(|d| !d.entries.is_empty())
            .map(|d| d.roster())
        else {
            return Ok(None);
        };
        let id = Base::id_of(&roster);
        let known = self.kept.iter().position(|b| b.id == id);
        if known.is_some_and(|at| at + 1 == self.kept.len()) {
            let settled = self.since.is_some_and(|t| now.duration_since(t) >= SETTLED);
            return Ok(self.kept.back().filter(|_| settled).cloned());
        }
        let base = match known.and_then(|at| self.kept.remove(at)) {
            Some(b) => b,
            None => Base::with_id(id, &roster)?,
        };
        if self.kept.len() >= KEPT {
            self.kept.pop_front();
        }
        self.kept.push_back(base);
        self.since = Some(now);
        Ok(None)
    }

    /// The roster named `id`, if this node made it lately.
    pub(super) fn find(&self, id: u64) -> Option<Base> {
        self.kept.iter().find(|b| b.id == id).cloned()
    }
}

#[cfg(test)]
mod tests;

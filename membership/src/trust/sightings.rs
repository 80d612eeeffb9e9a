//! Relayed incarnations this node does not hold yet, until one is seen alive.
//!
//! chitchat adopts every incarnation any digest names, dead ones included, and gossips them on
//! until its dead-node grace period ends; every node that joins learns them all again
//! (chitchat #161). A relay cannot show that an incarnation is alive, only what heartbeat it
//! last heard. So an incarnation new to this node and named by someone other than itself is
//! adopted only once a relayed heartbeat is higher than the first one relayed: a live member's
//! heartbeat (microseconds of its clock) always moves on, a dead one's stays where it stopped.
//! The incarnation speaking for itself is adopted at once. Joining costs one more exchange
//! per member heard of only through relays.

use std::collections::HashMap;
use std::time::Duration;

use chitchat::ChitchatId;
use tokio::time::Instant;

/// A sighting older than this is forgotten: the next one starts over.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// The first relayed heartbeat of each incarnation not yet adopted, and when it came.
#[derive(Debug)]
pub struct Sightings {
    first: HashMap<ChitchatId, (u64, Instant)>,
    cap: usize,
}

impl Sightings {
    /// Sightings of at most `cap` incarnations at once (the guard: as many as it keeps).
    pub fn new(cap: usize) -> Self {
        Self {
            first: HashMap::new(),
            cap,
        }
    }

    /// Whether relayed `id`, new to this node, is seen alive now that a relay says its
    /// heartbeat is `heartbeat`; remembers the first sighting otherwise (at most `cap` at
    /// once).
    pub fn seen_alive(&mut self, id: &ChitchatId, heartbeat: u64, now: Instant) -> bool {
        match self.first.get(id) {
            Some((first, at)) if now.saturating_duration_since(*at) < FORGET_AFTER => {
                if heartbeat > *first {
                    self.first.remove(id);
                    return true;
                }
                false
            }
            _ => {
                if self.first.len() >= self.cap {
                    self.first
                        .retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
                }
                if self.first.len() < self.cap {
                    self.first.insert(id.clone(), (heartbeat, now));
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(name, generation, ([127, 0, 0, 1], 7946).into())
    }

    #[test]
    fn adopted_only_once_a_higher_heartbeat_is_relayed() {
        let mut s = Sightings::new(16);
        let now = Instant::now();
        let (live, dead) = (id("a", 1), id("b", 1));
        assert!(!s.seen_alive(&live, 100, now));
        assert!(!s.seen_alive(&dead, 500, now));
        // The dead one's heartbeat never moves: never adopted, however often it is relayed.
        for i in 1..10 {
            assert!(!s.seen_alive(&dead, 500, now + Duration::from_secs(i)));
        }
        // An older value relayed late is no sign of life either.
        assert!(!s.seen_alive(&live, 90, now + Duration::from_secs(1)));
        assert!(s.seen_alive(&live, 101, now + Duration::from_secs(1)));
        assert_eq!(s.first.len(), 1);
        // A sighting too old starts over.
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert!(!s.seen_alive(&dead, 501, later));
        assert!(s.seen_alive(&dead, 502, later));
    }

    #[test]
    fn sightings_are_bounded() {
        let mut s = Sightings::new(64);
        let now = Instant::now();
        for g in 0..74 {
            s.seen_alive(&id("x", g), 1, now);
        }
        assert_eq!(s.first.len(), 64);
        // Once the old ones age out, room is made.
        let later = now + FORGET_AFTER;
        assert!(!s.seen_alive(&id("y", 1), 1, later));
        assert_eq!(s.first.len(), 1);
    }
}

//! One line of transport health per peer, whatever the number of connections to it: one per
//! shard with `threads = N`, and two for a moment while one replaces another. A metric
//! labelled by peer must not repeat a label set: the exposition format forbids it, and
//! Prometheus keeps one of the repeated samples and counts the others as errors.
//!
//! The packet counts are counters, so they may not go down while a peer stays connected. A sum
//! over the open connections would (a connection closes, and its share leaves the sum), and
//! Prometheus reads any decrease as a restart and counts the whole remaining value again. So
//! the [`Ledger`] adds what each connection sent since it was last looked at, and keeps a
//! closed connection's share. A connection that closed since the last look is looked at once
//! more, with its last counts: otherwise what it sent after that look, or all it sent if it
//! opened and closed in between, would be missing.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::btree_map::Entry;

use super::PeerStats;

/// A connection's figures, with the ID that tells it from the peer's other connections.
pub(in crate::endpoint) type Sample = (usize, PeerStats);

/// Running packet counts per connected peer. A peer with no open connection left is forgotten
/// (its lines end, as a restarted node's would): the ledger holds only the peers connected now.
#[derive(Debug, Default)]
pub(in crate::endpoint) struct Ledger {
    peers: HashMap<String, Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    lost: u64,
    sent: u64,
    /// Each open connection's counts when last looked at, by connection ID.
    seen: HashMap<usize, (u64, u64)>,
}

impl Ledger {
    /// One entry per peer with an `open` connection, in name order: the slowest round-trip
    /// time, the smallest path MTU, and packets counted since the peer was first seen
    /// connected. `closed` are connections that closed since the last look, with their last
    /// counts: they count for a peer still connected, and make no entry of their own.
    pub(in crate::endpoint) fn merge(
        &mut self,
        open: impl IntoIterator<Item = Sample>,
        closed: impl IntoIterator<Item = Sample>,
    ) -> Vec<PeerStats> {
        let mut merged: BTreeMap<String, PeerStats> = BTreeMap::new();
        // Only the peers and connections seen now are kept for the next look.
        let mut next: HashMap<String, Totals> = HashMap::new();
        for (id, s) in open {
            self.count(&mut next, id, &s);
            match merged.entry(s.peer.clone()) {
                Entry::Vacant(v) => {
                    v.insert(s);
                }
                Entry::Occupied(mut o) => {
                    let m = o.get_mut();
                    m.rtt = m.rtt.max(s.rtt);
                    m.mtu = m.mtu.min(s.mtu);
                }
            }
        }
        for (id, s) in closed {
            // Only for a peer known before and still connected: one forgotten meanwhile starts
            // afresh, and the same ID among the open ones is a newer connection's.
            let counted_now = next.get(&s.peer).map(|t| t.seen.contains_key(&id));
            if counted_now == Some(false) && self.peers.contains_key(&s.peer) {
                self.count(&mut next, id, &s);
            }
        }
        for m in merged.values_mut() {
            if let Some(totals) = next.get(&m.peer) {
                m.lost_packets = totals.lost;
                m.sent_packets = totals.sent;
            }
        }
        self.peers = next;
        merged.into_values().collect()
    }

    /// Adds to `next` what connection `id` counted since it was last looked at.
    fn count(&self, next: &mut HashMap<String, Totals>, id: usize, s: &PeerStats) {
        let before = self.peers.get(&s.peer);
        // A connection's counts only grow: smaller ones under a known ID are a new
        // connection's (quinn's IDs are addresses, which a later connection may reuse).
        let (lost, sent) = before
            .and_then(|t| t.seen.get(&id).copied())
            .filter(|&(lost, sent)| s.lost_packets >= lost && s.sent_packets >= sent)
            .unwrap_or_default();
        let totals = next.entry(s.peer.clone()).or_insert_with(|| Totals {
            lost: before.map_or(0, |t| t.lost),
            sent: before.map_or(0, |t| t.sent),
            seen: HashMap::new(),
        });
        totals.lost = totals.lost.saturating_add(s.lost_packets - lost);
        totals.sent = totals.sent.saturating_add(s.sent_packets - sent);
        totals.seen.insert(id, (s.lost_packets, s.sent_packets));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stats(peer: &str, rtt_ms: u64, lost: u64, sent: u64, mtu: u16) -> PeerStats {
        PeerStats {
            peer: peer.to_owned(),
            addr: ([127, 0, 0, 2], 7420).into(),
            rtt: Duration::from_millis(rtt_ms),
            lost_packets: lost,
            sent_packets: sent,
            mtu,
        }
    }

    fn counts(merged: &[PeerStats]) -> Vec<(&str, u64, u64)> {
        merged
            .iter()
            .map(|s| (s.peer.as_str(), s.lost_packets, s.sent_packets))
            .collect()
    }

    #[test]
    fn each_peer_appears_once_with_its_connections_combined() {
        let mut ledger = Ledger::default();
        let merged = ledger.merge(
            [
                (1, stats("n3", 1, 0, 10, 1452)),
                (2, stats("n2", 2, 1, 100, 8972)),
                (3, stats("n2", 5, 2, 50, 1452)),
                (4, stats("n3", 1, u64::MAX, 1, 1452)),
            ],
            [],
        );
        let names: Vec<&str> = merged.iter().map(|s| s.peer.as_str()).collect();
        assert_eq!(names, ["n2", "n3"]);
        let n2 = &merged[0];
        assert_eq!(n2.rtt, Duration::from_millis(5));
        assert_eq!((n2.lost_packets, n2.sent_packets, n2.mtu), (3, 150, 1452));
        assert_eq!(merged[1].lost_packets, u64::MAX, "a sum saturates");
        assert!(ledger.merge([], []).is_empty());
    }

    #[test]
    fn counts_never_go_down_while_a_peer_stays_connected() {
        let mut ledger = Ledger::default();
        let first = ledger.merge(
            [
                (1, stats("n2", 1, 1, 100, 1452)),
                (2, stats("n2", 1, 2, 50, 1452)),
            ],
            [],
        );
        assert_eq!(counts(&first), [("n2", 3, 150)]);
        // Connection 1 closed; 2 sent 10 more; 3 is new.
        let later = ledger.merge(
            [
                (2, stats("n2", 1, 2, 60, 1452)),
                (3, stats("n2", 1, 0, 5, 1452)),
            ],
            [],
        );
        assert_eq!(counts(&later), [("n2", 3, 165)]);
        // Nothing new: the same counts, not more.
        let again = ledger.merge(
            [
                (2, stats("n2", 1, 2, 60, 1452)),
                (3, stats("n2", 1, 0, 5, 1452)),
            ],
            [],
        );
        assert_eq!(counts(&again), [("n2", 3, 165)]);
        // A new connection under connection 3's ID (its counts are lower): counted whole.
        let reused = ledger.merge(
            [
                (2, stats("n2", 1, 2, 60, 1452)),
                (3, stats("n2", 1, 1, 2, 1452)),
            ],
            [],
        );
        assert_eq!(counts(&reused), [("n2", 4, 167)]);
        // Gone, then back: forgotten meanwhile, counted afresh.
        assert!(ledger.merge([], []).is_empty());
        let back = ledger.merge([(4, stats("n2", 1, 0, 7, 1452))], []);
        assert_eq!(counts(&back), [("n2", 0, 7)]);
    }

    #[test]
    fn a_connection_that_closed_counts_once_with_its_last_counts() {
        let mut ledger = Ledger::default();
        let first = ledger.merge([(1, stats("n2", 1, 1, 100, 1452))], []);
        assert_eq!(counts(&first), [("n2", 1, 100)]);
        // 1 sent 20 more and closed; 2 opened and closed in between; 3 is open.
        let closed = [
            (1, stats("n2", 9, 2, 120, 1280)),
            (2, stats("n2", 9, 0, 30, 1280)),
        ];
        let later = ledger.merge([(3, stats("n2", 2, 0, 5, 1452))], closed.clone());
        assert_eq!(counts(&later), [("n2", 2, 155)]);
        // Closed connections give no figures but their counts: RTT and MTU are the open one's.
        assert_eq!(
            (later[0].rtt, later[0].mtu),
            (Duration::from_millis(2), 1452)
        );
        // Reported closed again (still in its slot): nothing more.
        let again = ledger.merge([(3, stats("n2", 2, 0, 5, 1452))], closed);
        assert_eq!(counts(&again), [("n2", 2, 155)]);
        // The same ID among the open ones is a newer connection's: the closed one's is left.
        let reused = ledger.merge(
            [(3, stats("n2", 2, 0, 6, 1452))],
            [(3, stats("n2", 2, 5, 500, 1452))],
        );
        assert_eq!(counts(&reused), [("n2", 2, 156)]);
        // No entry for a peer with only closed connections, nor counts for one forgotten.
        assert!(
            ledger
                .merge([], [(3, stats("n2", 2, 0, 9, 1452))])
                .is_empty()
        );
        let back = ledger.merge(
            [(4, stats("n2", 1, 0, 7, 1452))],
            [(3, stats("n2", 2, 0, 9, 1452))],
        );
        assert_eq!(counts(&back), [("n2", 0, 7)]);
    }
}

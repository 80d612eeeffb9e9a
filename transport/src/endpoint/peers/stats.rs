//! One line of transport health per peer, whatever the number of connections to it: one per
//! shard with `threads = N`, and two for a moment while one replaces another. A metric
//! labelled by peer must not repeat a label set: the exposition format forbids it, and
//! Prometheus keeps one of the repeated samples and counts the others as errors.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use super::PeerStats;

/// Merges the connections' figures by peer name, in name order: the slowest round-trip time,
/// the smallest path MTU, and the packet counts summed.
pub(in crate::endpoint) fn by_peer(all: impl IntoIterator<Item = PeerStats>) -> Vec<PeerStats> {
    let mut peers: BTreeMap<String, PeerStats> = BTreeMap::new();
    for s in all {
        match peers.entry(s.peer.clone()) {
            Entry::Vacant(v) => {
                v.insert(s);
            }
            Entry::Occupied(mut o) => {
                let m = o.get_mut();
                m.rtt = m.rtt.max(s.rtt);
                m.mtu = m.mtu.min(s.mtu);
                m.lost_packets = m.lost_packets.saturating_add(s.lost_packets);
                m.sent_packets = m.sent_packets.saturating_add(s.sent_packets);
            }
        }
    }
    peers.into_values().collect()
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

    #[test]
    fn each_peer_appears_once_with_its_connections_combined() {
        let merged = by_peer([
            stats("n3", 1, 0, 10, 1452),
            stats("n2", 2, 1, 100, 8972),
            stats("n2", 5, 2, 50, 1452),
            stats("n3", 1, u64::MAX, 1, 1452),
        ]);
        let names: Vec<&str> = merged.iter().map(|s| s.peer.as_str()).collect();
        assert_eq!(names, ["n2", "n3"]);
        let n2 = &merged[0];
        assert_eq!(n2.rtt, Duration::from_millis(5));
        assert_eq!((n2.lost_packets, n2.sent_packets, n2.mtu), (3, 150, 1452));
        assert_eq!(merged[1].lost_packets, u64::MAX, "a sum saturates");
        assert!(by_peer([]).is_empty());
    }
}

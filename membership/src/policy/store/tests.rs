use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use super::*;
use crate::policy::fixtures::{Fixture, n, token_use};
use crate::policy::{Stamp, sign};

#[test]
fn highest_stamp_wins_in_any_order_and_ties_go_to_the_content_hash() {
    let fx = Fixture::new();
    let old = Arc::new(fx.doc("a", fx.stamp(0, 0, "n1"), Some(1)));
    let new = Arc::new(fx.doc("a", fx.stamp(5, 0, "n1"), Some(2)));
    let mut s1 = PolicyStore::new();
    assert_eq!(s1.offer(old.clone()), Offer::New);
    assert_eq!(s1.offer(new.clone()), Offer::Replaced);
    assert_eq!(s1.offer(old.clone()), Offer::Kept);
    let mut s2 = PolicyStore::new();
    s2.offer(new.clone());
    s2.offer(old);
    assert_eq!(s1.effective(), s2.effective());
    assert_eq!(s1.get(Kind::Ratelimit, "a").unwrap().stamp(), new.stamp());

    // Two versions with the very same stamp: the larger content hash wins everywhere.
    let x = Arc::new(fx.doc("b", fx.stamp(9, 0, "n1"), Some(10)));
    let y = Arc::new(fx.doc("b", fx.stamp(9, 0, "n1"), Some(20)));
    let winner = if x.payload_hash() > y.payload_hash() {
        &x
    } else {
        &y
    };
    for order in [[&x, &y], [&y, &x]] {
        let mut s = PolicyStore::new();
        for d in order {
            s.offer((*d).clone());
        }
        assert_eq!(
            s.get(Kind::Ratelimit, "b").unwrap().payload_hash(),
            winner.payload_hash()
        );
    }
}

#[test]
fn a_delete_wins_over_older_versions_and_expires_after_the_retention() {
    let fx = Fixture::new();
    let mut s = PolicyStore::new();
    s.offer(Arc::new(fx.doc("a", fx.stamp(0, 0, "n1"), Some(1))));
    s.offer(Arc::new(fx.doc("a", fx.stamp(10, 0, "n2"), None)));
    assert!(s.effective().is_empty());
    // The old version arriving again changes nothing.
    assert_eq!(
        s.offer(Arc::new(fx.doc("a", fx.stamp(0, 0, "n1"), Some(1)))),
        Offer::Kept
    );
    let retention = Duration::from_secs(3600);
    assert!(s.expire(fx.base_ms + 20, retention).is_empty());
    let gone = s.expire(fx.base_ms + 10 + 3_600_001, retention);
    assert_eq!(gone, [(Kind::Ratelimit, "a".to_string())]);
    assert_eq!(s.winners().count(), 0);
}

#[test]
fn token_uses_are_dropped_once_their_token_has_expired_and_the_grace_passed() {
    let fx = Fixture::new();
    let node = fx.signer(murmur_transport::identity::Role::Node, "n1");
    let expires = fx.base_ms + 10_000;
    let id = "00112233445566778899aabbccddeeff";
    let stamp: Stamp = fx.stamp(0, 0, "n1");
    let value = sign(
        &node,
        Kind::TokenUse,
        &n(id),
        stamp,
        Some(&token_use(id, "n1", expires)),
    )
    .unwrap();
    let mut s = PolicyStore::new();
    s.offer(Arc::new(fx.check(&value).unwrap()));
    s.offer(Arc::new(fx.doc("limit", fx.stamp(0, 0, "n1"), Some(1))));
    let grace = Duration::from_secs(60);
    assert!(s.expire_lapsed(expires + 59_000, grace).is_empty());
    assert_eq!(
        s.expire_lapsed(expires + 61_000, grace),
        vec![(Kind::TokenUse, id.to_owned())]
    );
    // Other documents never lapse.
    assert!(s.get(Kind::Ratelimit, "limit").is_some());
    assert!(s.expire_lapsed(u64::MAX, grace).is_empty());
}

#[test]
fn the_digest_changes_with_content_and_not_with_order() {
    let fx = Fixture::new();
    let a = Arc::new(fx.doc("a", fx.stamp(0, 0, "n1"), Some(1)));
    let b = Arc::new(fx.doc("b", fx.stamp(1, 0, "n2"), Some(1)));
    let mut s1 = PolicyStore::new();
    let mut s2 = PolicyStore::new();
    s1.offer(a.clone());
    assert_ne!(
        s1.effective().digest(),
        PolicyStore::new().effective().digest()
    );
    s1.offer(b.clone());
    s2.offer(b);
    s2.offer(a);
    assert_eq!(s1.effective().digest(), s2.effective().digest());
    assert_eq!(s1.effective().digest().len(), 16);
}

/// A pool of versions of three documents: increasing stamps, equal stamps with different
/// content, the same content signed twice, and deletes.
fn pool() -> &'static [Arc<PolicyDocument>] {
    static POOL: OnceLock<Vec<Arc<PolicyDocument>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let fx = Fixture::new();
        let mut docs = Vec::new();
        for name in ["a", "b", "c"] {
            for (t, origin, rate) in [
                (0, "n1", Some(1)),
                (1, "n2", Some(2)),
                (1, "n3", Some(3)),
                (2, "n1", None),
                (2, "n1", Some(4)),
                (3, "n2", Some(5)),
                (3, "n2", Some(5)),
                (4, "n3", None),
            ] {
                docs.push(Arc::new(fx.doc(name, fx.stamp(t, 0, origin), rate)));
            }
        }
        docs
    })
}

#[derive(Clone, Debug)]
enum Event {
    /// An operator applies a version at a node (persisted before it is acknowledged).
    Apply { node: usize, doc: usize },
    /// One gossip exchange: `to` learns every winner of `from`.
    Gossip { from: usize, to: usize },
    /// A node writes its winning set to disk.
    Persist { node: usize },
    /// A node crashes and restarts from its file, losing what it had not persisted.
    Restart { node: usize },
}

fn event(nodes: usize, docs: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..nodes, 0..docs).prop_map(|(node, doc)| Event::Apply { node, doc }),
        4 => (0..nodes, 0..nodes).prop_map(|(from, to)| Event::Gossip { from, to }),
        1 => (0..nodes).prop_map(|node| Event::Persist { node }),
        1 => (0..nodes).prop_map(|node| Event::Restart { node }),
    ]
}

fn ranks(s: &PolicyStore) -> BTreeMap<DocKey, [u8; 32]> {
    s.winners
        .iter()
        .map(|(k, d)| (k.clone(), *d.payload_hash()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Deliveries in any order, duplicated, interleaved with restarts: once every node has
    /// gossiped with every other, all hold the same winners, and those are the highest-ranked
    /// versions ever applied.
    #[test]
    fn no_interleaving_makes_nodes_diverge(events in proptest::collection::vec(event(4, 24), 0..80)) {
        let docs = pool();
        let mut live = vec![PolicyStore::new(); 4];
        let mut disk = vec![PolicyStore::new(); 4];
        let mut applied = PolicyStore::new();
        for e in events {
            match e {
                Event::Apply { node, doc } => {
                    let d = docs[doc].clone();
                    let before = live[node].get(d.kind(), d.name().as_str()).map(|c| c.rank().0.clone());
                    live[node].offer(d.clone());
                    disk[node] = live[node].clone();
                    applied.offer(d);
                    // A node never goes back to an older version.
                    let after = live[node].get(docs[doc].kind(), docs[doc].name().as_str()).map(|c| c.rank().0.clone());
                    prop_assert!(after >= before);
                }
                Event::Gossip { from, to } => {
                    let winners: Vec<_> = live[from].winners().cloned().collect();
                    for d in winners {
                        live[to].offer(d);
                    }
                }
                Event::Persist { node } => disk[node] = live[node].clone(),
                Event::Restart { node } => live[node] = disk[node].clone(),
            }
        }
        // Anti-entropy until quiet: two full rounds reach everyone.
        for _ in 0..2 {
            for from in 0..4 {
                for to in 0..4 {
                    let winners: Vec<_> = live[from].winners().cloned().collect();
                    for d in winners {
                        live[to].offer(d);
                    }
                }
            }
        }
        for s in &live {
            prop_assert_eq!(ranks(s), ranks(&applied));
            prop_assert_eq!(s.effective().digest().to_owned(), applied.effective().digest().to_owned());
        }
    }
}

//! Consistent hashing with bounded load: a hash ring of the instances (160 points per unit of
//! weight, placed by a hash of the node's name that is the same on every node), and the order
//! in which a request whose key hashes to a point tries them.
//!
//! Every caller builds the same ring from the same instance set (gossip gives every caller the
//! same one), so every caller maps a key to the same instance. Removing one of N instances
//! moves only the keys it held (about 1/N). Bounded load (Mirrokni et al., "Consistent Hashing
//! with Bounded Loads"): an instance already holding more than `load_factor` times the average
//! of this caller's requests in flight is passed over for the next one on the ring, so a hot
//! key cannot pile onto one instance. Pure.

use crate::traffic::actions::hash;

/// An instance as the ring takes it: its node's name and its weight.
pub type Member<'a> = (&'a str, u32);

/// Points per unit of weight.
pub const POINTS: u32 = 160;
/// Weights above this count as this on the ring (a ring stays small).
pub const MAX_WEIGHT: u32 = 16;
/// Instances an order holds at most: the chosen one and fallbacks for retries.
const MAX_ORDER: usize = 8;

/// A ring of instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// `(node, weight)` of each instance, in the order they were offered.
    members: Vec<(String, u32)>,
    /// `(point, member)`, sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// The ring of `offers`.
    pub fn new(offers: &[Member<'_>]) -> Self {
        let members: Vec<(String, u32)> = offers
            .iter()
            .map(|(node, weight)| ((*node).to_owned(), (*weight).clamp(1, MAX_WEIGHT)))
            .collect();
        let mut points = Vec::new();
        for (i, (node, weight)) in members.iter().enumerate() {
            let mut key = node.as_bytes().to_vec();
            key.push(0xff);
            let base = key.len();
            for r in 0..POINTS * weight {
                key.truncate(base);
                key.extend_from_slice(&r.to_le_bytes());
                points.push((hash(&key), i as u32));
            }
        }
        points.sort_unstable();
        Self { members, points }
    }

    /// Whether this is the ring of `offers` (same instances, weights and order).
    pub fn is_of(&self, offers: &[Member<'_>]) -> bool {
        self.members.len() == offers.len()
            && self
                .members
                .iter()
                .zip(offers)
                .all(|((n, w), (node, weight))| n == node && *w == (*weight).clamp(1, MAX_WEIGHT))
    }

    /// Instances (indexes into the offers) in ring order from `key`, each once, as long as
    /// `more` asks for another.
    fn walk(&self, key: u64, mut more: impl FnMut(usize) -> bool) {
        let start = self.points.partition_point(|(p, _)| *p < key);
        let mut seen = vec![false; self.members.len()];
        let (before, after) = self.points.split_at(start);
        for (_, m) in after.iter().chain(before) {
            let m = *m as usize;
            if !std::mem::replace(&mut seen[m], true) && !more(m) {
                return;
            }
        }
    }
}

/// The order in which to try the instances for a request with `key`: the first instance on the
/// ring from `key` that may be chosen (`eligible`) and is under its load bound, then the other
/// eligible ones in ring order (at most 8 in all). `pending[i]` is this caller's requests in
/// flight to instance `i`. The bound of an instance is `load_factor` times the average load
/// after this request, scaled by its weight; the instances' bounds add up to more than the
/// load, so one is always under it.
pub fn order(
    ring: &Ring,
    key: u64,
    pending: &[u32],
    eligible: &[bool],
    load_factor: f64,
) -> Vec<usize> {
    let n = ring.members.len();
    let ok = |i: usize| eligible.get(i).copied().unwrap_or(false);
    let count = (0..n).filter(|i| ok(*i)).count();
    if count == 0 {
        return Vec::new();
    }
    let load: u64 = (0..n)
        .filter(|i| ok(*i))
        .map(|i| u64::from(pending.get(i).copied().unwrap_or(0)))
        .sum();
    let weight: u64 = (0..n)
        .filter(|i| ok(*i))
        .map(|i| u64::from(ring.members[i].1))
        .sum();
    let fits = |i: usize| {
        let share = f64::from(ring.members[i].1) / weight as f64;
        let bound = (load_factor * (load + 1) as f64 * share).ceil();
        f64::from(pending.get(i).copied().unwrap_or(0)) + 1.0 <= bound
    };
    let mut out: Vec<usize> = Vec::with_capacity(count.min(MAX_ORDER));
    let mut chosen: Option<usize> = None;
    ring.walk(key, |i| {
        if ok(i) {
            if chosen.is_none() && fits(i) {
                chosen = Some(out.len());
            }
            out.push(i);
        }
        chosen.is_none() || out.len() < count.min(MAX_ORDER)
    });
    if let Some(c) = chosen {
        let first = out.remove(c);
        out.insert(0, first);
    }
    out.truncate(MAX_ORDER);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn offers(nodes: &[&'static str]) -> Vec<Member<'static>> {
        nodes.iter().map(|n| (*n, 1)).collect()
    }

    fn owner(ring: &Ring, names: &[&str], key: u64) -> String {
        let n = names.len();
        names[order(ring, key, &vec![0; n], &vec![true; n], 1.25)[0]].to_owned()
    }

    #[test]
    fn keys_spread_evenly_and_a_removal_moves_only_the_removed_instances_keys() {
        let five = ["a", "b", "c", "d", "e"];
        let four = ["a", "b", "c", "e"];
        let (r5, r4) = (Ring::new(&offers(&five)), Ring::new(&offers(&four)));
        let keys: Vec<u64> = (0..10_000u32).map(|k| hash(&k.to_le_bytes())).collect();
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        let mut moved = 0;
        for &k in &keys {
            let before = owner(&r5, &five, k);
            let after = owner(&r4, &four, k);
            if before != after {
                moved += 1;
                assert_eq!(before, "d", "only the removed instance's keys move");
            }
            *per.entry(before).or_default() += 1;
        }
        for (node, n) in &per {
            assert!((1500..=2500).contains(n), "{node} holds {n} of 10 000");
        }
        assert_eq!(moved, per["d"]);
        // Built again, or on another node: the same ring.
        assert_eq!(Ring::new(&offers(&five)), r5);
        assert!(r5.is_of(&offers(&five)) && !r5.is_of(&offers(&four)));
    }

    #[test]
    fn orders_table() {
        let names = ["a", "b", "c"];
        let ring = Ring::new(&offers(&names));
        let key = hash(b"user-42");
        let free = order(&ring, key, &[0, 0, 0], &[true; 3], 1.25);
        assert_eq!(free.len(), 3);
        let mut sorted = free.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2], "a permutation");
        let home = free[0];
        // (pending, eligible, load factor, expected first)
        let mut pending = [0u32; 3];
        pending[home] = 10;
        let mut not_home = [true; 3];
        not_home[home] = false;
        let cases: Vec<([u32; 3], [bool; 3], f64, usize)> = vec![
            ([0, 0, 0], [true; 3], 1.25, home),
            // Its instance is loaded far over the average: the next one on the ring.
            (pending, [true; 3], 1.25, free[1]),
            // Loaded, but within a generous bound.
            (pending, [true; 3], 100.0, home),
            // Ejected: the next one, and it is left out.
            ([0, 0, 0], not_home, 1.25, free[1]),
        ];
        for (p, e, factor, first) in cases {
            let o = order(&ring, key, &p, &e, factor);
            assert_eq!(o[0], first, "{p:?} {e:?} {factor}");
            assert!(o.iter().all(|i| e[*i]));
        }
        assert!(order(&ring, key, &[0; 3], &[false; 3], 1.25).is_empty());
        assert!(order(&Ring::default(), key, &[], &[], 1.25).is_empty());
    }

    #[test]
    fn weight_gives_more_of_the_ring() {
        let o = [("heavy", 3), ("light", 1)];
        let ring = Ring::new(&o);
        let heavy = (0..8000u32)
            .filter(|k| order(&ring, hash(&k.to_le_bytes()), &[0, 0], &[true; 2], 1.25)[0] == 0)
            .count();
        assert!((5400..=6600).contains(&heavy), "{heavy} of 8000");
    }
}

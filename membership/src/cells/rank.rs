//! Which members of a cell are its custodians: the `k` live members with the highest
//! rendezvous score for the cell. Every member computes the same ranking from the same
//! membership, and when a custodian goes only its place moves.

use crate::rendezvous;

/// Custodians per cell unless configured otherwise: one acts, one stands by in the top layer.
pub const DEFAULT_CUSTODIANS: usize = 2;

/// The custodians of `cell` among `live` node names, best ranked first: at most `k`.
pub fn custodians<'a>(cell: &str, live: &[&'a str], k: usize) -> Vec<&'a str> {
    // A domain of its own: policy custody ranks nodes for documents with the same hash.
    rendezvous::ranked("cell", cell, live, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_gives_the_same_ranking_and_only_the_departed_moves() {
        let nodes = ["a", "b", "c", "d", "e", "f", "g"];
        let all = custodians("east", &nodes, 3);
        assert_eq!(all.len(), 3);
        let mut shuffled = nodes;
        shuffled.reverse();
        assert_eq!(custodians("east", &shuffled, 3), all);
        let rest: Vec<&str> = nodes.iter().copied().filter(|n| *n != all[0]).collect();
        let after = custodians("east", &rest, 3);
        assert_eq!(after[..2], all[1..]);
        assert!(!after.contains(&all[0]));
        assert_eq!(custodians("east", &["a", "a"], 2), ["a"]);
        assert!(custodians("east", &[], 2).is_empty());
        // Cells rank the same names differently.
        let firsts: std::collections::BTreeSet<&str> = (0..20)
            .map(|i| custodians(&format!("c{i}"), &nodes, 1)[0])
            .collect();
        assert!(firsts.len() > 2);
    }
}

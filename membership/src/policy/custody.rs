//! Which nodes keep republishing a document: the `k` live nodes with the highest rendezvous
//! score for it. Every node computes the same set from the same membership, and when a node
//! goes, only the documents it held move.

use super::Kind;
use crate::rendezvous;

/// The custodians of `(kind, name)` among `live` node names: at most `k`, highest score first.
pub fn custodians<'a>(kind: Kind, name: &str, live: &[&'a str], k: usize) -> Vec<&'a str> {
    rendezvous::ranked(kind.as_str(), name, live, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custodians_are_stable_and_only_the_departed_ones_move() {
        let nodes = ["a", "b", "c", "d", "e", "f"];
        let all = custodians(Kind::Route, "web", &nodes, 3);
        assert_eq!(all.len(), 3);
        let mut shuffled = nodes;
        shuffled.reverse();
        assert_eq!(custodians(Kind::Route, "web", &shuffled, 3), all);
        let gone = all[0];
        let rest: Vec<&str> = nodes.iter().copied().filter(|n| *n != gone).collect();
        let after = custodians(Kind::Route, "web", &rest, 3);
        assert!(all[1..].iter().all(|n| after.contains(n)));
        assert_eq!(custodians(Kind::Route, "web", &["a"], 3), ["a"]);
        // Different documents spread over different nodes.
        let spread: std::collections::BTreeSet<&str> = (0..20)
            .flat_map(|i| custodians(Kind::Authz, &format!("p{i}"), &nodes, 1))
            .collect();
        assert!(spread.len() > 2);
    }
}

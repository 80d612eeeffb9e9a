//! Which nodes keep republishing a document: the `k` live nodes with the highest rendezvous
//! score for it. Every node computes the same set from the same membership, and when a node
//! goes, only the documents it held move.

use ring::digest::{Context, SHA256};

use super::Kind;

/// The custodians of `(kind, name)` among `live` node names: at most `k`, highest score first.
pub fn custodians<'a>(kind: Kind, name: &str, live: &[&'a str], k: usize) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &'a str)> = live.iter().map(|n| (score(kind, name, n), *n)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(k).map(|(_, n)| n).collect()
}

fn score(kind: Kind, name: &str, node: &str) -> u64 {
    let mut ctx = Context::new(&SHA256);
    for part in [kind.as_str(), name, node] {
        ctx.update(part.as_bytes());
        ctx.update(b"\0");
    }
    let d = ctx.finish();
    let mut top = [0u8; 8];
    top.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(top)
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

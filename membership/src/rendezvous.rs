//! Rendezvous (highest random weight) hashing: the `k` nodes with the highest score for a key.
//! Every node computes the same ranking from the same membership, and when a node goes only
//! the keys it ranked for move. Policy custody and cell custodians both rank with it, each in
//! a domain of its own.

use ring::digest::{Context, SHA256};

/// The `k` best ranked of `live` node names for `key` in `domain`, highest score first.
pub fn ranked<'a>(domain: &str, key: &str, live: &[&'a str], k: usize) -> Vec<&'a str> {
    let mut scored: Vec<(u64, &'a str)> =
        live.iter().map(|n| (score(domain, key, n), *n)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(k).map(|(_, n)| n).collect()
}

fn score(domain: &str, key: &str, node: &str) -> u64 {
    let mut ctx = Context::new(&SHA256);
    for part in [domain, key, node] {
        ctx.update(part.as_bytes());
        ctx.update(b"\0");
    }
    let d = ctx.finish();
    let mut top = [0u8; 8];
    top.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(top)
}

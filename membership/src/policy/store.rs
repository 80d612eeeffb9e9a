//! The merge rule: a last-writer-wins map from `(kind, name)` to the winning version.
//!
//! Every node feeds it every verified version it hears of, in whatever order; the winner of a
//! key is the version with the greatest [`PolicyDocument::rank`]. Offering is commutative,
//! associative and idempotent, so any order of arrival, with duplicates, ends in the same map.
//! Deletes are versions too (tombstones) and win the same way; they are dropped only after a
//! retention period, long enough for every older copy to have been superseded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ring::digest::{Context, SHA256};

use super::document::{PolicyDocument, hex};
use super::{Hlc, Kind};

/// The key of a document.
pub type DocKey = (Kind, String);

/// What offering a version did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// First version of this key seen.
    New,
    /// It beat the previous winner.
    Replaced,
    /// The current winner is at least as high: nothing changed.
    Kept,
}

/// The winning version of every document known, tombstones included.
#[derive(Clone, Debug, Default)]
pub struct PolicyStore {
    winners: BTreeMap<DocKey, Arc<PolicyDocument>>,
    clock: Hlc,
}

impl PolicyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one verified version.
    pub fn offer(&mut self, doc: Arc<PolicyDocument>) -> Offer {
        self.clock = self.clock.max(doc.stamp().hlc);
        let key = (doc.kind(), doc.name().to_string());
        match self.winners.get(&key) {
            None => {
                self.winners.insert(key, doc);
                Offer::New
            }
            Some(cur) if doc.rank() > cur.rank() => {
                self.winners.insert(key, doc);
                Offer::Replaced
            }
            Some(_) => Offer::Kept,
        }
    }

    /// The current winner of a key, tombstone or not.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Arc<PolicyDocument>> {
        self.winners.get(&(kind, name.to_owned()))
    }

    /// Every winner, tombstones included, in key order.
    pub fn winners(&self) -> impl Iterator<Item = &Arc<PolicyDocument>> {
        self.winners.values()
    }

    /// The highest stamp clock seen.
    pub fn clock(&self) -> Hlc {
        self.clock
    }

    /// Drops tombstones stamped more than `retention` before `now_ms`; returns their keys.
    pub fn expire(&mut self, now_ms: u64, retention: Duration) -> Vec<DocKey> {
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let horizon = now_ms.saturating_sub(retention_ms);
        let expired: Vec<DocKey> = self
            .winners
            .iter()
            .filter(|(_, d)| d.is_tombstone() && d.stamp().hlc.ms < horizon)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.winners.remove(k);
        }
        expired
    }

    /// Drops documents that stopped mattering more than `grace` before `now_ms` (a token's
    /// use once the token has expired); returns their keys. Every node drops the same ones,
    /// since the expiry is part of the signed body.
    pub fn expire_lapsed(&mut self, now_ms: u64, grace: Duration) -> Vec<DocKey> {
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let lapsed: Vec<DocKey> = self
            .winners
            .iter()
            .filter(|(_, d)| {
                d.body()
                    .and_then(|b| b.expires_ms())
                    .is_some_and(|e| e.saturating_add(grace_ms) < now_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &lapsed {
            self.winners.remove(k);
        }
        lapsed
    }

    /// The effective set: winners that are not deletes.
    pub fn effective(&self) -> PolicySet {
        PolicySet::new(
            self.winners
                .iter()
                .filter(|(_, d)| !d.is_tombstone())
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect(),
        )
    }
}

/// The policy in force: every live document, and a digest that is equal on two nodes exactly
/// when they hold the same documents. Cheap to share (`Arc`).
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    docs: BTreeMap<DocKey, Arc<PolicyDocument>>,
    digest: String,
}

impl PartialEq for PolicySet {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl PolicySet {
    fn new(docs: BTreeMap<DocKey, Arc<PolicyDocument>>) -> Self {
        let digest = digest_of(docs.values().map(|d| d.as_ref()));
        Self { docs, digest }
    }

    /// Hex digest of the set (16 hex digits): equal sets, equal digests.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// One document.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Arc<PolicyDocument>> {
        self.docs.get(&(kind, name.to_owned()))
    }

    /// Every document, in (kind, name) order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<PolicyDocument>> {
        self.docs.values()
    }
}

/// The digest of a set of documents: SHA-256 over kind, name and content hash, in key order.
fn digest_of<'a>(docs: impl Iterator<Item = &'a PolicyDocument>) -> String {
    let mut ctx = Context::new(&SHA256);
    for d in docs {
        ctx.update(d.kind().as_str().as_bytes());
        ctx.update(b"/");
        ctx.update(d.name().as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(d.payload_hash());
    }
    hex(&ctx.finish().as_ref()[..8])
}

#[cfg(test)]
mod tests;

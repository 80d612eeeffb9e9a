//! What the gossip transport counts.

use std::sync::atomic::AtomicU64;

/// Gossip counters, for metrics.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Messages handed to QUIC.
    pub sent: AtomicU64,
    /// Bytes of gossip payload sent (packed, to peers that speak it).
    pub sent_bytes: AtomicU64,
    /// Messages delivered to chitchat.
    pub received: AtomicU64,
    /// Bytes of gossip payload received (packed, from peers that speak it).
    pub received_bytes: AtomicU64,
    /// Messages refused by the prescan, our decoder, the guard or chitchat's decoder.
    pub rejected: AtomicU64,
    /// Messages the guard changed (removed entries or deltas) before chitchat saw them.
    pub filtered: AtomicU64,
    /// Messages dropped because a destination was unreachable or its queue full.
    pub dropped: AtomicU64,
    /// Messages sent packed against a base the peer holds ([`pack`]).
    pub sent_against_base: AtomicU64,
    /// Of those, Syns packed against the sender's roster ([`pack`]): to a peer not exchanged
    /// with yet, which drops them if it knows other members.
    pub sent_against_roster: AtomicU64,
    /// Of the messages rejected, those that named a base this node does not hold: a peer that
    /// restarted, a base evicted, or a roster of members other than ours.
    pub base_missing: AtomicU64,
}

//! The hook through which the layer above checks every gossip message before chitchat applies
//! it: who may speak for whom is a question of records and signatures, which this crate knows
//! nothing of, so the membership layer answers it (see its `guard` module).

use std::net::SocketAddr;

use async_trait::async_trait;

use super::message::Message;
use crate::identity::Name;

/// What a guard decided about one message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The guard removed or changed something: the message is encoded again.
    pub changed: bool,
    /// Nothing is left worth passing to chitchat.
    pub drop: bool,
    /// `from` is an address the sender proved is its own: the connection the message came on
    /// may carry traffic for that address.
    pub from_verified: bool,
}

/// Checks and filters gossip messages before chitchat decodes them.
#[async_trait]
pub trait GossipGuard: Send + Sync + 'static {
    /// Filters `message`, sent by the node `sender` (from its certificate) which claims to
    /// listen at `from`.
    async fn admit(&self, sender: &Name, from: SocketAddr, message: &mut Message) -> Admission;
}

impl std::fmt::Debug for dyn GossipGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipGuard")
    }
}

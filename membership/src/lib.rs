//! Murmuration's cluster model.
//!
//! This crate runs the gossip layer (chitchat, over whatever transport it is given: the mTLS
//! QUIC endpoint in a node, an in-memory network in simulations) and turns what it learns into a
//! typed, deduplicated [`view::ClusterView`]: members, the endpoints of every service, and their
//! health. It persists the last-known view so a node restarted alone still routes.
//!
//! It knows nothing of sockets other than through a chitchat transport, and nothing of HTTP.

pub mod cells;
pub mod driver;
pub mod persist;
pub mod policy;
pub mod records;
pub mod rendezvous;
pub mod trust;
pub mod view;

pub use driver::{
    GossipKeys, GossipSettings, Membership, MembershipConfig, MembershipError, Trust,
};
pub use view::{ClusterView, Endpoint, Member, MemberState, RemoteCell, RemoteView};

//! A member can only speak for itself.
//!
//! Every value a node publishes about itself is signed with its node key for the exact slot it
//! takes ([`signed`]), after its certificate chain, published under `cert` and checked against
//! our trust bundle ([`certs`]). Every gossip message passes [`guard::TrustGuard`] before
//! chitchat applies it: deltas that are not exactly what their node wrote, deltas about this
//! node, unvouched new incarnations and relayed heartbeats beyond what the member can have
//! reached ([`liveness`]) never get in. [`own::OwnKeys`] writes this node's keys.

pub mod certs;
pub mod guard;
pub mod liveness;
pub mod own;
pub mod sightings;
pub mod signed;

pub use guard::{GuardStats, Refusal, TrustGuard};
pub use liveness::Horizon;
pub use own::{OwnKeys, SignError};

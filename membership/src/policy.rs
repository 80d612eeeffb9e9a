//! Policy: signed documents pushed from any node, converging everywhere, outliving their author.
//!
//! A document ([`spec::PolicyBody`], one of six [`Kind`]s) is signed by an operator together
//! with its [`Stamp`] (hybrid logical clock, origin node) and published in gossip under
//! `policy/<kind>/<name>` in the publishing node's own namespace. Every node verifies every
//! copy it hears of ([`document::verify`]: operator chain against the current trust bundle,
//! signature over the exact payload, bounded clock skew, valid body) and merges the survivors
//! with one rule ([`store::PolicyStore`]): per `(kind, name)` the highest stamp wins, ties
//! broken by content hash. Deletes are signed tombstones.
//!
//! Besides the origin, `k` custodians chosen by rendezvous hashing ([`custody`]) republish each
//! winner in their own namespace, so it outlives the origin; every node persists the winning
//! set ([`persist`]) and restores it at start. [`service`] runs all this beside the membership
//! driver and hands out the effective set as an `Arc<PolicySet>` through a watch channel: the
//! data path reads [`PolicyHandle::current`] (one atomic load and a clone of an `Arc`) or
//! waits on [`PolicyHandle::watch`].
//!
//! The pieces other than [`service`] are pure: they take the time as an argument and do no I/O.

pub mod custody;
pub mod document;
pub mod file;
#[cfg(test)]
mod fixtures;
mod hlc;
mod kind;
pub mod persist;
pub mod service;
pub mod spec;
pub mod store;

pub use document::{PolicyDocument, Rejection, SignedDocument, VerifyContext, sign, verify};
pub use file::{FileError, parse_file};
pub use hlc::{Hlc, Stamp};
pub use kind::Kind;
pub use service::{
    ApplyError, ApplyOutcome, ApplyResult, PolicyConfig, PolicyHandle, PolicyStatus,
};
pub use spec::PolicyBody;
pub use store::{PolicySet, PolicyStore};

/// Prefix of policy keys in gossip.
pub const KEY_PREFIX: &str = "policy/";
/// Largest body of one document, as JSON. With the signer's certificate and signature a signed
/// document stays well below the gossip value limit.
pub const MAX_BODY_BYTES: usize = 4096;

/// The gossip key of a document: `policy/<kind>/<name>`.
pub fn key(kind: Kind, name: &str) -> String {
    format!("{KEY_PREFIX}{kind}/{name}")
}

/// Parses a gossip key back into kind and name.
pub fn parse_key(key: &str) -> Option<(Kind, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (kind, name) = rest.split_once('/')?;
    Some((Kind::parse(kind)?, name))
}

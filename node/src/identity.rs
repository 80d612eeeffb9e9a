//! The node's identity beyond its certificate files: issuing certificates for others (an issuer
//! node), joining with a token, renewing its own certificate through any issuer, enforcing
//! revocations, and gossiping its certificate's health so every node can warn about any.
//!
//! - [`join`]: a first certificate from a token, before the node starts.
//! - [`issuer`]: the decisions and signing of an issuer node; [`serve`]: the `Identity`
//!   streams it answers (and the joins a mere seed forwards to an issuer).
//! - [`renew`]: renewal at about half of the remaining life, swapped in without a restart.
//! - [`revocations`]: signed revocation documents applied to handshakes and open connections.
//! - [`record`]: the gossiped identity record; [`warnings`]: which certificates deserve one.
//! - [`self_issue`]: an issuer node without a usable certificate of its own signs one.

pub mod issuer;
pub mod join;
pub mod record;
pub mod renew;
pub mod revocations;
pub mod self_issue;
pub mod serve;
pub mod settings;
pub mod status;
pub mod warnings;

use std::sync::Arc;

pub use self::settings::{IdentitySettings, IssuerFiles, MIN_LEAF_TTL};

/// What the rest of the node reads about identity (the admin API, metrics).
#[derive(Debug)]
pub struct Identity {
    /// This node's issuer, if it is one.
    pub issuer: Option<Arc<issuer::Issuer>>,
    /// How this node's renewals go.
    pub renew: Arc<status::RenewStatus>,
}

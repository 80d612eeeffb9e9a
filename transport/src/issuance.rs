//! Issuance without a central service: any issuer node signs short-lived certificates, for a
//! node presenting an operator-signed join token (its first certificate) or its current
//! certificate (a renewal).
//!
//! The pieces here are the mechanics both sides share: the issuer credential that signs
//! ([`Authority`]), join tokens ([`token`]), the messages of an `Identity` stream ([`protocol`])
//! and one request-answer exchange ([`exchange`]). Deciding *whether* to sign (a token used
//! already, a revoked name) is the node's: it knows the mesh.

mod authority;
pub mod exchange;
pub mod protocol;
pub mod token;

pub use authority::{Authority, Issued};

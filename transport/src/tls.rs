//! Mutual TLS for QUIC with a single crypto provider (*ring*).
//!
//! Every connection is verified both ways against the trust bundle (which may hold several CAs so
//! that a CA can be rotated without downtime, and issuer intermediates below them), and the
//! peer's SPIFFE ID is checked: servers must be nodes, clients nodes or operators of our trust
//! domain, and neither may be revoked. A client may also connect with no certificate at all: such
//! a connection may only ask for one (a node joining with a token; see the endpoint). Credentials and bundle live in a
//! [`TlsState`] that can be swapped at run time; every new handshake sees the new files.
//!
//! Session resumption and 0-RTT are off: a resumed session would skip the chain check against a
//! bundle that may have changed since, and nothing is processed before the client certificate is
//! verified.

mod bundle;
mod reload;
mod revoked;
mod state;
mod verify;

use std::sync::Arc;

pub use bundle::{TrustBundle, Usage};
pub use reload::{CredentialPaths, CredentialWatcher, load_material};
pub use revoked::{Revocations, normalize_serial};
pub use state::{Material, TlsState};
pub(crate) use verify::CurrentCert;
pub use verify::{MeshClientVerifier, MeshServerVerifier};

use crate::certs::CertError;
use crate::identity::SpiffeId;

/// ALPN protocol spoken between nodes. A peer speaking anything else fails the handshake.
pub const ALPN: &[u8] = b"murmur/1";
/// [`ALPN`] plus packed gossip ([`crate::gossip::pack`]): offered first, so two nodes that
/// both speak it use it, and either falls back to [`ALPN`] with a node that does not. Its
/// number moves whenever the packed layout does (`murmur/2` had heartbeats inside the digest,
/// `murmur/3` no rosters): nodes of two layouts then gossip in chitchat's own encoding, never
/// misread each other.
pub const ALPN_PACKED_GOSSIP: &[u8] = b"murmur/4";

/// What a node offers, most preferred first.
pub(crate) fn alpn_protocols(packed_gossip: bool) -> Vec<Vec<u8>> {
    if packed_gossip {
        vec![ALPN_PACKED_GOSSIP.to_vec(), ALPN.to_vec()]
    } else {
        vec![ALPN.to_vec()]
    }
}

/// The one crypto provider of the tree.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why credentials or a peer's certificate were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Reading or parsing a certificate or key failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The chain does not verify against the trust bundle.
    #[error("certificate does not verify against the trust bundle: {0}")]
    Chain(webpki::Error),
    /// The certificate belongs to another trust domain.
    #[error("certificate is for trust domain {found}, this mesh is {expected}")]
    TrustDomain {
        /// The mesh's trust domain.
        expected: String,
        /// The certificate's.
        found: String,
    },
    /// The certificate does not carry the identity it must.
    #[error("certificate identity {found} is not {expected}")]
    WrongIdentity {
        /// What was required.
        expected: String,
        /// What the certificate says.
        found: SpiffeId,
    },
    /// The private key does not belong to the certificate, or cannot sign.
    #[error("private key {0}")]
    Key(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The certificate is revoked.
    #[error("certificate refused: {0}")]
    Revoked(String),
}

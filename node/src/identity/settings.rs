//! What the identity part of a node is configured with (`[identity]` in the config file).

use std::path::PathBuf;
use std::time::Duration;

/// Default lifetime of the certificates an issuer signs.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);
/// Shortest lifetime an issuer may be configured to sign.
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(60);

/// Identity settings of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentitySettings {
    /// An issuer credential (`murmur ca issuer`): this node signs certificates for others.
    pub issuer: Option<IssuerFiles>,
    /// Lifetime of the certificates this node signs as an issuer.
    pub leaf_ttl: Duration,
    /// Whether this node renews its own certificate through the mesh's issuers.
    pub renew: bool,
    /// A join token: the node obtains its first certificate with it.
    pub join_token: Option<PathBuf>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            issuer: None,
            leaf_ttl: DEFAULT_LEAF_TTL,
            renew: true,
            join_token: None,
        }
    }
}

/// The files of an issuer credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerFiles {
    /// The issuer certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
}

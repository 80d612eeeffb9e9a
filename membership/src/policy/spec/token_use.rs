//! `token-use`: a join token was honoured. The issuer node that signed the new certificate
//! records it, signed with its own node certificate; every issuer that has heard of it refuses
//! the token from then on (except to the same key, so a joiner that lost the answer may ask
//! again). Kept until the token has expired: after that no issuer accepts it anyway.

use murmur_transport::identity::Name;
use serde::{Deserialize, Serialize};

use super::common::FieldError;

/// A token's use. The document is named after the token's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenUseSpec {
    /// Document name: the token's id (32 hex digits).
    pub name: Name,
    /// The node the token admitted.
    pub node: Name,
    /// SHA-256 (hex) of the public key the certificate was issued for.
    pub key: String,
    /// The issuer node that honoured it.
    pub issuer: Name,
    /// Serial of the certificate issued.
    pub serial: String,
    /// When the token expires, ms since the epoch: the record is dropped some time after.
    pub expires_ms: u64,
}

impl TokenUseSpec {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !is_hex(self.name.as_str(), 32, 32) {
            return Err(FieldError::new("name", "a token id is 32 hex digits"));
        }
        if !is_hex(&self.key, 64, 64) {
            return Err(FieldError::new("key", "a SHA-256 is 64 hex digits"));
        }
        if !is_hex(&self.serial, 1, 40) {
            return Err(FieldError::new("serial", "1 to 40 hex digits"));
        }
        Ok(())
    }
}

fn is_hex(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

//! Signatures by mesh identities (operators sign policy documents), verified against the trust
//! bundle like a TLS peer: chain, validity, trust domain, role, then the signature itself.

use std::path::Path;
use std::sync::Arc;

use rcgen::{KeyPair, SigningKey};
use rustls::SignatureScheme;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::certs::{CertError, read_certs_pem};
use crate::identity::{Role, SpiffeId};
use crate::tls::{TlsError, TrustBundle, Usage};

/// Why a signature was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signer's certificate does not verify, or names the wrong kind of identity.
    #[error("signer certificate refused: {0}")]
    Signer(#[from] TlsError),
    /// The signer is valid but not of the required role.
    #[error("{found} may not sign this: a {required} identity is required")]
    Role {
        /// Required role.
        required: Role,
        /// The signer.
        found: SpiffeId,
    },
    /// The signature does not match.
    #[error("signature does not match the signed bytes")]
    Mismatch,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A private key and its certificate chain, able to sign.
#[derive(Debug)]
pub struct Signer {
    key: Key,
    chain: Vec<CertificateDer<'static>>,
    id: SpiffeId,
}

/// Where the key lives: read from a PEM file, or the one a TLS endpoint uses now.
#[derive(Debug)]
enum Key {
    Pem(Box<KeyPair>),
    Tls(Arc<dyn rustls::sign::SigningKey>),
}

impl Signer {
    /// Loads a signer from PEM files. The key must be ECDSA P-256 (what `murmur ca init` makes).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let chain = read_certs_pem(cert)?;
        let leaf = chain.first().ok_or_else(|| CertError::BadPem {
            path: cert.to_owned(),
            reason: "no certificate".into(),
        })?;
        let id = crate::certs::parse_leaf(leaf)?.id;
        let key_pair = crate::certs::read_key_pair(key)?;
        if key_pair.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(CertError::BadPem {
                path: key.to_owned(),
                reason: "signing keys must be ECDSA P-256".into(),
            });
        }
        Ok(Self {
            key: Key::Pem(Box::new(key_pair)),
            chain,
            id,
        })
    }

    /// A signer with a TLS endpoint's key and chain (`TlsState::certified`): what a node signs
    /// as itself. The key must be ECDSA P-256, as every mesh key is.
    pub fn from_certified(certified: &CertifiedKey, id: SpiffeId) -> Self {
        Self {
            key: Key::Tls(certified.key.clone()),
            chain: certified.cert.clone(),
            id,
        }
    }

    /// Who signs.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The signer's chain, leaf first, as DER.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// An ECDSA P-256 SHA-256 signature (ASN.1 DER) over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        match &self.key {
            Key::Pem(key) => key
                .sign(msg)
                .map_err(|e| SignatureError::Sign(e.to_string())),
            Key::Tls(key) => key
                .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
                .ok_or_else(|| SignatureError::Sign("the key is not ECDSA P-256".into()))?
                .sign(msg)
                .map_err(|e| SignatureError::Sign(e.to_string())),
        }
    }
}

/// Verifies that `signature` over `msg` was made by the holder of `chain` (leaf first), whose
/// certificate verifies against `bundle` at `now` and has role `role`. Returns the signer.
pub fn verify_signature(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'_>],
    msg: &[u8],
    signature: &[u8],
    role: Role,
    now: UnixTime,
) -> Result<SpiffeId, SignatureError> {
    let info = bundle.verify(chain, Usage::Client, now)?;
    if info.id.role != role {
        return Err(SignatureError::Role {
            required: role,
            found: info.id,
        });
    }
    let leaf = chain
        .first()
        .ok_or(SignatureError::Mismatch)
        .and_then(|c| webpki::EndEntityCert::try_from(c).map_err(|_| SignatureError::Mismatch))?;
    leaf.verify_signature(webpki::ring::ECDSA_P256_SHA256, msg, signature)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(info.id)
}

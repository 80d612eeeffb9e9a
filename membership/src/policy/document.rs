//! Signed documents: what an operator signs, what travels in gossip, and how a node checks it.
//!
//! The signature covers the exact payload bytes (kind, name, stamp and body), so neither the
//! body nor the stamp can be changed without the operator's key. A node accepts a document only
//! if the signer's chain verifies against its current trust bundle, at the stamp's time, with
//! the role its kind requires ([`Kind::signer_role`]: an operator, or for a token's use the
//! issuer node that recorded it).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::identity::{Name, Role, SpiffeId};
use murmur_transport::signing::{Signer, verify_signature};
use murmur_transport::tls::TrustBundle;
use ring::digest::{SHA256, digest};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use super::spec::PolicyBody;
use super::{Hlc, Kind, MAX_BODY_BYTES, Stamp};
use crate::records::{self, RECORD_VERSION};

/// Version of [`Payload`].
pub const PAYLOAD_VERSION: u16 = 1;
/// Prepended to the payload before signing, so a policy signature means nothing elsewhere.
const SIGNING_CONTEXT: &[u8] = b"murmur policy document v1\0";
/// Certificates accepted in a signer's chain.
const MAX_CHAIN: usize = 3;

/// The signed part of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// [`PAYLOAD_VERSION`].
    pub version: u16,
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// Order among versions.
    pub stamp: Stamp,
    /// The body as JSON; `None` deletes the document (a tombstone).
    pub body: Option<String>,
}

/// A payload with its signature and the signer's chain: the gossip value of `policy/<kind>/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDocument {
    /// [`RECORD_VERSION`].
    pub version: u16,
    /// Postcard of a [`Payload`]; the signed bytes.
    pub payload: Vec<u8>,
    /// The signer's certificates, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// ECDSA P-256 SHA-256 signature over the context and the payload.
    pub signature: Vec<u8>,
}

/// Why a document was refused. [`Rejection::code`] is a short label for counters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not a signed document at all, or too large.
    #[error("malformed document: {0}")]
    Malformed(String),
    /// The signature or the signer's chain does not verify.
    #[error("signature refused: {0}")]
    Signature(String),
    /// Signed, but its body is not valid for its kind.
    #[error("invalid {kind} {name:?}: {message}")]
    Invalid {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Stamped further in the future than the allowed clock skew.
    #[error("stamped {ahead_ms} ms in the future (the limit is {max_skew_ms} ms): check clocks")]
    Future {
        /// How far ahead of this node's clock.
        ahead_ms: u64,
        /// The allowed skew.
        max_skew_ms: u64,
    },
    /// Published under a key that names another document.
    #[error("published under key {key:?}, but it is {kind}/{name}")]
    WrongKey {
        /// The key.
        key: String,
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
}

impl Rejection {
    /// A short label: `malformed`, `signature`, `invalid`, `future` or `wrong-key`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Signature(_) => "signature",
            Self::Invalid { .. } => "invalid",
            Self::Future { .. } => "future",
            Self::WrongKey { .. } => "wrong-key",
        }
    }
}

/// A document whose signature, chain and body have been checked.
#[derive(Clone, PartialEq)]
pub struct PolicyDocument {
    kind: Kind,
    name: Name,
    stamp: Stamp,
    body: Option<PolicyBody>,
    signer: SpiffeId,
    payload_hash: [u8; 32],
    envelope_hash: [u8; 32],
    value: Arc<str>,
}

impl fmt::Debug for PolicyDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyDocument")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("stamp", &self.stamp)
            .field("deleted", &self.body.is_none())
            .field("signer", &self.signer.to_string())
            .finish_non_exhaustive()
    }
}

impl PolicyDocument {
    /// Kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Stamp.
    pub fn stamp(&self) -> &Stamp {
        &self.stamp
    }

    /// The body; `None` for a tombstone.
    pub fn body(&self) -> Option<&PolicyBody> {
        self.body.as_ref()
    }

    /// Whether this is a delete.
    pub fn is_tombstone(&self) -> bool {
        self.body.is_none()
    }

    /// Who signed it: an operator, or for a token's use the issuer node.
    pub fn signer(&self) -> &SpiffeId {
        &self.signer
    }

    /// SHA-256 of the signed payload: identifies the content, whoever signed it.
    pub fn payload_hash(&self) -> &[u8; 32] {
        &self.payload_hash
    }

    /// Hex of the first 8 bytes of [`Self::payload_hash`].
    pub fn short_hash(&self) -> String {
        hex(&self.payload_hash[..8])
    }

    /// The encoded gossip value, ready to republish.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The gossip key it is published under: `policy/<kind>/<name>`.
    pub fn key(&self) -> String {
        super::key(self.kind, self.name.as_str())
    }

    /// The order of versions of one document: stamp, then content hash, then (for the same
    /// content signed twice) the envelope hash, so every node keeps the very same bytes.
    pub fn rank(&self) -> (&Stamp, &[u8; 32], &[u8; 32]) {
        (&self.stamp, &self.payload_hash, &self.envelope_hash)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(payload);
    msg
}

/// Why a document could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The key refused to sign.
    #[error(transparent)]
    Signature(#[from] murmur_transport::signing::SignatureError),
    /// The document is too large for gossip.
    #[error("{kind} {name:?}: {source}")]
    TooLarge {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The size problem.
        source: records::RecordError,
    },
}

/// Signs a version of a document (`body` `None`: a delete) stamped `stamp`. Returns the gossip
/// value.
pub fn sign(
    signer: &Signer,
    kind: Kind,
    name: &Name,
    stamp: Stamp,
    body: Option<&PolicyBody>,
) -> Result<String, SignError> {
    let payload = Payload {
        version: PAYLOAD_VERSION,
        kind,
        name: name.to_string(),
        stamp,
        body: body.map(PolicyBody::to_json),
    };
    // Plain data always encodes.
    let payload = postcard::to_stdvec(&payload).unwrap_or_default();
    let signature = signer.sign(&signed_message(&payload))?;
    let doc = SignedDocument {
        version: RECORD_VERSION,
        payload,
        chain: signer.chain().iter().map(|c| c.to_vec()).collect(),
        signature,
    };
    records::encode(&doc).map_err(|source| SignError::TooLarge {
        kind,
        name: name.to_string(),
        source,
    })
}

/// What verification needs besides the document.
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'a> {
    /// The trust bundle now in force.
    pub bundle: &'a TrustBundle,
    /// This node's wall clock, ms since the epoch.
    pub now_ms: u64,
    /// Stamps further ahead than this are refused.
    pub max_skew: Duration,
}

/// Checks a gossip value: shape, size, stamp, signature and chain, then the body.
pub fn verify(value: &str, cx: &VerifyContext<'_>) -> Result<PolicyDocument, Rejection> {
    let doc: SignedDocument =
        records::decode(value).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let payload = decode_payload(&doc.payload)?;
    let name = Name::parse("policy name", &payload.name)
        .map_err(|e| Rejection::Malformed(e.to_string()))?;
    if payload
        .body
        .as_ref()
        .is_some_and(|b| b.len() > MAX_BODY_BYTES)
    {
        return Err(Rejection::Malformed(format!(
            "body over the {MAX_BODY_BYTES}-byte limit"
        )));
    }
    let max_skew_ms = u64::try_from(cx.max_skew.as_millis()).unwrap_or(u64::MAX);
    let ahead_ms = payload.stamp.hlc.ms.saturating_sub(cx.now_ms);
    if ahead_ms > max_skew_ms {
        return Err(Rejection::Future {
            ahead_ms,
            max_skew_ms,
        });
    }
    if payload.kind == Kind::TokenUse && payload.body.is_none() {
        return Err(Rejection::Invalid {
            kind: payload.kind,
            name: name.to_string(),
            message: "a token's use cannot be deleted".into(),
        });
    }
    let signer = check_signature(
        &doc,
        &payload.stamp.hlc,
        payload.kind.signer_role(),
        cx.bundle,
    )?;
    let body = match &payload.body {
        None => None,
        Some(json) => Some(check_body(payload.kind, &name, json)?),
    };
    Ok(PolicyDocument {
        kind: payload.kind,
        name,
        stamp: payload.stamp,
        body,
        signer,
        payload_hash: sha256(&doc.payload),
        envelope_hash: sha256(value.as_bytes()),
        value: value.into(),
    })
}

fn decode_payload(bytes: &[u8]) -> Result<Payload, Rejection> {
    let malformed = |e: postcard::Error| Rejection::Malformed(format!("payload: {e}"));
    let (version, _) = postcard::take_from_bytes::<u16>(bytes).map_err(malformed)?;
    if version != PAYLOAD_VERSION {
        return Err(Rejection::Malformed(format!(
            "payload version {version} is not supported"
        )));
    }
    let (payload, rest) = postcard::take_from_bytes::<Payload>(bytes).map_err(malformed)?;
    if !rest.is_empty() {
        return Err(Rejection::Malformed(
            "trailing bytes after the payload".into(),
        ));
    }
    Ok(payload)
}

fn check_signature(
    doc: &SignedDocument,
    at: &Hlc,
    role: Role,
    bundle: &TrustBundle,
) -> Result<SpiffeId, Rejection> {
    if doc.chain.is_empty() || doc.chain.len() > MAX_CHAIN {
        return Err(Rejection::Signature(format!(
            "a chain of {} certificates (1 to {MAX_CHAIN} expected)",
            doc.chain.len()
        )));
    }
    let chain: Vec<CertificateDer<'_>> = doc
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    // The chain is checked at the stamp's time: a document signed while its signer's certificate
    // was valid stays valid, and every node reaches the same verdict whenever it looks.
    let when = UnixTime::since_unix_epoch(Duration::from_millis(at.ms));
    verify_signature(
        bundle,
        &chain,
        &signed_message(&doc.payload),
        &doc.signature,
        role,
        when,
    )
    .map_err(|e| Rejection::Signature(e.to_string()))
}

fn check_body(kind: Kind, name: &Name, json: &str) -> Result<PolicyBody, Rejection> {
    let invalid = |message: String| Rejection::Invalid {
        kind,
        name: name.to_string(),
        message,
    };
    let body = PolicyBody::from_json(kind, json).map_err(|e| invalid(e.to_string()))?;
    if body.name() != name {
        return Err(invalid(format!(
            "the body is named {:?}, the document {name:?}",
            body.name().as_str()
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests;

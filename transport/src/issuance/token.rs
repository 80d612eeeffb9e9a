//! Join tokens: an operator's signed permission for one node name (and its services) to obtain
//! a first certificate, once, before an expiry.
//!
//! A token is text: `murmur-join-v1.` followed by base64url of a versioned postcard envelope
//! holding the claims, the operator's certificate chain and an ECDSA P-256 signature over a
//! context string and the claims. An issuer verifies the chain against its trust bundle (an
//! operator of the mesh), the signature, the trust domain and the expiry; single use is the
//! issuer's business (token uses travel in gossip).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use crate::identity::{Name, Role, SpiffeId, TrustDomain};
use crate::signing::{SignatureError, Signer, verify_signature};
use crate::tls::TrustBundle;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "murmur-join-v1.";
/// Version of [`Claims`] and [`SignedToken`].
pub const TOKEN_VERSION: u16 = 1;
/// Largest token read.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest validity a token may have: a token is a bearer credential.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Services a token may grant.
pub const MAX_SERVICES: usize = 32;
/// Prepended to the claims before signing, so a token signature means nothing elsewhere.
const SIGNING_CONTEXT: &[u8] = b"murmur join token v1\0";
/// Certificates accepted in the signer's chain.
const MAX_CHAIN: usize = 3;

/// What a token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// [`TOKEN_VERSION`].
    pub version: u16,
    /// Random id (32 lowercase hex digits): what its use is recorded under.
    pub id: String,
    /// The mesh it is for.
    pub trust_domain: TrustDomain,
    /// The one node name it grants.
    pub name: Name,
    /// The services that node may serve.
    pub services: Vec<Name>,
    /// When it was made, ms since the epoch.
    pub issued_ms: u64,
    /// When it stops being accepted, ms since the epoch.
    pub expires_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct SignedToken {
    version: u16,
    claims: Vec<u8>,
    chain: Vec<Vec<u8>>,
    signature: Vec<u8>,
}

/// Why a token was refused (or could not be made).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token, or a damaged one.
    #[error("not a join token ({0}): pass the file `murmur token create` wrote, unchanged")]
    Malformed(String),
    /// The signature or the signer does not verify.
    #[error(
        "the token's signature is refused: {0} (tokens must be signed by an operator of this mesh)"
    )]
    Signature(#[from] SignatureError),
    /// Made for another mesh.
    #[error("the token is for trust domain {found}, this mesh is {expected}")]
    TrustDomain {
        /// This mesh.
        expected: String,
        /// The token's.
        found: String,
    },
    /// Expired.
    #[error("the token expired {ago_s} s ago: create a new one with `murmur token create`")]
    Expired {
        /// Seconds since it expired.
        ago_s: u64,
    },
    /// Asked to make a token that would not be valid.
    #[error("{0}")]
    Invalid(String),
}

/// A token whose signature, signer and expiry were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// What it grants.
    pub claims: Claims,
    /// The operator who signed it.
    pub signer: SpiffeId,
}

/// Makes and signs a token granting `name` and `services` for `ttl` from `now_ms`.
pub fn create(
    signer: &Signer,
    name: Name,
    services: Vec<Name>,
    ttl: Duration,
    now_ms: u64,
) -> Result<(String, Claims), TokenError> {
    if signer.id().role != Role::Operator {
        return Err(TokenError::Invalid(format!(
            "{} is not an operator: tokens are signed with an operator certificate",
            signer.id()
        )));
    }
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return Err(TokenError::Invalid(format!(
            "a token is valid for 1 s to {} days",
            MAX_TOKEN_TTL.as_secs() / 86_400
        )));
    }
    if services.len() > MAX_SERVICES {
        return Err(TokenError::Invalid(format!(
            "at most {MAX_SERVICES} services per token"
        )));
    }
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let claims = Claims {
        version: TOKEN_VERSION,
        id: random_id()?,
        trust_domain: signer.id().trust_domain.clone(),
        name,
        services,
        issued_ms: now_ms,
        expires_ms: now_ms.saturating_add(ttl_ms),
    };
    let bytes = postcard::to_stdvec(&claims).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let signature = signer.sign(&signed_message(&bytes))?;
    let token = SignedToken {
        version: TOKEN_VERSION,
        claims: bytes,
        chain: signer.chain().iter().map(|c| c.to_vec()).collect(),
        signature,
    };
    let body = postcard::to_stdvec(&token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    Ok((
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(body)),
        claims,
    ))
}

/// Reads a token without checking it: what it claims (to tell a user what a file is).
pub fn read_claims(text: &str) -> Result<Claims, TokenError> {
    let token = decode(text)?;
    decode_claims(&token.claims)
}

/// Verifies a token against `bundle` at `now_ms`: an operator of the mesh signed exactly these
/// claims, for this trust domain, and they have not expired.
pub fn verify(text: &str, bundle: &TrustBundle, now_ms: u64) -> Result<VerifiedToken, TokenError> {
    let token = decode(text)?;
    let claims = decode_claims(&token.claims)?;
    if claims.trust_domain != *bundle.trust_domain() {
        return Err(TokenError::TrustDomain {
            expected: bundle.trust_domain().to_string(),
            found: claims.trust_domain.to_string(),
        });
    }
    if token.chain.is_empty() || token.chain.len() > MAX_CHAIN {
        return Err(TokenError::Malformed(format!(
            "a signer chain of {} certificates",
            token.chain.len()
        )));
    }
    let chain: Vec<CertificateDer<'_>> = token
        .chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    // The signer must be valid now, not only when it signed: a token outlives no operator.
    let now = UnixTime::since_unix_epoch(Duration::from_millis(now_ms));
    let signer = verify_signature(
        bundle,
        &chain,
        &signed_message(&token.claims),
        &token.signature,
        Role::Operator,
        now,
    )?;
    if now_ms >= claims.expires_ms {
        return Err(TokenError::Expired {
            ago_s: (now_ms - claims.expires_ms) / 1000,
        });
    }
    Ok(VerifiedToken { claims, signer })
}

fn decode(text: &str) -> Result<SignedToken, TokenError> {
    let text = text.trim();
    if text.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!(
            "{} bytes, more than {MAX_TOKEN_BYTES}",
            text.len()
        )));
    }
    let body = text
        .strip_prefix(TOKEN_PREFIX)
        .ok_or_else(|| TokenError::Malformed(format!("it does not start with {TOKEN_PREFIX}")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| TokenError::Malformed("not base64url".into()))?;
    let (version, _) = postcard::take_from_bytes::<u16>(&bytes)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    if version != TOKEN_VERSION {
        return Err(TokenError::Malformed(format!(
            "token version {version} (this node reads {TOKEN_VERSION})"
        )));
    }
    let (token, rest) = postcard::take_from_bytes::<SignedToken>(&bytes)
        .map_err(|e| TokenError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TokenError::Malformed("trailing bytes".into()));
    }
    Ok(token)
}

fn decode_claims(bytes: &[u8]) -> Result<Claims, TokenError> {
    let (claims, rest) = postcard::take_from_bytes::<Claims>(bytes)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    if !rest.is_empty() || claims.version != TOKEN_VERSION {
        return Err(TokenError::Malformed("claims of another version".into()));
    }
    let id_ok = claims.id.len() == 32
        && claims
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !id_ok || claims.services.len() > MAX_SERVICES {
        return Err(TokenError::Malformed("claims out of bounds".into()));
    }
    Ok(claims)
}

fn signed_message(claims: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + claims.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(claims);
    msg
}

fn random_id() -> Result<String, TokenError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Invalid("no system randomness".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

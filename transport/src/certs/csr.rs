//! Certificate signing requests: the node makes one for its own identity with a key it generates
//! itself (only the request leaves the node); an issuer reads one, checking its signature and
//! every name it asks for before anything is signed.

use std::collections::BTreeSet;

use rcgen::{CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::{Duration, OffsetDateTime};

use super::CertError;
use super::issue::{MIN_VALIDITY, leaf_params, set_validity};
use crate::identity::{Name, SpiffeId};

/// Largest request read (a P-256 request with a few names is well under 1 KiB).
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// A new key pair (ECDSA P-256) and a request (DER) for a certificate naming `id` and
/// `services`, signed with it.
pub fn make_request(id: &SpiffeId, services: &[Name]) -> Result<(KeyPair, Vec<u8>), CertError> {
    let key = KeyPair::generate()?;
    let der = request_for(&key, id, services)?;
    Ok((key, der))
}

/// A request (DER) for `id` and `services`, signed with `key`.
pub fn request_for(key: &KeyPair, id: &SpiffeId, services: &[Name]) -> Result<Vec<u8>, CertError> {
    let mut p: CertificateParams = leaf_params(id, services)?;
    // Only the names travel; the issuer decides everything else.
    p.key_usages = Vec::new();
    p.extended_key_usages = Vec::new();
    p.is_ca = IsCa::NoCa;
    p.use_authority_key_identifier_extension = false;
    Ok(p.serialize_request(key)?.der().to_vec())
}

/// Why a request was refused. Every message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not a certificate request, or one with an extension we do not sign.
    #[error("the certificate request is unreadable: {0}")]
    Unreadable(String),
    /// The request's signature does not match its key.
    #[error("the certificate request's signature does not match its public key")]
    Signature,
    /// A key of another kind than ECDSA P-256.
    #[error("the certificate request uses {0}; only ECDSA P-256 keys are signed")]
    KeyAlgorithm(String),
    /// It asks for a CA certificate, or for the right to sign certificates.
    #[error(
        "the certificate request asks to be a certificate authority (CA:TRUE or keyCertSign); only leaf certificates are issued"
    )]
    AsksForCa,
    /// No SPIFFE ID, or more than one.
    #[error("the certificate request must name exactly one SPIFFE ID (URI SAN), it names {0}")]
    SpiffeIds(usize),
    /// It asks for another identity than the one granted.
    #[error("the certificate request is for {asked}, but this request may only obtain {granted}")]
    WrongIdentity {
        /// What the request names.
        asked: String,
        /// What may be issued.
        granted: String,
    },
    /// It asks for names the grant does not include.
    #[error("the certificate request asks for names it may not have: {}", .0.join(", "))]
    ExtraNames(Vec<String>),
}

/// A request whose signature verified, with what it asks for.
#[derive(Debug)]
pub struct ReadRequest {
    /// The request as rcgen reads it (its public key signs the certificate).
    pub(super) inner: CertificateSigningRequestParams,
    /// SHA-256 of the requested public key, hex: the same holder asks again with the same key.
    pub key_hash: String,
}

/// Reads a request and checks that it asks for exactly `id` and at most `services`: one URI SAN
/// naming `id`, DNS names among the node's own and its services', nothing else, and no CA.
pub fn read_request(
    der: &[u8],
    id: &SpiffeId,
    services: &BTreeSet<Name>,
) -> Result<ReadRequest, CsrError> {
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::Unreadable(format!(
            "{} bytes, more than the {MAX_CSR_BYTES} allowed",
            der.len()
        )));
    }
    let inner = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
        .map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => CsrError::Signature,
            other => CsrError::Unreadable(other.to_string()),
        })?;
    if inner.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(CsrError::KeyAlgorithm(format!(
            "{:?}",
            inner.public_key.algorithm()
        )));
    }
    let p = &inner.params;
    if matches!(p.is_ca, IsCa::Ca(_))
        || p.key_usages.iter().any(|k| {
            matches!(
                k,
                rcgen::KeyUsagePurpose::KeyCertSign | rcgen::KeyUsagePurpose::CrlSign
            )
        })
    {
        return Err(CsrError::AsksForCa);
    }
    check_names(&p.subject_alt_names, id, services)?;
    let key_hash = hex(&ring::digest::digest(
        &ring::digest::SHA256,
        rcgen::PublicKeyData::der_bytes(&inner.public_key),
    ));
    Ok(ReadRequest { inner, key_hash })
}

/// Signs a leaf for `id` and `services` over the public key of `req`, valid for `validity` but
/// never past `cap` (the issuer's own expiry). Everything but the key comes from here: whatever
/// else the request asked for (CA, key usages, validity) is not copied.
pub fn sign_request(
    issuer: &Issuer<'_, KeyPair>,
    req: &ReadRequest,
    id: &SpiffeId,
    services: &[Name],
    validity: std::time::Duration,
    cap: std::time::SystemTime,
) -> Result<CertificateDer<'static>, CertError> {
    let mut p = leaf_params(id, services)?;
    set_validity(&mut p, validity)?;
    let cap = cap
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .ok_or_else(|| CertError::Shape("the issuer's expiry is out of range".into()))?;
    if cap < p.not_after {
        let min = Duration::try_from(MIN_VALIDITY).unwrap_or(Duration::ZERO);
        if cap - OffsetDateTime::now_utc() < min {
            return Err(CertError::Refused(
                "the issuer certificate expires too soon to sign anything: renew it".into(),
            ));
        }
        p.not_after = cap;
    }
    let cert = p.signed_by(&req.inner.public_key, issuer)?;
    Ok(cert.der().clone())
}

fn check_names(sans: &[SanType], id: &SpiffeId, services: &BTreeSet<Name>) -> Result<(), CsrError> {
    let uris: Vec<String> = sans
        .iter()
        .filter_map(|s| match s {
            SanType::URI(u) => Some(u.as_str().to_owned()),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(CsrError::SpiffeIds(uris.len()));
    };
    if *uri != id.to_string() {
        return Err(CsrError::WrongIdentity {
            asked: uri.clone(),
            granted: id.to_string(),
        });
    }
    let td = &id.trust_domain;
    let mut allowed: BTreeSet<String> = services.iter().map(|s| td.service_dns_name(s)).collect();
    allowed.insert(td.node_dns_name(&id.name));
    let extra: Vec<String> = sans
        .iter()
        .filter_map(|s| match s {
            SanType::URI(_) => None,
            SanType::DnsName(d) if allowed.contains(d.as_str()) => None,
            SanType::DnsName(d) => Some(format!("DNS:{}", d.as_str())),
            SanType::IpAddress(ip) => Some(format!("IP:{ip}")),
            SanType::Rfc822Name(m) => Some(format!("email:{}", m.as_str())),
            other => Some(format!("{other:?}")),
        })
        .collect();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(CsrError::ExtraNames(extra))
    }
}

fn hex(digest: &ring::digest::Digest) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

//! `murmur ca issuer`: an intermediate CA for an issuer node, signed by the offline root.
//!
//! The intermediate may sign leaves only (path length 0), and only DNS names inside the trust
//! domain (a DNS name constraint; webpki enforces it on every chain). It carries no URI name
//! constraint: rustls-webpki fails closed on any (RUSTSEC-2026-0098), and DNS constraints do not
//! bind URI SANs, so the trust domain of every peer's SPIFFE ID is checked by
//! [`crate::tls::TrustBundle::verify`] after chain verification instead.

use std::path::PathBuf;
use std::time::{Duration as StdDuration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose as Ku, NameConstraints, SanType,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::issue::{
    BACKDATE, CA_CERT, MIN_VALIDITY, create_dir, ia5, load_issuer, random_serial, refuse_existing,
};
use super::{CertError, read_first_cert, write_private_file, write_public_file};
use crate::identity::{Name, TrustDomain};

/// What `murmur ca issuer` makes.
#[derive(Clone, Debug)]
pub struct IssuerInit {
    /// Directory holding the root's `ca.crt` and `ca.key`.
    pub ca_dir: PathBuf,
    /// Name of the issuer (usually the node that will hold it).
    pub name: Name,
    /// How long the issuer certificate is valid.
    pub validity: StdDuration,
    /// Directory receiving `<name>-issuer.crt` and `<name>-issuer.key`.
    pub out_dir: PathBuf,
    /// Overwrite existing files.
    pub force: bool,
}

/// The files `ca issuer` wrote.
#[derive(Clone, Debug)]
pub struct IssuerFiles {
    /// The issuer certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The trust domain it may sign for.
    pub trust_domain: TrustDomain,
    /// When it expires.
    pub not_after: SystemTime,
}

/// Makes an issuer certificate and key signed by the root in `req.ca_dir`.
pub fn init_issuer(req: &IssuerInit) -> Result<IssuerFiles, CertError> {
    let cert = req.out_dir.join(format!("{}-issuer.crt", req.name));
    let key = req.out_dir.join(format!("{}-issuer.key", req.name));
    refuse_existing(&[&cert, &key], req.force)?;
    let root_der = read_first_cert(&req.ca_dir.join(CA_CERT))?;
    let root_not_after = check_root(&root_der)?;
    let (root, td) = load_issuer(&req.ca_dir)?;
    let params = issuer_params(&td, &req.name, req.validity, root_not_after)?;
    let not_after = to_system_time(params.not_after);
    let issuer = CertifiedIssuer::signed_by(params, KeyPair::generate()?, &root)?;
    create_dir(&req.out_dir)?;
    write_private_file(&key, issuer.key().serialize_pem().as_bytes())?;
    write_public_file(&cert, issuer.pem().as_bytes())?;
    Ok(IssuerFiles {
        cert,
        key,
        trust_domain: td,
        not_after,
    })
}

/// The root must be allowed to sign an intermediate; returns its expiry.
fn check_root(der: &[u8]) -> Result<OffsetDateTime, CertError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertError::Shape(format!("the root is not a DER certificate: {e}")))?;
    let constraints = cert
        .basic_constraints()
        .map_err(|e| CertError::Shape(format!("the root's basicConstraints: {e}")))?;
    match constraints.map(|c| c.value) {
        Some(bc) if bc.ca && bc.path_len_constraint != Some(0) => {}
        Some(bc) if bc.ca => {
            return Err(CertError::Refused(
                "this root was made with path length 0 (by `murmur ca init` before issuers \
                 existed), so it cannot sign an issuer: make a new root with `murmur ca init`, \
                 and rotate to it with a two-CA bundle (docs/identity.md)"
                    .into(),
            ));
        }
        _ => return Err(CertError::Shape("ca.crt is not a CA certificate".into())),
    }
    Ok(cert.validity().not_after.to_datetime())
}

fn issuer_params(
    td: &TrustDomain,
    name: &Name,
    validity: StdDuration,
    root_not_after: OffsetDateTime,
) -> Result<CertificateParams, CertError> {
    if validity < MIN_VALIDITY {
        return Err(CertError::Refused(format!(
            "validity must be at least {} s",
            MIN_VALIDITY.as_secs()
        )));
    }
    let now = OffsetDateTime::now_utc();
    let not_after = time::Duration::try_from(validity)
        .ok()
        .and_then(|v| now.checked_add(v))
        .ok_or_else(|| CertError::Shape("validity is too long".into()))?;
    if not_after > root_not_after {
        return Err(CertError::Refused(format!(
            "the issuer would outlive the root, which expires {root_not_after}: choose a shorter \
             --ttl"
        )));
    }
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    p.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(td.to_string())],
        excluded_subtrees: vec![],
    });
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(
        DnType::CommonName,
        format!("Murmuration issuer {name} ({td})"),
    );
    p.distinguished_name
        .push(DnType::OrganizationName, "Murmuration");
    // A SPIFFE signing certificate may name its trust domain, with no path.
    p.subject_alt_names = vec![SanType::URI(ia5(&format!("spiffe://{td}"))?)];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    p.not_after = not_after;
    p.serial_number = Some(random_serial()?);
    Ok(p)
}

fn to_system_time(t: OffsetDateTime) -> SystemTime {
    let secs = u64::try_from(t.unix_timestamp()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + StdDuration::from_secs(secs)
}

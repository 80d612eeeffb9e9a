//! Reading the identity out of a DER certificate.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CertError;
use crate::identity::{Name, PeerIdentity, Role, SpiffeId, TrustDomain};

/// What a Murmuration leaf certificate says about its holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The single SPIFFE ID (URI SAN).
    pub id: SpiffeId,
    /// Every DNS SAN.
    pub dns_names: Vec<String>,
    /// Services named by `<service>.svc.<trust-domain>` DNS SANs.
    pub services: BTreeSet<Name>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Serial number in hex.
    pub serial: String,
    /// Issuer distinguished name.
    pub issuer: String,
}

impl CertInfo {
    /// The identity a peer proves with this certificate.
    pub fn peer_identity(&self) -> PeerIdentity {
        PeerIdentity {
            id: self.id.clone(),
            services: self.services.clone(),
            not_after: self.not_after,
            serial: self.serial.clone(),
            issuer_serials: Vec::new(),
        }
    }
}

/// The serial (hex, no colons) of any DER certificate, if it parses.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.raw_serial_as_string().replace(':', ""))
}

/// Parses a leaf certificate and checks the SPIFFE X.509-SVID rules Murmuration relies on:
/// exactly one URI SAN naming a node or operator, and `cA` not set.
pub fn parse_leaf(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertError::Shape(format!("not a DER X.509 certificate: {e}")))?;
    if cert.is_ca() {
        return Err(CertError::Shape(
            "it is a CA certificate, not a node or operator certificate".into(),
        ));
    }
    let (uris, dns_names) = san_names(&cert)?;
    let [uri] = uris.as_slice() else {
        return Err(CertError::Shape(format!(
            "a SPIFFE certificate has exactly one URI SAN, this one has {}",
            uris.len()
        )));
    };
    let id: SpiffeId = uri.parse()?;
    let services = services_from_dns(&id, &dns_names);
    Ok(CertInfo {
        id,
        dns_names,
        services,
        not_before: to_system_time(cert.validity().not_before.timestamp()),
        not_after: to_system_time(cert.validity().not_after.timestamp()),
        serial: cert.raw_serial_as_string().replace(':', ""),
        issuer: cert.issuer().to_string(),
    })
}

/// The trust domain a CA certificate names in its `spiffe://<trust-domain>` URI SAN.
pub fn ca_trust_domain(der: &[u8]) -> Result<TrustDomain, CertError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertError::Shape(format!("not a DER X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CertError::Shape("expected a CA certificate".into()));
    }
    let (uris, _) = san_names(&cert)?;
    let td = uris
        .iter()
        .find_map(|u| u.strip_prefix("spiffe://"))
        .ok_or_else(|| CertError::Shape("the CA names no spiffe:// trust domain".into()))?;
    Ok(TrustDomain::parse(td.trim_end_matches('/'))?)
}

fn san_names(cert: &X509Certificate<'_>) -> Result<(Vec<String>, Vec<String>), CertError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| CertError::Shape(format!("unreadable subjectAltName: {e}")))?;
    let mut uris = Vec::new();
    let mut dns = Vec::new();
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_owned()),
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    Ok((uris, dns))
}

fn services_from_dns(id: &SpiffeId, dns_names: &[String]) -> BTreeSet<Name> {
    if id.role != Role::Node {
        return BTreeSet::new();
    }
    let suffix = format!(".svc.{}", id.trust_domain);
    dns_names
        .iter()
        .filter_map(|d| d.strip_suffix(&suffix))
        .filter_map(|s| Name::parse("service name", s).ok())
        .collect()
}

fn to_system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

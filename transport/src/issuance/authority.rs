//! An issuer credential in use: the intermediate certificate `murmur ca issuer` made and its key,
//! checked once against the trust bundle, signing certificate requests for what a caller has
//! proven it may have.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certs::{
    CertError, CertInfo, ReadRequest, make_request, read_first_cert, read_key_pair, read_request,
    sign_request,
};
use crate::identity::{Name, SpiffeId};
use crate::tls::{TlsError, TrustBundle, Usage};

/// An issuer credential: it signs leaves of its trust domain.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    not_after: SystemTime,
    serial: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A certificate just issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Leaf first, then the issuer certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// What the leaf says.
    pub info: CertInfo,
}

impl Authority {
    /// Loads the issuer certificate (the first of `cert`) and its key (`key`), and checks them
    /// with `bundle` by issuing a probe certificate through the very path requests take.
    pub fn load(cert: &Path, key: &Path, bundle: &TrustBundle) -> Result<Self, TlsError> {
        let der = read_first_cert(cert)?;
        let key_pair = read_key_pair(key)?;
        Self::new(der, key_pair, bundle)
    }

    /// An authority from an issuer certificate and its key.
    pub fn new(
        cert: CertificateDer<'static>,
        key: KeyPair,
        bundle: &TrustBundle,
    ) -> Result<Self, TlsError> {
        let (not_after, serial) = check_shape(&cert)?;
        let issuer = Issuer::from_ca_cert_der(&cert, key)
            .map_err(|e| CertError::Shape(format!("not a usable issuer certificate: {e}")))?;
        let this = Self {
            issuer,
            cert,
            not_after,
            serial,
        };
        this.probe(bundle)?;
        Ok(this)
    }

    /// When the issuer certificate expires: nothing it signs outlives it.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The issuer certificate's serial (hex).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The issuer certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Signs `req` for `id` and `services` (what the caller proved it may have), valid for
    /// `validity` or until the issuer expires, and checks the result with `bundle` as a peer
    /// would.
    pub fn sign(
        &self,
        req: &ReadRequest,
        id: &SpiffeId,
        services: &BTreeSet<Name>,
        validity: Duration,
        bundle: &TrustBundle,
    ) -> Result<Issued, TlsError> {
        let services: Vec<Name> = services.iter().cloned().collect();
        let leaf = sign_request(&self.issuer, req, id, &services, validity, self.not_after)?;
        let chain = vec![leaf, self.cert.clone()];
        let info = bundle.verify(&chain, Usage::Server, UnixTime::now())?;
        Ok(Issued { chain, info })
    }

    /// Issues a throw-away certificate and verifies it: the key matches, the certificate chains
    /// to the bundle, its constraints allow our names and it is within its validity.
    fn probe(&self, bundle: &TrustBundle) -> Result<(), TlsError> {
        let id = SpiffeId::node(
            bundle.trust_domain().clone(),
            Name::parse("name", "issuer-probe").map_err(CertError::from)?,
        );
        let (_, der) = make_request(&id, &[])?;
        let req = read_request(&der, &id, &BTreeSet::new())
            .map_err(|e| CertError::Shape(e.to_string()))?;
        self.sign(
            &req,
            &id,
            &BTreeSet::new(),
            crate::certs::MIN_VALIDITY,
            bundle,
        )
        .map(|_| ())
        .map_err(|e| match e {
            TlsError::Chain(_) | TlsError::TrustDomain { .. } => TlsError::Cert(CertError::Shape(
                format!("certificates this issuer signs are refused by the trust bundle: {e}"),
            )),
            other => other,
        })
    }
}

/// An issuer certificate is a CA that may sign leaves only; returns its expiry and serial.
fn check_shape(der: &[u8]) -> Result<(SystemTime, String), CertError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| CertError::Shape(format!("not a DER X.509 certificate: {e}")))?;
    let bc = cert
        .basic_constraints()
        .map_err(|e| CertError::Shape(format!("unreadable basicConstraints: {e}")))?
        .map(|b| b.value.clone());
    match bc {
        Some(b) if b.ca && b.path_len_constraint == Some(0) => {}
        _ => {
            return Err(CertError::Shape(
                "not an issuer certificate (a CA with path length 0): make one with `murmur ca \
                 issuer`"
                    .into(),
            ));
        }
    }
    let secs = u64::try_from(cert.validity().not_after.timestamp()).unwrap_or(0);
    Ok((
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        cert.raw_serial_as_string().replace(':', ""),
    ))
}

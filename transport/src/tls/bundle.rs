//! The trust bundle: the CAs a node trusts, and chain verification against them.

use std::path::Path;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::TlsError;
use crate::certs::{CertError, CertInfo, parse_leaf, read_certs_pem};
use crate::identity::TrustDomain;

/// What a certificate is being verified for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A server (node accepting a connection).
    Server,
    /// A client (node or operator opening a connection), or a signer.
    Client,
}

/// The CAs of a mesh, all for one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    certs: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// Builds a bundle from CA certificates.
    pub fn new(
        trust_domain: TrustDomain,
        certs: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let anchors = certs
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(TlsError::Chain)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            trust_domain,
            certs,
            anchors,
        })
    }

    /// Reads every CA of a PEM file.
    pub fn load(path: &Path, trust_domain: TrustDomain) -> Result<Self, TlsError> {
        let certs = read_certs_pem(path)?;
        Self::new(trust_domain, certs).map_err(|e| {
            TlsError::Cert(CertError::BadPem {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        })
    }

    /// The mesh's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificates.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Verifies `chain` (leaf first) for `usage` at `now` and returns what the leaf says.
    /// The leaf must be of this bundle's trust domain.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        usage: Usage,
        now: UnixTime,
    ) -> Result<CertInfo, TlsError> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| TlsError::Cert(CertError::Shape("empty certificate chain".into())))?;
        let ee = EndEntityCert::try_from(leaf).map_err(TlsError::Chain)?;
        let usage = match usage {
            Usage::Server => KeyUsage::server_auth(),
            Usage::Client => KeyUsage::client_auth(),
        };
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(TlsError::Chain)?;
        let info = parse_leaf(leaf)?;
        if info.id.trust_domain != self.trust_domain {
            return Err(TlsError::TrustDomain {
                expected: self.trust_domain.to_string(),
                found: info.id.trust_domain.to_string(),
            });
        }
        Ok(info)
    }
}

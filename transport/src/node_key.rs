//! Signing with the node's own TLS key, for what the node publishes about itself in gossip
//! (the membership layer signs every value, so no relay can alter it), and checking such a
//! signature against the certificate that carries the public key.

use rustls::SignatureScheme;
use rustls_pki_types::CertificateDer;

use crate::tls::TlsState;

/// Schemes a node key may sign gossip with, in order of preference.
const SCHEMES: &[SignatureScheme] = &[
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ED25519,
];

/// A signature made with the node's current key, and the chain that proves the key.
#[derive(Debug)]
pub struct NodeSignature {
    /// The signature (ASN.1 DER for ECDSA).
    pub signature: Vec<u8>,
    /// The certificate chain in use when signing, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl TlsState {
    /// Signs `msg` with the node's current private key.
    pub fn sign_as_node(&self, msg: &[u8]) -> Result<NodeSignature, String> {
        let snap = self.snapshot();
        let signer = snap
            .certified
            .key
            .choose_scheme(SCHEMES)
            .ok_or("the node key is neither ECDSA P-256 nor Ed25519: it cannot sign gossip")?;
        let signature = signer.sign(msg).map_err(|e| e.to_string())?;
        Ok(NodeSignature {
            signature,
            chain: snap.certified.cert.clone(),
        })
    }

    /// Whether the node's current certificate names `service`: after a rotation that dropped
    /// a service, peers that cached the old certificate may still send it traffic.
    pub fn certifies_service(&self, service: &str) -> bool {
        self.snapshot()
            .info
            .services
            .iter()
            .any(|s| s.as_str() == service)
    }

    /// The node's current certificate chain, leaf first.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.snapshot().certified.cert.clone()
    }
}

/// Whether `signature` over `msg` was made by the key of the certificate `leaf` (any scheme
/// [`TlsState::sign_as_node`] may use). The certificate itself is not checked here.
pub fn verify_node_signature(leaf: &CertificateDer<'_>, msg: &[u8], signature: &[u8]) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    [webpki::ring::ECDSA_P256_SHA256, webpki::ring::ED25519]
        .into_iter()
        .any(|alg| cert.verify_signature(alg, msg, signature).is_ok())
}

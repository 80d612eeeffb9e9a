//! Live TLS state: this node's certificate and key, and the trust bundle, swappable at run time.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::{Revocations, TlsError, TrustBundle, Usage, provider};
use crate::certs::CertInfo;
use crate::identity::SpiffeId;

/// Certificate chain, key and bundle as read from disk, not yet checked.
#[derive(Debug)]
pub struct Material {
    /// Our chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Our private key.
    pub key: PrivateKeyDer<'static>,
    /// The CAs we trust.
    pub bundle: TrustBundle,
}

/// Checked credentials in use now.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) certified: Arc<CertifiedKey>,
    pub(crate) info: CertInfo,
    pub(crate) bundle: TrustBundle,
}

/// The TLS credentials and trust bundle of an endpoint. Handshakes read the current snapshot,
/// so [`TlsState::replace`] takes effect for every new connection at once.
#[derive(Debug)]
pub struct TlsState {
    provider: Arc<CryptoProvider>,
    identity: SpiffeId,
    current: RwLock<Arc<Snapshot>>,
    revoked: RwLock<Arc<Revocations>>,
}

impl TlsState {
    /// Checks `material` and makes it current. The leaf must verify against the bundle and name
    /// `identity`; the key must match the certificate.
    pub fn new(identity: SpiffeId, material: Material) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let snapshot = check(&provider, &identity, material)?;
        Ok(Arc::new(Self {
            provider,
            identity,
            current: RwLock::new(Arc::new(snapshot)),
            revoked: RwLock::default(),
        }))
    }

    /// Replaces the credentials after the same checks as [`TlsState::new`]; on error the old
    /// ones stay in use.
    pub fn replace(&self, material: Material) -> Result<CertInfo, TlsError> {
        let snapshot = check(&self.provider, &self.identity, material)?;
        let info = snapshot.info.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        Ok(info)
    }

    /// Whether `material` holds exactly the credentials in use now (same chain, same bundle):
    /// a reload of files this node just wrote itself changes nothing.
    pub fn is_current(&self, material: &Material) -> bool {
        let snap = self.snapshot();
        snap.certified.cert == material.chain && snap.bundle.certs() == material.bundle.certs()
    }

    /// Replaces the revocations every handshake checks. Returns whether they changed.
    pub fn set_revocations(&self, revocations: Revocations) -> bool {
        let mut cur = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        if **cur == revocations {
            return false;
        }
        *cur = Arc::new(revocations);
        true
    }

    /// The revocations in force.
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This node's current key and certificate chain, to sign with (see
    /// `signing::Signer::from_certified`).
    pub fn certified(&self) -> (Arc<CertifiedKey>, SpiffeId) {
        let snap = self.snapshot();
        (snap.certified.clone(), snap.info.id.clone())
    }

    /// The identity this endpoint proves.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// What our current certificate says.
    pub fn local_cert(&self) -> CertInfo {
        self.snapshot().info.clone()
    }

    /// The current trust bundle.
    pub fn bundle(&self) -> TrustBundle {
        self.snapshot().bundle.clone()
    }

    /// The crypto provider.
    pub fn crypto(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn check(
    provider: &CryptoProvider,
    identity: &SpiffeId,
    material: Material,
) -> Result<Snapshot, TlsError> {
    let usage = match identity.role {
        crate::identity::Role::Node => Usage::Server,
        crate::identity::Role::Operator => Usage::Client,
    };
    let info = material
        .bundle
        .verify(&material.chain, usage, UnixTime::now())?;
    if &info.id != identity {
        return Err(TlsError::WrongIdentity {
            expected: identity.to_string(),
            found: info.id,
        });
    }
    let key = provider
        .key_provider
        .load_private_key(material.key)
        .map_err(|e| TlsError::Key(format!("cannot be used: {e}")))?;
    let certified = CertifiedKey::new(material.chain, key);
    certified
        .keys_match()
        .map_err(|e| TlsError::Key(format!("does not match the certificate: {e}")))?;
    Ok(Snapshot {
        certified: Arc::new(certified),
        info,
        bundle: material.bundle,
    })
}

//! The certificate a node publishes under `cert`: its chain, checked against our trust bundle
//! before any value it signs is believed. A chain passes when it verifies now, names a node,
//! and names the node whose namespace holds it. Verdicts are cached by the value's hash for a
//! short while, so the same chain heard from many peers costs one check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use murmur_transport::identity::Role;
use murmur_transport::tls::{TlsState, Usage};
use ring::digest::{SHA256, digest};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::time::Instant;

/// A verdict is reused this long (then expiry and bundle changes are seen again).
const VERDICT_TTL: Duration = Duration::from_secs(60);
/// Verdicts remembered at most; beyond, the cache starts over.
const MAX_VERDICTS: usize = 4096;
/// Certificates in a published chain at most.
const MAX_CHAIN: usize = 4;

/// A published chain that verified, leaf first.
pub type Chain = Arc<Vec<CertificateDer<'static>>>;

/// Why a published chain was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertRefusal {
    /// Not a chain in our encoding.
    #[error("malformed certificate chain")]
    Malformed,
    /// The chain does not verify against the bundle now.
    #[error("certificate refused: {0}")]
    Untrusted(String),
    /// It verifies but is not this node's.
    #[error("certificate of {found} published by node {node}")]
    NotTheNode {
        /// The namespace's node.
        node: String,
        /// Who the certificate names.
        found: String,
    },
}

/// The `cert` value body for `chain`.
pub fn encode_chain(chain: &[CertificateDer<'_>]) -> String {
    let ders: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
    STANDARD_NO_PAD.encode(postcard::to_stdvec(&ders).unwrap_or_default())
}

fn decode_chain(body: &str) -> Result<Vec<CertificateDer<'static>>, CertRefusal> {
    let bytes = STANDARD_NO_PAD
        .decode(body)
        .map_err(|_| CertRefusal::Malformed)?;
    let ders: Vec<Vec<u8>> = postcard::from_bytes(&bytes).map_err(|_| CertRefusal::Malformed)?;
    if ders.is_empty() || ders.len() > MAX_CHAIN {
        return Err(CertRefusal::Malformed);
    }
    Ok(ders.into_iter().map(CertificateDer::from).collect())
}

/// A verified chain and the node it names, or why it was refused.
type Verdict = Result<(Chain, String), CertRefusal>;

/// Checks published chains against the node's current trust bundle.
#[derive(Debug)]
pub struct CertCheck {
    tls: Arc<TlsState>,
    verdicts: Mutex<HashMap<[u8; 32], (Verdict, Instant)>>,
}

impl CertCheck {
    /// Checks against the bundle `tls` holds (and follows it when it is reloaded).
    pub fn new(tls: Arc<TlsState>) -> Self {
        Self {
            tls,
            verdicts: Mutex::default(),
        }
    }

    /// The chain in `body` if it verifies now and is `node`'s.
    pub fn check(&self, body: &str, node: &str) -> Result<Chain, CertRefusal> {
        let mut hash = [0; 32];
        hash.copy_from_slice(digest(&SHA256, body.as_bytes()).as_ref());
        let now = Instant::now();
        let verdict = {
            let cache = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
            cache
                .get(&hash)
                .filter(|(_, at)| now.duration_since(*at) < VERDICT_TTL)
                .map(|(v, _)| v.clone())
        };
        let verdict = match verdict {
            Some(v) => v,
            None => {
                let v = self.verify(body);
                let mut cache = self.verdicts.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= MAX_VERDICTS {
                    cache.clear();
                }
                cache.insert(hash, (v.clone(), now));
                v
            }
        };
        let (chain, name) = verdict?;
        if name != node {
            return Err(CertRefusal::NotTheNode {
                node: node.to_owned(),
                found: name,
            });
        }
        Ok(chain)
    }

    fn verify(&self, body: &str) -> Verdict {
        let chain = decode_chain(body)?;
        let info = self
            .tls
            .bundle()
            .verify(&chain, Usage::Server, UnixTime::now())
            .map_err(|e| CertRefusal::Untrusted(e.to_string()))?;
        if info.id.role != Role::Node {
            return Err(CertRefusal::Untrusted(format!("{} is not a node", info.id)));
        }
        Ok((Arc::new(chain), info.id.name.to_string()))
    }
}

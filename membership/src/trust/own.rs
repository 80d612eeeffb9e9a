//! Writing this node's own keys: every value is signed for the slot it takes (the version is
//! chosen and the value stored under one lock), after the certificate that proves the key.
//! When the certificate changes (rotation), the new one is published and every key signed
//! again, so a peer that learns the node afresh can check every value with the one certificate
//! it finds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use chitchat::{Chitchat, ChitchatId, NodeState};
use murmur_transport::tls::TlsState;
use rustls_pki_types::CertificateDer;

use super::certs::encode_chain;
use super::signed::{self, CERT_KEY, Slot};

/// Why a value could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The node key could not sign.
    #[error("cannot sign gossip with the node key: {0}")]
    Key(String),
}

/// The writer of this node's keys.
#[derive(Debug)]
pub struct OwnKeys {
    tls: Arc<TlsState>,
    id: ChitchatId,
    /// The leaf certificate the published `cert` holds.
    published: Mutex<Option<CertificateDer<'static>>>,
}

impl OwnKeys {
    /// A writer for incarnation `id`, signing with `tls`'s key.
    pub fn new(tls: Arc<TlsState>, id: ChitchatId) -> Self {
        Self {
            tls,
            id,
            published: Mutex::new(None),
        }
    }

    /// The incarnation written for.
    pub fn id(&self) -> &ChitchatId {
        &self.id
    }

    /// The keys a new incarnation starts with (chitchat gives them versions 1, 2, ... in
    /// order): the certificate, then `records`.
    pub fn initial(&self, records: &[(&str, &str)]) -> Result<Vec<(String, String)>, SignError> {
        let chain = self.tls.chain();
        let mut versions: BTreeMap<String, u64> = BTreeMap::new();
        let mut out = Vec::new();
        let cert = encode_chain(&chain);
        let all = std::iter::once((CERT_KEY, cert.as_str())).chain(records.iter().copied());
        for (version, (key, body)) in (1..).zip(all) {
            versions.insert(key.to_owned(), version);
            let value = self.seal(key, version, Some(body), &versions)?;
            out.push((key.to_owned(), value));
        }
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = chain.first().cloned();
        Ok(out)
    }

    /// Sets `key` to `body`; a no-op when it already holds it. Returns whether it changed.
    pub fn set(&self, c: &mut Chitchat, key: &str, body: &str) -> Result<bool, SignError> {
        self.write(c, key, Some(body))
    }

    /// Withdraws `key` (a signed withdrawal, not a tombstone); a no-op when it is absent or
    /// withdrawn already. Returns whether it changed.
    pub fn withdraw(&self, c: &mut Chitchat, key: &str) -> Result<bool, SignError> {
        self.write(c, key, None)
    }

    fn write(&self, c: &mut Chitchat, key: &str, body: Option<&str>) -> Result<bool, SignError> {
        self.follow_rotation(c)?;
        let state = c.self_node_state();
        let current = state.get(key).map(signed::body);
        let unchanged = match (current, body) {
            (None, None) => true,
            (Some(cur), new) => cur == new,
            (None, Some(_)) => false,
        };
        if unchanged {
            return Ok(false);
        }
        self.store(state, key, body)?;
        Ok(true)
    }

    /// Publishes a new certificate, and signs every key again, if the node's certificate
    /// changed since it was last published.
    pub fn follow_rotation(&self, c: &mut Chitchat) -> Result<bool, SignError> {
        let chain = self.tls.chain();
        let leaf = chain.first().cloned();
        {
            let published = self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *published == leaf {
                return Ok(false);
            }
        }
        let state = c.self_node_state();
        self.store(state, CERT_KEY, Some(&encode_chain(&chain)))?;
        let others: Vec<(String, Option<String>)> = state
            .key_values()
            .filter(|(k, _)| *k != CERT_KEY)
            .map(|(k, v)| (k.to_owned(), signed::body(v).map(str::to_owned)))
            .collect();
        for (key, body) in others {
            self.store(state, &key, body.as_deref())?;
        }
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = leaf;
        Ok(true)
    }

    /// Signs `body` for the next version of `state` and stores it there.
    fn store(&self, state: &mut NodeState, key: &str, body: Option<&str>) -> Result<(), SignError> {
        let version = state.max_version() + 1;
        let mut versions: BTreeMap<String, u64> = state
            .key_values_including_deleted()
            .map(|(k, v)| (k.to_owned(), v.version))
            .collect();
        versions.insert(key.to_owned(), version);
        let value = self.seal(key, version, body, &versions)?;
        // chitchat gives a new value the version after its current highest: the one signed.
        state.set(key, value);
        Ok(())
    }

    fn seal(
        &self,
        key: &str,
        version: u64,
        body: Option<&str>,
        versions: &BTreeMap<String, u64>,
    ) -> Result<String, SignError> {
        let manifest = signed::manifest(versions.iter().map(|(k, v)| (k.as_str(), *v)));
        let slot = Slot {
            id: &self.id,
            key,
            version,
        };
        let msg = signed::signed_bytes(slot, body, &manifest);
        let sig = self.tls.sign_as_node(&msg).map_err(SignError::Key)?;
        Ok(signed::render(body, &manifest, &sig.signature))
    }
}

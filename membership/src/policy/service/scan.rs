//! The engine of the policy task: scanning gossip, verifying, merging, republishing,
//! persisting and publishing the result.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chitchat::{Chitchat, ChitchatId};
use murmur_transport::tls::TrustBundle;
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::bridge::{self, Bridge};
use super::settings::{PolicyConfig, PolicyStatus};
use crate::driver::GossipKeys;
use crate::policy::document::{PolicyDocument, Rejection, VerifyContext, sha256, verify};
use crate::policy::store::{Offer, PolicySet, PolicyStore};
use crate::policy::{KEY_PREFIX, parse_key, persist};
use crate::trust::signed;

/// Verdicts remembered by value hash; beyond this the cache starts over.
const MAX_VERDICTS: usize = 8192;

type Verdict = Result<Arc<PolicyDocument>, Rejection>;

/// State of the policy task.
pub(super) struct Engine {
    pub(super) config: PolicyConfig,
    pub(super) store: PolicyStore,
    status_tx: watch::Sender<Arc<PolicyStatus>>,
    set_tx: watch::Sender<Arc<PolicySet>>,
    /// Version of each (incarnation, key) already merged: unchanged values are skipped. One
    /// map per layer (the cell's, the top layer's when bridging): an incarnation may have the
    /// same id in both.
    seen: HashMap<(ChitchatId, String), u64>,
    top_seen: HashMap<(ChitchatId, String), u64>,
    verdicts: HashMap<[u8; 32], Verdict>,
    pub(super) rejected: BTreeMap<&'static str, u64>,
    bundle_certs: Vec<CertificateDer<'static>>,
    /// Bumped on every change of the winners; compared with what was persisted.
    pub(super) changes: u64,
    persisted: u64,
}

/// One policy value found in gossip.
struct Found {
    id: ChitchatId,
    key: String,
    value: String,
}

impl Engine {
    pub(super) fn new(
        config: PolicyConfig,
        store: PolicyStore,
        status_tx: watch::Sender<Arc<PolicyStatus>>,
        set_tx: watch::Sender<Arc<PolicySet>>,
    ) -> Self {
        let bundle_certs = (config.bundle)().certs().to_vec();
        Self {
            config,
            store,
            status_tx,
            set_tx,
            seen: HashMap::new(),
            top_seen: HashMap::new(),
            verdicts: HashMap::new(),
            rejected: BTreeMap::new(),
            bundle_certs,
            changes: 0,
            persisted: 0,
        }
    }

    pub(super) fn refresh_every(&self) -> Duration {
        self.config.refresh
    }

    pub(super) fn context<'a>(&self, bundle: &'a TrustBundle, now_ms: u64) -> VerifyContext<'a> {
        VerifyContext {
            bundle,
            now_ms,
            max_skew: self.config.max_skew,
        }
    }

    /// One round: merge what gossip holds (in the cell, and in the top layer when `bridge` is
    /// given), drop expired deletes, republish, persist, publish. Persisting comes first, so a
    /// set a reader has seen survives a crash.
    pub(super) async fn refresh(
        &mut self,
        chitchat: &tokio::sync::Mutex<Chitchat>,
        keys: &GossipKeys,
        live: &[String],
        bridge: Option<&Bridge>,
        now_ms: u64,
    ) {
        let bundle = (self.config.bundle)();
        if bundle.certs() != self.bundle_certs.as_slice() {
            self.bundle_changed(&bundle, now_ms);
        }
        let mut found = scan(chitchat, &mut self.seen).await;
        match bridge {
            Some(b) => found.extend(scan(&b.top.chitchat(), &mut self.top_seen).await),
            None => self.top_seen.clear(),
        }
        for f in found {
            self.merge_found(f, &bundle, now_ms);
        }
        let expired = self.store.expire(now_ms, self.config.tombstone_retention);
        if !expired.is_empty() {
            debug!(count = expired.len(), "expired policy tombstones dropped");
            self.changes += 1;
        }
        let lapsed = self.store.expire_lapsed(now_ms, self.config.max_skew);
        if !lapsed.is_empty() {
            debug!(
                count = lapsed.len(),
                "records of expired join tokens dropped"
            );
            self.changes += 1;
        }
        self.sync(keys, live, bridge.is_some()).await;
        if let Some(b) = bridge {
            self.sync_top(b).await;
        }
        self.persist(now_ms).await;
        self.publish();
    }

    fn merge_found(&mut self, f: Found, bundle: &TrustBundle, now_ms: u64) {
        let doc = match self.verdict(&f.value, bundle, now_ms) {
            Ok(doc) => doc,
            Err(Rejection::Future { .. }) => {
                // Not yet acceptable; look again next round (in whichever layer it came from).
                let k = (f.id, f.key);
                self.seen.remove(&k);
                self.top_seen.remove(&k);
                return;
            }
            Err(_) => return,
        };
        let matches_key = parse_key(&f.key)
            .is_some_and(|(kind, name)| kind == doc.kind() && name == doc.name().as_str());
        if !matches_key {
            let reason = Rejection::WrongKey {
                key: f.key.clone(),
                kind: doc.kind(),
                name: doc.name().to_string(),
            };
            self.count(&reason, &f.id.node_id);
            return;
        }
        if self.store.offer(doc) != Offer::Kept {
            self.changes += 1;
        }
    }

    /// The verdict on a value, from the cache when possible. Refusals are counted and logged
    /// once per distinct value (a deferred future stamp only the first time).
    fn verdict(&mut self, value: &str, bundle: &TrustBundle, now_ms: u64) -> Verdict {
        let hash = sha256(value.as_bytes());
        let cached = self.verdicts.get(&hash);
        if let Some(v) = cached
            && !matches!(v, Err(Rejection::Future { .. }))
        {
            return v.clone();
        }
        let was_future = cached.is_some();
        let verdict = verify(value, &self.context(bundle, now_ms)).map(Arc::new);
        if let Err(reason) = &verdict
            && !(was_future && matches!(reason, Rejection::Future { .. }))
        {
            self.count(reason, "gossip");
        }
        if self.verdicts.len() >= MAX_VERDICTS {
            self.verdicts.clear();
        }
        self.verdicts.insert(hash, verdict.clone());
        verdict
    }

    /// Counts and logs a refused document.
    pub(super) fn count(&mut self, reason: &Rejection, from: &str) {
        *self.rejected.entry(reason.code()).or_default() += 1;
        warn!(%from, code = reason.code(), %reason, "policy document rejected");
    }

    /// The bundle changed: forget every verdict and keep only winners that still verify.
    fn bundle_changed(&mut self, bundle: &TrustBundle, now_ms: u64) {
        self.bundle_certs = bundle.certs().to_vec();
        self.verdicts.clear();
        self.seen.clear();
        self.top_seen.clear();
        let cx = VerifyContext {
            max_skew: Duration::MAX,
            ..self.context(bundle, now_ms)
        };
        let mut kept = PolicyStore::new();
        for doc in self.store.winners() {
            match verify(doc.value(), &cx) {
                Ok(d) => {
                    kept.offer(Arc::new(d));
                }
                Err(e) => {
                    warn!(doc = %doc.key(), reason = %e, "policy document dropped: the trust bundle no longer accepts it")
                }
            }
        }
        self.store = kept;
        self.changes += 1;
    }

    /// Makes this node's `policy/` keys hold exactly the winners it is origin or custodian of,
    /// and, when `bridging`, those no custodian in the cell carries yet (see [`super::bridge`]).
    pub(super) async fn sync(&self, keys: &GossipKeys, live: &[String], bridging: bool) {
        let me = self.config.node.as_str();
        let live: Vec<&str> = live.iter().map(String::as_str).collect();
        let k = self.config.custodians;
        let written = keys
            .with_own(|c, own| {
                let desired: BTreeMap<String, &str> = self
                    .store
                    .winners()
                    .filter(|d| bridge::carries(c, me, d, &live, k, bridging))
                    .map(|d| (d.key(), d.value()))
                    .collect();
                bridge::write(c, own, &desired)
            })
            .await;
        if let Err(e) = written {
            warn!(error = %e, "cannot publish policy copies");
        }
    }

    /// Makes this node's `policy/` keys in the top layer hold the winners it carries there: as
    /// custodian among the top layer's live members, or as the bridge that brought them.
    async fn sync_top(&self, bridge: &Bridge) {
        let k = self.config.custodians;
        let written = bridge
            .top
            .keys()
            .with_own(|c, own| {
                let live = bridge::live_names(c);
                let live: Vec<&str> = live.iter().map(String::as_str).collect();
                let me = c.self_chitchat_id().node_id.to_string();
                let desired: BTreeMap<String, &str> = self
                    .store
                    .winners()
                    .filter(|d| bridge::carries(c, &me, d, &live, k, true))
                    .map(|d| (d.key(), d.value()))
                    .collect();
                bridge::write(c, own, &desired)
            })
            .await;
        if let Err(e) = written {
            warn!(error = %e, "cannot publish policy copies in the top layer");
        }
    }

    /// Sends the new status to readers, and the effective set when it changed.
    pub(super) fn publish(&self) {
        let status = status_of(&self.config.node, &self.store, &self.rejected);
        let set = status.effective.clone();
        self.set_tx.send_if_modified(|cur| {
            let changed = **cur != *set;
            if changed {
                *cur = set;
            }
            changed
        });
        self.status_tx.send_replace(Arc::new(status));
    }

    async fn persist(&mut self, now_ms: u64) {
        if self.changes == self.persisted {
            return;
        }
        self.persisted = self.changes;
        let Some(path) = self.config.file.clone() else {
            return;
        };
        let docs: Vec<String> = self.store.winners().map(|d| d.value().to_owned()).collect();
        let saved = tokio::task::spawn_blocking(move || persist::save(&path, now_ms, docs)).await;
        if let Ok(Err(e)) = saved {
            warn!(error = %e, "could not persist the policy set");
        }
    }
}

/// Values that changed since the last scan of one layer, in every namespace; `seen` holds the
/// versions merged before and is replaced by what the layer holds now.
async fn scan(
    chitchat: &tokio::sync::Mutex<Chitchat>,
    seen: &mut HashMap<(ChitchatId, String), u64>,
) -> Vec<Found> {
    let c = chitchat.lock().await;
    let mut now = HashMap::with_capacity(seen.len());
    let mut found = Vec::new();
    for (id, state) in c.node_states() {
        for (key, vv) in state.iter_prefix(KEY_PREFIX) {
            // Verified before chitchat stored it; a withdrawn copy is no copy.
            let Some(value) = signed::body(&vv.value) else {
                continue;
            };
            let k = (id.clone(), key.to_owned());
            if seen.get(&k) != Some(&vv.version) {
                found.push(Found {
                    id: id.clone(),
                    key: key.to_owned(),
                    value: value.to_owned(),
                });
            }
            now.insert(k, vv.version);
        }
    }
    *seen = now;
    found
}

/// The status readers see.
pub(super) fn status_of(
    node: &str,
    store: &PolicyStore,
    rejected: &BTreeMap<&'static str, u64>,
) -> PolicyStatus {
    PolicyStatus {
        node: node.to_owned(),
        clock: store.clock(),
        effective: Arc::new(store.effective()),
        winners: store.winners().cloned().collect(),
        rejected: rejected.clone(),
    }
}

//! The membership's answer to "may this sender say this?", asked of every gossip message before
//! chitchat sees it (see `murmur_transport::gossip`).
//!
//! A node delta about X is passed only if chitchat would apply it and it is exactly what X
//! wrote: every key-value is a signed envelope that verifies for X's incarnation, key and
//! version with the certificate X published (itself checked against our bundle), nothing is a
//! chitchat tombstone, reset or bare version bump, and the keys X ends up with are exactly the
//! ones X's last value lists in its manifest (a relay cannot leave a value out). X itself may
//! send a delta cut short by the message size (a state larger than one message then still
//! spreads, from its owner); relays must send whole ones. Deltas about this node itself are
//! never passed: only this node writes its own state.
//!
//! Digest entries create incarnations in chitchat, and carry heartbeats. A sender may introduce
//! itself, and an incarnation whose full, verified state comes in the same message; other new
//! ids are dropped, at most [`NEW_IDS_PER_MESSAGE`] pass per message, a name has at most
//! [`INCARNATIONS_PER_NAME`], and the whole state at most [`MAX_INCARNATIONS`]. An incarnation
//! older than one this node already holds for the same name is not adopted from a relay (a
//! restarted node's dead generations otherwise keep coming back from every node that still
//! remembers them: chitchat #161, #155); the incarnation itself, speaking over mutual TLS, is
//! still heard, so a node restarted with a clock behind its last start is not shut out. A new
//! incarnation named by a relay is adopted only once seen alive ([`super::sightings`]): dead
//! ones, whose heartbeat no longer moves, are not learnt again by every newcomer. A relayed
//! heartbeat above the bound of [`super::liveness`] is replaced by 0, which chitchat ignores.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use chitchat::{Chitchat, ChitchatId, NodeState};
use murmur_transport::gossip::message::{Kind, Message, NodeDelta, STATUS_SET};
use murmur_transport::gossip::{Admission, GossipGuard};
use murmur_transport::identity::Name;
use murmur_transport::node_key::verify_node_signature;
use murmur_transport::tls::TlsState;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::certs::{CertCheck, Chain};
use super::liveness::{Anchors, Horizon};
use super::sightings::Sightings;
use super::signed::{self, CERT_KEY, HEAD_KEY, Slot};
use crate::records::{MAX_VALUE_BYTES, NODE_KEY, SERVICE_PREFIX};

/// New incarnations one message may introduce.
pub const NEW_IDS_PER_MESSAGE: usize = 16;
/// Incarnations of one node name kept at once (restarts leave dead ones behind for a while).
pub const INCARNATIONS_PER_NAME: usize = 8;
/// Incarnations kept at most: a digest of this many still fits one message.
pub const MAX_INCARNATIONS: usize = 2048;
/// Senders whose forgeries about this node are counted by name; the rest under one.
const MAX_FORGERS: usize = 64;

/// Why a node delta or digest entry was dropped; the label of its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A delta about this node: only it writes its state.
    AboutSelf,
    /// A chitchat tombstone, reset, garbage-collection mark or bare version bump.
    Shape,
    /// A key-value that is not a signed envelope, or not valid for its slot.
    Unsigned,
    /// A key outside what a node may publish about itself.
    ForeignKey,
    /// The signature does not verify with the node's certificate.
    BadSignature,
    /// The node's certificate is missing, does not verify, or names another node.
    Certificate,
    /// The keys the delta leaves do not match the writer's manifest: something was left out.
    Incomplete,
    /// A value over the size limit.
    TooLarge,
    /// A new incarnation nobody vouched for, or over a budget.
    NewId,
    /// A new incarnation older than one this node holds for the same name.
    Superseded,
    /// A new incarnation named by a relay, not yet seen alive (its heartbeat has not moved
    /// since first relayed).
    NotSeenAlive,
}

impl Refusal {
    /// The counter label.
    pub fn label(self) -> &'static str {
        match self {
            Self::AboutSelf => "about_self",
            Self::Shape => "shape",
            Self::Unsigned => "unsigned",
            Self::ForeignKey => "foreign_key",
            Self::BadSignature => "bad_signature",
            Self::Certificate => "certificate",
            Self::Incomplete => "incomplete",
            Self::TooLarge => "too_large",
            Self::NewId => "new_id",
            Self::Superseded => "superseded",
            Self::NotSeenAlive => "not_seen_alive",
        }
    }
}

/// What the guard refused and changed, for metrics and the status page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Node deltas and digest entries dropped, by reason.
    pub refused: BTreeMap<Refusal, u64>,
    /// Relayed heartbeats over the bound, not believed.
    pub heartbeats_clamped: u64,
    /// Deltas about this node, by sender: how a node learns someone writes in its name.
    pub forged_self: BTreeMap<String, u64>,
    /// Node deltas verified and passed.
    pub verified: u64,
}

/// The gossip guard of one node.
pub struct TrustGuard {
    chitchat: OnceLock<Arc<tokio::sync::Mutex<Chitchat>>>,
    certs: CertCheck,
    pace: Horizon,
    anchors: Mutex<Anchors>,
    sightings: Mutex<Sightings>,
    stats: Mutex<GuardStats>,
}

impl TrustGuard {
    /// A guard checking chains against `tls`'s bundle; it passes nothing until
    /// [`TrustGuard::attach`]ed to the chitchat state it protects.
    pub fn new(tls: Arc<TlsState>, pace: Horizon) -> Arc<Self> {
        Arc::new(Self {
            chitchat: OnceLock::new(),
            certs: CertCheck::new(tls),
            pace,
            anchors: Mutex::default(),
            sightings: Mutex::new(Sightings::new(MAX_INCARNATIONS)),
            stats: Mutex::default(),
        })
    }

    /// Starts checking against `chitchat`.
    pub fn attach(&self, chitchat: Arc<tokio::sync::Mutex<Chitchat>>) {
        let _ = self.chitchat.set(chitchat);
    }

    /// What was refused so far.
    pub fn stats(&self) -> GuardStats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, why: Refusal, sender: &Name, about: &ChitchatId) {
        debug!(%sender, about = ?about, reason = why.label(), "gossip refused");
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        *stats.refused.entry(why).or_default() += 1;
        if why == Refusal::AboutSelf {
            let known = stats.forged_self.len() < MAX_FORGERS
                || stats.forged_self.contains_key(sender.as_str());
            let label = if known { sender.as_str() } else { "other" };
            *stats.forged_self.entry(label.to_owned()).or_default() += 1;
            warn!(%sender, "a peer sent state about this node: only this node writes it");
        }
    }
}

impl std::fmt::Debug for TrustGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustGuard")
            .field("attached", &self.chitchat.get().is_some())
            .field("pace", &self.pace)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl GossipGuard for TrustGuard {
    async fn admit(&self, sender: &Name, from: SocketAddr, msg: &mut Message) -> Admission {
        let Some(chitchat) = self.chitchat.get() else {
            return Admission {
                drop: true,
                ..Admission::default()
            };
        };
        let c = chitchat.lock().await;
        let now = Instant::now();
        let before = (msg.delta.len(), msg.digest.len());
        let mut vouched = HashSet::new();
        let mut clamped = 0;
        // chitchat applies a delta only to an incarnation it knows, or learns of from the
        // digest of the same SynAck: others need no checking.
        let introduced: HashSet<ChitchatId> = msg.digest.iter().map(|e| e.id.clone()).collect();
        let newest = newest_generations(&c);
        let unseen = self.not_seen_alive(&c, sender, msg, now);
        msg.delta.retain(|nd| {
            if c.node_state(&nd.id).is_none() {
                if !introduced.contains(&nd.id) || unseen.contains(&nd.id) {
                    return false;
                }
                if self.superseded_relay(&newest, sender, &nd.id) {
                    return false;
                }
            }
            self.admit_delta(&c, nd, sender, now, &mut vouched)
        });
        {
            let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
            let mut budget = Budget::new(&c);
            msg.digest.retain_mut(|e| {
                if c.node_state(&e.id).is_none() && self.superseded_relay(&newest, sender, &e.id) {
                    return false;
                }
                if unseen.contains(&e.id) {
                    self.refuse(Refusal::NotSeenAlive, sender, &e.id);
                    return false;
                }
                let verdict =
                    self.check_entry(&c, &mut anchors, &mut budget, sender, &vouched, e, now);
                match verdict {
                    Entry::Keep => true,
                    Entry::Clamp => {
                        e.heartbeat = 0;
                        clamped += 1;
                        true
                    }
                    Entry::Drop(why) => {
                        self.refuse(why, sender, &e.id);
                        false
                    }
                }
            });
            if anchors.len() > 2 * c.node_states().len() + 64 {
                anchors.retain(|id| c.node_state(id).is_some());
            }
        }
        // A message that no longer says anything is still passed: a Syn asks for a reply.
        let changed = clamped > 0 || before != (msg.delta.len(), msg.digest.len());
        {
            let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.heartbeats_clamped += clamped;
            stats.verified += msg.delta.len() as u64;
        }
        let from_verified = c.node_states().iter().any(|(id, state)| {
            *id.node_id == *sender.as_str()
                && id.gossip_advertise_addr == from
                && state.get(CERT_KEY).is_some()
        });
        let empty_ack = msg.kind == Kind::Ack && msg.delta.is_empty();
        Admission {
            changed,
            drop: empty_ack,
            from_verified,
        }
    }
}

impl TrustGuard {
    fn admit_delta(
        &self,
        c: &Chitchat,
        nd: &NodeDelta,
        sender: &Name,
        now: Instant,
        vouched: &mut HashSet<ChitchatId>,
    ) -> bool {
        let from_owner = *nd.id.node_id == *sender.as_str();
        match self.check_delta(c, nd, from_owner, now) {
            Ok(()) => {
                if c.node_state(&nd.id).is_none() {
                    vouched.insert(nd.id.clone());
                }
                true
            }
            Err(Some(why)) => {
                self.refuse(why, sender, &nd.id);
                false
            }
            Err(None) => false,
        }
    }
}

impl TrustGuard {
    /// The incarnations `msg`'s digest names that are new to this node, named by a relay, and
    /// not yet seen alive (see [`super::sightings`]).
    fn not_seen_alive(
        &self,
        c: &Chitchat,
        sender: &Name,
        msg: &Message,
        now: Instant,
    ) -> HashSet<ChitchatId> {
        let mut sightings = self
            .sightings
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        msg.digest
            .iter()
            .filter(|e| *e.id.node_id != *sender.as_str() && e.id != *c.self_chitchat_id())
            .filter(|e| c.node_state(&e.id).is_none())
            .filter(|e| !sightings.seen_alive(&e.id, e.heartbeat, now))
            .map(|e| e.id.clone())
            .collect()
    }
}

/// The newest generation this node holds of each name.
fn newest_generations(c: &Chitchat) -> HashMap<&str, u64> {
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for id in c.node_states().keys() {
        let g = newest.entry(&*id.node_id).or_default();
        *g = (*g).max(id.generation_id);
    }
    newest
}

impl TrustGuard {
    /// Whether `id`, new to this node, is relayed by another `sender` and older than an
    /// incarnation of its name this node holds; counted as refused when it is.
    fn superseded_relay(
        &self,
        newest: &HashMap<&str, u64>,
        sender: &Name,
        id: &ChitchatId,
    ) -> bool {
        let relayed = *id.node_id != *sender.as_str();
        let older = newest
            .get(&*id.node_id)
            .is_some_and(|g| *g > id.generation_id);
        if relayed && older {
            self.refuse(Refusal::Superseded, sender, id);
        }
        relayed && older
    }
}

/// The verdict on one digest entry.
enum Entry {
    Keep,
    Clamp,
    Drop(Refusal),
}

/// How many new incarnations this message may still introduce.
struct Budget {
    left: usize,
    per_name: BTreeMap<String, usize>,
    total: usize,
}

impl Budget {
    fn new(c: &Chitchat) -> Self {
        let mut per_name: BTreeMap<String, usize> = BTreeMap::new();
        for id in c.node_states().keys() {
            *per_name.entry(id.node_id.to_string()).or_default() += 1;
        }
        Self {
            left: NEW_IDS_PER_MESSAGE,
            per_name,
            total: c.node_states().len(),
        }
    }

    fn take(&mut self, name: &str) -> bool {
        let of_name = self.per_name.entry(name.to_owned()).or_default();
        if self.left == 0 || *of_name >= INCARNATIONS_PER_NAME || self.total >= MAX_INCARNATIONS {
            return false;
        }
        self.left -= 1;
        *of_name += 1;
        self.total += 1;
        true
    }
}

impl TrustGuard {
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site; the parts of one decision"
    )]
    fn check_entry(
        &self,
        c: &Chitchat,
        anchors: &mut Anchors,
        budget: &mut Budget,
        sender: &Name,
        vouched: &HashSet<ChitchatId>,
        e: &murmur_transport::gossip::message::DigestEntry,
        now: Instant,
    ) -> Entry {
        if e.id == *c.self_chitchat_id() {
            return Entry::Keep;
        }
        let known = c.node_state(&e.id).is_some();
        let own = *e.id.node_id == *sender.as_str();
        if !known && !((own || vouched.contains(&e.id)) && budget.take(&e.id.node_id)) {
            return Entry::Drop(Refusal::NewId);
        }
        if own {
            // The sender speaks for itself, authenticated by mutual TLS.
            anchors.direct(&e.id, e.heartbeat, now);
            return Entry::Keep;
        }
        match anchors.ceiling(&e.id, now, self.pace) {
            Some(ceiling) if e.heartbeat <= ceiling => Entry::Keep,
            _ => Entry::Clamp,
        }
    }

    /// `Ok` if the delta may pass; `Err(None)` if chitchat would ignore it anyway. A delta
    /// `from_owner` may stop short of the owner's manifest.
    fn check_delta(
        &self,
        c: &Chitchat,
        nd: &NodeDelta,
        from_owner: bool,
        now: Instant,
    ) -> Result<(), Option<Refusal>> {
        if nd.id == *c.self_chitchat_id() {
            return Err(Some(Refusal::AboutSelf));
        }
        if nd.last_gc != 0 || nd.set_max_version.is_some() {
            return Err(Some(Refusal::Shape));
        }
        let state = c.node_state(&nd.id);
        let held = state.map_or(0, NodeState::max_version);
        if nd.from_version > held || nd.max_version() <= held {
            return Err(None);
        }
        let mut versions: BTreeMap<String, u64> = state
            .map(|s| {
                s.key_values_including_deleted()
                    .map(|(k, v)| (k.to_owned(), v.version))
                    .collect()
            })
            .unwrap_or_default();
        let mut cert = match state.and_then(|s| s.get(CERT_KEY)).and_then(signed::body) {
            Some(body) => self.certs.check(body, &nd.id.node_id).ok(),
            None => None,
        };
        let mut last_manifest = None;
        let mut head = None;
        for kv in nd.kvs.iter().filter(|kv| kv.version > held) {
            if kv.status != STATUS_SET {
                return Err(Some(Refusal::Shape));
            }
            if kv.value.len() > MAX_VALUE_BYTES {
                return Err(Some(Refusal::TooLarge));
            }
            if !may_publish(&nd.id.node_id, &kv.key) {
                return Err(Some(Refusal::ForeignKey));
            }
            let env = signed::parse(&kv.value).ok_or(Some(Refusal::Unsigned))?;
            if kv.key == CERT_KEY {
                let body = env.body.ok_or(Some(Refusal::Unsigned))?;
                cert = Some(
                    self.certs
                        .check(body, &nd.id.node_id)
                        .map_err(|_| Some(Refusal::Certificate))?,
                );
            }
            let chain: &Chain = cert.as_ref().ok_or(Some(Refusal::Certificate))?;
            let slot = Slot {
                id: &nd.id,
                key: &kv.key,
                version: kv.version,
            };
            let msg = signed::signed_bytes(slot, env.body, &env.manifest);
            if !verify_node_signature(&chain[0], &msg, &env.signature) {
                return Err(Some(Refusal::BadSignature));
            }
            if kv.key == HEAD_KEY {
                head = env.body.and_then(|b| b.parse::<u64>().ok());
            }
            versions.insert(kv.key.clone(), kv.version);
            last_manifest = Some(env.manifest);
        }
        let expected = signed::manifest(versions.iter().map(|(k, v)| (k.as_str(), *v)));
        if last_manifest != Some(expected) && !(from_owner && last_manifest.is_some()) {
            return Err(Some(Refusal::Incomplete));
        }
        if let Some(hb) = head {
            let mut anchors = self.anchors.lock().unwrap_or_else(PoisonError::into_inner);
            anchors.head(&nd.id, hb, now);
        }
        Ok(())
    }
}

/// Whether node `node` may publish `key` about itself.
fn may_publish(node: &str, key: &str) -> bool {
    match key {
        CERT_KEY | HEAD_KEY | NODE_KEY => true,
        _ if key.starts_with(crate::view::EXTENSION_PREFIX) => true,
        _ if key.starts_with(crate::policy::KEY_PREFIX) => true,
        // Cell summaries: a custodian's own cell in the top layer, other cells it bridges in.
        _ if key.starts_with(crate::records::CELL_PREFIX) => true,
        _ => key
            .strip_prefix(SERVICE_PREFIX)
            .and_then(|rest| rest.rsplit_once('/'))
            .is_some_and(|(service, owner)| !service.is_empty() && owner == node),
    }
}

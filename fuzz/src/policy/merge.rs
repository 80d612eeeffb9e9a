//! The last-writer-wins merge of policy versions as a state machine: replicas take applies,
//! exchange (possibly partial) gossip messages that are delayed, reordered, duplicated or lost,
//! persist their winners and restart from that file. Once the network drains and every pair has
//! synced, all replicas hold the highest-ranked version ever applied for each document.
//!
//! The property test beside the store (membership/src/policy/store/tests.rs) does this over a
//! fixed pool of one kind with whole-state exchanges and an in-memory "disk". Here versions are
//! built from the input (two kinds, tombstones, equal stamps, the same content signed twice),
//! messages carry subsets and travel through a lossy network, restarts go through the policy
//! file's JSON and verify every document again as a node does at start, and tombstone expiry is
//! checked on the converged state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use murmur_membership::policy::persist::PolicyFile;
use murmur_membership::policy::store::DocKey;
use murmur_membership::policy::{
    Hlc, Kind, PolicyDocument, PolicyStore, Stamp, parse_file, sign, verify,
};
use murmur_transport::identity::Name;

use crate::pki::{MAX_SKEW, pki};

const REPLICAS: usize = 3;
const MAX_OPS: usize = 48;

/// One version of a document, as the input picks it.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Version {
    timeout: bool,
    name: u8,
    ms: u8,
    logical: u8,
    origin: u8,
    /// 0: a delete; otherwise a body.
    body: u8,
    /// Signed a second time: same payload, another envelope.
    copy: bool,
}

impl Version {
    fn normal(self) -> Self {
        Self {
            name: self.name % 3,
            ms: self.ms % 6,
            logical: self.logical % 2,
            origin: self.origin % 3,
            body: self.body % 4,
            ..self
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// An operator applies a version at a replica; it is persisted before it is acknowledged.
    Apply { at: u8, version: Version },
    /// `from` sends the winners picked by `mask` (all when 0) to `to`; the message is in flight.
    Send { from: u8, to: u8, mask: u8 },
    /// An in-flight message arrives; with `again` it stays in flight to arrive a second time.
    Deliver { msg: u8, again: bool },
    /// An in-flight message is lost.
    Lose { msg: u8 },
    /// A replica writes its winners to its file.
    Persist { at: u8 },
    /// A replica crashes and restarts from its file.
    Restart { at: u8 },
}

struct Replica {
    live: PolicyStore,
    file: Vec<u8>,
}

struct Message {
    to: usize,
    docs: Vec<Arc<PolicyDocument>>,
}

/// Runs the operations the input describes, then drains the network, syncs every pair twice,
/// and checks convergence, then tombstone expiry.
pub fn merge(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = u.arbitrary_iter::<Op>() else {
        return;
    };
    let ops: Vec<Op> = ops.take(MAX_OPS).filter_map(Result::ok).collect();
    let retention_ms = u64::from(u.arbitrary::<u8>().unwrap_or(0) % 8);

    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|_| Replica {
            live: PolicyStore::new(),
            file: persist(&PolicyStore::new()),
        })
        .collect();
    let mut network: Vec<Message> = Vec::new();
    let mut applied: BTreeMap<DocKey, Arc<PolicyDocument>> = BTreeMap::new();

    for op in ops {
        match op {
            Op::Apply { at, version } => {
                let r = &mut replicas[usize::from(at) % REPLICAS];
                let doc = document(version.normal());
                offer(&mut r.live, doc.clone());
                r.file = persist(&r.live);
                let k = (doc.kind(), doc.name().to_string());
                if applied.get(&k).is_none_or(|cur| doc.rank() > cur.rank()) {
                    applied.insert(k, doc);
                }
            }
            Op::Send { from, to, mask } => {
                let from = &replicas[usize::from(from) % REPLICAS];
                let docs = from
                    .live
                    .winners()
                    .enumerate()
                    .filter(|(i, _)| mask == 0 || mask & (1 << (i % 8)) != 0)
                    .map(|(_, d)| d.clone())
                    .collect();
                let to = usize::from(to) % REPLICAS;
                network.push(Message { to, docs });
            }
            Op::Deliver { msg, again } => {
                if network.is_empty() {
                    continue;
                }
                let i = usize::from(msg) % network.len();
                let m = if again {
                    Message {
                        to: network[i].to,
                        docs: network[i].docs.clone(),
                    }
                } else {
                    network.remove(i)
                };
                for d in m.docs {
                    offer(&mut replicas[m.to].live, d);
                }
            }
            Op::Lose { msg } => {
                if !network.is_empty() {
                    network.remove(usize::from(msg) % network.len());
                }
            }
            Op::Persist { at } => {
                let r = &mut replicas[usize::from(at) % REPLICAS];
                r.file = persist(&r.live);
            }
            Op::Restart { at } => {
                let r = &mut replicas[usize::from(at) % REPLICAS];
                r.live = restore(&r.file);
            }
        }
    }

    // Late messages still arrive, then anti-entropy: two rounds reach everyone.
    for m in network {
        for d in m.docs {
            offer(&mut replicas[m.to].live, d);
        }
    }
    for _ in 0..2 {
        for from in 0..REPLICAS {
            let winners: Vec<_> = replicas[from].live.winners().cloned().collect();
            for r in &mut replicas {
                for d in &winners {
                    offer(&mut r.live, d.clone());
                }
            }
        }
    }

    let expected: Vec<(DocKey, [u8; 32])> = applied
        .iter()
        .map(|(k, d)| (k.clone(), *d.rank().2))
        .collect();
    let digest = replicas[0].live.effective().digest().to_owned();
    for r in &mut replicas {
        let held: Vec<(DocKey, [u8; 32])> = r
            .live
            .winners()
            .map(|d| ((d.kind(), d.name().to_string()), *d.rank().2))
            .collect();
        assert_eq!(held, expected, "a replica diverged");
        assert_eq!(r.live.effective().digest(), digest);
        expire(&mut r.live, retention_ms);
    }
}

/// Offers `doc`, checking that a replica never goes back to a lower version.
fn offer(store: &mut PolicyStore, doc: Arc<PolicyDocument>) {
    let clock = store.clock();
    let before = store
        .get(doc.kind(), doc.name().as_str())
        .map(|d| d.rank().0.clone());
    store.offer(doc.clone());
    let after = store.get(doc.kind(), doc.name().as_str()).unwrap();
    assert!(Some(after.rank().0.clone()) >= before);
    assert!(after.rank() >= doc.rank());
    assert!(store.clock() >= clock.max(doc.stamp().hlc));
}

/// Expiring tombstones drops exactly those older than the horizon and never changes the
/// effective set.
fn expire(store: &mut PolicyStore, retention_ms: u64) {
    let before = store.effective();
    let now = pki().base_ms + 6;
    let horizon = now - retention_ms;
    let gone = store.expire(now, Duration::from_millis(retention_ms));
    assert_eq!(store.effective(), before);
    for d in store.winners() {
        assert!(!d.is_tombstone() || d.stamp().hlc.ms >= horizon);
    }
    for k in &gone {
        assert!(store.get(k.0, &k.1).is_none());
    }
}

/// The policy file of a replica, as the node writes it.
fn persist(store: &PolicyStore) -> Vec<u8> {
    let file = PolicyFile {
        version: 1,
        saved_at_ms: pki().base_ms,
        documents: store.winners().map(|d| d.value().to_owned()).collect(),
    };
    serde_json::to_vec(&file).unwrap()
}

/// A replica's store after a restart: every document of its file verified again.
fn restore(file: &[u8]) -> PolicyStore {
    let file: PolicyFile = serde_json::from_slice(file).unwrap();
    let cx = pki().context(Duration::MAX);
    let mut store = PolicyStore::new();
    for value in &file.documents {
        let doc = verify(value, &cx).unwrap_or_else(|e| panic!("a persisted version: {e}"));
        store.offer(Arc::new(doc));
    }
    store
}

/// The signed and verified document of a version, made once per process.
fn document(v: Version) -> Arc<PolicyDocument> {
    static CACHE: OnceLock<Mutex<HashMap<Version, Arc<PolicyDocument>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(d) = cache.lock().unwrap().get(&v) {
        return d.clone();
    }
    let name = format!("doc-{}", v.name);
    let (kind, text) = if v.timeout {
        let t = format!(
            "[[timeout]]\nname = \"{name}\"\nservice = \"web\"\nrequest = \"{}s\"\n",
            v.body
        );
        (Kind::Timeout, t)
    } else {
        let t = format!(
            "[[ratelimit]]\nname = \"{name}\"\nservice = \"web\"\nrate = {}\n",
            v.body
        );
        (Kind::Ratelimit, t)
    };
    let body = (v.body != 0).then(|| parse_file("merge", &text).unwrap().remove(0));
    let stamp = Stamp {
        hlc: Hlc {
            ms: pki().base_ms + u64::from(v.ms),
            logical: u32::from(v.logical),
        },
        origin: format!("n{}", v.origin),
    };
    let name = Name::parse("name", &name).unwrap();
    let value = sign(&pki().operator, kind, &name, stamp, body.as_ref()).unwrap();
    let doc = Arc::new(verify(&value, &pki().context(MAX_SKEW)).unwrap());
    cache.lock().unwrap().insert(v, doc.clone());
    doc
}

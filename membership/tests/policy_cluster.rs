//! In-process clusters over chitchat's in-memory transport running the real membership and
//! policy code: propagation, custody after the origin dies, joiners, forged documents,
//! concurrent versions across a partition, deletes during a partition, restarts from disk.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use murmur_membership::driver::Trust;
use murmur_membership::policy::custody::custodians;
use murmur_membership::policy::spec::{PolicyBody, RateLimitSpec};
use murmur_membership::policy::{
    ApplyOutcome, Hlc, Kind, PolicyConfig, PolicyHandle, SignedDocument, Stamp, sign,
};
use murmur_membership::records;
use murmur_membership::{GossipSettings, Membership, MembershipConfig};
use murmur_transport::identity::{Name, Role};
use murmur_transport::signing::Signer;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::TrustBundle;
use tokio::time::Instant;

fn addr(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 21_000 + i).into()
}

struct Mesh {
    net: ChannelTransport,
    pki: TestPki,
    operator: Signer,
    bundle: TrustBundle,
    dir: tempfile::TempDir,
    dead_grace: Duration,
}

struct Node {
    name: String,
    index: u16,
    membership: Membership,
    policy: PolicyHandle,
}

impl Mesh {
    fn new() -> Self {
        let pki = TestPki::new("murmur.local");
        let operator = Signer::load(&pki.ca.operator_cert, &pki.ca.operator_key).unwrap();
        let bundle = TrustBundle::load(&pki.ca.ca_cert, pki.trust_domain.clone()).unwrap();
        Self {
            net: ChannelTransport::with_mtu(65_507),
            pki,
            operator,
            bundle,
            dir: tempfile::tempdir().unwrap(),
            dead_grace: Duration::from_secs(600),
        }
    }

    fn config(&self, name: &str, i: u16, generation: u64, seeds: &[u16]) -> MembershipConfig {
        let gossip = GossipSettings {
            interval: Duration::from_millis(50),
            initial_interval: Duration::from_millis(50),
            dead_node_grace: self.dead_grace,
            ..GossipSettings::default()
        };
        let tls = self.pki.tls(&self.pki.node(name, &[]), Role::Node, name);
        MembershipConfig {
            trust: Trust::new(tls, &gossip),
            name: name.into(),
            generation,
            mesh_addr: addr(i),
            admin_addr: None,
            labels: BTreeMap::new(),
            seeds: seeds.iter().map(|s| addr(*s).to_string()).collect(),
            gossip,
            view_file: None,
            fail_static_warmup: Duration::from_secs(1),
            refresh: Duration::from_millis(50),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.policies.json"))
    }

    async fn membership(&self, name: &str, i: u16, generation: u64, seeds: &[u16]) -> Membership {
        loop {
            // The in-memory address frees once a previous incarnation's gossip task ends.
            match Membership::start(self.config(name, i, generation, seeds), &self.net).await {
                Ok(m) => return m,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn start(&self, name: &str, i: u16, generation: u64, seeds: &[u16]) -> Node {
        let membership = self.membership(name, i, generation, seeds).await;
        let bundle = self.bundle.clone();
        let mut config = PolicyConfig::new(name, Arc::new(move || bundle.clone()));
        config.file = Some(self.file(name));
        config.refresh = Duration::from_millis(50);
        config.tombstone_retention = Duration::from_secs(3600);
        let policy = PolicyHandle::start(&membership, config);
        Node {
            name: name.into(),
            index: i,
            membership,
            policy,
        }
    }

    /// A signed ratelimit version for `node`, stamped just above what it has seen.
    fn version(&self, node: &Node, name: &str, rate: Option<u32>) -> String {
        let stamp = Stamp {
            hlc: node.policy.status().clock.read(now_ms()).next(),
            origin: node.name.clone(),
        };
        self.signed(name, stamp, rate)
    }

    fn signed(&self, name: &str, stamp: Stamp, rate: Option<u32>) -> String {
        sign(
            &self.operator,
            Kind::Ratelimit,
            &n(name),
            stamp,
            rate.map(|r| limit(name, r)).as_ref(),
        )
        .unwrap()
    }

    async fn partition(&self, left: &[&Node], right: &[&Node]) {
        for a in left {
            for b in right {
                self.net.remove_link(addr(a.index), addr(b.index)).await;
            }
        }
    }

    async fn heal(&self, left: &[&Node], right: &[&Node]) {
        for a in left {
            for b in right {
                self.net.add_link(addr(a.index), addr(b.index)).await;
            }
        }
    }
}

fn n(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn now_ms() -> u64 {
    murmur_membership::policy::service::now_ms()
}

fn limit(name: &str, rate: u32) -> PolicyBody {
    PolicyBody::Ratelimit(RateLimitSpec {
        name: n(name),
        service: n("web"),
        rate,
        per: murmur_membership::policy::spec::PolicyDuration::from_secs(1),
        burst: None,
        by: Default::default(),
        scope: Default::default(),
    })
}

/// The rate in force on `node` for document `name`, if any.
fn rate(node: &Node, name: &str) -> Option<u32> {
    match node.policy.current().get(Kind::Ratelimit, name)?.body()? {
        PolicyBody::Ratelimit(r) => Some(r.rate),
        _ => None,
    }
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn all_alive(nodes: &[&Node]) {
    for node in nodes {
        eventually(&format!("{} sees {} alive", node.name, nodes.len()), || {
            node.membership
                .view()
                .count(murmur_membership::MemberState::Alive)
                == nodes.len()
        })
        .await;
    }
}

fn digests(nodes: &[&Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n.policy.current().digest().to_owned())
        .collect()
}

fn same_digest(nodes: &[&Node]) -> bool {
    let d = digests(nodes);
    d.iter().all(|x| x == &d[0])
}

/// Names of nodes whose own gossip namespace holds `key`, as `observer` sees them.
async fn holders(observer: &Node, key: &str) -> Vec<String> {
    let key = key.to_owned();
    observer
        .membership
        .with_chitchat(move |c| {
            let live: Vec<_> = c.live_nodes().cloned().collect();
            live.iter()
                .filter(|id| c.node_state(id).is_some_and(|s| s.get(&key).is_some()))
                .map(|id| id.node_id.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        })
        .await
}

#[tokio::test]
async fn apply_on_one_of_five_reaches_all_and_outlives_its_origin() {
    let mut mesh = Mesh::new();
    mesh.dead_grace = Duration::from_secs(3);
    let mut nodes = Vec::new();
    for i in 1..=5u16 {
        nodes.push(mesh.start(&format!("n{i}"), i, 1, &[1]).await);
    }
    all_alive(&nodes.iter().collect::<Vec<_>>()).await;

    let started = Instant::now();
    let v = mesh.version(&nodes[0], "limit", Some(10));
    let r = nodes[0].policy.apply(vec![v], false).await.unwrap();
    assert_eq!(r[0].outcome, ApplyOutcome::Created);
    eventually("all five hold the document", || {
        nodes.iter().all(|n| rate(n, "limit") == Some(10))
    })
    .await;
    println!("five nodes converged in {:?}", started.elapsed());
    assert!(same_digest(&nodes.iter().collect::<Vec<_>>()));

    // The origin plus three custodians publish it in their own keys.
    let key = "policy/ratelimit/limit";
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut expected: Vec<String> = custodians(Kind::Ratelimit, "limit", &names, 3)
        .into_iter()
        .chain(["n1"])
        .map(str::to_owned)
        .collect();
    expected.sort();
    expected.dedup();
    eventually_async(|| async { holders(&nodes[1], key).await == expected }).await;

    // The origin dies; its state is forgotten; the document stays and reaches a newcomer.
    let origin = nodes.remove(0);
    drop(origin);
    let observer = &nodes[0];
    eventually_async(|| async {
        observer
            .membership
            .with_chitchat(|c| c.node_states().keys().all(|id| &*id.node_id != "n1"))
            .await
    })
    .await;
    let custodians_left = holders(observer, key).await;
    assert!(!custodians_left.is_empty(), "no custodian left");
    assert!(!custodians_left.contains(&"n1".to_string()));
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let mut expected: Vec<String> = custodians(Kind::Ratelimit, "limit", &names, 3)
        .into_iter()
        .map(str::to_owned)
        .collect();
    expected.sort();
    eventually_async(|| async { holders(observer, key).await == expected }).await;
    let newcomer = mesh.start("n6", 6, 1, &[2]).await;
    eventually("the newcomer learns the document", || {
        rate(&newcomer, "limit") == Some(10)
    })
    .await;
    let mut all: Vec<&Node> = nodes.iter().collect();
    all.push(&newcomer);
    assert!(same_digest(&all), "{:?}", digests(&all));
}

async fn eventually_async<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn forged_altered_and_replayed_documents_change_nothing() {
    let mesh = Mesh::new();
    let a = mesh.start("a", 1, 1, &[]).await;
    let b = mesh.start("b", 2, 1, &[1]).await;
    // A member that runs no policy service and publishes whatever it likes under its keys.
    let evil = mesh.membership("evil", 3, 1, &[1]).await;
    eventually("three members", || {
        a.membership.view().members.len() == 3 && b.membership.view().members.len() == 3
    })
    .await;

    let old = mesh.version(&a, "limit", Some(1));
    a.policy.apply(vec![old.clone()], false).await.unwrap();
    let new = mesh.version(&a, "limit", Some(2));
    a.policy.apply(vec![new.clone()], false).await.unwrap();
    eventually("b has the new version", || rate(&b, "limit") == Some(2)).await;
    let digest = a.policy.current().digest().to_owned();

    // Signed by a node, not an operator.
    let node_key = mesh.pki.issue(Role::Node, "evil", &[]);
    let node_signer = Signer::load(&node_key.cert, &node_key.key).unwrap();
    let stamp = Stamp {
        hlc: Hlc {
            ms: now_ms(),
            logical: 0,
        },
        origin: "evil".into(),
    };
    let by_node = sign(
        &node_signer,
        Kind::Ratelimit,
        &n("limit"),
        stamp.clone(),
        Some(&limit("limit", 999)),
    )
    .unwrap();
    // The new version with its body altered, and with its stamp raised.
    let tamper = |f: &dyn Fn(&mut murmur_membership::policy::document::Payload)| {
        let mut doc: SignedDocument = records::decode(&new).unwrap();
        let mut p: murmur_membership::policy::document::Payload =
            postcard::from_bytes(&doc.payload).unwrap();
        f(&mut p);
        doc.payload = postcard::to_stdvec(&p).unwrap();
        records::encode(&doc).unwrap()
    };
    let altered = tamper(&|p| p.body = Some(limit("limit", 999).to_json()));
    let restamped = tamper(&|p| p.stamp.hlc.ms += 1_000);
    // A valid document far in the future, and a valid one under the wrong key.
    let future = mesh.signed(
        "other",
        Stamp {
            hlc: Hlc {
                ms: now_ms() + 3_600_000,
                logical: 0,
            },
            origin: "evil".into(),
        },
        Some(5),
    );
    let forged_keys = [
        ("policy/ratelimit/limit", by_node),
        ("policy/ratelimit/altered", altered),
        ("policy/ratelimit/restamped", restamped),
        ("policy/ratelimit/other", future),
        ("policy/ratelimit/wrong", new.clone()),
        // A replay of the old, validly signed version.
        ("policy/ratelimit/replayed", old.clone()),
    ];
    for (k, v) in &forged_keys {
        evil.set_key(k, v).await;
    }
    for node in [&a, &b] {
        eventually(&format!("{} counts the forgeries", node.name), || {
            let r = &node.policy.status().rejected;
            r.get("signature") == Some(&3)
                && r.get("future") == Some(&1)
                && r.get("wrong-key") >= Some(&2)
        })
        .await;
    }
    // Let a few more rounds go by: nothing changes anywhere, and the replay lost.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&a, &b] {
        assert_eq!(node.policy.current().digest(), digest);
        assert_eq!(rate(node, "limit"), Some(2));
        assert!(
            node.policy
                .current()
                .get(Kind::Ratelimit, "other")
                .is_none()
        );
    }
    // The replay under the right key also loses to the newer version.
    evil.set_key("policy/ratelimit/limit", &old).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node in [&a, &b] {
        assert_eq!(node.policy.current().digest(), digest);
        assert_eq!(rate(node, "limit"), Some(2));
    }
}

#[tokio::test]
async fn concurrent_versions_across_a_partition_converge_on_one_winner() {
    let mesh = Mesh::new();
    let a = mesh.start("a", 1, 1, &[]).await;
    let b = mesh.start("b", 2, 1, &[1]).await;
    let c = mesh.start("c", 3, 1, &[1]).await;
    let d = mesh.start("d", 4, 1, &[1]).await;
    let all = [&a, &b, &c, &d];
    all_alive(&all).await;

    // The same moment on two nodes, connected: same clock reading, different origins.
    let hlc = Hlc {
        ms: now_ms(),
        logical: 0,
    };
    let at = |node: &Node| Stamp {
        hlc,
        origin: node.name.clone(),
    };
    let (va, vc) = (
        mesh.signed("x", at(&a), Some(1)),
        mesh.signed("x", at(&c), Some(3)),
    );
    let (ra, rc) = tokio::join!(
        a.policy.apply(vec![va], false),
        c.policy.apply(vec![vc], false)
    );
    ra.unwrap();
    rc.unwrap();
    eventually("one winner for x", || {
        all.iter().all(|n| rate(n, "x") == Some(3))
    })
    .await;

    // Partition, then different versions on each side, then heal.
    mesh.partition(&[&a, &b], &[&c, &d]).await;
    let left = mesh.version(&b, "y", Some(10));
    let right = mesh.version(&d, "y", Some(20));
    let later = mesh.version(&a, "x", Some(100));
    b.policy.apply(vec![left], false).await.unwrap();
    d.policy.apply(vec![right.clone()], false).await.unwrap();
    a.policy.apply(vec![later], false).await.unwrap();
    eventually("each side has its own y", || {
        rate(&a, "y") == Some(10) && rate(&c, "y") == Some(20)
    })
    .await;
    assert_eq!(rate(&c, "x"), Some(3), "the partition holds");
    let started = Instant::now();
    mesh.heal(&[&a, &b], &[&c, &d]).await;
    // d stamped later (or equal ms and "d" > "b"), so its version wins everywhere.
    eventually("everyone agrees after the heal", || {
        same_digest(&all)
            && all
                .iter()
                .all(|n| rate(n, "y") == Some(20) && rate(n, "x") == Some(100))
    })
    .await;
    println!("converged {:?} after the heal", started.elapsed());
}

#[tokio::test]
async fn a_delete_made_during_a_partition_wins_after_the_heal() {
    let mesh = Mesh::new();
    let a = mesh.start("a", 1, 1, &[]).await;
    let b = mesh.start("b", 2, 1, &[1]).await;
    let c = mesh.start("c", 3, 1, &[1]).await;
    let all = [&a, &b, &c];
    all_alive(&all).await;
    a.policy
        .apply(vec![mesh.version(&a, "gone", Some(4))], false)
        .await
        .unwrap();
    eventually("all hold it", || {
        all.iter().all(|n| rate(n, "gone") == Some(4))
    })
    .await;

    mesh.partition(&[&a, &b], &[&c]).await;
    let delete = mesh.version(&b, "gone", None);
    let r = b.policy.apply(vec![delete], false).await.unwrap();
    assert_eq!(r[0].outcome, ApplyOutcome::Deleted);
    eventually("deleted on the majority", || rate(&a, "gone").is_none()).await;
    // The isolated node keeps (and republishes) its old copy meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rate(&c, "gone"), Some(4));

    mesh.heal(&[&a, &b], &[&c]).await;
    eventually("the delete reaches c", || rate(&c, "gone").is_none()).await;
    // And the old copy never comes back, anywhere.
    for _ in 0..50 {
        assert!(all.iter().all(|n| rate(n, "gone").is_none()));
        assert!(same_digest(&all));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tomb = a.policy.status();
    assert!(
        tomb.winners
            .iter()
            .any(|d| d.name().as_str() == "gone" && d.is_tombstone())
    );
}

#[tokio::test]
async fn a_whole_cluster_restart_keeps_the_policy_set() {
    let mesh = Mesh::new();
    let a = mesh.start("a", 1, 1, &[]).await;
    let b = mesh.start("b", 2, 1, &[1]).await;
    all_alive(&[&a, &b]).await;
    a.policy
        .apply(
            vec![
                mesh.version(&a, "p1", Some(1)),
                mesh.version(&a, "p2", Some(2)),
            ],
            false,
        )
        .await
        .unwrap();
    a.policy
        .apply(vec![mesh.version(&a, "p2", None)], false)
        .await
        .unwrap();
    eventually("b has them", || {
        rate(&b, "p1") == Some(1) && rate(&b, "p2").is_none()
    })
    .await;
    let digest = a.policy.current().digest().to_owned();
    drop((a, b));

    // Restarted apart from each other (no seeds), each comes back with the set from disk.
    let a = mesh.start("a", 1, 2, &[]).await;
    let b = mesh.start("b", 2, 2, &[]).await;
    for node in [&a, &b] {
        assert_eq!(node.policy.current().digest(), digest);
        assert_eq!(rate(node, "p1"), Some(1));
        assert!(
            node.policy
                .status()
                .winners
                .iter()
                .any(|d| d.name().as_str() == "p2" && d.is_tombstone())
        );
    }
}

#[tokio::test]
async fn applies_are_checked_before_anything_changes() {
    let mesh = Mesh::new();
    let a = mesh.start("a", 1, 1, &[]).await;
    let good = mesh.version(&a, "ok", Some(1));
    // Stamped for another node.
    let elsewhere = mesh.signed(
        "ok2",
        Stamp {
            hlc: Hlc {
                ms: now_ms(),
                logical: 0,
            },
            origin: "b".into(),
        },
        Some(1),
    );
    let e = a
        .policy
        .apply(vec![good.clone(), elsewhere], false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stamped for node \"b\""), "{e}");
    assert!(
        a.policy.current().is_empty(),
        "nothing of a refused batch is applied"
    );
    // A dry run changes nothing either.
    let r = a.policy.apply(vec![good.clone()], true).await.unwrap();
    assert_eq!(r[0].outcome, ApplyOutcome::Created);
    assert!(a.policy.current().is_empty());
    a.policy.apply(vec![good.clone()], false).await.unwrap();
    // The same body again is unchanged; an older stamp with a new body is stale.
    let same = mesh.version(&a, "ok", Some(1));
    assert_eq!(
        a.policy.apply(vec![same], false).await.unwrap()[0].outcome,
        ApplyOutcome::Unchanged
    );
    let current = a
        .policy
        .current()
        .get(Kind::Ratelimit, "ok")
        .unwrap()
        .stamp()
        .clone();
    let stale = mesh.signed(
        "ok",
        Stamp {
            hlc: Hlc {
                ms: current.hlc.ms - 1,
                logical: 0,
            },
            origin: "a".into(),
        },
        Some(9),
    );
    let e = a.policy.apply(vec![stale], false).await.unwrap_err();
    assert!(e.to_string().contains("newer version"), "{e}");
    assert_eq!(rate(&a, "ok"), Some(1));
}

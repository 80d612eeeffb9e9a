//! Policy across cells, in process over chitchat's in-memory transport: two cells gossiping
//! under their own cluster ids, and one node of each also in a top layer, bridging. A document
//! applied in one cell, and its delete, reach every node of the other; once the other cell's
//! custodians carry it, the bridge's own copy there goes.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use murmur_membership::driver::Trust;
use murmur_membership::policy::custody::custodians;
use murmur_membership::policy::service::Bridge;
use murmur_membership::policy::spec::{PolicyBody, PolicyDuration, RateLimitSpec};
use murmur_membership::policy::{Kind, PolicyConfig, PolicyHandle, Stamp, sign};
use murmur_membership::trust::signed;
use murmur_membership::{GossipSettings, MemberState, Membership, MembershipConfig};
use murmur_transport::identity::{Name, Role};
use murmur_transport::signing::Signer;
use murmur_transport::testing::TestPki;
use murmur_transport::tls::TrustBundle;
use tokio::sync::watch;
use tokio::time::Instant;

const KEY: &str = "policy/ratelimit/limit";

fn addr(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 23_000 + i).into()
}

struct Mesh {
    net: ChannelTransport,
    pki: TestPki,
    operator: Signer,
    bundle: TrustBundle,
    /// Each node's policy refresh tick.
    refresh: Duration,
}

struct Node {
    name: String,
    membership: Membership,
    policy: PolicyHandle,
    /// The top-layer gossip of a bridging node, and the sender that hands it to policy.
    top: Option<(Arc<Membership>, watch::Sender<Option<Bridge>>)>,
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
            refresh: Duration::from_millis(50),
        }
    }

    fn config(&self, name: &str, cluster: &str, i: u16, seeds: &[u16]) -> MembershipConfig {
        let gossip = GossipSettings {
            cluster_id: cluster.into(),
            interval: Duration::from_millis(50),
            initial_interval: Duration::from_millis(50),
            ..GossipSettings::default()
        };
        let tls = self.pki.tls(&self.pki.node(name, &[]), Role::Node, name);
        MembershipConfig {
            trust: Trust::new(tls, &gossip),
            name: name.into(),
            generation: 1,
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

    /// A node of `cell` at index `i`; with `top`, also in the top layer at index `top.0`
    /// seeded with `top.1`, bridging.
    async fn start(
        &self,
        name: &str,
        cell: &str,
        i: u16,
        seed: u16,
        top: Option<(u16, u16)>,
    ) -> Node {
        let config = self.config(name, &format!("murmur/{cell}"), i, &[seed]);
        let membership = Membership::start(config, &self.net).await.unwrap();
        let bundle = self.bundle.clone();
        let mut pc = PolicyConfig::new(name, Arc::new(move || bundle.clone()));
        pc.refresh = self.refresh;
        let (tx, rx) = watch::channel(None);
        let policy = PolicyHandle::start_bridged(&membership, pc, rx);
        let top = match top {
            Some((at, seed)) => {
                let config = self.config(name, "murmur-top", at, &[seed]);
                let m = Arc::new(Membership::start(config, &self.net).await.unwrap());
                tx.send_replace(Some(Bridge { top: m.clone() }));
                Some((m, tx))
            }
            None => None,
        };
        Node {
            name: name.into(),
            membership,
            policy,
            top,
        }
    }

    fn signed(&self, origin: &Node, rate: Option<u32>) -> String {
        let stamp = Stamp {
            hlc: origin.policy.status().clock.read(now_ms()).next(),
            origin: origin.name.clone(),
        };
        let body = rate.map(|rate| {
            PolicyBody::Ratelimit(RateLimitSpec {
                name: n("limit"),
                service: n("web"),
                rate,
                per: PolicyDuration::from_secs(1),
                burst: None,
                by: Default::default(),
                scope: Default::default(),
            })
        });
        sign(
            &self.operator,
            Kind::Ratelimit,
            &n("limit"),
            stamp,
            body.as_ref(),
        )
        .unwrap()
    }
}

fn n(s: &str) -> Name {
    Name::parse("name", s).unwrap()
}

fn now_ms() -> u64 {
    murmur_membership::policy::service::now_ms()
}

fn rate(node: &Node) -> Option<u32> {
    match node
        .policy
        .current()
        .get(Kind::Ratelimit, "limit")?
        .body()?
    {
        PolicyBody::Ratelimit(r) => Some(r.rate),
        _ => None,
    }
}

async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until each of `nodes` sees `size` live members in its cell.
async fn see_their_cells(nodes: &[&Node], size: usize) {
    for x in nodes {
        eventually(&format!("{} sees its cell", x.name), || async {
            x.membership.view().count(MemberState::Alive) == size
        })
        .await;
    }
}

/// Names of live nodes whose namespace holds `KEY` in `m`'s layer (a withdrawn key holds a
/// signed withdrawal, no copy).
async fn holders(m: &Membership) -> BTreeSet<String> {
    m.with_chitchat(|c| {
        c.live_nodes()
            .filter(|id| {
                c.node_state(id)
                    .and_then(|s| s.get(KEY))
                    .is_some_and(|v| signed::body(v).is_some())
            })
            .map(|id| id.node_id.to_string())
            .collect()
    })
    .await
}

#[tokio::test]
async fn a_document_and_its_delete_cross_cells_through_the_bridges() {
    let mesh = Mesh::new();
    // Cell a: 1..3, cell b: 4..6; a1 and b1 bridge in the top layer at 11 and 12.
    let a1 = mesh.start("a1", "a", 1, 1, Some((11, 11))).await;
    let a2 = mesh.start("a2", "a", 2, 1, None).await;
    let a3 = mesh.start("a3", "a", 3, 1, None).await;
    let b1 = mesh.start("b1", "b", 4, 4, Some((12, 11))).await;
    let b2 = mesh.start("b2", "b", 5, 4, None).await;
    let b3 = mesh.start("b3", "b", 6, 4, None).await;
    let (a, b) = ([&a1, &a2, &a3], [&b1, &b2, &b3]);
    see_their_cells(&[&a1, &a2, &a3, &b1, &b2, &b3], 3).await;
    // The cells do not see each other: separate gossip domains.
    assert!(!a1.membership.view().members.contains_key("b1"));

    let started = Instant::now();
    b3.policy
        .apply(vec![mesh.signed(&b3, Some(7))], false)
        .await
        .unwrap();
    eventually("every node of cell a holds the document", || async {
        a.iter().all(|x| rate(x) == Some(7))
    })
    .await;
    println!("b3 -> cell a in {:?}", started.elapsed());

    // In cell a (three nodes, custody 3) every node carries it; so does the top layer.
    let all: BTreeSet<String> = ["a1", "a2", "a3"].map(str::to_owned).into();
    eventually("cell a's custodians carry it", || async {
        holders(&a2.membership).await == all
    })
    .await;
    let top = &a1.top.as_ref().unwrap().0;
    eventually("both bridges carry it in the top layer", || async {
        holders(top).await.len() == 2
    })
    .await;

    // A delete applied in a reaches b.
    let started = Instant::now();
    a2.policy
        .apply(vec![mesh.signed(&a2, None)], false)
        .await
        .unwrap();
    eventually("every node of cell b drops the document", || async {
        b.iter().all(|x| rate(x).is_none())
    })
    .await;
    println!("delete a2 -> cell b in {:?}", started.elapsed());
    assert_eq!(rate(&b1), None);
}

#[tokio::test]
async fn a_bridge_withdraws_its_copy_once_a_custodian_carries_it() {
    let mesh = Mesh::new();
    // One cell of four with the default custody of 3: the bridge is the one node that is not
    // a custodian of the document, seeded in the top layer by t1 (another cell's bridge).
    let names = ["a1", "a2", "a3", "a4"];
    let keepers: BTreeSet<String> = custodians(Kind::Ratelimit, "limit", &names, 3)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let bridge = names.iter().position(|x| !keepers.contains(*x)).unwrap();
    let mut a = Vec::new();
    for (i, name) in (1u16..).zip(names) {
        let top = (i == 1 + bridge as u16).then_some((11, 11));
        a.push(mesh.start(name, "a", i, 1, top).await);
    }
    let t = mesh.start("t1", "t", 5, 5, Some((12, 11))).await;
    see_their_cells(&a.iter().collect::<Vec<_>>(), 4).await;
    t.policy
        .apply(vec![mesh.signed(&t, Some(3))], false)
        .await
        .unwrap();
    eventually("cell a holds the document", || async {
        a.iter().all(|x| rate(x) == Some(3))
    })
    .await;
    // The bridge brought it in, then withdrew its copy once the custodians carried it.
    eventually("exactly the custodians of cell a carry it", || async {
        holders(&a[0].membership).await == keepers
    })
    .await;
    let top = &a[bridge].top.as_ref().unwrap().0;
    // In the top layer (two members, both custodians) both carry it.
    eventually("both top-layer members carry it", || async {
        holders(top).await.len() == 2
    })
    .await;
}

#[tokio::test]
async fn a_document_crosses_cells_without_a_refresh_tick() {
    // No tick after the first within the test: only a policy key changing (in a cell, or in
    // the top layer at a bridge) moves a document on.
    let mesh = Mesh {
        refresh: Duration::from_secs(3_600),
        ..Mesh::new()
    };
    let a1 = mesh.start("a1", "a", 1, 1, Some((11, 11))).await;
    let a2 = mesh.start("a2", "a", 2, 1, None).await;
    let b1 = mesh.start("b1", "b", 3, 3, Some((12, 11))).await;
    let b2 = mesh.start("b2", "b", 4, 3, None).await;
    see_their_cells(&[&a1, &a2, &b1, &b2], 2).await;
    let top = &a1.top.as_ref().unwrap().0;
    eventually("the bridges see each other", || async {
        top.view().count(MemberState::Alive) == 2
    })
    .await;
    b2.policy
        .apply(vec![mesh.signed(&b2, Some(5))], false)
        .await
        .unwrap();
    eventually("every node of cell a holds the document", || async {
        [&a1, &a2].iter().all(|x| rate(x) == Some(5))
    })
    .await;
}

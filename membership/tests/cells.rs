//! Two cells in one process over chitchat's in-memory transport, running the real membership
//! and cell-link code: a service of one cell routable from the other, a custodian killed and
//! replaced (by the failure detector or, before it, by the standby's silence check), a
//! partition between the cells (stale, then expired) and its heal, a whole cell lost and
//! restarted, a node moving to the other cell.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::ChannelTransport;
use murmur_membership::cells::directory::Ageing;
use murmur_membership::cells::{
    CellLink, CellLinkConfig, CellSettings, SharedTransport, cluster_id,
};
use murmur_membership::driver::Trust;
use murmur_membership::records::{Health, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_membership::{ClusterView, GossipSettings, MemberState, Membership, MembershipConfig};
use murmur_transport::identity::Role;
use murmur_transport::testing::TestPki;
use tokio::time::Instant;

fn pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| TestPki::new("murmur.local"))
}

fn addr(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 21_000 + i).into()
}

fn top_addr(i: u16) -> SocketAddr {
    ([127, 0, 0, 1], 22_000 + i).into()
}

fn gossip(cell: &str) -> GossipSettings {
    GossipSettings {
        cluster_id: cluster_id(cell),
        interval: Duration::from_millis(50),
        initial_interval: Duration::from_millis(50),
        ..GossipSettings::default()
    }
}

struct Node {
    membership: Arc<Membership>,
    link: CellLink,
}

/// Starts node `name` of `cell` at index `i`, seeding its cell from `seed` and the top layer
/// from every index in `top_seeds`.
async fn start(
    net: &ChannelTransport,
    name: &str,
    cell: &str,
    i: u16,
    seed: u16,
    top: &[u16],
) -> Node {
    start_with(net, name, cell, i, seed, top, |s| {
        s.linger = Duration::from_millis(500);
    })
    .await
}

/// [`start`] with the cell settings changed by `tune`.
async fn start_with(
    net: &ChannelTransport,
    name: &str,
    cell: &str,
    i: u16,
    seed: u16,
    top: &[u16],
    tune: impl FnOnce(&mut CellSettings),
) -> Node {
    start_gossiping(net, name, cell, (i, seed), top, gossip(cell), tune).await
}

/// [`start_with`] with gossip settings of its own (both layers); `at` is the node's index and
/// its seed's.
async fn start_gossiping(
    net: &ChannelTransport,
    name: &str,
    cell: &str,
    (i, seed): (u16, u16),
    top: &[u16],
    gossip: GossipSettings,
    tune: impl FnOnce(&mut CellSettings),
) -> Node {
    let tls = {
        static ISSUING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ISSUING.lock().unwrap();
        pki().tls(&pki().node(name, &[]), Role::Node, name)
    };
    let config = MembershipConfig {
        trust: Trust::new(tls.clone(), &gossip),
        name: name.into(),
        generation: 1,
        mesh_addr: addr(i),
        admin_addr: None,
        labels: BTreeMap::new(),
        seeds: if seed == i {
            vec![]
        } else {
            vec![addr(seed).to_string()]
        },
        gossip: gossip.clone(),
        view_file: None,
        fail_static_warmup: Duration::from_secs(1),
        refresh: Duration::from_millis(50),
    };
    let membership = Arc::new(Membership::start(config, net).await.unwrap());
    let mut settings = CellSettings::new(cell, &gossip);
    settings.tick = Duration::from_millis(100);
    settings.beacon_every = Duration::from_millis(300);
    // Longer than a stall of a loaded machine: one custodian acts unless a test says otherwise.
    settings.takeover = Duration::from_secs(3);
    settings.ageing = Ageing {
        stale_after: Duration::from_millis(1500),
        // Long after stale: a loaded machine may not look at the view for seconds.
        expire_after: Duration::from_secs(8),
    };
    tune(&mut settings);
    let link = CellLink::start(
        CellLinkConfig {
            settings,
            top_addr: top_addr(i),
            top_seeds: top
                .iter()
                .filter(|t| **t != i)
                .map(|t| top_addr(*t).to_string())
                .collect(),
            tls,
            transport: Arc::new(SharedTransport(net.clone())),
        },
        membership.clone(),
    );
    Node { membership, link }
}

/// Cell `a` (indexes 1-3) and cell `b` (indexes 11-13); top-layer seeds: every node.
async fn two_cells(net: &ChannelTransport) -> (Vec<Node>, Vec<Node>) {
    let all = [1, 2, 3, 11, 12, 13];
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 1..=3 {
        a.push(start(net, &format!("a{i}"), "a", i, 1, &all).await);
        b.push(start(net, &format!("b{i}"), "b", 10 + i, 11, &all).await);
    }
    (a, b)
}

fn web() -> ServiceRecord {
    ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Http,
        labels: BTreeMap::new(),
        weight: 1,
        health: Health::Passing,
        balancer: murmur_membership::records::Balancer::default(),
    }
}

async fn wait_for(m: &Membership, what: &str, cond: impl Fn(&ClusterView) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rx = m.watch();
    loop {
        if cond(&rx.borrow()) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}: {:#?}",
            *rx.borrow()
        );
        let _ = tokio::time::timeout(left, rx.changed()).await;
    }
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `service` is seen from `m` as served in `cell` by `node` at `at`, with the given staleness.
fn remote(
    v: &ClusterView,
    service: &str,
    node: &str,
    cell: &str,
    at: SocketAddr,
    stale: bool,
) -> bool {
    v.endpoints(service).iter().any(|e| {
        e.node == node && e.cell.as_deref() == Some(cell) && e.mesh_addr == at && e.stale == stale
    })
}

/// a2 serves `web`, and every node of `b` sees it there, in cell a.
async fn a2_serves_web_seen_from_b(a: &[Node], b: &[Node]) {
    a[1].membership
        .publish_service("web", &web())
        .await
        .unwrap();
    for n in b {
        wait_for(&n.membership, "a2's web in b, from a", |v| {
            remote(v, "web", "a2", "a", addr(2), false)
        })
        .await;
    }
}

fn acting(nodes: &[Node]) -> Vec<usize> {
    (0..nodes.len())
        .filter(|i| nodes[*i].link.status().acting)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_one_cell_is_routable_from_the_other_with_its_cell_and_address() {
    let net = ChannelTransport::with_mtu(65_507);
    let (a, b) = two_cells(&net).await;
    a2_serves_web_seen_from_b(&a, &b).await;
    // The summary follows the cell: all three members once they are all alive there.
    wait_for(&b[2].membership, "a's three members", |v| {
        v.cells.get("a").is_some_and(|c| c.members == 3 && !c.stale)
    })
    .await;
    let v = b[2].membership.view();
    assert!(
        !v.members.contains_key("a2"),
        "a cell's members stay in their cell"
    );
    // In its own cell the instance is local, listed once.
    for n in &a {
        wait_for(&n.membership, "web local in a", |v| {
            v.endpoints("web").len() == 1 && v.endpoints("web")[0].cell.is_none()
        })
        .await;
    }
    // Every member of a cell ranks the same custodians, and exactly one of them acts.
    wait_until("one acting custodian per cell", || {
        acting(&a).len() == 1 && acting(&b).len() == 1
    })
    .await;
    let ranked = a[0].link.status().custodians;
    assert_eq!(ranked.len(), 2);
    for n in &a {
        assert_eq!(n.link.status().custodians, ranked);
    }
    assert_eq!(
        a[acting(&a)[0]].link.status().custodians[0],
        format!("a{}", acting(&a)[0] + 1)
    );
    // Removing the instance reaches the other cell too.
    a[1].membership.withdraw_service("web").await;
    wait_for(&b[0].membership, "web gone from b", |v| {
        v.endpoints("web").is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_custodian_is_replaced_and_the_replacement_publishes() {
    let net = ChannelTransport::with_mtu(65_507);
    let (mut a, b) = two_cells(&net).await;
    wait_until("one acting custodian in a", || acting(&a).len() == 1).await;
    let killed = acting(&a)[0];
    let killed_name = format!("a{}", killed + 1);
    let survivor = (killed + 1) % 3;
    a[survivor]
        .membership
        .publish_service("web", &web())
        .await
        .unwrap();
    wait_for(&b[0].membership, "a's web in b", |v| {
        v.endpoints("web").len() == 1
    })
    .await;

    drop(a.remove(killed));
    wait_until("another custodian acts in a", || {
        acting(&a).len() == 1 && a[acting(&a)[0]].link.status().custodians[0] != killed_name
    })
    .await;
    // The replacement publishes: a change made after the kill reaches the other cell, in a
    // summary that names a surviving custodian first. (Which survivor acts may still move while
    // liveness settles on a loaded machine; that it is not the dead one may not.)
    let survivors: Vec<String> = a
        .iter()
        .map(|n| n.membership.chitchat_id().node_id.to_string())
        .collect();
    a[0].membership
        .publish_service("api", &web())
        .await
        .unwrap();
    wait_for(&b[1].membership, "api from the replacement", |v| {
        v.endpoints("api").len() == 1
            && v.cells.get("a").is_some_and(|c| {
                !c.stale
                    && c.custodians.first().is_some_and(|n| survivors.contains(n))
                    && !c.custodians.contains(&killed_name)
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_cell_is_stale_then_expires_and_is_fresh_again_after_the_heal() {
    let net = ChannelTransport::with_mtu(65_507);
    let (a, b) = two_cells(&net).await;
    a[0].membership
        .publish_service("web", &web())
        .await
        .unwrap();
    b[0].membership
        .publish_service("api", &web())
        .await
        .unwrap();
    wait_for(&b[2].membership, "web fresh in b", |v| {
        remote(v, "web", "a1", "a", addr(1), false)
    })
    .await;
    wait_for(&a[2].membership, "api fresh in a", |v| {
        remote(v, "api", "b1", "b", addr(11), false)
    })
    .await;

    let cut = async |link: bool| {
        for x in [1, 2, 3] {
            for y in [11, 12, 13] {
                if link {
                    net.add_link(top_addr(x), top_addr(y)).await;
                } else {
                    net.remove_link(top_addr(x), top_addr(y)).await;
                }
            }
        }
    };
    cut(false).await;
    // Each side keeps serving itself and its view of the other, marked stale ...
    wait_for(&b[2].membership, "web stale in b", |v| {
        remote(v, "web", "a1", "a", addr(1), true) && v.cells["a"].stale
    })
    .await;
    wait_for(&a[1].membership, "api stale in a", |v| {
        remote(v, "api", "b1", "b", addr(11), true)
    })
    .await;
    assert_eq!(
        a[1].membership.view().endpoints("web").len(),
        1,
        "a still serves itself"
    );
    // ... until it expires.
    wait_for(&b[2].membership, "web expired in b", |v| {
        v.endpoints("web").is_empty() && !v.cells.contains_key("a")
    })
    .await;

    cut(true).await;
    wait_for(&b[2].membership, "web fresh in b again", |v| {
        remote(v, "web", "a1", "a", addr(1), false)
    })
    .await;
    wait_for(&a[1].membership, "api fresh in a again", |v| {
        remote(v, "api", "b1", "b", addr(11), false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_alone_gossips_no_cell_keys_in_the_cell_and_its_view_is_unchanged() {
    assert_eq!(
        GossipSettings::default().cluster_id,
        cluster_id(murmur_membership::cells::DEFAULT_CELL)
    );
    let net = ChannelTransport::with_mtu(65_507);
    let nodes = [
        start(&net, "s1", "solo", 31, 31, &[31, 32]).await,
        start(&net, "s2", "solo", 32, 31, &[31, 32]).await,
    ];
    nodes[0]
        .membership
        .publish_service("web", &web())
        .await
        .unwrap();
    wait_until("one acting custodian", || acting(&nodes).len() == 1).await;
    // Several beacons later, still nothing in the cell's own gossip.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &nodes {
        let v = n.membership.view();
        assert!(v.cells.is_empty());
        assert_eq!(v.endpoints("web").len(), 1);
        assert_eq!(v.endpoints("web")[0].cell, None);
        let keys: Vec<String> = n
            .membership
            .with_chitchat(|c| {
                c.node_states()
                    .values()
                    .flat_map(|s| s.key_values().map(|(k, _)| k.to_owned()))
                    .collect()
            })
            .await;
        assert!(keys.iter().all(|k| !k.starts_with("cell/")), "{keys:?}");
    }
    // The acting custodian did publish its cell in the top layer.
    let top = nodes[acting(&nodes)[0]].link.top().unwrap();
    let own: Vec<String> = top
        .with_chitchat(|c| {
            c.self_node_state()
                .key_values()
                .map(|(k, _)| k.to_owned())
                .collect()
        })
        .await;
    assert!(own.contains(&"cell/solo/h".to_owned()), "{own:?}");
    assert!(own.contains(&"cell/solo/s/web".to_owned()), "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custodian_outranked_by_a_newcomer_lingers_in_the_top_layer_then_leaves() {
    use murmur_membership::cells::rank::custodians;
    let net = ChannelTransport::with_mtu(65_507);
    let lingering = |s: &mut CellSettings| s.linger = Duration::from_secs(2);
    let first = [
        start_with(&net, "l1", "l", 41, 41, &[], lingering).await,
        start_with(&net, "l2", "l", 42, 41, &[], lingering).await,
    ];
    wait_until("both custodians in the top layer", || {
        first.iter().all(|n| n.link.status().in_top)
    })
    .await;
    // A name that ranks first among the three: it displaces one of the two.
    let newcomer = (0..100)
        .map(|i| format!("n{i}"))
        .find(|n| custodians("l", &["l1", "l2", n], 2)[0] == n)
        .unwrap();
    let ranked = custodians("l", &["l1", "l2", &newcomer], 2);
    let displaced = first
        .iter()
        .find(|n| !ranked.contains(&n.membership.chitchat_id().node_id.as_ref()))
        .unwrap();
    let _n = start_with(&net, &newcomer, "l", 43, 41, &[], lingering).await;
    // Ranked out but still in the top layer for a while, then out of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lingered = false;
    loop {
        let st = displaced.link.status();
        let ranked_out = !st.custodians.is_empty()
            && !st
                .custodians
                .contains(&displaced.membership.chitchat_id().node_id.to_string());
        lingered |= ranked_out && st.in_top;
        if ranked_out && !st.in_top {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never left the top layer: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lingered, "left the top layer without lingering");
    assert!(displaced.link.top().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ranked_node_stays_out_of_the_top_layer_until_ranked_for_the_hold() {
    let net = ChannelTransport::with_mtu(65_507);
    let held = |s: &mut CellSettings| s.hold = Duration::from_secs(3600);
    let nodes = [
        start_with(&net, "h1", "h", 51, 51, &[], held).await,
        start_with(&net, "h2", "h", 52, 51, &[], held).await,
    ];
    // Both ranked (two custodians, two members) as each of them sees it ...
    wait_until("both nodes ranked by both", || {
        nodes.iter().all(|n| n.link.status().custodians.len() == 2)
    })
    .await;
    // ... for many ticks (100 ms each), and neither joins the top layer.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for n in &nodes {
            let st = n.link.status();
            assert!(!st.in_top && !st.acting, "joined before the hold: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_publishes_once_the_acting_custodian_is_silent_before_it_is_declared_dead() {
    let net = ChannelTransport::with_mtu(65_507);
    // A failure detector that never declares anyone dead: only the silence can hand over.
    let deaf = |cell: &str| GossipSettings {
        phi_threshold: 1e9,
        ..gossip(cell)
    };
    let quick = |s: &mut CellSettings| {
        s.linger = Duration::from_millis(500);
        s.takeover = Duration::from_millis(500);
    };
    let all = [61, 62, 63, 71];
    let mut t = Vec::new();
    for i in 61..=63 {
        let name = format!("t{}", i - 60);
        t.push(start_gossiping(&net, &name, "t", (i, 61), &all, deaf("t"), quick).await);
    }
    let u = start_gossiping(&net, "u1", "u", (71, 71), &all, deaf("u"), quick).await;
    wait_until(
        "one acting custodian in t, the standby in the top layer",
        || acting(&t).len() == 1 && t.iter().filter(|n| n.link.status().in_top).count() == 2,
    )
    .await;
    let killed = acting(&t)[0];
    let killed_name = format!("t{}", killed + 1);
    drop(t.remove(killed));
    // A change made after the kill reaches the other cell: someone publishes for t ...
    t[0].membership
        .publish_service("api", &web())
        .await
        .unwrap();
    wait_for(&u.membership, "api published after the kill", |v| {
        v.endpoints("api").len() == 1
    })
    .await;
    // ... the standby, acting while the dead custodian is still ranked first and listed alive.
    let standby = acting(&t);
    assert_eq!(standby.len(), 1, "one standby acts");
    let st = t[standby[0]].link.status();
    assert_eq!(st.custodians.first(), Some(&killed_name), "{st:?}");
    let v = t[standby[0]].membership.view();
    assert!(
        v.members
            .get(&killed_name)
            .is_some_and(|m| m.state == MemberState::Alive),
        "the dead custodian is still listed alive: {:?}",
        v.members.get(&killed_name)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moving_to_another_cell_is_served_from_there_and_gone_from_its_old_cell() {
    let net = ChannelTransport::with_mtu(65_507);
    let (mut a, b) = two_cells(&net).await;
    a2_serves_web_seen_from_b(&a, &b).await;
    // a2 stops and comes back configured into cell b, at another address.
    drop(a.remove(1));
    let moved = start(&net, "a2", "b", 14, 11, &[1, 3, 11, 12, 13]).await;
    moved
        .membership
        .publish_service("web", &web())
        .await
        .unwrap();
    // Cell b serves it as its own, once ...
    for n in b.iter().chain([&moved]) {
        wait_for(&n.membership, "web local in b", |v| {
            let e = v.endpoints("web");
            e.len() == 1 && e[0].cell.is_none() && e[0].node == "a2" && e[0].mesh_addr == addr(14)
        })
        .await;
    }
    // ... and cell a sees it in b only: its own summary no longer lists it.
    for n in &a {
        wait_for(&n.membership, "web from b in a, not from a", |v| {
            v.endpoints("web").len() == 1 && remote(v, "web", "a2", "b", addr(14), false)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cell_lost_is_kept_stale_elsewhere_then_fresh_again_once_restarted() {
    let net = ChannelTransport::with_mtu(65_507);
    let (mut a, b) = two_cells(&net).await;
    a[0].membership
        .publish_service("web", &web())
        .await
        .unwrap();
    wait_for(&b[0].membership, "a's web in b", |v| {
        remote(v, "web", "a1", "a", addr(1), false)
    })
    .await;
    // Every node of cell a gone at once: b keeps what it knew, marked stale.
    a.clear();
    for n in &b {
        wait_for(&n.membership, "a stale in b, its web kept", |v| {
            v.cells.get("a").is_some_and(|c| c.stale) && remote(v, "web", "a1", "a", addr(1), true)
        })
        .await;
    }
    // Cell a restarted from nothing, at new addresses: fresh again in b, with the new instance
    // only.
    let top = [4, 5, 6, 11, 12, 13];
    for i in 1..=3 {
        a.push(start(&net, &format!("a{i}"), "a", 3 + i, 4, &top).await);
    }
    a[0].membership
        .publish_service("web", &web())
        .await
        .unwrap();
    for n in &b {
        wait_for(&n.membership, "restarted a fresh in b", |v| {
            v.endpoints("web").len() == 1
                && remote(v, "web", "a1", "a", addr(4), false)
                && v.cells.get("a").is_some_and(|c| !c.stale && c.members == 3)
        })
        .await;
    }
}

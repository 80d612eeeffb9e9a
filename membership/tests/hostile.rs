//! A hostile member with a valid certificate, against honest nodes running the real membership
//! over QUIC with mutual TLS and the gossip guard: forged, replayed, reset, tombstoned and
//! version-locked state about another member; state about the receiver itself; the two
//! single-message crashes of chitchat; forged heartbeats; claims of another's address. Every
//! attack must change nothing others believe, leave the owner's later updates spreading, and
//! leave every gossip task running. Where it helps to show the attack is real, the same bytes
//! are sent to a node whose transport lets everything through.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::ChitchatId;
use murmur_membership::records::{
    self, Health, NODE_KEY, NodeRecord, NodeStatus, Protocol, RECORD_VERSION, ServiceRecord,
};
use murmur_membership::trust::signed::{self, HEAD_KEY, Slot};
use murmur_membership::trust::{GuardStats, Refusal};
use murmur_membership::{
    ClusterView, GossipSettings, MemberState, Membership, MembershipConfig, Trust,
};
use murmur_transport::endpoint::{EndpointConfig, GossipDatagram, MeshEndpoint, QuicSettings};
use murmur_transport::gossip::message::{DigestEntry, Kind, Kv, Message, NodeDelta, encode};
use murmur_transport::gossip::{GossipGuard, QuicGossip};
use murmur_transport::identity::Role;
use murmur_transport::testing::{OpenGuard, TestPki};
use murmur_transport::tls::TlsState;
use murmur_transport::wire::{GossipFrame, WIRE_VERSION, encode_gossip};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn settings() -> GossipSettings {
    let interval = Duration::from_millis(100);
    GossipSettings {
        interval,
        initial_interval: interval,
        head_interval: Duration::from_secs(1),
        ..GossipSettings::default()
    }
}

struct Honest {
    name: String,
    membership: Membership,
    endpoint: MeshEndpoint,
    tls: Arc<TlsState>,
}

impl Honest {
    async fn start(pki: &TestPki, name: &str, seeds: &[&Self], open: bool) -> Self {
        let tls = pki.tls(&pki.node(name, &[]), Role::Node, name);
        let (endpoint, inbox) = bind(tls.clone());
        let gossip = settings();
        let trust = Trust::new(tls.clone(), &gossip);
        let guard: Arc<dyn GossipGuard> = if open {
            Arc::new(OpenGuard)
        } else {
            trust.guard.clone()
        };
        let transport = QuicGossip::new(endpoint.clone(), inbox, guard);
        let config = MembershipConfig {
            name: name.into(),
            generation: 1,
            mesh_addr: endpoint.advertise_addr(),
            admin_addr: None,
            labels: BTreeMap::new(),
            seeds: seeds.iter().map(|s| s.addr().to_string()).collect(),
            gossip,
            view_file: None,
            fail_static_warmup: Duration::from_secs(1),
            refresh: Duration::from_millis(100),
            trust,
        };
        let membership = Membership::start(config, &transport).await.unwrap();
        Self {
            name: name.into(),
            membership,
            endpoint,
            tls,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.endpoint.advertise_addr()
    }

    fn id(&self) -> ChitchatId {
        self.membership.chitchat_id().clone()
    }

    fn stats(&self) -> GuardStats {
        self.membership.guard_stats()
    }

    /// Whether this node's gossip task still runs.
    async fn gossiping(&self) -> bool {
        let ended = self.membership.gossip_ended();
        tokio::time::timeout(Duration::from_millis(50), ended)
            .await
            .is_err()
    }

    /// `(value, version)` of `key` in `of`'s namespace as this node holds it.
    async fn held(&self, of: &ChitchatId, key: &str) -> Option<(String, u64)> {
        let (of, key) = (of.clone(), key.to_owned());
        self.membership
            .with_chitchat(move |c| {
                let v = c.node_state(&of)?.get_versioned(&key)?;
                Some((v.value.clone(), v.version))
            })
            .await
    }

    async fn max_version_of(&self, of: &ChitchatId) -> u64 {
        let of = of.clone();
        self.membership
            .with_chitchat(move |c| c.node_state(&of).map_or(0, |s| s.max_version()))
            .await
    }
}

fn bind(tls: Arc<TlsState>) -> (MeshEndpoint, mpsc::Receiver<GossipDatagram>) {
    MeshEndpoint::bind(
        EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: None,
            quic: QuicSettings::default(),
            reset_key: None,
        },
        tls,
    )
    .unwrap()
}

/// A member with a valid certificate that sends whatever gossip it likes.
struct Hostile {
    endpoint: MeshEndpoint,
    tls: Arc<TlsState>,
    _inbox: mpsc::Receiver<GossipDatagram>,
}

impl Hostile {
    fn new(pki: &TestPki, name: &str) -> Self {
        let tls = pki.tls(&pki.node(name, &[]), Role::Node, name);
        let (endpoint, inbox) = bind(tls.clone());
        Self {
            endpoint,
            tls,
            _inbox: inbox,
        }
    }

    /// Sends raw chitchat bytes to `to`, claiming to listen at `claim`.
    async fn send_raw(&self, to: SocketAddr, claim: SocketAddr, payload: Vec<u8>) {
        let frame = encode_gossip(&GossipFrame {
            version: WIRE_VERSION,
            from: claim,
            payload,
        })
        .unwrap();
        let conn = self.endpoint.connect(to, None).await.unwrap();
        conn.send_uni(&frame).await.unwrap();
    }

    async fn send(&self, to: SocketAddr, msg: &Message) {
        let own = self.endpoint.advertise_addr();
        self.send_raw(to, own, encode(msg)).await;
    }

    /// A value for `slot` signed with the hostile member's own key.
    fn forge(&self, slot: Slot<'_>, body: &str) -> String {
        let manifest = signed::manifest([(slot.key, slot.version)]);
        let bytes = signed::signed_bytes(slot, Some(body), &manifest);
        let sig = self.tls.sign_as_node(&bytes).unwrap();
        signed::render(Some(body), &manifest, &sig.signature)
    }
}

fn ack(delta: Vec<NodeDelta>) -> Message {
    Message {
        kind: Kind::Ack,
        digest: Vec::new(),
        cluster_id: String::new(),
        delta,
    }
}

fn syn(digest: Vec<DigestEntry>) -> Message {
    Message {
        kind: Kind::Syn,
        digest,
        cluster_id: "murmur".into(),
        delta: Vec::new(),
    }
}

fn delta(id: &ChitchatId, from: u64, kvs: Vec<Kv>) -> NodeDelta {
    NodeDelta {
        id: id.clone(),
        last_gc: 0,
        from_version: from,
        kvs,
        set_max_version: None,
    }
}

fn kv(key: &str, value: String, version: u64) -> Kv {
    Kv {
        key: key.into(),
        value,
        version,
        status: 0,
    }
}

async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_of(v: &ClusterView, name: &str) -> Option<MemberState> {
    v.members.get(name).map(|m| m.state)
}

fn left_record(b: &Honest) -> String {
    records::encode(&NodeRecord {
        version: RECORD_VERSION,
        name: b.name.clone(),
        mesh_addr: b.addr(),
        admin_addr: None,
        labels: BTreeMap::new(),
        status: NodeStatus::Left,
    })
    .unwrap()
}

fn web(weight: u32) -> ServiceRecord {
    ServiceRecord {
        version: RECORD_VERSION,
        protocol: Protocol::Http,
        labels: BTreeMap::new(),
        weight,
        health: Health::Passing,
        balancer: Default::default(),
    }
}

async fn pair(pki: &TestPki) -> (Honest, Honest) {
    let a = Honest::start(pki, "a", &[], false).await;
    let b = Honest::start(pki, "b", &[&a], false).await;
    b.membership.publish_service("web", &web(1)).await.unwrap();
    eventually("a and b see each other with b's service", async || {
        let v = a.membership.view();
        state_of(&v, "b") == Some(MemberState::Alive)
            && v.endpoints("web").len() == 1
            && state_of(&b.membership.view(), "a") == Some(MemberState::Alive)
    })
    .await;
    (a, b)
}

/// What `a` believes of `b` is still what `b` said.
fn assert_true_view(a: &Honest, b: &Honest) {
    let v = a.membership.view();
    let m = &v.members["b"];
    assert_eq!(m.state, MemberState::Alive, "{m:?}");
    assert_eq!(m.mesh_addr, b.addr());
    assert_eq!(m.generation, 1);
    let eps = v.endpoints("web");
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(eps[0].weight, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_version_locking_state_about_another_member_changes_nothing() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let y = Hostile::new(&pki, "y");
    let bid = b.id();
    let high = 1 << 62;
    let (genuine_node, genuine_version) = a.held(&bid, NODE_KEY).await.unwrap();
    let (genuine_head, _) = a.held(&bid, HEAD_KEY).await.unwrap();
    let svc = records::service_key("web", "b");
    let slot = |key: &'static str, version| Slot {
        id: &bid,
        key,
        version,
    };
    let attacks: Vec<(&str, Message)> = vec![
        (
            "an unsigned Left record at a huge version",
            ack(vec![delta(
                &bid,
                0,
                vec![kv(NODE_KEY, left_record(&b), high)],
            )]),
        ),
        (
            "a Left record signed by another member",
            ack(vec![delta(
                &bid,
                0,
                vec![kv(
                    NODE_KEY,
                    y.forge(slot(NODE_KEY, high), &left_record(&b)),
                    high,
                )],
            )]),
        ),
        (
            "a service rewritten by another member",
            ack(vec![delta(
                &bid,
                0,
                vec![kv(
                    &svc,
                    y.forge(
                        Slot {
                            id: &bid,
                            key: &svc,
                            version: high,
                        },
                        &records::encode(&web(1000)).unwrap(),
                    ),
                    high,
                )],
            )]),
        ),
        (
            "b's own older value replayed at a higher version",
            ack(vec![delta(
                &bid,
                0,
                vec![kv(NODE_KEY, genuine_node.clone(), high)],
            )]),
        ),
        (
            "b's own head replayed at u64::MAX",
            ack(vec![delta(
                &bid,
                0,
                vec![kv(HEAD_KEY, genuine_head, u64::MAX)],
            )]),
        ),
        (
            "a tombstone of b's node record",
            ack(vec![delta(
                &bid,
                0,
                vec![Kv {
                    status: 1,
                    ..kv(NODE_KEY, String::new(), high)
                }],
            )]),
        ),
        (
            "a reset of b's state",
            ack(vec![NodeDelta {
                last_gc: high,
                ..delta(&bid, 0, Vec::new())
            }]),
        ),
        (
            "b's max version set to u64::MAX",
            ack(vec![NodeDelta {
                set_max_version: Some(u64::MAX),
                ..delta(&bid, 0, Vec::new())
            }]),
        ),
    ];
    for (what, msg) in &attacks {
        y.send(a.addr(), msg).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_true_view(&a, &b);
        assert!(a.gossiping().await, "a's gossip ended after {what}");
        assert_eq!(
            a.held(&bid, NODE_KEY).await.map(|v| v.0),
            Some(genuine_node.clone()),
            "after {what}"
        );
        assert!(a.max_version_of(&bid).await < high, "after {what}");
    }
    // b's genuine values copied to another generation or another address of b: the first time
    // not seen alive yet, the second (heartbeat moved on) not vouched for by a valid delta.
    for (copy, heartbeat) in [
        (ChitchatId::new("b", 2, b.addr()), 5),
        (ChitchatId::new("b", 1, y.endpoint.advertise_addr()), 5),
        (ChitchatId::new("b", 2, b.addr()), 6),
        (ChitchatId::new("b", 1, y.endpoint.advertise_addr()), 6),
    ] {
        let msg = Message {
            kind: Kind::SynAck,
            digest: vec![DigestEntry {
                id: copy.clone(),
                heartbeat,
                last_gc: 0,
                max_version: genuine_version,
            }],
            cluster_id: String::new(),
            delta: vec![delta(
                &copy,
                0,
                vec![kv(NODE_KEY, genuine_node.clone(), genuine_version)],
            )],
        };
        y.send(a.addr(), &msg).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.membership.known_incarnations().await, 2);
    assert_true_view(&a, &b);

    let stats = a.stats();
    for why in [
        Refusal::Unsigned,
        Refusal::BadSignature,
        Refusal::Shape,
        Refusal::NotSeenAlive,
        Refusal::NewId,
    ] {
        assert!(stats.refused.get(&why) > Some(&0), "{why:?}: {stats:?}");
    }
    // The owner's later updates still spread, and so does everything else.
    b.membership.set_status(NodeStatus::Draining).await.unwrap();
    eventually("a sees b draining", async || {
        state_of(&a.membership.view(), "b") == Some(MemberState::Draining)
    })
    .await;
    assert!(a.gossiping().await && b.gossiping().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_guard_the_same_forgery_rewrites_what_others_believe() {
    // The control: the attack above is real, and only the guard stops it.
    let pki = TestPki::new("murmur.local");
    let a = Honest::start(&pki, "a", &[], true).await;
    let b = Honest::start(&pki, "b", &[&a], false).await;
    eventually("a sees b", async || {
        state_of(&a.membership.view(), "b") == Some(MemberState::Alive)
    })
    .await;
    let y = Hostile::new(&pki, "y");
    let bid = b.id();
    let high = 1 << 62;
    let forged = y.forge(
        Slot {
            id: &bid,
            key: NODE_KEY,
            version: high,
        },
        &left_record(&b),
    );
    y.send(
        a.addr(),
        &ack(vec![delta(&bid, 0, vec![kv(NODE_KEY, forged, high)])]),
    )
    .await;
    eventually("the unguarded node believes b left", async || {
        state_of(&a.membership.view(), "b") == Some(MemberState::Left)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_about_the_receiver_itself_is_refused_and_names_its_sender() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let y = Hostile::new(&pki, "y");
    let aid = a.id();
    let high = 1 << 40;
    let forged = y.forge(
        Slot {
            id: &aid,
            key: NODE_KEY,
            version: high,
        },
        "AQ",
    );
    y.send(
        b.addr(),
        &ack(vec![delta(
            &aid,
            0,
            vec![kv(NODE_KEY, forged.clone(), high)],
        )]),
    )
    .await;
    y.send(
        a.addr(),
        &ack(vec![delta(&aid, 0, vec![kv(NODE_KEY, forged, high)])]),
    )
    .await;
    eventually("a counts the forgery about itself", async || {
        a.stats().forged_self.get("y") == Some(&1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.max_version_of(&aid).await < high);
    assert!(b.max_version_of(&aid).await < high);
    assert_eq!(
        state_of(&b.membership.view(), "a"),
        Some(MemberState::Alive)
    );
}

/// The Ack that trips `assert!(max_version >= ...)` in chitchat: a key-value, then a lower
/// SetMaxVersion, for an incarnation the receiver knows.
fn crash_ack(about: &ChitchatId, held: u64) -> Vec<u8> {
    encode(&ack(vec![NodeDelta {
        set_max_version: Some(held + 1),
        ..delta(about, held, vec![kv("x/crash", "v".into(), held + 100)])
    }]))
}

/// A Syn of invented incarnations `ids`: enough of them make the receiver's own digest too
/// large for chitchat's reply (`assert!(mtu >= 100)`).
fn phantom_syn(ids: std::ops::Range<usize>) -> Vec<u8> {
    // Names and addresses that compress like real ones, not like a counter.
    let mix = |i: usize| {
        (i as u64 + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29)
    };
    let digest = ids
        .map(|i| DigestEntry {
            id: ChitchatId::new(
                format!("pod-{:012x}", mix(i) >> 16),
                mix(i + 1),
                SocketAddr::new(std::net::Ipv4Addr::from(mix(i + 2) as u32).into(), 7420),
            ),
            heartbeat: 1,
            last_gc: 0,
            max_version: 0,
        })
        .collect();
    encode(&syn(digest))
}

/// Stock chitchat over its own UDP transport on loopback: no prescan, no guard.
async fn stock_chitchat(name: &str) -> (chitchat::ChitchatHandle, SocketAddr) {
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = chitchat::ChitchatConfig {
        chitchat_id: ChitchatId::new(name, 1, addr),
        cluster_id: "murmur".into(),
        gossip_interval: Duration::from_secs(3600),
        listen_addr: addr,
        seed_nodes: Vec::new(),
        failure_detector_config: chitchat::FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    };
    let handle = chitchat::spawn_chitchat(config, Vec::new(), &chitchat::transport::UdpTransport)
        .await
        .unwrap();
    (handle, addr)
}

async fn ended(handle: &chitchat::ChitchatHandle) -> bool {
    tokio::time::timeout(Duration::from_secs(5), handle.termination_watcher())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_two_single_message_crashes_end_no_guarded_gossip() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let y = Hostile::new(&pki, "y");
    let own = y.endpoint.advertise_addr();
    // 8 000 invented ids in four Syns: each fits one message, together the receiver's digest
    // would not.
    let syns: Vec<Vec<u8>> = (0..4)
        .map(|k| phantom_syn(k * 2_000..(k + 1) * 2_000))
        .collect();
    assert!(syns.iter().all(|s| s.len() < 65_000));

    // The bytes are real crashes: stock chitchat's gossip ends on each.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (stock, at) = stock_chitchat("stock-1").await;
    let introduce = syn(vec![DigestEntry {
        id: b.id(),
        heartbeat: 3,
        last_gc: 0,
        max_version: 0,
    }]);
    udp.send_to(&encode(&introduce), at).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    udp.send_to(&crash_ack(&b.id(), 0), at).await.unwrap();
    assert!(ended(&stock).await, "stock chitchat survived the crash Ack");
    let (stock, at) = stock_chitchat("stock-2").await;
    for s in &syns {
        udp.send_to(s, at).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended(&stock).await,
        "stock chitchat survived the phantom Syns"
    );

    // The guarded node takes both and goes on.
    let held = a.max_version_of(&b.id()).await;
    y.send_raw(a.addr(), own, crash_ack(&b.id(), held)).await;
    for s in &syns {
        y.send_raw(a.addr(), own, s.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.gossiping().await);
    assert!(a.membership.known_incarnations().await <= 2);
    assert_true_view(&a, &b);
    b.membership.publish_service("web", &web(7)).await.unwrap();
    eventually("b's update reaches a", async || {
        a.membership
            .view()
            .endpoints("web")
            .first()
            .is_some_and(|e| e.weight == 7)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heartbeats_neither_kill_a_member_nor_keep_a_dead_one_alive() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let y = Hostile::new(&pki, "y");
    let bid = b.id();
    let entry = |hb| DigestEntry {
        id: bid.clone(),
        heartbeat: hb,
        last_gc: 0,
        max_version: 0,
    };
    // Lock-out: b's heartbeat pushed to the top; b must stay alive at a.
    for hb in [u64::MAX - 1, u64::MAX / 2, 1 << 62] {
        y.send(a.addr(), &syn(vec![entry(hb)])).await;
    }
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            state_of(&a.membership.view(), "b"),
            Some(MemberState::Alive)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.stats().heartbeats_clamped >= 3, "{:?}", a.stats());

    // Keep-alive: b dies while y keeps raising its heartbeat as b's clock would.
    let last = a
        .membership
        .with_chitchat({
            let bid = bid.clone();
            move |c| c.node_state(&bid).map(|s| u64::from(s.heartbeat()))
        })
        .await
        .unwrap();
    let died = Instant::now();
    b.endpoint.close(Duration::from_millis(10)).await;
    drop(b);
    let pump = async {
        loop {
            let hb = last + died.elapsed().as_micros() as u64;
            y.send(a.addr(), &syn(vec![entry(hb)])).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let dead = async {
        eventually("a declares b dead", async || {
            state_of(&a.membership.view(), "b") == Some(MemberState::Dead)
        })
        .await;
    };
    tokio::select! {
        () = pump => unreachable!(),
        () = dead => {}
    }
    // The horizon is three head intervals (3 s), then detection.
    assert!(
        died.elapsed() < Duration::from_secs(12),
        "{:?}",
        died.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_address_takes_nothing_over() {
    let pki = TestPki::new("murmur.local");
    let a = Honest::start(&pki, "a", &[], false).await;
    let y = Hostile::new(&pki, "y");
    // b's address, before b exists: nothing holds it yet at a.
    let b_addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for _ in 0..5 {
        y.send_raw(a.addr(), b_addr, encode(&syn(Vec::new()))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Now b starts there.
    let tls = pki.tls(&pki.node("b", &[]), Role::Node, "b");
    let (endpoint, inbox) = MeshEndpoint::bind(
        EndpointConfig {
            listen: b_addr,
            advertise: None,
            quic: QuicSettings::default(),
            reset_key: None,
        },
        tls.clone(),
    )
    .unwrap();
    let b = start_on(endpoint, inbox, tls, "b", &a).await;
    eventually("a sees b", async || {
        state_of(&a.membership.view(), "b") == Some(MemberState::Alive)
    })
    .await;
    for _ in 0..5 {
        y.send_raw(a.addr(), b_addr, encode(&syn(Vec::new()))).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conn = a.endpoint.connect(b_addr, None).await.unwrap();
    assert_eq!(conn.identity().id.name.as_str(), "b");
    let expected = murmur_transport::identity::Name::parse("n", "b").unwrap();
    let conn = a.endpoint.connect(b_addr, Some(&expected)).await.unwrap();
    assert_eq!(conn.identity().id.name.as_str(), "b");
    drop(b);
}

async fn start_on(
    endpoint: MeshEndpoint,
    inbox: mpsc::Receiver<GossipDatagram>,
    tls: Arc<TlsState>,
    name: &str,
    seed: &Honest,
) -> Honest {
    let gossip = settings();
    let trust = Trust::new(tls.clone(), &gossip);
    let transport = QuicGossip::new(endpoint.clone(), inbox, trust.guard.clone());
    let config = MembershipConfig {
        name: name.into(),
        generation: 1,
        mesh_addr: endpoint.advertise_addr(),
        admin_addr: None,
        labels: BTreeMap::new(),
        seeds: vec![seed.addr().to_string()],
        gossip,
        view_file: None,
        fail_static_warmup: Duration::from_secs(1),
        refresh: Duration::from_millis(100),
        trust,
    };
    let membership = Membership::start(config, &transport).await.unwrap();
    Honest {
        name: name.into(),
        membership,
        endpoint,
        tls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mutations_of_a_genuine_delta_never_alter_what_a_node_holds() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let c = Honest::start(&pki, "c", &[&a], false).await;
    eventually("c knows b", async || c.max_version_of(&b.id()).await > 0).await;
    let y = Hostile::new(&pki, "y");
    let bid = b.id();
    // b's genuine state, as a full delta.
    let genuine: Vec<Kv> = a
        .membership
        .with_chitchat({
            let bid = bid.clone();
            move |c| {
                let mut kvs: Vec<Kv> = c
                    .node_state(&bid)
                    .unwrap()
                    .key_values_including_deleted()
                    .map(|(k, v)| kv(k, v.value.clone(), v.version))
                    .collect();
                kvs.sort_by_key(|k| k.version);
                kvs
            }
        })
        .await;
    let before = a.max_version_of(&bid).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let mut kvs = genuine.clone();
        let i = (next() % kvs.len() as u64) as usize;
        match next() % 5 {
            0 => kvs[i].version += 1 + next() % 1000,
            1 => {
                kvs.remove(i);
            }
            2 => {
                let mut bytes = kvs[i].value.clone().into_bytes();
                let j = (next() % bytes.len() as u64) as usize;
                bytes[j] = if bytes[j] == b'A' { b'B' } else { b'A' };
                kvs[i].value = String::from_utf8(bytes).unwrap();
            }
            3 => kvs[i].key = format!("{}x", kvs[i].key),
            _ => {
                let k = (next() % kvs.len() as u64) as usize;
                let v = kvs[k].value.clone();
                kvs[i].value = v;
            }
        }
        // Versions must still increase for the message to decode at all.
        kvs.sort_by_key(|k| k.version);
        kvs.dedup_by_key(|k| k.version);
        // Sent to c, which knows b, from just before b's last value: a valid-looking update.
        let from = kvs.first().map_or(0, |k| k.version.saturating_sub(1));
        y.send(c.addr(), &ack(vec![delta(&bid, from, kvs)])).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.gossiping().await);
    // b itself re-signs its head every second meanwhile: c may hold that newer genuine value,
    // never anything b did not write.
    for (key, value) in genuine.iter().map(|k| (&k.key, &k.value)) {
        let held = c.held(&bid, key).await.map(|v| v.0);
        let now = b.held(&bid, key).await.map(|v| v.0);
        assert!(
            held.as_ref() == Some(value) || (held.is_some() && held == now),
            "{key}: c holds {held:?}, b wrote {value:?} then {now:?}"
        );
    }
    let max = c.max_version_of(&bid).await;
    assert!(
        max >= before && max <= b.max_version_of(&bid).await,
        "c's max version of b: {max}"
    );
    b.membership.publish_service("web", &web(3)).await.unwrap();
    eventually("b's update reaches c", async || {
        c.membership
            .view()
            .endpoints("web")
            .first()
            .is_some_and(|e| e.weight == 3)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_keeps_the_member_verified() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let leaf = |t: &TlsState| t.chain()[0].clone();
    let old = leaf(&b.tls);
    // Re-issue b's certificate (a new key) and load it, as the credential watcher does.
    let paths = pki.node("b", &[]);
    let material = murmur_transport::tls::load_material(&paths, &pki.trust_domain).unwrap();
    b.tls.replace(material).unwrap();
    assert_ne!(leaf(&b.tls), old);
    // b signs with the new key from its next write; a must keep believing it.
    b.membership.publish_service("web", &web(5)).await.unwrap();
    eventually("a takes b's update signed with the new key", async || {
        a.membership
            .view()
            .endpoints("web")
            .first()
            .is_some_and(|e| e.weight == 5)
    })
    .await;
    // A node that learns b afresh verifies all of it with the new certificate alone.
    let c = Honest::start(&pki, "c", &[&a], false).await;
    eventually("c sees b serving web", async || {
        let v = c.membership.view();
        state_of(&v, "b") == Some(MemberState::Alive)
            && v.endpoints("web").first().is_some_and(|e| e.weight == 5)
    })
    .await;
    assert_eq!(c.stats().refused.get(&Refusal::BadSignature), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_incarnation_is_not_adopted_from_a_relay_but_is_heard_from_itself() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let y = Hostile::new(&pki, "y");
    let entry = |id: ChitchatId| DigestEntry {
        id,
        heartbeat: 5,
        last_gc: 0,
        max_version: 0,
    };
    // b runs generation 1; y relays a generation 0 of b, as a node still remembering an
    // incarnation from before a restart would.
    y.send(
        a.addr(),
        &syn(vec![entry(ChitchatId::new("b", 0, b.addr()))]),
    )
    .await;
    eventually("the relayed old incarnation refused", async || {
        a.stats().refused.get(&Refusal::Superseded) == Some(&1)
    })
    .await;
    assert_eq!(a.membership.known_incarnations().await, 2);
    // y speaking for itself: generation 5, then an older 3 (a restart with its clock behind),
    // both heard, and nothing more refused as superseded.
    let y_at = |g| ChitchatId::new("y", g, y.endpoint.advertise_addr());
    y.send(a.addr(), &syn(vec![entry(y_at(5))])).await;
    eventually("y's generation 5 known", async || {
        a.membership.known_incarnations().await == 3
    })
    .await;
    y.send(a.addr(), &syn(vec![entry(y_at(3))])).await;
    eventually("y's generation 3 known", async || {
        a.membership.known_incarnations().await == 4
    })
    .await;
    assert_eq!(a.stats().refused.get(&Refusal::Superseded), Some(&1));
    assert_true_view(&a, &b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_learns_the_live_members_from_relays_but_not_a_dead_one() {
    let pki = TestPki::new("murmur.local");
    let (a, b) = pair(&pki).await;
    let c = Honest::start(&pki, "c", &[&a], false).await;
    eventually("a sees c", async || {
        state_of(&a.membership.view(), "c") == Some(MemberState::Alive)
    })
    .await;
    let cid = c.id();
    drop(c);
    // a and b still hold c's (dead) incarnation and name it in their digests for minutes. Once
    // both hold its last heartbeat (until then a relay may still carry an older one), d joins.
    let beat = async |h: &Honest| {
        let cid = cid.clone();
        h.membership
            .with_chitchat(move |ch| ch.node_state(&cid).map(|s| s.heartbeat()))
            .await
    };
    let mut last = None;
    eventually(
        "c's last heartbeat held by a and b alike, for a while",
        async || {
            let now = (beat(&a).await, beat(&b).await);
            let same = now.0.is_some() && now.0 == now.1 && last == Some(now);
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(300)).await;
            same
        },
    )
    .await;
    let d = Honest::start(&pki, "d", &[&a], false).await;
    let names = async |h: &Honest| -> Vec<String> {
        h.membership
            .with_chitchat(|ch| {
                ch.node_states()
                    .keys()
                    .map(|id| id.node_id.to_string())
                    .collect()
            })
            .await
    };
    eventually("d sees a and b alive", async || {
        let v = d.membership.view();
        state_of(&v, "a") == Some(MemberState::Alive)
            && state_of(&v, "b") == Some(MemberState::Alive)
    })
    .await;
    assert!(names(&a).await.contains(&"c".to_owned()), "a still holds c");
    // However often c is relayed, its heartbeat stays where it stopped: d never adopts it.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let held = names(&d).await;
        assert!(
            !held.contains(&"c".to_owned()),
            "d adopted dead c: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        d.stats().refused.get(&Refusal::NotSeenAlive) > Some(&5),
        "{:?}",
        d.stats()
    );
}

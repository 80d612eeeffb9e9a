use chitchat::ChitchatId;
use tokio::time::advance;

use super::*;
use crate::gossip::message::{DigestEntry, Kind, Message, encode, encode_raw};
use crate::gossip::pack::{HEARTBEAT_STEP, PackError, Packer, lock};

/// A Syn with members `0..n`, as one node sees them at `round`: members' start times are as
/// good as random, their heartbeats step on, their versions differ from node to node.
fn syn(n: u16, round: u64) -> Vec<u8> {
    let digest = (0..n)
        .map(|i| {
            let spread = u64::from(i).wrapping_mul(2_654_435_761);
            DigestEntry {
                id: ChitchatId::new(
                    format!("node-{i:05}"),
                    1_767_225_600_000 + spread % (30 * 24 * 3_600_000),
                    ([10, 0, (i >> 8) as u8, i as u8], 7420).into(),
                ),
                heartbeat: (200 + round + spread % 5) * HEARTBEAT_STEP + round % 7,
                last_gc: 0,
                max_version: 5 + (spread >> 7) % 40 + round,
            }
        })
        .collect();
    encode(&Message {
        kind: Kind::Syn,
        digest,
        cluster_id: "murmur/cell-7".into(),
        delta: Vec::new(),
    })
}

/// A SynAck with members `0..n`.
fn syn_ack(n: u16) -> Vec<u8> {
    let mut msg = crate::gossip::message::decode(&syn(n, 9)).unwrap();
    msg.kind = Kind::SynAck;
    msg.cluster_id.clear();
    encode(&msg)
}

/// Two packers that each sent Syns of `n` members to a third node, over [`SETTLED`].
async fn settled(n: u16) -> (Packer, Packer) {
    let (a, b) = (Packer::default(), Packer::default());
    for round in 0..2 {
        for p in [&a, &b] {
            p.pack(99, &syn(n, round)).unwrap();
        }
        advance(SETTLED).await;
    }
    (a, b)
}

/// Between nodes that know the same members, the first Syn names the roster, costs a fraction
/// of a plain one, and unpacks to the sender's bytes exactly.
#[tokio::test(start_paused = true)]
async fn a_first_syn_is_packed_against_the_roster() {
    let (a, b) = settled(200).await;
    let first = syn(200, 9);
    let packed = a.pack(1, &first).unwrap();
    let id = packed.base.expect("named the roster");
    assert!(packed.roster);
    assert_eq!(lock(&b.rosters).find(id).map(|r| r.id), Some(id));
    let raw = b.unpack(2, packed.base, &packed.bytes).unwrap();
    assert_eq!(
        raw,
        encode_raw(&crate::gossip::message::decode(&first).unwrap())
    );

    let plain = Packer::default().pack(1, &first).unwrap();
    assert_eq!(plain.base, None, "a packer just started names no roster");

    // Once answered, the connection's own bases come first.
    let reply = b.pack(2, &syn_ack(200)).unwrap();
    a.unpack(1, reply.base, &reply.bytes).unwrap();
    let next = a.pack(1, &syn(200, 10)).unwrap();
    assert!(next.base.is_some_and(|n| n != id) && !next.roster);
    assert!(
        packed.bytes.len() * 2 < plain.bytes.len(),
        "{} bytes against the roster, {} plain",
        packed.bytes.len(),
        plain.bytes.len()
    );
}

/// A roster the peer did not make is refused, and the next Syn on the connection goes plain.
#[tokio::test(start_paused = true)]
async fn a_roster_the_peer_lacks_is_refused_then_not_named() {
    let (a, _) = settled(200).await;
    let (_, b) = settled(201).await;
    let packed = a.pack(1, &syn(200, 9)).unwrap();
    let id = packed.base.expect("named the roster");
    assert!(matches!(
        b.unpack(2, packed.base, &packed.bytes),
        Err(PackError::UnknownBase(got)) if got == id
    ));
    let retry = a.pack(1, &syn(200, 10)).unwrap();
    assert_eq!(retry.base, None);
    b.unpack(2, retry.base, &retry.bytes).unwrap();
}

/// A new roster is named only once it has held for [`SETTLED`]; a node keeps its last three.
#[tokio::test(start_paused = true)]
async fn rosters_are_named_once_settled_and_bounded() {
    let mut rosters = Rosters::default();
    let mut ids = Vec::new();
    for n in 1..=4 {
        assert!(rosters.note(&syn(n, 0), Instant::now()).unwrap().is_none());
        advance(SETTLED / 2).await;
        assert!(rosters.note(&syn(n, 1), Instant::now()).unwrap().is_none());
        advance(SETTLED / 2).await;
        let named = rosters.note(&syn(n, 2), Instant::now()).unwrap();
        ids.push(named.expect("settled").id);
    }
    assert!(rosters.find(ids[0]).is_none(), "the oldest is forgotten");
    for id in &ids[1..] {
        assert!(rosters.find(*id).is_some());
    }
    // Back to an earlier view: kept, but named only once it holds again.
    assert!(rosters.note(&syn(2, 3), Instant::now()).unwrap().is_none());
    assert_eq!(rosters.kept.len(), KEPT);
}

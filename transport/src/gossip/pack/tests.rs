use chitchat::ChitchatId;

use super::*;
use crate::gossip::message::{DigestEntry, Kv, Message, NodeDelta, STATUS_SET, encode};

/// A digest of `n` members as one node sees them; `skew` moves every heartbeat on.
fn digest(n: u16, skew: u64) -> Vec<DigestEntry> {
    (0..n)
        .map(|i| DigestEntry {
            id: ChitchatId::new(
                format!("node-{i:05}"),
                1_780_000_000_000 + u64::from(i) * 7_919_777,
                ([10, 0, (i >> 8) as u8, i as u8], 7420).into(),
            ),
            heartbeat: 400 + u64::from(i) * 3 + skew + u64::from(i % 3),
            last_gc: 0,
            max_version: 12 + u64::from(i % 5),
        })
        .collect()
}

fn v1(kind: Kind, skew: u64) -> Vec<u8> {
    encode(&Message {
        kind,
        digest: if kind == Kind::Ack {
            Vec::new()
        } else {
            digest(200, skew)
        },
        cluster_id: if kind == Kind::Syn {
            "murmur".into()
        } else {
            String::new()
        },
        delta: Vec::new(),
    })
}

/// A Syn, its SynAck and the next Syn between two packers, each unpacked to exactly what was
/// packed.
#[tokio::test]
async fn an_exchange_unpacks_on_the_other_end() {
    let (a, b) = (Packer::default(), Packer::default());
    let syn = v1(Kind::Syn, 0);
    let packed = a.pack(1, &syn).unwrap();
    assert_eq!(packed.base, None, "nothing is shared yet");
    let raw = b.unpack(2, packed.base, &packed.bytes).unwrap();
    assert!(message::decode(&raw).unwrap() == message::decode(&syn).unwrap());

    let syn_ack = v1(Kind::SynAck, 2);
    let reply = b.pack(2, &syn_ack).unwrap();
    assert!(reply.base.is_some(), "a SynAck is packed against the Syn");
    let raw = a.unpack(1, reply.base, &reply.bytes).unwrap();
    assert!(message::decode(&raw).unwrap() == message::decode(&syn_ack).unwrap());

    let next = a.pack(1, &v1(Kind::Syn, 5)).unwrap();
    assert!(
        next.base.is_some(),
        "the next Syn is packed against the SynAck"
    );
    b.unpack(2, next.base, &next.bytes).unwrap();
}

/// Packed against a base, a digest costs a fraction of what it costs alone.
#[tokio::test]
async fn a_base_shrinks_a_digest() {
    let (a, b) = (Packer::default(), Packer::default());
    let packed = a.pack(1, &v1(Kind::Syn, 0)).unwrap();
    b.unpack(2, packed.base, &packed.bytes).unwrap();
    let syn_ack = v1(Kind::SynAck, 2);
    let against = b.pack(2, &syn_ack).unwrap().bytes.len();
    let alone = Packer::default().pack(9, &syn_ack).unwrap().bytes.len();
    assert!(
        against * 3 < alone,
        "{against} bytes against the Syn, {alone} alone"
    );
}

/// A message naming a base this end lacks is refused; the sender's next Syn names none, however
/// soon it follows.
#[tokio::test]
async fn a_missing_base_is_refused_and_then_not_named() {
    let (a, b) = (Packer::default(), Packer::default());
    let packed = a.pack(1, &v1(Kind::Syn, 0)).unwrap();
    b.unpack(2, packed.base, &packed.bytes).unwrap();
    let reply = b.pack(2, &v1(Kind::SynAck, 1)).unwrap();
    a.unpack(1, reply.base, &reply.bytes).unwrap();

    // The peer restarted: a fresh packer holds nothing.
    let fresh = Packer::default();
    let syn = a.pack(1, &v1(Kind::Syn, 4)).unwrap();
    let id = syn.base.expect("packed against the SynAck");
    assert!(matches!(
        fresh.unpack(2, syn.base, &syn.bytes),
        Err(PackError::UnknownBase(got)) if got == id
    ));
    let retry = a.pack(1, &v1(Kind::Syn, 6)).unwrap();
    assert_eq!(retry.base, None);
    fresh.unpack(2, retry.base, &retry.bytes).unwrap();
}

/// Unpacking stops at the limit, however small the packed bytes.
#[test]
fn unpacking_is_bounded() {
    let bomb = zstd::bulk::compress(&vec![0u8; MAX_BODY + 1], LEVEL).unwrap();
    assert!(bomb.len() < 1024);
    let err = Packer::default().unpack(1, None, &bomb).unwrap_err();
    assert!(matches!(err, PackError::Zstd(_)), "{err}");
}

/// Bytes that unpack to something other than a message are refused, and garbage too.
#[test]
fn what_is_not_a_message_is_refused() {
    let p = Packer::default();
    // An empty heartbeat column (two empty lists), then no message.
    let not_msg = zstd::bulk::compress(b"\0\0hello", LEVEL).unwrap();
    assert!(matches!(
        p.unpack(1, None, &not_msg),
        Err(PackError::Prescan(_))
    ));
    // A column declaring 104 entries, and 5 bytes to hold them.
    let not_column = zstd::bulk::compress(b"hello", LEVEL).unwrap();
    assert!(matches!(
        p.unpack(1, None, &not_column),
        Err(PackError::Column)
    ));
    assert!(matches!(
        p.unpack(1, None, b"garbage"),
        Err(PackError::Zstd(_))
    ));
}

/// A heartbeat column that does not fit the digest it comes with is refused.
#[test]
fn a_column_of_the_wrong_length_is_refused() {
    let syn = message::encode_raw(&message::decode(&v1(Kind::Syn, 0)).unwrap());
    for (steps, rest) in [
        (1, 1),
        (199, 199),
        (201, 201),
        (200, 199),
        (200, 0),
        (0, 200),
    ] {
        let mut body = postcard::to_stdvec(&(vec![1i64; steps], vec![0u64; rest])).unwrap();
        body.extend_from_slice(&syn);
        let packed = zstd::bulk::compress(&body, LEVEL).unwrap();
        assert!(matches!(
            Packer::default().unpack(1, None, &packed),
            Err(PackError::Column)
        ));
    }
}

/// A heartbeat column comes with a digest of raw blocks, where the heartbeats are added back in
/// place; one with a compressed digest is refused.
#[test]
fn a_column_with_a_compressed_digest_is_refused() {
    let syn = v1(Kind::Syn, 0);
    assert_eq!(
        syn.get(4),
        Some(&1),
        "chitchat's encoding compresses the digest"
    );
    let mut body = postcard::to_stdvec(&(vec![1i64; 200], vec![0u64; 200])).unwrap();
    body.extend_from_slice(&syn);
    let packed = zstd::bulk::compress(&body, LEVEL).unwrap();
    assert!(matches!(
        Packer::default().unpack(1, None, &packed),
        Err(PackError::Message(_))
    ));
}

/// A message of `kind` whose heartbeats move in [`HEARTBEAT_STEP`]s as a node's do: `skew`
/// steps on, plus a round or two.
fn stepped(kind: Kind, skew: u64) -> Message {
    let mut msg = message::decode(&v1(kind, 0)).unwrap();
    for (i, e) in msg.digest.iter_mut().enumerate() {
        e.heartbeat = (e.heartbeat + skew) * HEARTBEAT_STEP + i as u64 % 3;
    }
    msg
}

/// A digest whose every heartbeat moved since the base costs about a byte per member: the
/// rest of each entry matches the base whole. Members the base lacks, and heartbeats behind
/// the base's, come through exactly.
#[tokio::test]
async fn moved_heartbeats_cost_about_a_byte_each() {
    let (a, b) = (Packer::default(), Packer::default());
    let syn = a.pack(1, &encode(&stepped(Kind::Syn, 0))).unwrap();
    b.unpack(2, syn.base, &syn.bytes).unwrap();
    let reply = b.pack(2, &encode(&stepped(Kind::SynAck, 1))).unwrap();
    a.unpack(1, reply.base, &reply.bytes).unwrap();

    // Thirty seconds later, each heartbeat moved by about 300 steps, some by less.
    let mut later = stepped(Kind::Syn, 300);
    for (i, e) in later.digest.iter_mut().enumerate() {
        let behind = (i as u64).wrapping_mul(2_654_435_761) >> 13 & 7;
        e.heartbeat -= behind * HEARTBEAT_STEP;
    }
    later.digest[3].heartbeat = 2; // behind the base's
    later.digest.push(DigestEntry {
        id: ChitchatId::new("node-new", 5, ([10, 1, 0, 1], 7420).into()),
        heartbeat: 9,
        last_gc: 0,
        max_version: 3,
    });
    let packed = a.pack(1, &encode(&later)).unwrap();
    assert!(packed.base.is_some());
    assert!(
        packed.bytes.len() < later.digest.len(),
        "{} bytes for {} members",
        packed.bytes.len(),
        later.digest.len()
    );
    let raw = b.unpack(2, packed.base, &packed.bytes).unwrap();
    assert_eq!(
        raw,
        message::encode_raw(&later),
        "the sender's bytes, exactly"
    );
}

/// Connections remembered stay bounded.
#[tokio::test]
async fn connections_are_bounded() {
    let p = Packer::default();
    let ack = v1(Kind::Ack, 0);
    for conn in 0..(PAIRS_MAX as u64 + 50) {
        p.pack(conn, &ack).unwrap();
    }
    assert_eq!(p.pairs(), PAIRS_MAX);
}

/// A base takes a fraction of the message it stands for.
#[test]
fn bases_are_kept_compressed() {
    let raw = message::encode_raw(&message::decode(&v1(Kind::SynAck, 0)).unwrap());
    let base = Base::new(&raw).unwrap();
    assert!(
        base.stored_len() * 3 < raw.len(),
        "{} bytes kept for {}",
        base.stored_len(),
        raw.len()
    );
    assert_eq!(base.raw().unwrap(), digest_part(&raw));
}

/// A SynAck whose delta carries `kvs` values of 1 000 bytes.
fn syn_ack_with_delta(kvs: u64) -> Vec<u8> {
    let digest = digest(200, 2);
    let delta = vec![NodeDelta {
        id: digest[7].id.clone(),
        last_gc: 0,
        from_version: 0,
        kvs: (1..=kvs)
            .map(|v| Kv {
                key: format!("svc/{v:04}"),
                value: format!("{v:04}").repeat(250),
                version: v,
                status: STATUS_SET,
            })
            .collect(),
        set_max_version: None,
    }];
    encode(&Message {
        kind: Kind::SynAck,
        digest,
        cluster_id: String::new(),
        delta,
    })
}

/// A base keeps a message's digest and leaves out its delta: a SynAck carrying 400 KB of values
/// leaves a base no larger than one carrying none, and still unpacks exactly.
#[tokio::test]
async fn a_base_leaves_out_the_delta() {
    let (a, b) = (Packer::default(), Packer::default());
    let syn = a.pack(1, &v1(Kind::Syn, 0)).unwrap();
    b.unpack(2, syn.base, &syn.bytes).unwrap();
    let before = b.stored();
    let big = syn_ack_with_delta(400);
    let reply = b.pack(2, &big).unwrap();
    let kept = b.stored() - before;
    let empty = Base::new(&message::encode_raw(
        &message::decode(&v1(Kind::SynAck, 2)).unwrap(),
    ))
    .unwrap();
    assert_eq!(kept, empty.stored_len(), "the SynAck's base is its digest");
    let raw = a.unpack(1, reply.base, &reply.bytes).unwrap();
    assert!(message::decode(&raw).unwrap() == message::decode(&big).unwrap());
    // The next Syn names that base, and the peer finds it.
    let next = a.pack(1, &v1(Kind::Syn, 5)).unwrap();
    assert!(next.base.is_some());
    b.unpack(2, next.base, &next.bytes).unwrap();
}

/// Where the digest ends, for every kind, and for bytes that are not a message.
#[test]
fn the_digest_part_ends_with_the_digest_stream() {
    let raw = |v: Vec<u8>| message::encode_raw(&message::decode(&v).unwrap());
    let syn = raw(v1(Kind::Syn, 0));
    let cut = digest_part(&syn);
    // What follows the digest of a Syn is the cluster id: u16 length and "murmur".
    assert_eq!(&syn[cut.len()..], b"\x06\x00murmur");
    let ack = raw(v1(Kind::Ack, 0));
    assert_eq!(digest_part(&ack).len(), 4);
    let synack = raw(syn_ack_with_delta(3));
    assert!(digest_part(&synack).len() + 3_000 < synack.len());
    assert_eq!(
        digest_part(&synack),
        &raw(v1(Kind::SynAck, 2))[..digest_part(&synack).len()]
    );
    for junk in [&b""[..], b"\x00", b"ab\x01\x00\x02\xff"] {
        assert_eq!(digest_part(junk), junk);
    }
}

/// The bases of all connections stay within the budget, however many connections: the least
/// recently used lose theirs, the one in use keeps them.
#[tokio::test]
async fn bases_stay_within_the_budget() {
    let (p, peer) = (Packer::default(), Packer::default());
    let syn = peer.pack(0, &v1(Kind::Syn, 0)).unwrap();
    let mut conns = 0;
    while p.pairs() == conns as usize {
        conns += 1;
        p.unpack(conns, syn.base, &syn.bytes).unwrap();
        p.pack(conns, &v1(Kind::SynAck, conns)).unwrap();
        assert!(p.stored() <= BASES_BUDGET, "{} bytes kept", p.stored());
        assert!(conns < 10_000, "the budget never bound");
    }
    // The last connection still answers against its bases: its SynAck named the Syn.
    p.unpack(conns + 1, syn.base, &syn.bytes).unwrap();
    let reply = p.pack(conns + 1, &v1(Kind::SynAck, 1)).unwrap();
    assert!(reply.base.is_some());
}

/// A Syn answered before the next one leaves the base in use.
#[tokio::test]
async fn an_answered_syn_keeps_the_base() {
    let (a, b) = (Packer::default(), Packer::default());
    let mut named = 0;
    for round in 0..5 {
        let syn = a.pack(1, &v1(Kind::Syn, round)).unwrap();
        named += usize::from(syn.base.is_some());
        b.unpack(2, syn.base, &syn.bytes).unwrap();
        let reply = b.pack(2, &v1(Kind::SynAck, round + 1)).unwrap();
        a.unpack(1, reply.base, &reply.bytes).unwrap();
    }
    assert_eq!(named, 4, "every Syn after the first names a base");
}

/// A node that has only answered a peer names its own SynAck in its first Syn to it, once the
/// SynAck has had time to arrive; when the peer lacks it, the next Syns go plain until another
/// SynAck is sent.
#[tokio::test(start_paused = true)]
async fn a_syn_names_the_synack_its_sender_answered_with() {
    let (a, b) = (Packer::default(), Packer::default());
    let syn = a.pack(1, &v1(Kind::Syn, 0)).unwrap();
    b.unpack(2, syn.base, &syn.bytes).unwrap();
    let reply = b.pack(2, &v1(Kind::SynAck, 1)).unwrap();
    a.unpack(1, reply.base, &reply.bytes).unwrap();

    // Just sent, the SynAck may still be on its way: not named yet.
    let early = b.pack(2, &v1(Kind::Syn, 3)).unwrap();
    assert_eq!(early.base, None);
    a.unpack(1, early.base, &early.bytes).unwrap();

    tokio::time::advance(ANSWER_SETTLE).await;
    let first = b.pack(2, &v1(Kind::Syn, 4)).unwrap();
    assert!(
        first.base.is_some(),
        "b's next Syn names the SynAck a received"
    );
    a.unpack(1, first.base, &first.bytes).unwrap();

    // A peer that never got b's SynAck (here: restarted) refuses it and does not answer; b's
    // next Syns go plain.
    let fresh = Packer::default();
    assert!(matches!(
        fresh.unpack(1, first.base, &first.bytes),
        Err(PackError::UnknownBase(_))
    ));
    for skew in [8, 10] {
        let plain = b.pack(2, &v1(Kind::Syn, skew)).unwrap();
        assert_eq!(plain.base, None);
        fresh.unpack(1, plain.base, &plain.bytes).unwrap();
    }
}

/// Two exchanges of one pair under way at once (chitchat adds a Syn to a seed in the same
/// round), their SynAcks arriving in the other order: each end still names a base the other
/// holds.
#[tokio::test(start_paused = true)]
async fn synacks_arriving_out_of_order_leave_a_shared_base() {
    let (a, b) = (Packer::default(), Packer::default());
    for skew in [0, 1] {
        let syn = b.pack(2, &v1(Kind::Syn, skew)).unwrap();
        a.unpack(1, syn.base, &syn.bytes).unwrap();
    }
    let replies = [2, 3].map(|skew| a.pack(1, &v1(Kind::SynAck, skew)).unwrap());
    for reply in replies.iter().rev() {
        b.unpack(2, reply.base, &reply.bytes).unwrap();
    }
    tokio::time::advance(ANSWER_SETTLE).await;
    // a names the SynAck it sent last, which b received first.
    let from_a = a.pack(1, &v1(Kind::Syn, 4)).unwrap();
    assert!(from_a.base.is_some());
    b.unpack(2, from_a.base, &from_a.bytes).unwrap();
    // b names the SynAck it received last, which a sent first.
    let from_b = b.pack(2, &v1(Kind::Syn, 5)).unwrap();
    assert!(from_b.base.is_some());
    a.unpack(1, from_b.base, &from_b.bytes).unwrap();
}

/// Two Syns of one round: the first names the SynAck received last, the second goes plain (the
/// first is not answered yet). The plain one arrives first and is answered; the first still
/// finds its base.
#[tokio::test(start_paused = true)]
async fn two_syns_of_one_round_find_their_base() {
    let (a, b) = (Packer::default(), Packer::default());
    let syns = [0, 1].map(|skew| a.pack(1, &v1(Kind::Syn, skew)).unwrap());
    for syn in &syns {
        b.unpack(2, syn.base, &syn.bytes).unwrap();
    }
    let replies = [2, 3].map(|skew| b.pack(2, &v1(Kind::SynAck, skew)).unwrap());
    for reply in replies.iter().rev() {
        a.unpack(1, reply.base, &reply.bytes).unwrap();
    }
    let [first, second] = [4, 5].map(|skew| a.pack(1, &v1(Kind::Syn, skew)).unwrap());
    assert!(first.base.is_some() && second.base.is_none());
    b.unpack(2, second.base, &second.bytes).unwrap();
    let answer = b.pack(2, &v1(Kind::SynAck, 6)).unwrap();
    a.unpack(1, answer.base, &answer.bytes).unwrap();
    b.unpack(2, first.base, &first.bytes).unwrap();
}

/// A connection between two exchanges keeps only what a message can still name: the SynAcks
/// sent last (two) and received. Our Syns and the peer's go once past their lifetime, whether
/// or not the connection is used again.
#[tokio::test(start_paused = true)]
async fn idle_connections_let_go_of_bases_no_message_can_name() {
    let (a, b) = (Packer::default(), Packer::default());
    for skew in 0..3 {
        let syn = a.pack(1, &v1(Kind::Syn, skew)).unwrap();
        b.unpack(2, syn.base, &syn.bytes).unwrap();
        let reply = b.pack(2, &v1(Kind::SynAck, skew + 1)).unwrap();
        a.unpack(1, reply.base, &reply.bytes).unwrap();
    }
    b.pack(2, &v1(Kind::Syn, 9)).unwrap();
    let busy = b.stored();
    {
        let pairs = lock(&b.pairs);
        let pair = &pairs.by_conn[&2];
        assert_eq!((pair.sent.len(), pair.pending.len()), (3, 1));
        assert!(pair.to_answer.is_some());
    }
    tokio::time::advance(PENDING_LIFETIME + TRIM_EVERY).await;
    // Traffic on another connection trims this one too.
    b.pack(3, &v1(Kind::Ack, 0)).unwrap();
    {
        let pairs = lock(&b.pairs);
        let pair = &pairs.by_conn[&2];
        assert_eq!((pair.sent.len(), pair.pending.len()), (2, 0));
        assert!(pair.to_answer.is_none());
        let kept: usize = pair.sent.iter().map(Base::stored_len).sum();
        assert_eq!(pairs.stored, kept);
        assert!(kept < busy);
    }
    // a still names a base b holds.
    let next = a.pack(1, &v1(Kind::Syn, 12)).unwrap();
    assert!(next.base.is_some());
    b.unpack(2, next.base, &next.bytes).unwrap();
}

use chitchat::ChitchatId;

use super::*;
use crate::gossip::message::{DigestEntry, Kind, Message, decode, encode, encode_raw};

/// A Syn of `n` members with names long enough that 1 000 of them fill several blocks, so that
/// entries straddle block boundaries.
fn syn(n: u16) -> Message {
    let digest = (0..n)
        .map(|i| DigestEntry {
            id: ChitchatId::new(
                format!("checkout-{i:05}-7f9c2b.payments.svc"),
                1_780_000_000_000 + u64::from(i),
                if i % 2 == 0 {
                    ([10, 0, (i >> 8) as u8, i as u8], 7420).into()
                } else {
                    (std::net::Ipv6Addr::from(u128::from(i)), 7420).into()
                },
            ),
            heartbeat: 1_000 + u64::from(i) * 13,
            last_gc: u64::from(i % 4),
            max_version: 12 + u64::from(i % 5),
        })
        .collect();
    Message {
        kind: Kind::Syn,
        digest,
        cluster_id: "murmur".into(),
        delta: Vec::new(),
    }
}

/// Every entry is read where it sits, across block boundaries, from raw and compressed blocks.
#[test]
fn entries_are_read_in_place() {
    let msg = syn(1_000);
    let raw = encode_raw(&msg);
    assert!(
        raw.len() > 3 * super::super::BLOCK,
        "the digest spans blocks"
    );
    for bytes in [raw, encode(&msg)] {
        let digest = Digest::read(&bytes).unwrap();
        assert_eq!(digest.entries.len(), msg.digest.len());
        for (e, want) in digest.entries.iter().zip(&msg.digest) {
            assert_eq!(e.heartbeat, want.heartbeat);
            let mut r = Reader::new(digest.id(e));
            assert_eq!(r.id().unwrap(), want.id);
            assert!(r.buf.is_empty(), "the id's bytes and nothing else");
        }
    }
}

/// Heartbeats written back give the bytes encoding the message with those heartbeats would.
#[test]
fn written_heartbeats_are_the_encoding() {
    let mut msg = syn(1_000);
    let mut bytes = encode_raw(&msg);
    let mut digest = Digest::read(&bytes).unwrap();
    for (i, (e, m)) in digest.entries.iter_mut().zip(&mut msg.digest).enumerate() {
        e.heartbeat = u64::MAX - i as u64 * 977;
        m.heartbeat = e.heartbeat;
    }
    digest.write(&mut bytes).unwrap();
    assert_eq!(bytes, encode_raw(&msg));
    assert_eq!(decode(&bytes).unwrap(), msg);
}

/// Compressed blocks are read but not written: there is nowhere in place to write to.
#[test]
fn a_compressed_digest_is_not_written() {
    let mut bytes = encode(&syn(300));
    let before = bytes.clone();
    let digest = Digest::read(&bytes).unwrap();
    assert!(digest.write(&mut bytes).is_err());
    assert_eq!(bytes, before);
}

/// A truncated entry, a bad header or an Ack is refused, not read past.
#[test]
fn what_is_not_a_digest_is_refused() {
    let raw = encode_raw(&syn(3));
    // header (4), one raw block (tag, u16 length): cut the block's last byte.
    let mut cut = raw[..4].to_vec();
    let len = u16::from_le_bytes([raw[5], raw[6]]) - 1;
    cut.push(2);
    cut.extend_from_slice(&len.to_le_bytes());
    cut.extend_from_slice(&raw[7..7 + usize::from(len)]);
    cut.push(0);
    assert!(matches!(
        Digest::read(&cut),
        Err(MessageError::Malformed(_))
    ));
    let mut header = raw.clone();
    header[2] = 9;
    assert_eq!(Digest::read(&header).unwrap_err(), MessageError::Header);
    let ack = encode_raw(&Message {
        kind: Kind::Ack,
        ..syn(0)
    });
    assert_eq!(Digest::read(&ack).unwrap_err(), MessageError::Header);
    for n in 0..raw.len() {
        let _ = Digest::read(&raw[..n]);
    }
}

/// A roster is the digest with its numbers zeroed: the same for two views of the same
/// incarnations, whatever their heartbeats and versions, and for a SynAck as for a Syn; another
/// for another set of incarnations.
#[test]
fn a_roster_keeps_the_ids_alone() {
    let msg = syn(1_000);
    let mut zeroed = msg.clone();
    for e in &mut zeroed.digest {
        (e.heartbeat, e.last_gc, e.max_version) = (0, 0, 0);
    }
    let want = encode_raw(&zeroed);
    let roster = Digest::read(&encode_raw(&msg)).unwrap().roster();
    assert_eq!(roster, want[..roster.len()], "the header and zeroed digest");
    let cluster_id = 2 + msg.cluster_id.len();
    assert_eq!(
        want.len(),
        roster.len() + cluster_id,
        "all but the cluster id"
    );

    let mut other = msg;
    other.kind = Kind::SynAck;
    for (i, e) in other.digest.iter_mut().enumerate() {
        (e.heartbeat, e.last_gc, e.max_version) = (i as u64 * 31, 7, 99);
    }
    assert_eq!(Digest::read(&encode(&other)).unwrap().roster(), roster);

    other.digest.pop();
    assert_ne!(Digest::read(&encode(&other)).unwrap().roster(), roster);
}

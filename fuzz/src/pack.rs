//! Packed gossip (`transport::gossip::pack`): the receiving end of a packed frame. A peer picks
//! both the base a message names and the bytes; whatever it sends, unpacking ends in an error or
//! in a message the prescan accepts, no larger than the limit, and the bases kept stay within
//! their budget.
//!
//! Input: one byte choosing the base (0: none; 1: the Syn the receiver holds, as an honest
//! SynAck names it; otherwise the next 8 bytes, little-endian), then the packed bytes.

use chitchat::ChitchatId;
use murmur_transport::gossip::message::{DigestEntry, Kind, Message, decode, encode, encode_raw};
use murmur_transport::gossip::pack::{BASES_BUDGET, Base, MAX_UNPACKED, Packer};
use murmur_transport::gossip::prescan;

/// The connection's key at the receiving end.
const CONN: u64 = 1;

/// A Syn of `members` members, as chitchat encodes it: what the receiver sent before the
/// fuzzer's message arrives (and the seeds' SynAck answers).
pub fn syn(members: u16) -> Vec<u8> {
    encode(&Message {
        kind: Kind::Syn,
        digest: (0..members)
            .map(|i| DigestEntry {
                id: ChitchatId::new(
                    format!("node-{i:03}"),
                    1_780_000_000_000 + u64::from(i),
                    ([10, 0, 0, (i % 250) as u8], 7420).into(),
                ),
                heartbeat: 100 + u64::from(i),
                last_gc: 0,
                max_version: 3,
            })
            .collect(),
        cluster_id: "murmur".into(),
        delta: Vec::new(),
    })
}

/// The id of the base the receiver holds once it has sent [`syn`].
pub fn syn_base() -> u64 {
    let raw = decode(&syn(20)).map(|m| encode_raw(&m)).unwrap_or_default();
    Base::new(&raw).map(|b| b.id()).unwrap_or_default()
}

/// Unpacks the input at a receiver that sent [`syn`] on the connection.
pub fn unpack(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let (base, bytes) = match choice {
        0 => (None, rest),
        1 => (Some(syn_base()), rest),
        _ if rest.len() >= 8 => {
            let (id, bytes) = rest.split_at(8);
            let id: [u8; 8] = id.try_into().unwrap_or_default();
            (Some(u64::from_le_bytes(id)), bytes)
        }
        _ => return,
    };
    let receiver = Packer::default();
    receiver
        .pack(CONN, &syn(20))
        .expect("the receiver packs its own Syn");
    if let Ok(raw) = receiver.unpack(CONN, base, bytes) {
        assert!(raw.len() <= MAX_UNPACKED, "unpacked past the limit");
        assert!(
            prescan(&raw).is_ok(),
            "an unpacked message fails the prescan"
        );
    }
    assert!(receiver.stored() <= BASES_BUDGET, "bases over the budget");
}

//! Steering each QUIC packet to the shard whose endpoint owns its connection, when several
//! endpoints share the mesh port (`SO_REUSEPORT`).
//!
//! Left to itself the kernel picks a socket of the group by a hash of the packet's addresses,
//! which knows nothing of connections: two shards' connections to the same peer share those
//! addresses, and a packet handed to the endpoint that does not know its connection is answered
//! with a stateless reset. So every connection ID an endpoint issues says which shard it is
//! (its first byte modulo the number of shards), and a classic BPF program attached to the
//! group reads that byte from each packet's destination connection ID. A client's first packets
//! carry an ID the client chose at random: they go to whichever shard its first byte names, and
//! that shard accepts the connection and issues the IDs the rest of it uses. A node's shard `k`
//! dials with a first ID that names shard `k` too, so between two nodes with as many shards
//! shard `k` talks to shard `k`, and every shard of the peer gets its share (left to chance, the
//! two connections of two shards each land on the same peer shard half of the time).

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use nix::libc;
use quinn_proto::{ConnectionId, ConnectionIdGenerator, RandomConnectionIdGenerator};

/// The length of the connection IDs issued: quinn's default.
const CID_LEN: usize = 8;
/// The length of the first destination ID a node dials with: the most QUIC allows, as quinn's.
const INITIAL_CID_LEN: usize = 20;
/// Where a long-header packet's destination connection ID starts: after the first byte, the
/// 4-byte version and the ID's length byte (RFC 9000, 17.2).
const LONG_DCID: u32 = 6;
/// Where a short-header packet's starts: right after the first byte (RFC 9000, 17.3).
const SHORT_DCID: u32 = 1;

/// Connection IDs of shard `shard` of `shards`: quinn's random ones, but for the first
/// byte's remainder.
#[derive(Debug)]
pub(super) struct ShardCids {
    shard: u8,
    shards: u8,
    random: RandomConnectionIdGenerator,
}

impl ShardCids {
    /// `shard < shards <= 256`: the caller checks against [`crate::shard::MAX_SHARDS`].
    pub(super) fn new(shard: u8, shards: u8) -> Self {
        Self {
            shard,
            shards: shards.max(1),
            random: RandomConnectionIdGenerator::new(CID_LEN),
        }
    }
}

/// The first byte of an ID of `shard` of `shards`, from a random byte: uniform over the bytes
/// whose remainder is `shard`.
fn first_byte(random: u8, shard: u8, shards: u8) -> u8 {
    let rows = 256 / u16::from(shards);
    let row = u16::from(random) % rows;
    // row < 256 / shards and shard < shards, so this is at most 255.
    u8::try_from(row * u16::from(shards) + u16::from(shard)).unwrap_or(shard)
}

impl ConnectionIdGenerator for ShardCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut cid = self.random.generate_cid();
        cid[0] = first_byte(cid[0], self.shard, self.shards);
        cid
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The destination ID of a connection's first packets, dialled from shard `shard` of `shards`:
/// random, 20 bytes as quinn makes them, but for the first byte's remainder.
pub(super) fn initial_cid(shard: u8, shards: u8) -> ConnectionId {
    let mut cid = RandomConnectionIdGenerator::new(INITIAL_CID_LEN).generate_cid();
    cid[0] = first_byte(cid[0], shard, shards.max(1));
    cid
}

/// The classic BPF program that returns a packet's shard: the first byte of its destination
/// connection ID, modulo `shards`. A packet too short to hold one ends the program with 0
/// (shard 0 drops what is not QUIC).
fn program(shards: u32) -> [libc::sock_filter; 7] {
    let op = |code: u32, jt, jf, k| libc::sock_filter {
        // Every opcode below fits 16 bits.
        code: u16::try_from(code).unwrap_or(0),
        jt,
        jf,
        k,
    };
    let load_byte = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
    [
        op(load_byte, 0, 0, 0),
        // Long header (first bit set)? Then its ID starts later.
        op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 0, 2, 0x80),
        op(load_byte, 0, 0, LONG_DCID),
        op(libc::BPF_JMP | libc::BPF_JA, 0, 0, 1),
        op(load_byte, 0, 0, SHORT_DCID),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, 0, 0, shards),
        op(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
    ]
}

/// Attaches the steering program to the reuse-port group `socket` belongs to.
pub(super) fn attach(socket: &UdpSocket, shards: usize) -> io::Result<()> {
    let shards = u32::try_from(shards).map_err(io::Error::other)?;
    let mut filter = program(shards);
    let prog = libc::sock_fprog {
        len: 7,
        filter: filter.as_mut_ptr(),
    };
    nix::sys::socket::setsockopt(
        socket,
        nix::sys::socket::sockopt::AttachReusePortCbpf,
        &prog,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_byte_names_its_shard_and_all_bytes_are_reachable() {
        for shards in [1u8, 2, 3, 7, 64] {
            for shard in 0..shards {
                let mut seen = std::collections::BTreeSet::new();
                for random in 0..=255u8 {
                    let b = first_byte(random, shard, shards);
                    assert_eq!(b % shards, shard, "{random} for {shard} of {shards}");
                    seen.insert(b);
                }
                assert_eq!(seen.len(), 256 / usize::from(shards), "{shard} of {shards}");
            }
        }
    }

    #[test]
    fn generated_ids_name_their_shard() {
        let mut ids = ShardCids::new(2, 3);
        for _ in 0..100 {
            let cid = ids.generate_cid();
            assert_eq!(cid.len(), CID_LEN);
            assert_eq!(cid[0] % 3, 2);
            let first = initial_cid(1, 3);
            assert_eq!(first.len(), INITIAL_CID_LEN);
            assert_eq!(first[0] % 3, 1);
        }
    }
}

//! chitchat 0.13's V1 messages as plain data, decoded from and encoded to the bytes chitchat
//! reads, so that our own code can check every digest entry and every node delta *before*
//! chitchat applies them (chitchat has no hook for that, and stays an unmodified dependency).
//!
//! Layout (after [`super::prescan`] accepted the bytes): `magic u16 | version u8 | type u8 |
//! body`. Syn = digest stream, cluster id; SynAck = digest stream, delta stream; Ack = delta
//! stream. A stream is zstd or raw blocks ending with tag 0; the items run across block
//! boundaries. A digest item is `id, heartbeat u64, last_gc u64, max_version u64`; a delta item
//! is an op: `0 Node{id, last_gc, from_version}`, `1 KV{key, value, version, status u8}`,
//! `2 SetMaxVersion{version}`. An id is `name str, generation u64, addr`; a str is `u16 len |
//! UTF-8`; an addr is `4|6, octets, port u16`. All integers little-endian.
//!
//! Decoding refuses what chitchat's decoder refuses (so a message we pass on never fails there
//! for a reason we did not see) and what would make chitchat panic.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use chitchat::ChitchatId;

mod heartbeats;

pub use heartbeats::{Digest, Entry};

const MAGIC: u16 = 45_139;
const V1: u8 = 1;
/// chitchat cuts streams into blocks of this many uncompressed bytes; so do we.
const BLOCK: usize = 16 * 1024;

/// Which step of the gossip handshake a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The initiator's digest.
    Syn,
    /// The responder's digest and what the initiator lacks.
    SynAck,
    /// What the responder lacks.
    Ack,
}

/// One digest entry: what the sender knows of one incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestEntry {
    /// The incarnation.
    pub id: ChitchatId,
    /// Its heartbeat as the sender last saw it.
    pub heartbeat: u64,
    /// Highest version the sender garbage-collected.
    pub last_gc: u64,
    /// Highest version the sender holds.
    pub max_version: u64,
}

/// One key-value op of a node delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// chitchat version.
    pub version: u64,
    /// 0 set, 1 deleted, 2 delete after a grace period.
    pub status: u8,
}

/// Status byte of a plain set.
pub const STATUS_SET: u8 = 0;

/// What the sender says about one incarnation's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDelta {
    /// The incarnation.
    pub id: ChitchatId,
    /// The sender's last garbage-collected version of it.
    pub last_gc: u64,
    /// The delta holds every change after this version.
    pub from_version: u64,
    /// The changes, in increasing version order.
    pub kvs: Vec<Kv>,
    /// A `SetMaxVersion` op, if the delta carried one (only ever alone: see [`decode`]).
    pub set_max_version: Option<u64>,
}

impl NodeDelta {
    /// The version the receiver's state of this incarnation reaches if it applies the delta.
    pub fn max_version(&self) -> u64 {
        self.set_max_version
            .or_else(|| self.kvs.last().map(|kv| kv.version))
            .unwrap_or(0)
    }
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Syn, SynAck or Ack.
    pub kind: Kind,
    /// The digest (Syn and SynAck; empty for Ack).
    pub digest: Vec<DigestEntry>,
    /// The cluster id (Syn only).
    pub cluster_id: String,
    /// The delta (SynAck and Ack; empty for Syn).
    pub delta: Vec<NodeDelta>,
}

/// Why bytes do not decode as a message chitchat would accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Header, type or version we do not speak.
    #[error("not a chitchat V1 Syn, SynAck or Ack")]
    Header,
    /// A block stream or an item inside it is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// An op sequence chitchat refuses or would crash on.
    #[error("invalid delta: {0}")]
    Delta(&'static str),
}

/// Decodes a message that passed [`super::prescan`] (which bounds what decompression makes).
pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
    let mut r = Reader::new(bytes);
    if r.u16("header")? != MAGIC || r.u8("header")? != V1 {
        return Err(MessageError::Header);
    }
    let kind = match r.u8("header")? {
        0 => Kind::Syn,
        1 => Kind::SynAck,
        2 => Kind::Ack,
        _ => return Err(MessageError::Header),
    };
    let mut msg = Message {
        kind,
        digest: Vec::new(),
        cluster_id: String::new(),
        delta: Vec::new(),
    };
    if kind != Kind::Ack {
        msg.digest = decode_digest(&r.stream()?)?;
    }
    match kind {
        Kind::Syn => msg.cluster_id = r.str("cluster id")?.to_owned(),
        Kind::SynAck | Kind::Ack => msg.delta = decode_delta(&r.stream()?)?,
    }
    if !r.buf.is_empty() {
        return Err(MessageError::Malformed("message: trailing bytes"));
    }
    Ok(msg)
}

/// Encodes a message the way chitchat does (blocks of 16 KiB, zstd unless that grows them).
pub fn encode(msg: &Message) -> Vec<u8> {
    encode_with(msg, Blocks::Zstd)
}

/// Encodes a message with raw blocks only: what chitchat accepts too, and what
/// [`super::pack`] compresses as a whole, against a dictionary.
pub fn encode_raw(msg: &Message) -> Vec<u8> {
    encode_with(msg, Blocks::Raw)
}

#[derive(Clone, Copy)]
enum Blocks {
    Zstd,
    Raw,
}

fn encode_with(msg: &Message, blocks: Blocks) -> Vec<u8> {
    let mut out = MAGIC.to_le_bytes().to_vec();
    out.push(V1);
    out.push(match msg.kind {
        Kind::Syn => 0,
        Kind::SynAck => 1,
        Kind::Ack => 2,
    });
    if msg.kind != Kind::Ack {
        let mut items = Vec::new();
        for e in &msg.digest {
            put_id(&mut items, &e.id);
            for n in [e.heartbeat, e.last_gc, e.max_version] {
                items.extend_from_slice(&n.to_le_bytes());
            }
        }
        put_stream(&mut out, &items, blocks);
    }
    match msg.kind {
        Kind::Syn => put_str(&mut out, &msg.cluster_id),
        Kind::SynAck | Kind::Ack => put_stream(&mut out, &delta_items(&msg.delta), blocks),
    }
    out
}

fn delta_items(delta: &[NodeDelta]) -> Vec<u8> {
    let mut items = Vec::new();
    for nd in delta {
        items.push(0);
        put_id(&mut items, &nd.id);
        items.extend_from_slice(&nd.last_gc.to_le_bytes());
        items.extend_from_slice(&nd.from_version.to_le_bytes());
        for kv in &nd.kvs {
            items.push(1);
            put_str(&mut items, &kv.key);
            put_str(&mut items, &kv.value);
            items.extend_from_slice(&kv.version.to_le_bytes());
            items.push(kv.status);
        }
        if let Some(max) = nd.set_max_version {
            items.push(2);
            items.extend_from_slice(&max.to_le_bytes());
        }
    }
    items
}

fn decode_digest(items: &[u8]) -> Result<Vec<DigestEntry>, MessageError> {
    let mut r = Reader::new(items);
    let mut entries: Vec<DigestEntry> = Vec::new();
    let mut seen = HashSet::new();
    while !r.buf.is_empty() {
        let e = DigestEntry {
            id: r.id()?,
            heartbeat: r.u64("digest entry")?,
            last_gc: r.u64("digest entry")?,
            max_version: r.u64("digest entry")?,
        };
        // chitchat collects the digest into a map: the last entry for an id wins.
        if !seen.insert(e.id.clone()) {
            entries.retain(|x| x.id != e.id);
        }
        entries.push(e);
    }
    Ok(entries)
}

fn decode_delta(items: &[u8]) -> Result<Vec<NodeDelta>, MessageError> {
    let mut r = Reader::new(items);
    let mut deltas: Vec<NodeDelta> = Vec::new();
    let mut ids = HashSet::new();
    while !r.buf.is_empty() {
        match r.u8("delta op")? {
            0 => {
                let id = r.id()?;
                if !ids.insert(id.clone()) {
                    return Err(MessageError::Delta("an incarnation appears twice"));
                }
                deltas.push(NodeDelta {
                    id,
                    last_gc: r.u64("node op")?,
                    from_version: r.u64("node op")?,
                    kvs: Vec::new(),
                    set_max_version: None,
                });
            }
            1 => {
                let kv = Kv {
                    key: r.str("key")?.to_owned(),
                    value: r.str("value")?.to_owned(),
                    version: r.u64("key-value op")?,
                    status: r.u8("key-value op")?,
                };
                if kv.status > 2 {
                    return Err(MessageError::Malformed("key-value op: status"));
                }
                let nd = deltas
                    .last_mut()
                    .ok_or(MessageError::Delta("a key-value op before any node op"))?;
                if kv.version <= nd.max_version() {
                    return Err(MessageError::Delta("versions not strictly increasing"));
                }
                nd.kvs.push(kv);
            }
            2 => {
                let max = r.u64("set-max-version op")?;
                let nd = deltas.last_mut().ok_or(MessageError::Delta(
                    "a set-max-version op before any node op",
                ))?;
                // chitchat accepts a SetMaxVersion below a key it just took, then asserts on
                // it while applying; honest nodes send SetMaxVersion only without key-values.
                if !nd.kvs.is_empty() || nd.set_max_version.is_some() {
                    return Err(MessageError::Delta("set-max-version mixed with other ops"));
                }
                nd.set_max_version = Some(max);
            }
            _ => return Err(MessageError::Malformed("delta op tag")),
        }
    }
    Ok(deltas)
}

/// Where a block stream's raw blocks' payloads lie, in order; `None` when a block is compressed.
type Spans = Option<Vec<Range<usize>>>;

struct Reader<'a> {
    buf: &'a [u8],
    /// Length of the bytes the reader started on.
    start: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            start: buf.len(),
        }
    }

    /// Where the reader is in the bytes it started on.
    fn pos(&self) -> usize {
        self.start - self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], MessageError> {
        if self.buf.len() < n {
            return Err(MessageError::Malformed(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], MessageError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, MessageError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, MessageError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, MessageError> {
        let len = usize::from(self.u16(what)?);
        std::str::from_utf8(self.take(len, what)?).map_err(|_| MessageError::Malformed(what))
    }

    fn id(&mut self) -> Result<ChitchatId, MessageError> {
        let (name, generation, addr) = self.id_parts()?;
        Ok(ChitchatId::new(name, generation, addr))
    }

    /// An id's name, generation and address, read without allocating.
    fn id_parts(&mut self) -> Result<(&'a str, u64, SocketAddr), MessageError> {
        let name = self.str("node name")?;
        let generation = self.u64("generation")?;
        let ip: IpAddr = match self.u8("address")? {
            4 => Ipv4Addr::from(self.array::<4>("address")?).into(),
            6 => Ipv6Addr::from(self.array::<16>("address")?).into(),
            _ => return Err(MessageError::Malformed("address family")),
        };
        let port = self.u16("address")?;
        Ok((name, generation, SocketAddr::new(ip, port)))
    }

    /// A whole block stream, decompressed.
    fn stream(&mut self) -> Result<Vec<u8>, MessageError> {
        Ok(self.stream_spans()?.0)
    }

    /// A whole block stream, decompressed, and where its blocks' payloads lie in the bytes the
    /// reader started on, when every block is raw (`None` when one is compressed).
    fn stream_spans(&mut self) -> Result<(Vec<u8>, Spans), MessageError> {
        let mut out = Vec::new();
        let mut spans = Some(Vec::new());
        loop {
            let tag = self.u8("block stream")?;
            if tag == 0 {
                return Ok((out, spans));
            }
            let len = usize::from(self.u16("block stream")?);
            let at = self.pos();
            let block = self.take(len, "block stream")?;
            match tag {
                1 => {
                    spans = None;
                    // The prescan bounded each frame's declared size to one block.
                    let plain = zstd::bulk::decompress(block, BLOCK)
                        .map_err(|_| MessageError::Malformed("zstd block"))?;
                    out.extend_from_slice(&plain);
                }
                2 => {
                    if let Some(spans) = &mut spans {
                        spans.push(at..at + len);
                    }
                    out.extend_from_slice(block);
                }
                _ => return Err(MessageError::Malformed("block tag")),
            }
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every string we encode came from a decoded message, where its length was a u16.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn put_id(out: &mut Vec<u8>, id: &ChitchatId) {
    put_str(out, &id.node_id);
    out.extend_from_slice(&id.generation_id.to_le_bytes());
    match id.gossip_advertise_addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&id.gossip_advertise_addr.port().to_le_bytes());
}

fn put_stream(out: &mut Vec<u8>, items: &[u8], blocks: Blocks) {
    for chunk in items.chunks(BLOCK) {
        let packed = match blocks {
            Blocks::Zstd => zstd::bulk::compress(chunk, 0).ok(),
            Blocks::Raw => None,
        };
        match packed {
            Some(z) if z.len() < chunk.len() => put_block(out, 1, &z),
            _ => put_block(out, 2, chunk),
        }
    }
    out.push(0);
}

fn put_block(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    // A chunk is at most BLOCK bytes, and zstd only keeps a frame smaller than its chunk.
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests;

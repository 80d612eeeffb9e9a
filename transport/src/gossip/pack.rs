//! Gossip packed against what both ends of a connection already hold.
//!
//! chitchat sends its whole digest (every member's id, heartbeat and versions) in every Syn and
//! SynAck, each compressed on its own. Two members' digests are nearly the same bytes: the same
//! names, generations and addresses, heartbeats a few beats apart. So between nodes that both
//! speak it (negotiated per connection, see [`crate::tls::ALPN_PACKED_GOSSIP`]), a message is
//! its raw encoding ([`message::encode_raw`]) compressed with zstd against a *base*: bytes
//! both ends hold byte for byte, named by their hash, most often the header and digest of an
//! earlier message of the same connection. A base leaves out the delta: the next message does not repeat
//! its keys and values, and a large delta would make every base large.
//!
//! - A SynAck is packed against the Syn it answers, which the initiator still holds.
//! - A Syn is packed against the last SynAck it received on the connection, which the peer
//!   recorded when it sent it; failing that, against the last SynAck it sent there, which the
//!   peer recorded when it arrived; failing both (the first exchange between the two), against
//!   its *roster*, the ids of its own digest, which the peer holds too when it knows the same
//!   members ([`roster`]).
//! - An Ack is packed on its own.
//!
//! The heartbeats that moved since the base travel apart from the rest of the digest
//! ([`beats`]), so that what did not move matches the base whole.
//!
//! A receiver that lacks the named base drops the message, as a lost datagram; a Syn that
//! named a base and got no SynAck before the next Syn makes the sender forget that base, so the
//! next goes plain. Every map here is bounded: the bases of all connections together by
//! [`BASES_BUDGET`], the rosters to the last three, unpacking by [`MAX_UNPACKED`].

mod beats;
mod roster;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::message::{self, Kind};
use super::prescan;
use roster::Rosters;

/// The most a packed message may unpack to: the prescan's limit of 32 blocks of 16 KiB, and
/// the headers around them.
pub const MAX_UNPACKED: usize = 32 * (16 * 1024 + 3) + 64 * 1024;
/// The most a packed message's body may unpack to: [`MAX_UNPACKED`] and the heartbeat column,
/// at most 10 bytes for each digest entry of at least 41.
const MAX_BODY: usize = MAX_UNPACKED + MAX_UNPACKED / 4 + 16;
/// The steps a node's own heartbeat moves in (microseconds: 100 ms). Any heartbeat packs;
/// heartbeats in these steps pack small.
pub const HEARTBEAT_STEP: u64 = 100_000;
/// zstd's default level, as chitchat uses.
const LEVEL: i32 = 3;
/// Bases are stored at zstd's fastest level: they are made for every message.
const STORE_LEVEL: i32 = 1;
/// How long our Syns (and the peer's last Syn) stay usable as bases.
const PENDING_LIFETIME: Duration = Duration::from_secs(3);
/// How long ago our last SynAck must have been sent for our Syns to name it: one sent just now
/// may still be on its way, overtaken by the Syn on another stream.
const ANSWER_SETTLE: Duration = Duration::from_millis(250);
/// Our Syns awaiting an answer, per connection.
const PENDING_MAX: usize = 4;
/// SynAcks we sent, kept per connection for the peer's Syns to name. A pair can have two
/// exchanges under way at once (chitchat adds a Syn to a seed in the same round as the random
/// ones), and their messages can arrive in either order: the peer's Syns may name the older of
/// two SynAcks, and two of its Syns of one round name the same one, the second arriving after
/// we answered the first. Three covers both.
const SENT_MAX: usize = 3;
/// SynAcks received, kept per connection: the peer's Syns name the last one it sent, which may
/// have arrived before the other.
const RECEIVED_MAX: usize = 2;
/// How often every connection lets go of the bases it no longer needs.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Connections remembered at most, and how long an idle one is kept.
const PAIRS_MAX: usize = 1024;
const PAIR_IDLE: Duration = Duration::from_secs(300);
/// Bytes of bases kept in all, at most: the connections used least recently lose theirs first,
/// and a Syn naming a base its receiver evicted is dropped. A base is a digest, compressed: a
/// 1 000-entry digest is about 10 KB, and a connection holds up to ten (three sent, two
/// received, four pending, the peer's last Syn), about seven in steady use, so in a flat mesh
/// of 1 000 this keeps the bases of about sixty connections; a cell of 200 (about 2 KB a base,
/// 199 peers) stays under it.
pub const BASES_BUDGET: usize = 4 << 20;

/// The header and digest of an earlier message both ends hold, named by the first 8 bytes of
/// their SHA-256.
///
/// Kept compressed: a node holds about three per connection for as long as the connection is
/// in use, and a raw digest of a cell of 200 is about 10 KB.
#[derive(Clone, Debug)]
pub struct Base {
    id: u64,
    stored: Arc<[u8]>,
}

impl Base {
    /// The base `raw`, a message's raw encoding, leaves for the next one.
    pub fn new(raw: &[u8]) -> std::io::Result<Self> {
        let part = digest_part(raw);
        Self::with_id(Self::id_of(part), part)
    }

    /// The name of a base of bytes `part`.
    fn id_of(part: &[u8]) -> u64 {
        let hash = ring::digest::digest(&ring::digest::SHA256, part);
        let mut id = [0u8; 8];
        id.copy_from_slice(&hash.as_ref()[..8]);
        u64::from_le_bytes(id)
    }

    /// The base of bytes `part`, named `id` ([`Self::id_of`]).
    fn with_id(id: u64, part: &[u8]) -> std::io::Result<Self> {
        Ok(Self {
            id,
            stored: zstd::bulk::compress(part, STORE_LEVEL)?.into(),
        })
    }

    /// Its name on the wire.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes it takes in memory.
    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }

    fn raw(&self) -> std::io::Result<Vec<u8>> {
        zstd::bulk::decompress(&self.stored, MAX_UNPACKED)
    }
}

/// Why a message could not be packed or unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The message is not one we can read.
    #[error("gossip message: {0}")]
    Message(#[from] message::MessageError),
    /// The unpacked bytes are not a well-formed message.
    #[error("packed gossip: {0}")]
    Prescan(#[from] prescan::PrescanError),
    /// The message names a base this end does not hold.
    #[error("packed gossip names base {0:016x}, which this end does not hold")]
    UnknownBase(u64),
    /// The heartbeat column is malformed, or does not fit the digest.
    #[error("packed gossip: malformed heartbeat column")]
    Column,
    /// zstd refused (corrupt input, or more than [`MAX_UNPACKED`]).
    #[error("packed gossip: zstd: {0}")]
    Zstd(#[from] std::io::Error),
}

/// A message ready for the wire: the base it names, if any, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    /// [`Base::id`] of the base, or `None` when packed on its own.
    pub base: Option<u64>,
    /// zstd of the raw encoding.
    pub bytes: Vec<u8>,
    /// The base is the sender's roster (a Syn to a peer it has not exchanged with yet).
    pub roster: bool,
}

/// One node's bases, per connection (any key that names one connection at this end).
#[derive(Debug, Default)]
pub struct Packer {
    pairs: Mutex<Pairs>,
    rosters: Mutex<Rosters>,
}

#[derive(Debug, Default)]
struct Pairs {
    by_conn: HashMap<u64, Pair>,
    /// Bytes of every pair's bases.
    stored: usize,
    /// When every pair last let go of the bases it no longer needs ([`Pair::trim`]).
    trimmed: Option<Instant>,
}

#[derive(Debug)]
struct Pair {
    /// SynAcks we sent on the connection, newest last: bases the peer may name.
    sent: VecDeque<Base>,
    /// The last SynAcks we received, in the order they arrived: the newest is the base our Syns
    /// name, as the peer recorded it before sending.
    received: VecDeque<Base>,
    /// When we sent our last SynAck, while our Syns may name it when we hold none received: the
    /// peer recorded it when it arrived, so only once it has had [`ANSWER_SETTLE`] to arrive.
    /// Until a node has started an exchange with each peer (a node of a cell of 200 starts one
    /// with a given peer about every 33 s), this is the only base it shares with many. Cleared
    /// when a Syn naming a base goes unanswered (the SynAck may have been lost), set again by
    /// the next SynAck we send.
    answered_at: Option<Instant>,
    /// When we sent our last SynAck.
    sent_at: Option<Instant>,
    /// Our Syns, for the SynAcks that answer them.
    pending: VecDeque<Pending>,
    /// Our last Syn named a base and no SynAck has come since.
    unanswered: bool,
    /// The peer's last Syn, which our SynAck will be packed against.
    to_answer: Option<(Base, Instant)>,
    touched: Instant,
}

#[derive(Debug)]
struct Pending {
    base: Base,
    at: Instant,
}

impl Packer {
    /// Packs `v1`, a message as chitchat encoded it, for connection `conn`.
    pub fn pack(&self, conn: u64, v1: &[u8]) -> Result<Packed, PackError> {
        let msg = message::decode(v1)?;
        let raw = message::encode_raw(&msg);
        let now = Instant::now();
        let roster = match msg.kind {
            Kind::Syn => lock(&self.rosters).note(&raw, now)?,
            Kind::SynAck | Kind::Ack => None,
        };
        let roster_id = roster.as_ref().map(|r| r.id);
        let base = self.with_pair(conn, now, |pair| pair.base_for(msg.kind, &raw, now, roster))?;
        let dict = base.as_ref().map(Base::raw).transpose()?;
        let body = beats::split(raw, dict.as_deref())?;
        let bytes = compress(&body, dict.as_deref())?;
        let base = base.map(|b| b.id);
        Ok(Packed {
            base,
            bytes,
            roster: base.is_some_and(|id| Some(id) == roster_id),
        })
    }

    /// Unpacks a message received on `conn` to its raw encoding (a V1 message chitchat reads).
    pub fn unpack(&self, conn: u64, base: Option<u64>, bytes: &[u8]) -> Result<Vec<u8>, PackError> {
        let now = Instant::now();
        let dict = match base {
            None => None,
            Some(id) => Some(
                self.with_pair(conn, now, |pair| pair.find(id))
                    .or_else(|| lock(&self.rosters).find(id))
                    .ok_or(PackError::UnknownBase(id))?
                    .raw()?,
            ),
        };
        let raw = beats::join(&decompress(bytes, dict.as_deref())?)?;
        let kind = match raw.get(3) {
            Some(0) => Kind::Syn,
            Some(1) => Kind::SynAck,
            _ => Kind::Ack,
        };
        self.with_pair(conn, now, |pair| pair.received(kind, &raw, now))?;
        Ok(raw)
    }

    fn with_pair<T>(&self, conn: u64, now: Instant, f: impl FnOnce(&mut Pair) -> T) -> T {
        let mut guard = lock(&self.pairs);
        let pairs = &mut *guard;
        if !pairs.by_conn.contains_key(&conn) {
            pairs.forget_idle(now);
        }
        pairs.trim(now);
        let pair = pairs.by_conn.entry(conn).or_insert_with(|| Pair::new(now));
        pair.touched = now;
        let before = pair.stored();
        let out = f(pair);
        let after = pair.stored();
        pairs.stored = pairs.stored - before + after;
        pairs.keep_to_budget(conn);
        out
    }

    /// Connections with state (for tests and metrics).
    pub fn pairs(&self) -> usize {
        lock(&self.pairs).by_conn.len()
    }

    /// Bytes of bases kept (for tests and metrics).
    pub fn stored(&self) -> usize {
        lock(&self.pairs).stored
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pairs {
    /// Every [`TRIM_EVERY`], trims every pair: most are idle between two exchanges, and would
    /// otherwise hold what their last exchange left until the next.
    fn trim(&mut self, now: Instant) {
        if self
            .trimmed
            .is_some_and(|at| now.duration_since(at) < TRIM_EVERY)
        {
            return;
        }
        self.trimmed = Some(now);
        for pair in self.by_conn.values_mut() {
            pair.trim(now);
        }
        self.stored = self.by_conn.values().map(Pair::stored).sum();
    }

    /// Forgets idle connections, and the least recently used one if still full.
    fn forget_idle(&mut self, now: Instant) {
        let before = self.by_conn.len();
        self.by_conn
            .retain(|_, p| now.duration_since(p.touched) < PAIR_IDLE);
        if self.by_conn.len() >= PAIRS_MAX
            && let Some(oldest) = self.least_recent(None)
        {
            self.by_conn.remove(&oldest);
        }
        if self.by_conn.len() != before {
            self.stored = self.by_conn.values().map(Pair::stored).sum();
        }
    }

    /// Drops whole connections' state, least recently used first (never `keep`'s), until the
    /// bases fit [`BASES_BUDGET`].
    fn keep_to_budget(&mut self, keep: u64) {
        while self.stored > BASES_BUDGET {
            let Some(oldest) = self.least_recent(Some(keep)) else {
                return;
            };
            if let Some(p) = self.by_conn.remove(&oldest) {
                self.stored -= p.stored();
            }
        }
    }

    fn least_recent(&self, except: Option<u64>) -> Option<u64> {
        self.by_conn
            .iter()
            .filter(|(k, _)| Some(**k) != except)
            .min_by_key(|(_, p)| p.touched)
            .map(|(k, _)| *k)
    }
}

impl Pair {
    fn new(now: Instant) -> Self {
        Self {
            sent: VecDeque::new(),
            received: VecDeque::new(),
            sent_at: None,
            answered_at: None,
            pending: VecDeque::new(),
            unanswered: false,
            to_answer: None,
            touched: now,
        }
    }

    /// The base to pack an outgoing message of `kind` against, recording what the peer will
    /// hold once it arrives. A Syn with no base shared on the connection names `roster`, the
    /// roster of its own digest.
    fn base_for(
        &mut self,
        kind: Kind,
        raw: &[u8],
        now: Instant,
        roster: Option<Base>,
    ) -> std::io::Result<Option<Base>> {
        self.pending
            .retain(|p| now.duration_since(p.at) < PENDING_LIFETIME);
        match kind {
            Kind::Syn => {
                // The peer may have dropped our last Syn for want of its base: a Syn goes out
                // plain, and the base is forgotten, until a SynAck shows one got through.
                let retry = self.unanswered;
                if retry {
                    self.received.clear();
                    self.answered_at = None;
                }
                let settled = self
                    .answered_at
                    .is_some_and(|at| now.duration_since(at) >= ANSWER_SETTLE);
                let answered = self.sent.back().filter(|_| settled);
                let base = self
                    .received
                    .back()
                    .or(answered)
                    .cloned()
                    .or_else(|| roster.filter(|_| !retry));
                self.unanswered = base.is_some();
                if self.pending.len() >= PENDING_MAX {
                    self.pending.pop_front();
                }
                self.pending.push_back(Pending {
                    base: Base::new(raw)?,
                    at: now,
                });
                Ok(base)
            }
            Kind::SynAck => {
                let base = self
                    .to_answer
                    .as_ref()
                    .filter(|(_, at)| now.duration_since(*at) < PENDING_LIFETIME)
                    .map(|(b, _)| b.clone());
                if self.sent.len() >= SENT_MAX {
                    self.sent.pop_front();
                }
                self.sent.push_back(Base::new(raw)?);
                self.answered_at = Some(now);
                self.sent_at = Some(now);
                Ok(base)
            }
            Kind::Ack => Ok(None),
        }
    }

    /// Records a message received, as the sender recorded it.
    fn received(&mut self, kind: Kind, raw: &[u8], now: Instant) -> std::io::Result<()> {
        match kind {
            Kind::Syn => self.to_answer = Some((Base::new(raw)?, now)),
            Kind::SynAck => {
                self.unanswered = false;
                if self.received.len() >= RECEIVED_MAX {
                    self.received.pop_front();
                }
                self.received.push_back(Base::new(raw)?);
            }
            Kind::Ack => {}
        }
        Ok(())
    }

    /// Lets go of the bases no message can name any more: our Syns and the peer's last Syn once
    /// past [`PENDING_LIFETIME`] (the same test that [`Self::base_for`] applies), and the third
    /// SynAck sent, which only a Syn of the round we answered can name.
    fn trim(&mut self, now: Instant) {
        let expired = |at: Instant| now.duration_since(at) >= PENDING_LIFETIME;
        self.pending.retain(|p| !expired(p.at));
        if self.to_answer.as_ref().is_some_and(|(_, at)| expired(*at)) {
            self.to_answer = None;
        }
        if self.sent.len() > 2 && self.sent_at.is_some_and(expired) {
            self.sent.pop_front();
        }
    }

    /// Bytes of its bases.
    fn stored(&self) -> usize {
        let pending = self.pending.iter().map(|p| p.base.stored_len());
        let answer = self.to_answer.iter().map(|(b, _)| b.stored_len());
        let kept = self.sent.iter().chain(&self.received).map(Base::stored_len);
        pending.chain(answer).chain(kept).sum()
    }

    fn find(&self, id: u64) -> Option<Base> {
        let pending = self.pending.iter().map(|p| &p.base);
        self.sent
            .iter()
            .chain(&self.received)
            .chain(pending)
            .find(|b| b.id == id)
            .cloned()
    }
}

/// `raw` up to the end of its digest stream: its header and digest. Both ends cut the same bytes
/// the same way, whatever blocks they hold; an Ack, which has no digest, is cut after its header.
fn digest_part(raw: &[u8]) -> &[u8] {
    const HEADER: usize = 4;
    if raw.get(3).is_none_or(|kind| *kind > 1) {
        return raw.get(..HEADER).unwrap_or(raw);
    }
    let mut at = HEADER;
    while let Some(&tag) = raw.get(at) {
        at += 1;
        if tag == 0 {
            return &raw[..at];
        }
        let Some(len) = raw.get(at..at + 2) else {
            break;
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    // Not a message the prescan passed: keep it whole.
    raw
}

fn compress(body: &[u8], dict: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut c = match dict {
        Some(d) => zstd::bulk::Compressor::with_dictionary(LEVEL, d)?,
        None => zstd::bulk::Compressor::new(LEVEL)?,
    };
    c.compress(body)
}

fn decompress(bytes: &[u8], dict: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
    let mut d = match dict {
        Some(b) => zstd::bulk::Decompressor::with_dictionary(b)?,
        None => zstd::bulk::Decompressor::new()?,
    };
    d.decompress(bytes, MAX_BODY)
}

#[cfg(test)]
mod tests;

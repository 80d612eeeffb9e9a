//! One cached connection per peer address, dialled once even when many callers ask at the same
//! time, and failing fast for a short while after a dial failed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use foldhash::HashMap;
use quinn::{Connection, RecvStream, SendStream};
use rustls_pki_types::CertificateDer;
use tokio::time::Instant;

use super::{Counters, MeshEndpoint};
use crate::certs::{parse_leaf, serial_of};
use crate::identity::{Name, PeerIdentity};
use crate::tls::ALPN_PACKED_GOSSIP;
use crate::wire::{StreamHeader, StreamKind, WireError, put_header};

pub(super) mod stats;

/// After a failed dial, callers get the failure at once for this long instead of each waiting
/// for its own timeout: requests move to another instance immediately.
const FAILURE_MEMORY: Duration = Duration::from_millis(500);

/// Why a peer could not be reached.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The handshake failed or timed out, or the connection broke.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// The peer address.
        addr: SocketAddr,
        /// What happened.
        reason: String,
    },
    /// The peer is not the node we expected.
    #[error("{addr} is {found}, not node {expected}")]
    WrongPeer {
        /// The peer address.
        addr: SocketAddr,
        /// The node we wanted.
        expected: Name,
        /// Who answered.
        found: String,
    },
}

/// An established, verified connection to a peer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PeerConnection {
    conn: Connection,
    peer: Arc<PeerIdentity>,
    streams: StreamLimit,
    packs_gossip: bool,
    /// The shard whose runtime drives it ([`crate::shard`]).
    shard: usize,
}

/// How long opening a stream may wait for a free one, and where exhaustion is counted.
#[derive(Clone, Debug)]
struct StreamLimit {
    wait: Duration,
    counters: Arc<Counters>,
}

/// Transport health of the connections to one peer ([`MeshEndpoint::peer_stats`] merges a
/// peer's connections into one).
#[derive(Clone, Debug)]
pub struct PeerStats {
    /// The peer's node name.
    pub peer: String,
    /// Its UDP address.
    pub addr: SocketAddr,
    /// Smoothed round-trip time (the slowest connection's).
    pub rtt: Duration,
    /// Packets declared lost since the peer was last connected, on all its connections (closed
    /// ones included).
    pub lost_packets: u64,
    /// Packets sent since the peer was last connected, on all its connections.
    pub sent_packets: u64,
    /// Largest UDP payload the path carries, as found by MTU discovery so far (the smallest of
    /// the connections').
    pub mtu: u16,
}

impl PeerConnection {
    pub(super) fn new(conn: Connection, ep: &MeshEndpoint) -> Result<Self, String> {
        let (wait, counters) = (ep.inner.settings.stream_wait, ep.inner.counters.clone());
        Self::with_streams(conn, wait, counters)
    }

    /// A connection with its own stream wait and counters (one outside any endpoint, such as
    /// a joining node's anonymous connection).
    pub(super) fn with_streams(
        conn: Connection,
        wait: std::time::Duration,
        counters: Arc<Counters>,
    ) -> Result<Self, String> {
        let peer = identity_of(&conn)?;
        let packs_gossip = conn
            .handshake_data()
            .and_then(|any| any.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .is_some_and(|hs| hs.protocol.as_deref() == Some(ALPN_PACKED_GOSSIP));
        Ok(Self {
            conn,
            peer: Arc::new(peer),
            streams: StreamLimit { wait, counters },
            packs_gossip,
            shard: crate::shard::current(),
        })
    }

    /// A new bidirectional stream, waiting at most the stream wait for the peer to allow one.
    async fn open_bi(&self) -> Result<(SendStream, RecvStream), OpenError> {
        match tokio::time::timeout(self.streams.wait, self.conn.open_bi()).await {
            Ok(opened) => opened.map_err(OpenError::Connection),
            Err(_) => {
                self.streams
                    .counters
                    .streams_exhausted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(OpenError::Busy {
                    peer: self.peer.id.name.to_string(),
                    waited: self.streams.wait,
                })
            }
        }
    }

    /// Who the peer is.
    pub fn identity(&self) -> &Arc<PeerIdentity> {
        &self.peer
    }

    /// Whether both ends negotiated packed gossip ([`crate::gossip::pack`]).
    pub fn packs_gossip(&self) -> bool {
        self.packs_gossip
    }

    /// A number naming this connection at this end while it lives.
    pub fn key(&self) -> u64 {
        self.conn.stable_id() as u64
    }

    /// The shard whose runtime drives it.
    pub(super) fn shard(&self) -> usize {
        self.shard
    }

    /// The peer's UDP address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// Smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Opens a bidirectional stream and writes its header.
    pub async fn open(
        &self,
        kind: StreamKind,
        header: &StreamHeader,
    ) -> Result<(SendStream, RecvStream), OpenError> {
        self.open_with(kind, header, &[], false).await
    }

    /// Opens a bidirectional stream and writes its header followed by `first` in one write,
    /// finishing the stream when `finish` is set: a small request leaves in one packet instead
    /// of one per write.
    pub async fn open_with(
        &self,
        kind: StreamKind,
        header: &StreamHeader,
        first: &[u8],
        finish: bool,
    ) -> Result<(SendStream, RecvStream), OpenError> {
        let (mut send, recv) = self.open_bi().await?;
        let mut buf = Vec::with_capacity(64 + first.len());
        put_header(&mut buf, kind, header).map_err(OpenError::Wire)?;
        buf.extend_from_slice(first);
        send.write_all(&buf)
            .await
            .map_err(|e| OpenError::Wire(WireError::Io(e.into())))?;
        if finish {
            let _ = send.finish();
        }
        Ok((send, recv))
    }

    /// Opens a unidirectional stream, writes `bytes` and finishes it. Waits at most the stream
    /// wait for the peer to allow one more (gossip is dropped rather than queued).
    pub async fn send_uni(&self, bytes: &[u8]) -> Result<(), OpenError> {
        let mut send = match tokio::time::timeout(self.streams.wait, self.conn.open_uni()).await {
            Ok(opened) => opened.map_err(OpenError::Connection)?,
            Err(_) => {
                return Err(OpenError::Busy {
                    peer: self.peer.id.name.to_string(),
                    waited: self.streams.wait,
                });
            }
        };
        send.write_all(bytes)
            .await
            .map_err(|e| OpenError::Wire(WireError::Io(e.into())))?;
        let _ = send.finish();
        Ok(())
    }

    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn stable_id(&self) -> usize {
        self.conn.stable_id()
    }

    pub(super) fn close(&self, code: quinn::VarInt, reason: &[u8]) {
        self.conn.close(code, reason);
    }

    fn stats(&self) -> PeerStats {
        let s = self.conn.stats();
        PeerStats {
            peer: self.peer.id.name.to_string(),
            addr: self.conn.remote_address(),
            rtt: self.conn.rtt(),
            lost_packets: s.path.lost_packets,
            sent_packets: s.path.sent_packets,
            mtu: s.path.current_mtu,
        }
    }
}

/// Why a stream could not be opened on an established connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The connection is gone.
    #[error("connection lost: {0}")]
    Connection(quinn::ConnectionError),
    /// Writing the header failed.
    #[error(transparent)]
    Wire(WireError),
    /// The peer allowed no more streams at once, and none freed within the wait: it is busy
    /// with as many requests and TCP connections from this node as it accepts.
    #[error(
        "node {peer} has as many streams from this node open as it allows at once, and none \
         closed within {waited:?}: it is busy (long-lived TCP connections or slow requests hold \
         them)"
    )]
    Busy {
        /// The peer.
        peer: String,
        /// How long the open waited.
        waited: Duration,
    },
}

fn identity_of(conn: &Connection) -> Result<PeerIdentity, String> {
    let chain = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("peer presented no certificate")?;
    let (leaf, issuers) = chain.split_first().ok_or("peer presented an empty chain")?;
    let mut peer = parse_leaf(leaf)
        .map(|info| info.peer_identity())
        .map_err(|e| e.to_string())?;
    peer.issuer_serials = issuers.iter().filter_map(|c| serial_of(c)).collect();
    Ok(peer)
}

#[derive(Debug, Default)]
enum Slot {
    #[default]
    Empty,
    Ready(PeerConnection),
    Failed {
        at: Instant,
        reason: String,
    },
}

type SlotCell = Arc<tokio::sync::Mutex<Slot>>;

/// Connections by peer address. Every request looks its peer's slot up: under a shared lock,
/// taken exclusively only to add or remove a slot.
#[derive(Debug, Default)]
pub(super) struct PeerCache {
    slots: RwLock<HashMap<SocketAddr, SlotCell>>,
    /// The last counts of connections that left their slot since stats were last taken, for
    /// the packet counters ([`stats::Ledger`]). At most [`RETIRED_MAX`]: with no one taking
    /// stats, the oldest are kept and later ones not.
    retired: Mutex<Vec<stats::Sample>>,
}

/// Connections that left their slot and wait for the next stats: between two scrapes a shard
/// replaces a few at most; the bound is for a node nobody scrapes.
const RETIRED_MAX: usize = 64;

/// The figures of a shard's connections to its peers.
#[derive(Debug)]
pub(super) struct Samples {
    /// Of the open connections.
    pub(super) open: Vec<stats::Sample>,
    /// Of those that closed since the last look: the last counts of those that left their
    /// slot, and of the closed ones still in it.
    pub(super) closed: Vec<stats::Sample>,
}

impl PeerCache {
    fn cell(&self, addr: SocketAddr) -> SlotCell {
        if let Some(c) = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
        {
            return c.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        slots.entry(addr).or_default().clone()
    }

    /// Records a connection on which a peer just spoke, so traffic to its verified address
    /// uses it. Among connections to the same node the newest wins (a peer that restarted dials
    /// afresh while our old connection to its previous incarnation may look open until it times
    /// out); an open connection to another node is never replaced.
    pub(super) fn adopt(&self, addr: SocketAddr, conn: &PeerConnection) {
        let cell = self.cell(addr);
        if let Ok(mut slot) = cell.try_lock() {
            let keep = match &*slot {
                Slot::Ready(c) => {
                    c.conn.stable_id() == conn.conn.stable_id()
                        || (c.is_open() && c.peer.id.name != conn.peer.id.name)
                }
                _ => false,
            };
            if !keep {
                self.retire(&slot);
                *slot = Slot::Ready(conn.clone());
            }
        }
    }

    /// Keeps the last counts of the connection in `slot`, which is about to leave it.
    fn retire(&self, slot: &Slot) {
        if let Slot::Ready(c) = slot {
            let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            if retired.len() < RETIRED_MAX {
                retired.push((c.stable_id(), c.stats()));
            }
        }
    }

    /// Closes and forgets the connection to `addr`, if any: streams on it fail at once and the
    /// next request dials afresh.
    pub(super) fn disconnect(&self, addr: SocketAddr, reason: &[u8]) {
        let cell = self
            .slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addr);
        if let Some(cell) = cell
            && let Ok(slot) = cell.try_lock()
            && let Slot::Ready(conn) = &*slot
        {
            conn.conn.close(quinn::VarInt::from_u32(0x20), reason);
            self.retire(&slot);
        }
    }

    /// The connections' figures, each with its connection's ID; those of connections retired
    /// since the last call are handed over once.
    pub(super) fn stats(&self) -> Samples {
        let cells: Vec<SlotCell> = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut closed =
            std::mem::take(&mut *self.retired.lock().unwrap_or_else(PoisonError::into_inner));
        let mut open = Vec::with_capacity(cells.len());
        for c in &cells {
            if let Some(Slot::Ready(conn)) = c.try_lock().ok().as_deref() {
                let sample = (conn.stable_id(), conn.stats());
                if conn.is_open() {
                    open.push(sample);
                } else {
                    closed.push(sample);
                }
            }
        }
        Samples { open, closed }
    }
}

/// The cached connection to `addr` if it is open and (with `expected`) that node's, found
/// without waiting: `None` whenever [`connect`] would have more to do.
pub(super) fn ready(
    ep: &MeshEndpoint,
    addr: SocketAddr,
    expected: Option<&Name>,
) -> Option<PeerConnection> {
    let cell = ep.shard().peers.cell(addr);
    let slot = cell.try_lock().ok()?;
    match &*slot {
        Slot::Ready(conn) if conn.is_open() && expected.is_none_or(|n| &conn.peer.id.name == n) => {
            Some(conn.clone())
        }
        _ => None,
    }
}

/// The cached connection to `addr`, dialled if needed; `serve` is handed each new connection
/// (the peer may open streams on it too).
pub(super) async fn connect(
    ep: &MeshEndpoint,
    addr: SocketAddr,
    expected: Option<&Name>,
    serve: impl FnOnce(PeerConnection),
) -> Result<PeerConnection, ConnectError> {
    let cell = ep.shard().peers.cell(addr);
    // A ready connection is found without waiting on the slot (another request may be
    // dialling a different address's slot; this one's is free unless a dial is under way).
    let mut slot = match cell.try_lock() {
        Ok(slot) => slot,
        Err(_) => cell.lock().await,
    };
    // An open connection to another node than the one expected (a stale view, or a node that
    // dialled us from there) is no answer: dial, and keep what proves right.
    let mut held_by_other = None;
    match &*slot {
        Slot::Ready(conn) if conn.is_open() => match check_expected(conn, addr, expected) {
            Ok(conn) => return Ok(conn),
            Err(wrong) => held_by_other = Some(wrong),
        },
        Slot::Failed { at, reason } if at.elapsed() < FAILURE_MEMORY => {
            return Err(ConnectError::Unreachable {
                addr,
                reason: reason.clone(),
            });
        }
        _ => {}
    }
    match dial(ep, addr, expected).await {
        Ok(conn) => {
            ep.shard().peers.retire(&slot);
            *slot = Slot::Ready(conn.clone());
            drop(slot);
            serve(conn.clone());
            check_expected(&conn, addr, expected)
        }
        Err(reason) => match held_by_other {
            // The address is another node's: say so, and leave its connection be.
            Some(wrong) => Err(wrong),
            None => {
                *slot = Slot::Failed {
                    at: Instant::now(),
                    reason: reason.clone(),
                };
                Err(ConnectError::Unreachable { addr, reason })
            }
        },
    }
}

fn check_expected(
    conn: &PeerConnection,
    addr: SocketAddr,
    expected: Option<&Name>,
) -> Result<PeerConnection, ConnectError> {
    match expected {
        Some(name) if &conn.peer.id.name != name => Err(ConnectError::WrongPeer {
            addr,
            expected: name.clone(),
            found: conn.peer.id.to_string(),
        }),
        _ => Ok(conn.clone()),
    }
}

pub(super) async fn dial(
    ep: &MeshEndpoint,
    addr: SocketAddr,
    expected: Option<&Name>,
) -> Result<PeerConnection, String> {
    let inner = &ep.inner;
    let td = inner.tls.identity().trust_domain.clone();
    // With an expected name the verifier checks it during the handshake; a seed's name is not
    // known yet, and any node of the mesh may answer there.
    let server_name = match expected {
        Some(name) => td.node_dns_name(name),
        None => "peer.invalid".to_owned(),
    };
    let shard = ep.shard();
    let connecting = shard
        .endpoint
        .connect_with(shard.client_config.clone(), addr, &server_name)
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(inner.settings.connect_timeout, connecting)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    PeerConnection::new(conn, ep)
}

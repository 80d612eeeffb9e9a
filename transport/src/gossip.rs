//! chitchat's [`Transport`] over the mutual-TLS QUIC endpoint: gossip never travels as plain UDP.
//!
//! Each chitchat message goes on its own unidirectional QUIC stream as a [`GossipFrame`] (or,
//! between nodes that both negotiated it, a [`PackedGossipFrame`]: see [`pack`]) that
//! also carries the sender's advertised address (chitchat replies to the address a message came
//! from, and a QUIC peer's UDP source port says nothing about where it listens). Sending never
//! waits for a handshake: messages are queued per destination and dropped when the queue is
//! full or the peer unreachable, exactly as datagrams would be, so a dead seed cannot stall the
//! gossip loop.
//!
//! Every received message is bounded ([`prescan`]), decoded by our own code ([`message`]) and
//! handed to a [`GossipGuard`], which removes what the sender may not say; only then do the
//! bytes (encoded again if something was removed) reach chitchat. The connection a message
//! came on is used for traffic to the address the message claims only when the guard verified
//! that address as the sender's own.

pub mod codec;
mod framing;
mod guard;
pub mod message;
pub mod pack;
mod prescan;
mod replies;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use tokio::sync::mpsc;
use tracing::{debug, warn};

pub use guard::{Admission, GossipGuard};
pub use prescan::{PrescanError, prescan};
pub use stats::GossipStats;

use self::framing::Framing;
use self::pack::{PackError, Packer};
use self::replies::Replies;
use crate::endpoint::{GossipDatagram, MeshEndpoint};
use crate::wire::MAX_GOSSIP_PAYLOAD;

/// Messages waiting for one destination; more are dropped.
const PER_PEER_QUEUE: usize = 32;
/// A destination's sender task ends after this long without messages.
const SENDER_IDLE: Duration = Duration::from_secs(60);

/// The chitchat transport of a node.
#[derive(Debug)]
pub struct QuicGossip {
    endpoint: MeshEndpoint,
    channel: u8,
    inbox: Mutex<Option<mpsc::Receiver<GossipDatagram>>>,
    guard: Arc<dyn GossipGuard>,
    replies: Arc<Replies>,
    packer: Arc<Packer>,
    stats: Arc<GossipStats>,
}

impl QuicGossip {
    /// A transport over `endpoint`, fed by the gossip receiver [`MeshEndpoint::bind`] returned;
    /// every message passes `guard` before chitchat sees it.
    pub fn new(
        endpoint: MeshEndpoint,
        inbox: mpsc::Receiver<GossipDatagram>,
        guard: Arc<dyn GossipGuard>,
    ) -> Self {
        Self::on_channel(endpoint, 0, inbox, guard)
    }

    /// A transport of gossip channel `channel` over `endpoint` (a second gossip instance
    /// sharing the node's QUIC endpoint and connections), fed by
    /// [`MeshEndpoint::gossip_channel`]`(channel)`.
    pub fn on_channel(
        endpoint: MeshEndpoint,
        channel: u8,
        inbox: mpsc::Receiver<GossipDatagram>,
        guard: Arc<dyn GossipGuard>,
    ) -> Self {
        Self {
            endpoint,
            channel,
            inbox: Mutex::new(Some(inbox)),
            guard,
            replies: Arc::default(),
            packer: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// Counters of this transport.
    pub fn stats(&self) -> Arc<GossipStats> {
        self.stats.clone()
    }
}

#[async_trait]
impl Transport for QuicGossip {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| anyhow!("the QUIC gossip transport can be opened once"))?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(decode_loop(
            Receiving {
                endpoint: self.endpoint.clone(),
                guard: self.guard.clone(),
                replies: self.replies.clone(),
                packer: self.packer.clone(),
                stats: self.stats.clone(),
            },
            inbox,
            tx,
        ));
        Ok(Box::new(QuicSocket {
            endpoint: self.endpoint.clone(),
            framing: Arc::new(Framing {
                channel: self.channel,
                from: self.endpoint.advertise_addr(),
                packer: self.packer.clone(),
                stats: self.stats.clone(),
            }),
            replies: self.replies.clone(),
            encoder: codec::Encoder::new().await?,
            decoded: rx,
            senders: HashMap::new(),
            stats: self.stats.clone(),
        }))
    }
}

struct QuicSocket {
    endpoint: MeshEndpoint,
    framing: Arc<Framing>,
    replies: Arc<Replies>,
    encoder: codec::Encoder,
    decoded: mpsc::Receiver<RecvOutcome>,
    senders: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    stats: Arc<GossipStats>,
}

#[async_trait]
impl Socket for QuicSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.advertise_addr())
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let payload = self.encoder.encode(envelope).await?;
        let num_bytes_sent = payload.len();
        self.enqueue(to, payload);
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        self.decoded
            .recv()
            .await
            .ok_or_else(|| anyhow!("gossip receiver closed"))
    }
}

impl QuicSocket {
    /// Queues `payload` (a message as chitchat encoded it) for `to`.
    fn enqueue(&mut self, to: SocketAddr, payload: Vec<u8>) {
        if Replies::is_stand_in(to) {
            return self.reply(to, payload);
        }
        let sender = self
            .senders
            .entry(to)
            .or_insert_with(|| spawn_sender(&self.endpoint, to, &self.framing));
        let payload = match sender.try_send(payload) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(payload)) => payload,
        };
        // The idle task ended: start a new one.
        let fresh = spawn_sender(&self.endpoint, to, &self.framing);
        let _ = fresh.try_send(payload);
        self.senders.insert(to, fresh);
    }
}

impl QuicSocket {
    /// Sends a reply on the connection its request came on (see [`replies`]).
    fn reply(&self, to: SocketAddr, payload: Vec<u8>) {
        let Some(conn) = self.replies.take(to) else {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // Framed here, in the order chitchat replies, not in the task.
        let frame = match self.framing.frame(&conn, payload) {
            Ok(frame) => frame,
            Err(reason) => {
                warn!(peer = %conn.identity().id, %reason, "gossip reply not framed");
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let stats = self.stats.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.send_uni(&frame).await {
                debug!(peer = %conn.identity().id, error = %e, "gossip reply dropped");
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

fn spawn_sender(
    ep: &MeshEndpoint,
    to: SocketAddr,
    framing: &Arc<Framing>,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel(PER_PEER_QUEUE);
    tokio::spawn(send_loop(ep.clone(), to, rx, framing.clone()));
    tx
}

async fn send_loop(
    ep: MeshEndpoint,
    to: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    framing: Arc<Framing>,
) {
    let stats = &framing.stats;
    while let Ok(Some(payload)) = tokio::time::timeout(SENDER_IDLE, rx.recv()).await {
        let sent = match ep.connect(to, None).await {
            Ok(conn) => match framing.frame(&conn, payload) {
                Ok(frame) => conn.send_uni(&frame).await.map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = sent {
            debug!(%to, %reason, "gossip message dropped");
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            // Whatever queued up behind it would meet the same fate; drop it now rather than
            // wait a handshake timeout for each.
            while rx.try_recv().is_ok() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the receiving side of the transport works with.
struct Receiving {
    endpoint: MeshEndpoint,
    guard: Arc<dyn GossipGuard>,
    replies: Arc<Replies>,
    packer: Arc<Packer>,
    stats: Arc<GossipStats>,
}

async fn decode_loop(
    r: Receiving,
    mut inbox: mpsc::Receiver<GossipDatagram>,
    out: mpsc::Sender<RecvOutcome>,
) {
    let mut decoder = match codec::Decoder::new().await {
        Ok(d) => d,
        Err(e) => return warn!(error = %e, "gossip decoder could not start"),
    };
    while let Some(datagram) = inbox.recv().await {
        let Some(payload) = admit(&r, &datagram).await else {
            r.stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let envelope = match decoder.decode(&payload).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => {
                r.stats.rejected.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                warn!(error = %e, "gossip decoder reset");
                match codec::Decoder::new().await {
                    Ok(d) => decoder = d,
                    Err(e) => return warn!(error = %e, "gossip decoder could not restart"),
                }
                continue;
            }
        };
        r.stats.received.fetch_add(1, Ordering::Relaxed);
        r.stats
            .received_bytes
            .fetch_add(datagram.payload.len() as u64, Ordering::Relaxed);
        let outcome = RecvOutcome {
            from_addr: r.replies.stand_in(&datagram.conn),
            envelope,
            num_bytes_received: datagram.payload.len(),
        };
        if out.send(outcome).await.is_err() {
            return;
        }
    }
}

/// The bytes chitchat may see of `datagram`: bounded, decoded, filtered by the guard, and
/// encoded again if the guard removed anything. `None`: nothing is.
async fn admit(r: &Receiving, datagram: &GossipDatagram) -> Option<Vec<u8>> {
    let refused = |e: &dyn std::fmt::Display| {
        debug!(sender = %datagram.sender, error = %e, "gossip message refused");
    };
    let unpacked = match datagram.packed {
        None => None,
        Some(base) => match r
            .packer
            .unpack(datagram.conn.key(), base, &datagram.payload)
        {
            Ok(raw) => Some(raw),
            Err(e) => {
                if matches!(e, PackError::UnknownBase(_)) {
                    r.stats.base_missing.fetch_add(1, Ordering::Relaxed);
                }
                refused(&e);
                return None;
            }
        },
    };
    let payload = match &unpacked {
        // `unpack` has run the prescan on what it made.
        Some(raw) => raw.as_slice(),
        None => {
            if let Err(e) = prescan(&datagram.payload) {
                refused(&e);
                return None;
            }
            &datagram.payload
        }
    };
    let mut msg = match message::decode(payload) {
        Ok(m) => m,
        Err(e) => {
            refused(&e);
            return None;
        }
    };
    let verdict = r
        .guard
        .admit(&datagram.sender, datagram.from, &mut msg)
        .await;
    if verdict.from_verified {
        r.endpoint.adopt(datagram.from, &datagram.conn);
    }
    if verdict.drop {
        return None;
    }
    if verdict.changed {
        r.stats.filtered.fetch_add(1, Ordering::Relaxed);
        return Some(message::encode(&msg));
    }
    match unpacked {
        None => Some(datagram.payload.clone()),
        // Raw blocks are what chitchat reads fastest, when they fit its datagram.
        Some(raw) if raw.len() <= MAX_GOSSIP_PAYLOAD => Some(raw),
        Some(_) => Some(message::encode(&msg)),
    }
}

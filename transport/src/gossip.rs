//! chitchat's [`Transport`] over the mutual-TLS QUIC endpoint: gossip never travels as plain UDP.
//!
//! Each chitchat message goes on its own unidirectional QUIC stream as a [`GossipFrame`] that
//! also carries the sender's advertised address (chitchat replies to the address a message came
//! from, and a QUIC peer's UDP source port says nothing about where it listens). Sending never
//! waits for a handshake: messages are queued per destination and dropped when the queue is
//! full or the peer unreachable, exactly as datagrams would be, so a dead seed cannot stall the
//! gossip loop.

mod codec;
mod prescan;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use tokio::sync::mpsc;
use tracing::{debug, warn};

pub use prescan::{PrescanError, prescan};

use crate::endpoint::{GossipDatagram, MeshEndpoint};
use crate::wire::{GossipFrame, WIRE_VERSION, encode_gossip};

/// Messages waiting for one destination; more are dropped.
const PER_PEER_QUEUE: usize = 32;
/// A destination's sender task ends after this long without messages.
const SENDER_IDLE: Duration = Duration::from_secs(60);

/// Gossip counters, for metrics.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Messages handed to QUIC.
    pub sent: AtomicU64,
    /// Bytes of chitchat payload sent.
    pub sent_bytes: AtomicU64,
    /// Messages delivered to chitchat.
    pub received: AtomicU64,
    /// Bytes of chitchat payload received.
    pub received_bytes: AtomicU64,
    /// Messages refused by the prescan or by chitchat's decoder.
    pub rejected: AtomicU64,
    /// Messages dropped because a destination was unreachable or its queue full.
    pub dropped: AtomicU64,
}

/// The chitchat transport of a node.
#[derive(Debug)]
pub struct QuicGossip {
    endpoint: MeshEndpoint,
    inbox: Mutex<Option<mpsc::Receiver<GossipDatagram>>>,
    stats: Arc<GossipStats>,
}

impl QuicGossip {
    /// A transport over `endpoint`, fed by the gossip receiver [`MeshEndpoint::bind`] returned.
    pub fn new(endpoint: MeshEndpoint, inbox: mpsc::Receiver<GossipDatagram>) -> Self {
        Self {
            endpoint,
            inbox: Mutex::new(Some(inbox)),
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
        tokio::spawn(decode_loop(inbox, tx, self.stats.clone()));
        Ok(Box::new(QuicSocket {
            endpoint: self.endpoint.clone(),
            encoder: codec::Encoder::new().await?,
            decoded: rx,
            senders: HashMap::new(),
            stats: self.stats.clone(),
        }))
    }
}

struct QuicSocket {
    endpoint: MeshEndpoint,
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
        let frame = encode_gossip(&GossipFrame {
            version: WIRE_VERSION,
            from: self.endpoint.advertise_addr(),
            payload,
        })?;
        self.enqueue(to, frame);
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sent_bytes
            .fetch_add(num_bytes_sent as u64, Ordering::Relaxed);
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
    fn enqueue(&mut self, to: SocketAddr, frame: Vec<u8>) {
        let sender = self
            .senders
            .entry(to)
            .or_insert_with(|| spawn_sender(&self.endpoint, to, &self.stats));
        let frame = match sender.try_send(frame) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::TrySendError::Closed(frame)) => frame,
        };
        // The idle task ended: start a new one.
        let fresh = spawn_sender(&self.endpoint, to, &self.stats);
        let _ = fresh.try_send(frame);
        self.senders.insert(to, fresh);
    }
}

fn spawn_sender(
    ep: &MeshEndpoint,
    to: SocketAddr,
    stats: &Arc<GossipStats>,
) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel(PER_PEER_QUEUE);
    tokio::spawn(send_loop(ep.clone(), to, rx, stats.clone()));
    tx
}

async fn send_loop(
    ep: MeshEndpoint,
    to: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stats: Arc<GossipStats>,
) {
    while let Ok(Some(frame)) = tokio::time::timeout(SENDER_IDLE, rx.recv()).await {
        let sent = match ep.connect(to, None).await {
            Ok(conn) => conn.send_uni(&frame).await.map_err(|e| e.to_string()),
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

async fn decode_loop(
    mut inbox: mpsc::Receiver<GossipDatagram>,
    out: mpsc::Sender<RecvOutcome>,
    stats: Arc<GossipStats>,
) {
    let mut decoder = match codec::Decoder::new().await {
        Ok(d) => d,
        Err(e) => return warn!(error = %e, "gossip decoder could not start"),
    };
    while let Some(datagram) = inbox.recv().await {
        if let Err(e) = prescan(&datagram.payload) {
            debug!(sender = %datagram.sender, error = %e, "gossip message refused");
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let envelope = match decoder.decode(&datagram.payload).await {
            Ok(Some(envelope)) => envelope,
            Ok(None) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
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
        stats.received.fetch_add(1, Ordering::Relaxed);
        stats
            .received_bytes
            .fetch_add(datagram.payload.len() as u64, Ordering::Relaxed);
        let outcome = RecvOutcome {
            from_addr: datagram.from,
            envelope,
            num_bytes_received: datagram.payload.len(),
        };
        if out.send(outcome).await.is_err() {
            return;
        }
    }
}

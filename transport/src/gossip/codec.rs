//! Turning chitchat envelopes into bytes and back without forking chitchat.
//!
//! chitchat 0.13 keeps its message codec crate-private; the only public code that encodes and
//! decodes messages is its UDP socket. So each direction runs through a pair of loopback
//! sockets private to this process: to encode, chitchat's socket sends the envelope to a sink we
//! read; to decode, a feeder we own sends the bytes to chitchat's socket, followed by a sentinel
//! (a `BadCluster` message, which peers are never allowed to send us, see `prescan`). If the
//! first thing decoded is the sentinel, the payload was invalid and chitchat dropped it.
//! Datagrams from any other local address are ignored, and nothing arrives here that has not
//! passed the mutual-TLS handshake and the prescan.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use chitchat::transport::{Socket, UdpSocket as CodecSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use tokio::net::UdpSocket;

/// A loopback round trip takes microseconds; anything slower means the codec sockets are stuck.
const CODEC_TIMEOUT: Duration = Duration::from_secs(2);

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// Encodes envelopes with chitchat's own serializer.
pub struct Encoder {
    codec: CodecSocket,
    codec_addr: SocketAddr,
    sink: UdpSocket,
    sink_addr: SocketAddr,
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder with sockets of its own on loopback.
    pub async fn new() -> anyhow::Result<Self> {
        let codec = CodecSocket::open(loopback()).await?;
        let codec_addr = codec.local_addr()?;
        let sink = UdpSocket::bind(loopback()).await?;
        let sink_addr = sink.local_addr()?;
        Ok(Self {
            codec,
            codec_addr,
            sink,
            sink_addr,
            buf: vec![0; 65_536],
        })
    }

    /// `envelope` as chitchat encodes it.
    pub async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        self.codec.send(self.sink_addr, envelope).await?;
        let read = async {
            loop {
                let (n, from) = self.sink.recv_from(&mut self.buf).await?;
                if from == self.codec_addr {
                    return anyhow::Ok(self.buf[..n].to_vec());
                }
            }
        };
        tokio::time::timeout(CODEC_TIMEOUT, read)
            .await
            .context("gossip encoder stalled")?
    }
}

/// Decodes bytes with chitchat's own deserializer.
pub struct Decoder {
    codec: CodecSocket,
    codec_addr: SocketAddr,
    feeder: UdpSocket,
    feeder_addr: SocketAddr,
    sentinel: Vec<u8>,
}

impl Decoder {
    /// A decoder with sockets of its own on loopback.
    pub async fn new() -> anyhow::Result<Self> {
        let codec = CodecSocket::open(loopback()).await?;
        let codec_addr = codec.local_addr()?;
        let feeder = UdpSocket::bind(loopback()).await?;
        let feeder_addr = feeder.local_addr()?;
        let sentinel = Encoder::new()
            .await?
            .encode(ChitchatEnvelope {
                version: ProtocolVersion::V1,
                message: ChitchatMessage::BadCluster,
            })
            .await?;
        Ok(Self {
            codec,
            codec_addr,
            feeder,
            feeder_addr,
            sentinel,
        })
    }

    /// Returns the envelope, or `None` when chitchat refused the bytes.
    pub async fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        self.feeder.send_to(bytes, self.codec_addr).await?;
        self.feeder.send_to(&self.sentinel, self.codec_addr).await?;
        tokio::time::timeout(CODEC_TIMEOUT, self.collect())
            .await
            .context("gossip decoder stalled")?
    }

    async fn collect(&mut self) -> anyhow::Result<Option<ChitchatEnvelope>> {
        let first = self.next_own().await?;
        if is_sentinel(&first) {
            return Ok(None);
        }
        let second = self.next_own().await?;
        if !is_sentinel(&second) {
            bail!("gossip decoder out of step");
        }
        Ok(Some(first))
    }

    async fn next_own(&mut self) -> anyhow::Result<ChitchatEnvelope> {
        loop {
            let outcome = self.codec.recv().await?;
            if outcome.from_addr == self.feeder_addr {
                return Ok(outcome.envelope);
            }
        }
    }
}

fn is_sentinel(envelope: &ChitchatEnvelope) -> bool {
    matches!(envelope.message, ChitchatMessage::BadCluster)
}

//! Measures a message's real encoded size with chitchat's own codec.
//!
//! chitchat 0.13 keeps its encoder private. The public code that runs it without a socket is
//! its `ChannelTransport`: a send there encodes the envelope, reports the encoded length in
//! the public `SendOutcome`, decodes it again and queues the copy. So each simulated socket
//! owns a private two-socket `ChannelTransport` and sends every message through it first: the
//! byte count is the real one (with the compressed digest of protocol V1), the receiver gets
//! a freshly decoded envelope, and the cost per message is one encode and one decode, as on a
//! real network. No limit is set on the private transport: the simulated network applies its
//! own, so that an oversized message is counted before it fails.

use std::net::SocketAddr;

use anyhow::Context;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{ChannelTransport, Socket, Transport};

/// One node's encoder: a private loop through chitchat's channel transport.
pub struct Codec {
    input: Box<dyn Socket>,
    output: Box<dyn Socket>,
    output_addr: SocketAddr,
}

impl Codec {
    /// A codec of its own (the transport and its addresses are private to it).
    pub async fn new() -> anyhow::Result<Self> {
        let transport = ChannelTransport::default();
        let input = transport.open(([127, 0, 0, 1], 1).into()).await?;
        let output = transport.open(([127, 0, 0, 1], 2).into()).await?;
        let output_addr = output.local_addr()?;
        Ok(Self {
            input,
            output,
            output_addr,
        })
    }

    /// Encodes and decodes `envelope`: returns the decoded copy and the encoded length.
    pub async fn round_trip(
        &mut self,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<(ChitchatEnvelope, usize)> {
        let sent = self.input.send(self.output_addr, envelope).await?;
        // The channel holds the copy already: this receive never waits.
        let received = self
            .output
            .recv()
            .await
            .context("the codec loop lost a message")?;
        Ok((received.envelope, sent.num_bytes_sent))
    }
}

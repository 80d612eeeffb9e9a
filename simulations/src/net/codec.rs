//! Measures a message's real encoded size with chitchat's own codec.
//!
//! chitchat 0.13 keeps its encoder private. Two public ways run it:
//!
//! - Its `ChannelTransport`: a send there encodes the envelope, reports the encoded length in
//!   the public `SendOutcome`, decodes it again and queues the copy. No limit is set on it: the
//!   simulated network applies its own, so that an oversized message is counted before it
//!   fails. This gives lengths, not bytes.
//! - The node's own loopback codec (`murmur_transport::gossip::codec`), which gives the bytes,
//!   as packed gossip needs them, but no message over a datagram. A loopback datagram is queued
//!   before its send returns, so a paused runtime never moves its clock while one is in flight.
//!
//! Either way the receiver gets a freshly decoded envelope, and the cost per message is one
//! encode and one decode, as on a real network.

use std::net::SocketAddr;

use anyhow::Context;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{ChannelTransport, Socket, Transport};
use murmur_transport::gossip::codec::{Decoder, Encoder};

/// One node's codec.
pub enum Codec {
    /// Lengths only, any size.
    Lengths {
        /// Where the envelope goes in.
        input: Box<dyn Socket>,
        /// Where its decoded copy comes out.
        output: Box<dyn Socket>,
        /// `output`'s address.
        output_addr: SocketAddr,
    },
    /// The bytes, up to a datagram.
    Bytes(Box<Loopback>),
}

/// The node's own encoder and decoder.
pub struct Loopback {
    encoder: Encoder,
    decoder: Decoder,
}

/// A message through the codec.
pub struct Coded {
    /// The decoded copy, for the receiver.
    pub envelope: ChitchatEnvelope,
    /// Its encoded length.
    pub len: usize,
    /// Its encoded bytes, from a [`Codec::Bytes`].
    pub bytes: Option<Vec<u8>>,
}

impl Codec {
    /// A codec of its own (its transport and sockets are private to it): bytes when `bytes`.
    pub async fn new(bytes: bool) -> anyhow::Result<Self> {
        if bytes {
            return Ok(Self::Bytes(Box::new(Loopback {
                encoder: Encoder::new().await?,
                decoder: Decoder::new().await?,
            })));
        }
        let transport = ChannelTransport::default();
        let input = transport.open(([127, 0, 0, 1], 1).into()).await?;
        let output = transport.open(([127, 0, 0, 1], 2).into()).await?;
        let output_addr = output.local_addr()?;
        Ok(Self::Lengths {
            input,
            output,
            output_addr,
        })
    }

    /// Encodes and decodes `envelope`.
    pub async fn round_trip(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Coded> {
        match self {
            Self::Lengths {
                input,
                output,
                output_addr,
            } => {
                let sent = input.send(*output_addr, envelope).await?;
                // The channel holds the copy already: this receive never waits.
                let received = output
                    .recv()
                    .await
                    .context("the codec loop lost a message")?;
                Ok(Coded {
                    envelope: received.envelope,
                    len: sent.num_bytes_sent,
                    bytes: None,
                })
            }
            Self::Bytes(coders) => {
                let bytes = coders.encoder.encode(envelope).await?;
                let envelope = coders
                    .decoder
                    .decode(&bytes)
                    .await?
                    .context("chitchat refused its own encoding")?;
                Ok(Coded {
                    envelope,
                    len: bytes.len(),
                    bytes: Some(bytes),
                })
            }
        }
    }
}

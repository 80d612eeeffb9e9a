//! The frame a chitchat message leaves in, chosen per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::pack::Packer;
use super::stats::GossipStats;
use crate::endpoint::PeerConnection;
use crate::wire::{
    GossipFrame, PackedGossipFrame, WIRE_VERSION, encode_gossip_on, encode_packed_gossip,
};

/// Turns a chitchat message into the frame for one connection: packed when both ends speak it,
/// as chitchat encoded it otherwise.
#[derive(Debug)]
pub(super) struct Framing {
    pub(super) channel: u8,
    pub(super) from: SocketAddr,
    pub(super) packer: Arc<Packer>,
    pub(super) stats: Arc<GossipStats>,
}

impl Framing {
    pub(super) fn frame(&self, conn: &PeerConnection, v1: Vec<u8>) -> Result<Vec<u8>, String> {
        let (len, frame) = if conn.packs_gossip() {
            let packed = self
                .packer
                .pack(conn.key(), &v1)
                .map_err(|e| e.to_string())?;
            let len = packed.bytes.len();
            if packed.base.is_some() {
                self.stats.sent_against_base.fetch_add(1, Ordering::Relaxed);
            }
            if packed.roster {
                self.stats
                    .sent_against_roster
                    .fetch_add(1, Ordering::Relaxed);
            }
            let frame = PackedGossipFrame {
                version: WIRE_VERSION,
                from: self.from,
                base: packed.base,
                payload: packed.bytes,
            };
            (len, encode_packed_gossip(self.channel, &frame))
        } else {
            let frame = GossipFrame {
                version: WIRE_VERSION,
                from: self.from,
                payload: v1,
            };
            (frame.payload.len(), encode_gossip_on(self.channel, &frame))
        };
        let frame = frame.map_err(|e| e.to_string())?;
        self.stats
            .sent_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        Ok(frame)
    }
}

//! The top layer over the node's QUIC endpoint: gossip channel [`TOP_CHANNEL`], beside the
//! cell's channel 0, on the same connections.

use std::sync::Arc;

use chitchat::transport::Transport;
use murmur_transport::endpoint::MeshEndpoint;
use murmur_transport::gossip::QuicGossip;

use super::link::TopTransport;
use crate::trust::TrustGuard;

/// The gossip channel of the top layer.
pub const TOP_CHANNEL: u8 = 1;

/// Opens a fresh channel-[`TOP_CHANNEL`] transport on `endpoint` for each top-layer instance
/// (the previous instance's receiver then sees nothing more).
#[derive(Clone, Debug)]
pub struct QuicTopTransport {
    /// The node's endpoint.
    pub endpoint: MeshEndpoint,
}

impl TopTransport for QuicTopTransport {
    fn transport(&self, guard: Arc<TrustGuard>) -> Box<dyn Transport> {
        let inbox = self.endpoint.gossip_channel(TOP_CHANNEL);
        Box::new(QuicGossip::on_channel(
            self.endpoint.clone(),
            TOP_CHANNEL,
            inbox,
            guard,
        ))
    }
}

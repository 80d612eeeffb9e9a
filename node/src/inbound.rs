//! The one handler of the bidirectional streams peers open: each kind goes to its owner.

use std::sync::Arc;

use murmur_transport::endpoint::{InboundStream, StreamHandler};
use murmur_transport::wire::StreamKind;

use crate::proxy::{self, Proxy};

/// Stream error code: nothing here serves this kind of stream.
const UNSUPPORTED: quinn::VarInt = quinn::VarInt::from_u32(0x13);

/// Routes inbound streams by kind.
#[derive(Debug)]
pub struct Inbound {
    /// The data path.
    pub proxy: Arc<Proxy>,
}

impl StreamHandler for Inbound {
    fn handle(&self, mut stream: InboundStream) {
        match stream.kind {
            StreamKind::Http => {
                tokio::spawn(proxy::inbound::serve(self.proxy.clone(), stream));
            }
            StreamKind::Tcp => {
                tokio::spawn(proxy::tcp::serve_inbound(self.proxy.clone(), stream));
            }
            StreamKind::Control | StreamKind::Gossip => {
                let _ = stream.send.reset(UNSUPPORTED);
                let _ = stream.recv.stop(UNSUPPORTED);
            }
        }
    }
}

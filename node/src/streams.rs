//! The one handler of the bidirectional streams peers open: each kind goes to its owner —
//! HTTP and TCP to the data path, control streams to the policy control task (through a bounded
//! queue: the endpoint holds this handler, and nothing it holds keeps the node's parts alive).

use std::sync::Arc;

use murmur_transport::endpoint::{InboundStream, StreamHandler, StreamWork};
use murmur_transport::wire::StreamKind;
use tokio::sync::mpsc;
use tracing::debug;

use crate::proxy::{self, Proxy};

/// Stream error code: nothing here serves this kind of stream.
const UNSUPPORTED: quinn::VarInt = quinn::VarInt::from_u32(0x13);
/// Stream error code: too many control streams are waiting; try again.
const BUSY: quinn::VarInt = quinn::VarInt::from_u32(0x14);

/// Routes inbound streams by kind.
#[derive(Debug)]
pub struct Streams {
    proxy: Arc<Proxy>,
    control: mpsc::Sender<InboundStream>,
}

impl Streams {
    /// Streams for the data path go to `proxy`; control streams into `control`.
    pub fn new(proxy: Arc<Proxy>, control: mpsc::Sender<InboundStream>) -> Arc<Self> {
        Arc::new(Self { proxy, control })
    }
}

impl StreamHandler for Streams {
    fn handle(&self, stream: InboundStream) -> StreamWork {
        match stream.kind {
            StreamKind::Http | StreamKind::Tcp => {
                Box::pin(proxy::inbound::serve(self.proxy.clone(), stream))
            }
            StreamKind::Control => match self.control.try_send(stream) {
                Ok(()) => Box::pin(async {}),
                Err(e) => {
                    debug!("control stream refused: the queue is full or closed");
                    refuse(e.into_inner(), BUSY)
                }
            },
            // Certificate requests are not served by this node yet.
            StreamKind::Gossip | StreamKind::Identity => refuse(stream, UNSUPPORTED),
        }
    }
}

fn refuse(mut stream: InboundStream, code: quinn::VarInt) -> StreamWork {
    let _ = stream.send.reset(code);
    let _ = stream.recv.stop(code);
    Box::pin(async {})
}

//! The one handler of the bidirectional streams peers open: each kind goes to its owner —
//! HTTP and TCP to the data path, control streams to the policy handler.

use std::sync::{Arc, Weak};

use murmur_transport::endpoint::{InboundStream, StreamHandler, StreamWork};
use murmur_transport::wire::StreamKind;

use crate::node::NodeContext;
use crate::proxy::{self, Proxy};

/// Stream error code: nothing here serves this kind of stream.
const UNSUPPORTED: quinn::VarInt = quinn::VarInt::from_u32(0x13);

/// Routes inbound streams by kind.
#[derive(Debug)]
pub struct Inbound {
    proxy: Arc<Proxy>,
    // Weak: the endpoint holds this handler and must not keep the node alive.
    ctx: Weak<NodeContext>,
}

impl Inbound {
    /// The handler of `ctx`.
    pub fn new(ctx: &Arc<NodeContext>) -> Arc<Self> {
        Arc::new(Self {
            proxy: ctx.proxy.clone(),
            ctx: Arc::downgrade(ctx),
        })
    }
}

impl StreamHandler for Inbound {
    fn handle(&self, stream: InboundStream) -> StreamWork {
        match stream.kind {
            StreamKind::Http => Box::pin(proxy::inbound::serve(self.proxy.clone(), stream)),
            StreamKind::Tcp => Box::pin(proxy::tcp::serve_inbound(self.proxy.clone(), stream)),
            StreamKind::Control => match self.ctx.upgrade() {
                Some(ctx) => Box::pin(crate::policy::control::serve(ctx, stream)),
                None => refuse(stream),
            },
            StreamKind::Gossip => refuse(stream),
        }
    }
}

fn refuse(mut stream: InboundStream) -> StreamWork {
    let _ = stream.send.reset(UNSUPPORTED);
    let _ = stream.recv.stop(UNSUPPORTED);
    Box::pin(async {})
}

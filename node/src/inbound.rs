//! Streams peers open to this node, dispatched by kind. Control streams go to the policy
//! handler; the data path adds its arms for `Http` and `Tcp` here.

use std::sync::{Arc, Weak};

use murmur_transport::endpoint::{InboundStream, StreamHandler};
use murmur_transport::wire::StreamKind;

use crate::node::NodeContext;

/// Stream error code for a kind this node does not serve.
const UNSUPPORTED: u32 = 0x13;

/// The node's [`StreamHandler`].
#[derive(Debug)]
pub struct Inbound {
    ctx: Weak<NodeContext>,
}

impl Inbound {
    /// A handler for `ctx` (held weakly: the endpoint must not keep the node alive).
    pub fn new(ctx: &Arc<NodeContext>) -> Arc<Self> {
        Arc::new(Self {
            ctx: Arc::downgrade(ctx),
        })
    }
}

impl StreamHandler for Inbound {
    fn handle(&self, stream: InboundStream) {
        let Some(ctx) = self.ctx.upgrade() else {
            return refuse(stream);
        };
        match stream.kind {
            StreamKind::Control => {
                tokio::spawn(crate::policy::control::serve(ctx, stream));
            }
            _ => refuse(stream),
        }
    }
}

fn refuse(mut stream: InboundStream) {
    let _ = stream.send.reset(UNSUPPORTED.into());
    let _ = stream.recv.stop(UNSUPPORTED.into());
}

//! The one handler of the bidirectional streams peers open: each kind goes to its owner —
//! HTTP and TCP to the data path, control streams to the policy control task, identity streams
//! (certificate requests, also from clients without a certificate) to the identity service
//! (both through bounded queues: the endpoint holds this handler, and nothing it holds keeps the
//! node's parts alive).

use std::sync::Arc;

use murmur_transport::endpoint::{AnonymousStream, InboundStream, StreamHandler, StreamWork};
use murmur_transport::wire::StreamKind;
use tokio::sync::mpsc;
use tracing::debug;

use crate::identity::serve::IdentityStream;
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
    identity: mpsc::Sender<IdentityStream>,
}

impl Streams {
    /// Streams for the data path go to `proxy`; control streams into `control`; identity
    /// streams into `identity`.
    pub fn new(
        proxy: Arc<Proxy>,
        control: mpsc::Sender<InboundStream>,
        identity: mpsc::Sender<IdentityStream>,
    ) -> Arc<Self> {
        Arc::new(Self {
            proxy,
            control,
            identity,
        })
    }
}

impl StreamHandler for Streams {
    fn handle(&self, stream: InboundStream) -> StreamWork {
        match stream.kind {
            StreamKind::Http | StreamKind::Tcp => proxy::inbound::serve(self.proxy.clone(), stream),
            StreamKind::Control => match self.control.try_send(stream) {
                Ok(()) => Box::pin(async {}),
                Err(e) => {
                    debug!("control stream refused: the queue is full or closed");
                    refuse(e.into_inner(), BUSY)
                }
            },
            StreamKind::Identity => match self.identity.try_send(IdentityStream::Peer(stream)) {
                Ok(()) => Box::pin(async {}),
                Err(e) => match e.into_inner() {
                    IdentityStream::Peer(s) => refuse(s, BUSY),
                    IdentityStream::Anonymous(s) => refuse_anonymous(s),
                },
            },
            StreamKind::Gossip | StreamKind::GossipChannel | StreamKind::GossipPacked => {
                refuse(stream, UNSUPPORTED)
            }
        }
    }

    fn handle_anonymous(&self, stream: AnonymousStream) -> StreamWork {
        match self.identity.try_send(IdentityStream::Anonymous(stream)) {
            Ok(()) => Box::pin(async {}),
            Err(e) => match e.into_inner() {
                IdentityStream::Anonymous(s) => refuse_anonymous(s),
                IdentityStream::Peer(s) => refuse(s, BUSY),
            },
        }
    }
}

fn refuse_anonymous(mut stream: AnonymousStream) -> StreamWork {
    debug!(remote = %stream.remote, "identity stream refused: the queue is full");
    let _ = stream.send.reset(BUSY);
    let _ = stream.recv.stop(BUSY);
    Box::pin(async {})
}

fn refuse(mut stream: InboundStream, code: quinn::VarInt) -> StreamWork {
    let _ = stream.send.reset(code);
    let _ = stream.recv.stop(code);
    Box::pin(async {})
}

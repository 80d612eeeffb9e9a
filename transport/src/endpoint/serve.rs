//! Accepting connections and dispatching the streams peers open.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use super::peers::PeerConnection;
use super::{GossipDatagram, InboundStream, MeshEndpoint};
use crate::identity::Role;
use crate::wire::{
    MAX_GOSSIP_FRAME, StreamKind, WireError, decode_gossip, decode_packed_gossip, read_preface,
};

/// A stream must say what it is within this time, or it is dropped: idle streams cannot pile up.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);

/// Application error codes on streams and connections.
pub(super) mod codes {
    use quinn::VarInt;
    /// The stream's preface or header was malformed, or arrived too late.
    pub(crate) const BAD_PREFACE: VarInt = VarInt::from_u32(0x10);
    /// The peer's role may not open this kind of stream.
    pub(crate) const FORBIDDEN: VarInt = VarInt::from_u32(0x11);
    /// The node is not ready to serve streams yet.
    pub(crate) const NOT_READY: VarInt = VarInt::from_u32(0x12);
    /// The peer's certificate is revoked.
    pub(crate) const REVOKED: VarInt = VarInt::from_u32(0x16);
}

/// Accepts the connections that reach shard `shard`'s endpoint (run on that shard's runtime).
pub(super) async fn accept_loop(ep: MeshEndpoint, shard: usize) {
    let endpoint = ep.shard_at(shard).endpoint.clone();
    while let Some(incoming) = endpoint.accept().await {
        let ep = ep.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.accept() {
                Ok(connecting) => {
                    tokio::time::timeout(ep.inner.settings.connect_timeout, connecting).await
                }
                Err(e) => Ok(Err(e)),
            };
            let conn = match conn {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return refused(&ep, remote, &e.to_string()),
                Err(_) => return refused(&ep, remote, "handshake timed out"),
            };
            if conn.peer_identity().is_none() {
                return super::anonymous::serve(ep, conn).await;
            }
            match PeerConnection::new(conn, &ep) {
                Ok(peer) => {
                    debug!(%remote, peer = %peer.identity().id, "peer connected");
                    serve_connection(ep, peer).await;
                }
                Err(e) => refused(&ep, remote, &e),
            }
        });
    }
}

fn refused(ep: &MeshEndpoint, remote: std::net::SocketAddr, reason: &str) {
    ep.inner
        .counters
        .handshakes_refused
        .fetch_add(1, Ordering::Relaxed);
    info!(%remote, %reason, "connection refused");
}

/// Serves the streams a peer opens on `conn` until it closes.
pub(super) async fn serve_connection(ep: MeshEndpoint, conn: PeerConnection) {
    ep.inner.registry.insert(&conn);
    // Revoked while the handshake was in flight: the revocation's sweep may have missed it.
    if let Some(reason) = ep.inner.tls.revocations().of_peer(conn.identity()) {
        ep.inner.registry.remove(&conn);
        conn.close(codes::REVOKED, reason.as_bytes());
        return;
    }
    let uni = {
        let (ep, conn) = (ep.clone(), conn.clone());
        async move {
            while let Ok(recv) = conn.connection().accept_uni().await {
                tokio::spawn(handle_uni(ep.clone(), conn.clone(), recv));
            }
        }
    };
    let bi = {
        let (ep, conn) = (ep.clone(), conn.clone());
        async move {
            while let Ok((send, recv)) = conn.connection().accept_bi().await {
                tokio::spawn(handle_bi(ep.clone(), conn.clone(), send, recv));
            }
        }
    };
    tokio::join!(uni, bi);
    ep.inner.registry.remove(&conn);
}

async fn handle_uni(ep: MeshEndpoint, conn: PeerConnection, mut recv: RecvStream) {
    let read = async {
        let kind = StreamKind::from_byte(recv.read_u8().await.ok()?)?;
        let channel = match kind {
            StreamKind::Gossip => 0,
            StreamKind::GossipChannel | StreamKind::GossipPacked => recv.read_u8().await.ok()?,
            _ => return None,
        };
        Some((
            kind,
            channel,
            recv.read_to_end(MAX_GOSSIP_FRAME).await.ok()?,
        ))
    };
    let Ok(Some((kind, channel, bytes))) = tokio::time::timeout(PREFACE_TIMEOUT, read).await else {
        let _ = recv.stop(codes::BAD_PREFACE);
        return;
    };
    let peer = conn.identity();
    if peer.id.role != Role::Node {
        return;
    }
    let decoded = match kind {
        // Only a peer that negotiated packed gossip may send it, as a node that does not
        // speak it would drop the stream.
        StreamKind::GossipPacked if !conn.packs_gossip() => Err(WireError::Kind(kind as u8)),
        StreamKind::GossipPacked => {
            decode_packed_gossip(&bytes).map(|f| (f.from, f.payload, Some(f.base)))
        }
        _ => decode_gossip(&bytes).map(|f| (f.from, f.payload, None)),
    };
    let (from, payload, packed) = match decoded {
        Ok(frame) => frame,
        Err(e) => {
            debug!(peer = %peer.id, error = %e, "gossip frame dropped");
            ep.inner
                .counters
                .gossip_malformed
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    // `from` is only a claim: the gossip guard adopts the connection for it once it has
    // checked the address against what the sender signed.
    let datagram = GossipDatagram {
        from,
        sender: peer.id.name.clone(),
        payload,
        packed,
        conn: conn.clone(),
    };
    if !ep.deliver_gossip(channel, datagram) {
        ep.inner
            .counters
            .gossip_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
}

async fn handle_bi(
    ep: MeshEndpoint,
    conn: PeerConnection,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let preface = async {
        let (kind, header) = read_preface(&mut recv).await.ok()?;
        Some((StreamKind::from_byte(kind)?, header))
    };
    let Ok(Some((kind, header))) = tokio::time::timeout(PREFACE_TIMEOUT, preface).await else {
        reject(&mut send, &mut recv, codes::BAD_PREFACE);
        return;
    };
    let peer = conn.identity().clone();
    let allowed = match kind {
        StreamKind::Gossip | StreamKind::GossipChannel | StreamKind::GossipPacked => false,
        StreamKind::Http | StreamKind::Tcp => peer.id.role == Role::Node,
        StreamKind::Control => true,
        StreamKind::Identity => peer.id.role == Role::Node,
    };
    if !allowed {
        reject(&mut send, &mut recv, codes::FORBIDDEN);
        return;
    }
    let Some(handler) = ep.inner.handler.get() else {
        reject(&mut send, &mut recv, codes::NOT_READY);
        return;
    };
    let work = handler.handle(InboundStream {
        peer: Arc::clone(&peer),
        remote: conn.remote_address(),
        kind,
        header,
        send,
        recv,
    });
    work.await;
}

fn reject(send: &mut SendStream, recv: &mut RecvStream, code: VarInt) {
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

//! The bytes of a tunnel — an upgraded request after its `101`, a CONNECT after its `200`, a TCP
//! connection after its acknowledgement — copied between a local connection and a QUIC stream.
//! Each direction ends on its own (TCP `shutdown(Write)` ⇄ QUIC `finish()`), so half-closed
//! protocols work; bytes that arrived with the last frame are delivered first.

use bytes::BytesMut;
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frame::FrameReader;

/// The QUIC side of a tunnel.
#[derive(Debug)]
pub struct Tunnel {
    /// Towards the peer.
    pub send: SendStream,
    /// From the peer.
    pub recv: RecvStream,
    /// Bytes already read from `recv`, delivered first.
    pub early: BytesMut,
}

impl Tunnel {
    /// The tunnel of a stream whose frames `reader` has read up to the switch.
    pub fn after_frames(send: SendStream, reader: FrameReader) -> Self {
        let (early, recv) = reader.into_parts();
        Self { send, recv, early }
    }

    /// A tunnel of a stream with nothing read ahead.
    pub fn new(send: SendStream, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            early: BytesMut::new(),
        }
    }

    /// Copies both ways until both directions have ended; returns the bytes sent to the peer
    /// and received from it.
    pub async fn splice<L>(self, local: &mut L) -> std::io::Result<(u64, u64)>
    where
        L: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        let Self { send, recv, early } = self;
        if !early.is_empty() {
            local.write_all(&early).await?;
        }
        let mut quic = tokio::io::join(recv, send);
        let (up, down) = tokio::io::copy_bidirectional(local, &mut quic).await?;
        Ok((up, down + early.len() as u64))
    }
}

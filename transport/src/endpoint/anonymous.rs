//! Connections without a client certificate: a node joining with a token has no certificate
//! yet. It verifies the server against the trust bundle like any node, and may then open
//! `Identity` streams, one at a time, a few per connection, for a short while. Anything else
//! (gossip, traffic, control, a second stream at once) closes the connection. The number of
//! such connections a node serves at once is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::AsyncReadExt;
use tracing::debug;

use super::peers::PeerConnection;
use super::{ConnectError, MeshEndpoint, QuicSettings, config};
use crate::tls::TrustBundle;
use crate::wire::{StreamHeader, StreamKind, read_header};

/// Anonymous connections served at once; more are closed at once.
pub(super) const MAX_ANONYMOUS: usize = 32;
/// Streams one anonymous connection may open.
const MAX_STREAMS: usize = 4;
/// How long an anonymous connection may stay.
const LIFETIME: Duration = Duration::from_secs(30);
/// A stream must say what it is within this time.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection close code: only certificate requests are served without a certificate.
const CERTIFICATE_REQUIRED: VarInt = VarInt::from_u32(0x15);

/// A stream opened by a client without a certificate.
#[derive(Debug)]
pub struct AnonymousStream {
    /// The client's UDP address.
    pub remote: SocketAddr,
    /// Its header.
    pub header: StreamHeader,
    /// Our side's send half.
    pub send: SendStream,
    /// Our side's receive half.
    pub recv: RecvStream,
}

/// A connection to a node made without a client certificate, and the endpoint it lives on.
#[derive(Debug)]
pub struct AnonymousConnection {
    /// The connection; its identity is the server's, verified against the bundle.
    pub conn: PeerConnection,
    endpoint: quinn::Endpoint,
}

impl AnonymousConnection {
    /// Closes the connection and waits (bounded) for the server to hear it.
    pub async fn close(self) {
        self.endpoint.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_millis(500), self.endpoint.wait_idle()).await;
    }
}

/// Dials `addr` presenting no certificate; the server must be a node of `bundle`'s trust domain
/// (any node: a seed's name is not known in advance).
pub async fn connect_anonymous(
    bundle: TrustBundle,
    addr: SocketAddr,
    quic: &QuicSettings,
) -> Result<AnonymousConnection, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable { addr, reason };
    let client =
        config::anonymous_client_config(bundle, quic).map_err(|e| unreachable(e.to_string()))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| unreachable(e.to_string()))?;
    let connecting = endpoint
        .connect_with(client, addr, "peer.invalid")
        .map_err(|e| unreachable(e.to_string()))?;
    let conn = tokio::time::timeout(quic.connect_timeout, connecting)
        .await
        .map_err(|_| unreachable("handshake timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let counters = Arc::default();
    let conn =
        PeerConnection::with_streams(conn, quic.stream_wait, counters).map_err(unreachable)?;
    Ok(AnonymousConnection { conn, endpoint })
}

/// Serves a connection whose client presented no certificate.
pub(super) async fn serve(ep: MeshEndpoint, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let Ok(_slot) = Arc::clone(&ep.inner.anonymous).try_acquire_owned() else {
        debug!(%remote, "too many connections without a certificate: closed");
        conn.close(CERTIFICATE_REQUIRED, b"busy");
        return;
    };
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(0));
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(1));
    let streams = async {
        for _ in 0..MAX_STREAMS {
            let accepted = tokio::select! {
                bi = conn.accept_bi() => bi.ok(),
                // A certificate-less client may not gossip.
                _ = conn.accept_uni() => None,
            };
            let Some((send, recv)) = accepted else {
                return;
            };
            if !serve_stream(&ep, remote, send, recv).await {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LIFETIME, streams).await;
    conn.close(CERTIFICATE_REQUIRED, b"certificate required");
}

/// Serves one stream; returns whether the connection may go on.
async fn serve_stream(
    ep: &MeshEndpoint,
    remote: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
) -> bool {
    let preface = async {
        let kind = StreamKind::from_byte(recv.read_u8().await.ok()?)?;
        let header = read_header(&mut recv).await.ok()?;
        Some((kind, header))
    };
    let Ok(Some((StreamKind::Identity, header))) =
        tokio::time::timeout(PREFACE_TIMEOUT, preface).await
    else {
        return false;
    };
    let Some(handler) = ep.inner.handler.get() else {
        let _ = send.reset(CERTIFICATE_REQUIRED);
        return false;
    };
    handler
        .handle_anonymous(AnonymousStream {
            remote,
            header,
            send,
            recv,
        })
        .await;
    true
}

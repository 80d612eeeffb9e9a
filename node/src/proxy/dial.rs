//! Opening a stream to one planned target: the cached connection to its node (dialled if needed,
//! failing fast after a recent failure), proof that the peer is the identity the plan asked for,
//! and the stream with its header and first bytes. Failures are typed, so retries and ejection
//! tell an unreachable node from one that is not who the view says.

use murmur_transport::endpoint::{ConnectError, MeshEndpoint, OpenError};
use murmur_transport::wire::{StreamHeader, StreamKind};
use quinn::{RecvStream, SendStream};

use super::plan::Target;

/// Why a stream to a target could not be opened. In every case nothing reached its app.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The node could not be reached (no handshake, or it failed recently).
    #[error("{0}")]
    Unreachable(ConnectError),
    /// Someone else answered at the node's address.
    #[error("{0}")]
    WrongPeer(ConnectError),
    /// The node's certificate does not name the service: it may not serve it.
    #[error("its certificate does not name service {service}")]
    NotServing {
        /// The service.
        service: String,
    },
    /// The connection broke before the stream opened.
    #[error("cannot open a stream: {0}")]
    Stream(OpenError),
}

impl DialError {
    /// Whether the peer at the instance's address is not the one the view promised (a stale
    /// view, or a member claiming what is not its own): worth a louder log than a failure.
    pub fn is_impostor(&self) -> bool {
        matches!(self, Self::WrongPeer(_) | Self::NotServing { .. })
    }
}

/// Opens a `kind` stream to `target`, whose node must prove the identity the plan asked for,
/// and writes the header and `first`; `finish` ends our side.
pub async fn open(
    endpoint: &MeshEndpoint,
    target: &Target<'_>,
    header: &StreamHeader,
    kind: StreamKind,
    first: &[u8],
    finish: bool,
) -> Result<(SendStream, RecvStream), DialError> {
    let identity = target.identity;
    let node = Some(identity.node);
    let addr = target.endpoint.mesh_addr;
    let conn = match endpoint.ready(addr, node) {
        Some(conn) => conn,
        // Boxed: dialling is rare, and its future would otherwise sit in every request's.
        None => Box::pin(endpoint.connect(addr, node))
            .await
            .map_err(|e| match e {
                ConnectError::WrongPeer { .. } => DialError::WrongPeer(e),
                _ => DialError::Unreachable(e),
            })?,
    };
    // A caller sends traffic for a service only to nodes whose certificate names it.
    if !conn.identity().may_serve(identity.service) {
        return Err(DialError::NotServing {
            service: identity.service.to_owned(),
        });
    }
    conn.open_with(kind, header, first, finish)
        .await
        .map_err(DialError::Stream)
}

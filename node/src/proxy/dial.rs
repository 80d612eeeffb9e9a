//! Opening a stream to one chosen instance: the cached connection to its node (dialled if
//! needed, failing fast after a recent failure), a check that the node's certificate names the
//! service, and the stream with its header and first bytes.

use murmur_membership::view::Endpoint;
use murmur_transport::identity::Name;
use murmur_transport::wire::{StreamHeader, StreamKind};
use quinn::{RecvStream, SendStream};

use super::Proxy;

/// Opens a `kind` stream to `ep` and writes the header and `first`; `finish` ends our side.
/// Errors are reasons for the caller's message; nothing reached the instance's app.
pub async fn open(
    proxy: &Proxy,
    ep: &Endpoint,
    header: &StreamHeader,
    kind: StreamKind,
    first: &[u8],
    finish: bool,
) -> Result<(SendStream, RecvStream), String> {
    let node = Name::parse("node name", &ep.node).map_err(|e| e.to_string())?;
    let conn = proxy
        .endpoint
        .connect(ep.mesh_addr, Some(&node))
        .await
        .map_err(|e| e.to_string())?;
    // A caller sends traffic for a service only to nodes whose certificate names it.
    if !conn.identity().may_serve(&header.service) {
        return Err(format!(
            "its certificate does not name service {}",
            header.service
        ));
    }
    conn.open_with(kind, header, first, finish)
        .await
        .map_err(|e| e.to_string())
}

//! The control stream: admin-API policy requests carried over QUIC, so an operator can reach
//! any node of the mesh by its mesh address, authenticated by the operator certificate.
//!
//! After the stream header (kind `Control`), the client sends one [`ControlRequest`] and
//! finishes its side; the node answers one [`ControlResponse`] and finishes. Both are versioned
//! postcard, read with a bound. Only the policy endpoints are served.
//!
//! The endpoint's stream handler hands control streams to [`run`] through a bounded queue
//! ([`queue`]): a peer that opens more than the node serves at once has the excess refused.

use std::time::Duration;

use murmur_transport::endpoint::{InboundStream, PeerConnection};
use murmur_transport::wire::{StreamHeader, StreamKind, WIRE_VERSION, decode_versioned};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::debug;

use super::api::{Answer, MAX_REQUEST, PolicyApi, handle};
use crate::api::policies::is_policy_path;

/// Largest response a client reads.
pub const MAX_RESPONSE: usize = 32 << 20;
/// A request must arrive whole within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Control streams waiting to be served.
const QUEUE: usize = 64;
/// Control streams served at once.
const CONCURRENT: usize = 16;

/// The queue between the stream handler and [`run`].
pub fn queue() -> (mpsc::Sender<InboundStream>, mpsc::Receiver<InboundStream>) {
    mpsc::channel(QUEUE)
}

/// Serves the control streams that arrive on `streams`, a bounded number at once, until every
/// sender is gone.
pub async fn run(api: PolicyApi, streams: mpsc::Receiver<InboundStream>) {
    crate::workers::serve_bounded(streams, CONCURRENT, move |stream| {
        let api = api.clone();
        async move { serve(&api, stream).await }
    })
    .await;
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// HTTP method.
    pub method: String,
    /// Path, with an optional `?query`.
    pub path: String,
    /// JSON body.
    pub body: Vec<u8>,
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResponse {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

/// Serves one control stream.
async fn serve(api: &PolicyApi, mut stream: InboundStream) {
    let peer = stream.peer.id.to_string();
    let read = tokio::time::timeout(READ_TIMEOUT, stream.recv.read_to_end(MAX_REQUEST)).await;
    let answer = match read {
        Ok(Ok(bytes)) => match decode_versioned::<ControlRequest>("control request", &bytes) {
            Ok(req) => answer(api, &req).await,
            Err(e) => Answer::error(400, &e.to_string()),
        },
        Ok(Err(e)) => Answer::error(413, &format!("request refused: {e}")),
        Err(_) => Answer::error(408, "the request did not arrive in time"),
    };
    debug!(%peer, status = answer.status, "control request answered");
    let resp = ControlResponse {
        version: WIRE_VERSION,
        status: answer.status,
        body: answer.body,
    };
    let Ok(bytes) = postcard::to_stdvec(&resp) else {
        return;
    };
    if stream.send.write_all(&bytes).await.is_ok() {
        let _ = stream.send.finish();
        // Wait until the client has the answer before the stream goes away.
        let _ = tokio::time::timeout(READ_TIMEOUT, stream.send.stopped()).await;
    }
}

async fn answer(api: &PolicyApi, req: &ControlRequest) -> Answer {
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    if !is_policy_path(path) {
        return Answer::error(
            404,
            &format!("{path} is not served over the control stream: only /v1/policies"),
        );
    }
    handle(api, &req.method, path, query, &req.body).await
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The stream could not be opened.
    #[error("cannot open a control stream: {0}")]
    Open(String),
    /// Writing or reading failed.
    #[error("control stream failed: {0}")]
    Io(String),
    /// The answer does not decode.
    #[error(transparent)]
    Wire(#[from] murmur_transport::wire::WireError),
}

/// Sends one request on a new control stream of `conn` and returns the response.
pub async fn call(
    conn: &PeerConnection,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<ControlResponse, CallError> {
    let (mut send, mut recv) = conn
        .open(StreamKind::Control, &StreamHeader::new(""))
        .await
        .map_err(|e| CallError::Open(e.to_string()))?;
    let req = ControlRequest {
        version: WIRE_VERSION,
        method: method.to_owned(),
        path: path.to_owned(),
        body,
    };
    let bytes = postcard::to_stdvec(&req).map_err(|e| CallError::Io(e.to_string()))?;
    send.write_all(&bytes)
        .await
        .map_err(|e| CallError::Io(e.to_string()))?;
    send.finish().map_err(|e| CallError::Io(e.to_string()))?;
    let answer = recv
        .read_to_end(MAX_RESPONSE)
        .await
        .map_err(|e| CallError::Io(e.to_string()))?;
    Ok(decode_versioned("control response", &answer)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_other_versions_are_refused() {
        let req = ControlRequest {
            version: WIRE_VERSION,
            method: "GET".into(),
            path: "/v1/policies?all=true".into(),
            body: vec![1, 2],
        };
        let bytes = postcard::to_stdvec(&req).unwrap();
        assert_eq!(
            decode_versioned::<ControlRequest>("r", &bytes).unwrap(),
            req
        );
        let old = ControlRequest { version: 7, ..req };
        assert!(
            decode_versioned::<ControlRequest>("r", &postcard::to_stdvec(&old).unwrap()).is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_versioned::<ControlRequest>("r", &bytes);
            let _ = decode_versioned::<ControlResponse>("r", &bytes);
        }
    }
}

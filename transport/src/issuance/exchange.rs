//! One request and its answer on an `Identity` stream: the client side (a joining node reaching
//! a seed without a certificate, a node renewing with its certificate, a seed forwarding a join
//! to an issuer) and the reading and writing the serving side does.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{RecvStream, SendStream};

use super::protocol::{
    Answer, MAX_ANSWER_BYTES, MAX_REQUEST_BYTES, Request, decode_answer, decode_request,
    encode_answer, encode_request,
};
use crate::endpoint::{ConnectError, PeerConnection, QuicSettings, connect_anonymous};
use crate::tls::TrustBundle;
use crate::wire::{StreamHeader, StreamKind, WireError};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The node could not be reached (or is not a node of the mesh).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The stream failed or the answer did not arrive in time.
    #[error("{0}")]
    Stream(String),
    /// The answer does not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Sends `request` on a new `Identity` stream of `conn`; waits at most `timeout` for the answer.
pub async fn exchange(
    conn: &PeerConnection,
    request: &Request,
    timeout: Duration,
) -> Result<Answer, ExchangeError> {
    let bytes = encode_request(request)?;
    let call = async {
        let (_send, mut recv) = conn
            .open_with(StreamKind::Identity, &StreamHeader::new(""), &bytes, true)
            .await
            .map_err(|e| ExchangeError::Stream(e.to_string()))?;
        let answer = recv
            .read_to_end(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ExchangeError::Stream(format!("no answer: {e}")))?;
        if answer.is_empty() {
            return Err(ExchangeError::Stream(
                "the node closed the stream without an answer".into(),
            ));
        }
        Ok::<_, ExchangeError>(decode_answer(&answer)?)
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ExchangeError::Stream(format!("no answer within {timeout:?}")))?
}

/// Reaches the node at `seed` presenting no certificate (verifying it against `bundle`), sends
/// `request` and returns the answer and the name of the node that answered.
pub async fn exchange_anonymous(
    bundle: TrustBundle,
    seed: SocketAddr,
    request: &Request,
    quic: &QuicSettings,
    timeout: Duration,
) -> Result<(Answer, String), ExchangeError> {
    let conn = connect_anonymous(bundle, seed, quic).await?;
    let seed_name = conn.conn.identity().id.name.to_string();
    let answer = exchange(&conn.conn, request, timeout).await;
    conn.close().await;
    Ok((answer?, seed_name))
}

/// Reads the request of a served stream (bounded, within `timeout`).
pub async fn read_request(recv: &mut RecvStream, timeout: Duration) -> Result<Request, String> {
    let bytes = tokio::time::timeout(timeout, recv.read_to_end(MAX_REQUEST_BYTES))
        .await
        .map_err(|_| "the request did not arrive in time".to_owned())?
        .map_err(|e| format!("request refused: {e}"))?;
    decode_request(&bytes).map_err(|e| e.to_string())
}

/// Writes the answer of a served stream and waits (bounded) until the client has it.
pub async fn write_answer(send: &mut SendStream, answer: &Answer, timeout: Duration) {
    let Ok(bytes) = encode_answer(answer) else {
        return;
    };
    if send.write_all(&bytes).await.is_ok() {
        let _ = send.finish();
        let _ = tokio::time::timeout(timeout, send.stopped()).await;
    }
}

//! The TCP acknowledgement: after a TCP stream's header the serving node answers one byte,
//! [`ACK_OK`] once it is connected to its app, or [`ACK_REFUSED`] plus a length-prefixed reason.
//! The caller copies no byte before it, so a refused or unreachable instance costs the app
//! nothing: the connection moves to the next instance.

use quinn::{RecvStream, SendStream};
use tokio::io::AsyncReadExt;

/// The serving node is connected to its app.
pub const ACK_OK: u8 = 0;
/// The serving node could not connect; a reason follows.
pub const ACK_REFUSED: u8 = 1;
/// Longest refusal reason read or sent.
const MAX_REASON: usize = 1024;

/// Why a TCP stream was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The serving node refused, saying why.
    #[error("{0}")]
    Refused(String),
    /// The stream failed before the acknowledgement.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not an acknowledgement this node knows.
    #[error("unknown acknowledgement {0}")]
    Unknown(u8),
}

/// Reads the acknowledgement.
pub async fn read(recv: &mut RecvStream) -> Result<(), AckError> {
    match recv.read_u8().await? {
        ACK_OK => Ok(()),
        ACK_REFUSED => {
            let len = usize::from(recv.read_u16().await?);
            let mut reason = vec![0; len.min(MAX_REASON)];
            AsyncReadExt::read_exact(recv, &mut reason).await?;
            Err(AckError::Refused(
                String::from_utf8_lossy(&reason).into_owned(),
            ))
        }
        other => Err(AckError::Unknown(other)),
    }
}

/// The bytes of a refusal: the code, the reason's length and the reason (cut to the bound).
pub fn refusal(reason: &str) -> Vec<u8> {
    let bytes = reason.as_bytes();
    let bytes = &bytes[..bytes.len().min(MAX_REASON)];
    let mut msg = Vec::with_capacity(3 + bytes.len());
    msg.push(ACK_REFUSED);
    msg.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
    msg.extend_from_slice(bytes);
    msg
}

/// Refuses a TCP stream with `reason` and ends it.
pub async fn refuse(send: &mut SendStream, reason: &str) {
    tracing::info!(%reason, "inbound TCP connection refused");
    let _ = send.write_all(&refusal(reason)).await;
    let _ = send.finish();
}

//! The messages of an `Identity` stream: one request from the client (which then finishes its
//! side), one answer from the node. Versioned postcard, bounded before decoding.

use serde::{Deserialize, Serialize};

use crate::wire::{WIRE_VERSION, WireError, decode_versioned};

/// Largest request read: a token (under 4 KiB) and a certificate request (under 8 KiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest answer read: a chain of two certificates and a message.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What a node asks an issuer for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A first certificate, for the name and services a join token grants.
    Join {
        /// The token, as `murmur token create` wrote it.
        token: String,
        /// A certificate request (DER) signed by the node's new key.
        csr: Vec<u8>,
    },
    /// A new certificate for the identity the connection's certificate proves.
    Renew {
        /// A certificate request (DER) signed by the node's new key.
        csr: Vec<u8>,
    },
}

/// A request on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The request.
    pub request: Request,
}

/// Why nothing was issued, for the client to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusalCode {
    /// The token is malformed, of another trust domain, or not signed by an operator of the
    /// mesh.
    TokenInvalid,
    /// The token has expired.
    TokenExpired,
    /// The token was used already.
    TokenUsed,
    /// The request asks for another identity than the token (or certificate) grants.
    WrongName,
    /// The certificate request is malformed or asks for more than it may have.
    BadRequest,
    /// The identity is revoked.
    Revoked,
    /// This node is not an issuer (renewals go to an issuer directly).
    NotAnIssuer,
    /// No issuer could be reached.
    NoIssuer,
    /// The issuer could not do it now (busy, its own certificate expired, an internal error).
    Unavailable,
}

impl RefusalCode {
    /// Lowercase label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenInvalid => "token-invalid",
            Self::TokenExpired => "token-expired",
            Self::TokenUsed => "token-used",
            Self::WrongName => "wrong-name",
            Self::BadRequest => "bad-request",
            Self::Revoked => "revoked",
            Self::NotAnIssuer => "not-an-issuer",
            Self::NoIssuer => "no-issuer",
            Self::Unavailable => "unavailable",
        }
    }

    /// Whether another issuer may answer differently (so the client should try one).
    pub fn worth_another_issuer(self) -> bool {
        matches!(self, Self::NotAnIssuer | Self::NoIssuer | Self::Unavailable)
    }
}

/// A refusal and its explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// What kind of refusal.
    pub code: RefusalCode,
    /// What happened and what to do, for a person.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The new certificate chain, leaf first (DER), and the issuer node that signed it.
    Issued {
        /// Leaf first.
        chain: Vec<Vec<u8>>,
        /// The node that signed it.
        issuer: String,
    },
    /// Nothing was issued.
    Refused(Refusal),
}

/// An answer on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerEnvelope {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The answer.
    pub answer: Answer,
}

/// Encodes a request.
pub fn encode_request(request: &Request) -> Result<Vec<u8>, WireError> {
    encode(
        "identity request",
        &RequestEnvelope {
            version: WIRE_VERSION,
            request: request.clone(),
        },
        MAX_REQUEST_BYTES,
    )
}

/// Decodes a request (already bounded by the reader).
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    let env: RequestEnvelope = decode_versioned("identity request", bytes)?;
    Ok(env.request)
}

/// Encodes an answer.
pub fn encode_answer(answer: &Answer) -> Result<Vec<u8>, WireError> {
    encode(
        "identity answer",
        &AnswerEnvelope {
            version: WIRE_VERSION,
            answer: answer.clone(),
        },
        MAX_ANSWER_BYTES,
    )
}

/// Decodes an answer (already bounded by the reader).
pub fn decode_answer(bytes: &[u8]) -> Result<Answer, WireError> {
    let env: AnswerEnvelope = decode_versioned("identity answer", bytes)?;
    Ok(env.answer)
}

fn encode<T: Serialize>(what: &'static str, value: &T, max: usize) -> Result<Vec<u8>, WireError> {
    let bytes = postcard::to_stdvec(value).map_err(|source| WireError::Decode { what, source })?;
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_other_versions_are_refused() {
        let req = Request::Join {
            token: "t".into(),
            csr: vec![1, 2, 3],
        };
        assert_eq!(decode_request(&encode_request(&req).unwrap()).unwrap(), req);
        let answer = Answer::Refused(Refusal::new(RefusalCode::TokenUsed, "used"));
        assert_eq!(
            decode_answer(&encode_answer(&answer).unwrap()).unwrap(),
            answer
        );
        let old = postcard::to_stdvec(&RequestEnvelope {
            version: 9,
            request: req,
        })
        .unwrap();
        assert!(matches!(decode_request(&old), Err(WireError::Version(9))));
        let huge = Request::Renew {
            csr: vec![0; MAX_REQUEST_BYTES],
        };
        assert!(matches!(
            encode_request(&huge),
            Err(WireError::TooLarge { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_answer(&bytes);
        }
    }
}

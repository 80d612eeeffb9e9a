//! What travels at the start of every QUIC stream between nodes.
//!
//! A stream opens with one byte saying what it carries ([`StreamKind`]). Gossip streams are
//! unidirectional and hold exactly one [`GossipFrame`]: for gossip channel 0 (the cell's
//! gossip) right after the kind byte, as nodes always sent it; for another channel (the top
//! layer of cells) after [`StreamKind::GossipChannel`] and the channel's byte. A node that does
//! not know channels drops those streams, as it drops any unknown kind. Bidirectional streams continue with a
//! length-prefixed [`StreamHeader`]; what follows belongs to the layer that asked for the stream.
//!
//! Everything is postcard with an explicit version as the first field, so a receiver can refuse
//! a version it does not speak with a clear error instead of misreading it. Every read is
//! bounded before anything is decoded.

use std::net::SocketAddr;

use bytes::BufMut;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version of every envelope defined here.
pub const WIRE_VERSION: u16 = 1;
/// Largest [`StreamHeader`] accepted, encoded.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest gossip message: chitchat's own datagram limit.
pub const MAX_GOSSIP_PAYLOAD: usize = 65_507;
/// Largest encoded [`GossipFrame`]: the payload plus room for the envelope.
pub const MAX_GOSSIP_FRAME: usize = MAX_GOSSIP_PAYLOAD + 256;

/// What a stream carries; its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
pub enum StreamKind {
    /// One gossip message (unidirectional stream).
    Gossip = 1,
    /// One proxied HTTP request and its response.
    Http = 2,
    /// One proxied TCP connection.
    Tcp = 3,
    /// An operator or node control request (policy, drain, ...).
    Control = 4,
    /// A certificate request: a join (token) or a renewal (current certificate). The only kind
    /// a client without a certificate may open.
    Identity = 5,
    /// One gossip message of a channel other than 0 (unidirectional stream): a channel byte,
    /// then a [`GossipFrame`].
    GossipChannel = 6,
    /// One packed gossip message (unidirectional stream, only to a peer that negotiated
    /// [`crate::tls::ALPN_PACKED_GOSSIP`]): a channel byte, then a [`PackedGossipFrame`].
    GossipPacked = 7,
}

impl StreamKind {
    /// Decodes the first byte of a stream.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Gossip),
            2 => Some(Self::Http),
            3 => Some(Self::Tcp),
            4 => Some(Self::Control),
            5 => Some(Self::Identity),
            6 => Some(Self::GossipChannel),
            7 => Some(Self::GossipPacked),
            _ => None,
        }
    }
}

/// One gossip message and the address its sender advertises (chitchat replies there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipFrame {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The sender's advertised mesh address.
    pub from: SocketAddr,
    /// A chitchat message as chitchat encodes it.
    pub payload: Vec<u8>,
}

/// One gossip message packed against a base both ends hold ([`crate::gossip::pack`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedGossipFrame {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// The sender's advertised mesh address.
    pub from: SocketAddr,
    /// The base the payload was packed against, if any.
    pub base: Option<u64>,
    /// The packed message.
    pub payload: Vec<u8>,
}

/// The header of a bidirectional stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// [`WIRE_VERSION`].
    pub version: u16,
    /// Service the stream is for (empty for control streams).
    pub service: String,
    /// Time left for the whole exchange, in milliseconds; the receiver stops work after it.
    pub deadline_ms: Option<u32>,
    /// W3C `traceparent` of the caller's span.
    pub traceparent: Option<String>,
    /// Free-form attributes for the layer above (route name, caller service, ...).
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    /// A header for `service` with the current version.
    pub fn new(service: impl Into<String>) -> Self {
        Self {
            version: WIRE_VERSION,
            service: service.into(),
            ..Self::default()
        }
    }

    /// The value of attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a stream's envelope was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream ended or failed while reading.
    #[error("stream read failed: {0}")]
    Io(#[from] std::io::Error),
    /// A length above the limit for this envelope.
    #[error("{what} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Which envelope.
        what: &'static str,
        /// The announced or received length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A version this node does not speak.
    #[error("wire version {0} is not supported (this node speaks {WIRE_VERSION})")]
    Version(u16),
    /// Bytes that do not decode.
    #[error("malformed {what}: {source}")]
    Decode {
        /// Which envelope.
        what: &'static str,
        /// The decoder's error.
        source: postcard::Error,
    },
    /// Unknown stream kind byte.
    #[error("unknown stream kind {0}")]
    Kind(u8),
}

#[derive(Deserialize)]
struct VersionPrefix {
    version: u16,
}

/// Decodes a versioned postcard envelope, refusing other versions and trailing bytes.
pub fn decode_versioned<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    let (prefix, _) = postcard::take_from_bytes::<VersionPrefix>(bytes)
        .map_err(|source| WireError::Decode { what, source })?;
    if prefix.version != WIRE_VERSION {
        return Err(WireError::Version(prefix.version));
    }
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|source| WireError::Decode { what, source })?;
    if !rest.is_empty() {
        return Err(WireError::Decode {
            what,
            source: postcard::Error::DeserializeBadEncoding,
        });
    }
    Ok(value)
}

/// Appends `value`'s postcard encoding to `out` a slice at a time (postcard's `Extend` flavour
/// pushes every byte of a string or a byte field on its own). On error part of it may be in
/// `out`: the caller cuts `out` back to where it was.
pub fn append_encoded<T: Serialize + ?Sized, B: BufMut>(
    value: &T,
    out: &mut B,
) -> Result<(), postcard::Error> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// postcard's output appended to a buffer.
struct Append<'a, B>(&'a mut B);

impl<B: BufMut> postcard::ser_flavors::Flavor for Append<'_, B> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.put_u8(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.put_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Encodes a [`GossipFrame`] of channel 0, kind byte first.
pub fn encode_gossip(frame: &GossipFrame) -> Result<Vec<u8>, WireError> {
    encode_gossip_on(0, frame)
}

/// Encodes a [`GossipFrame`] of `channel`, with the kind byte (and the channel byte for any
/// channel but 0, which keeps the format every node speaks).
pub fn encode_gossip_on(channel: u8, frame: &GossipFrame) -> Result<Vec<u8>, WireError> {
    let prefix = match channel {
        0 => vec![StreamKind::Gossip as u8],
        ch => vec![StreamKind::GossipChannel as u8, ch],
    };
    encode_frame(prefix, "gossip frame", frame)
}

/// Encodes a [`PackedGossipFrame`] of `channel`, kind and channel bytes first.
pub fn encode_packed_gossip(channel: u8, frame: &PackedGossipFrame) -> Result<Vec<u8>, WireError> {
    let prefix = vec![StreamKind::GossipPacked as u8, channel];
    encode_frame(prefix, "packed gossip frame", frame)
}

/// `frame` after `prefix`, refused over [`MAX_GOSSIP_FRAME`].
fn encode_frame<T: Serialize>(
    mut out: Vec<u8>,
    what: &'static str,
    frame: &T,
) -> Result<Vec<u8>, WireError> {
    let prefix = out.len();
    postcard::to_io(frame, &mut out).map_err(|source| WireError::Decode { what, source })?;
    if out.len() > MAX_GOSSIP_FRAME + prefix {
        return Err(WireError::TooLarge {
            what,
            len: out.len(),
            max: MAX_GOSSIP_FRAME,
        });
    }
    Ok(out)
}

/// Decodes a [`GossipFrame`] (the bytes after the kind byte, already bounded by the reader).
pub fn decode_gossip(bytes: &[u8]) -> Result<GossipFrame, WireError> {
    let frame: GossipFrame = decode_frame("gossip frame", bytes)?;
    check_payload("gossip payload", &frame.payload)?;
    Ok(frame)
}

/// Decodes a [`PackedGossipFrame`] (the bytes after the channel byte, bounded by the reader).
pub fn decode_packed_gossip(bytes: &[u8]) -> Result<PackedGossipFrame, WireError> {
    let frame: PackedGossipFrame = decode_frame("packed gossip frame", bytes)?;
    check_payload("packed gossip payload", &frame.payload)?;
    Ok(frame)
}

fn decode_frame<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, WireError> {
    if bytes.len() > MAX_GOSSIP_FRAME {
        return Err(WireError::TooLarge {
            what,
            len: bytes.len(),
            max: MAX_GOSSIP_FRAME,
        });
    }
    decode_versioned(what, bytes)
}

fn check_payload(what: &'static str, payload: &[u8]) -> Result<(), WireError> {
    if payload.len() > MAX_GOSSIP_PAYLOAD {
        return Err(WireError::TooLarge {
            what,
            len: payload.len(),
            max: MAX_GOSSIP_PAYLOAD,
        });
    }
    Ok(())
}

/// Writes the kind byte and a length-prefixed header.
pub async fn write_header<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: StreamKind,
    header: &StreamHeader,
) -> Result<(), WireError> {
    let mut buf = Vec::with_capacity(64);
    put_header(&mut buf, kind, header)?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Appends the kind byte and a length-prefixed header to `out` (the stream's first write, with
/// whatever follows the header in the same buffer). On error `out` is left as it was.
pub fn put_header(
    out: &mut Vec<u8>,
    kind: StreamKind,
    header: &StreamHeader,
) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[kind as u8, 0, 0]);
    if let Err(source) = append_encoded(header, out) {
        out.truncate(start);
        return Err(WireError::Decode {
            what: "stream header",
            source,
        });
    }
    let body = out.len() - start - 3;
    let Some(len) = u16::try_from(body)
        .ok()
        .filter(|l| usize::from(*l) <= MAX_HEADER_BYTES)
    else {
        out.truncate(start);
        return Err(WireError::TooLarge {
            what: "stream header",
            len: body,
            max: MAX_HEADER_BYTES,
        });
    };
    out[start + 1..start + 3].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Reads a stream's preface: its kind byte and its length-prefixed header. The kind byte and
/// the length come in one read (each read of a QUIC stream takes its connection's lock).
pub async fn read_preface<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(u8, StreamHeader), WireError> {
    let mut lead = [0u8; 3];
    r.read_exact(&mut lead).await?;
    let header = read_body(r, u16::from_be_bytes([lead[1], lead[2]])).await?;
    Ok((lead[0], header))
}

/// Reads a length-prefixed header (after the kind byte), refusing anything over
/// [`MAX_HEADER_BYTES`] before reading it.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<StreamHeader, WireError> {
    let len = r.read_u16().await?;
    read_body(r, len).await
}

/// The header's `len` bytes, once `len` is known to be within bounds.
async fn read_body<R: AsyncRead + Unpin>(r: &mut R, len: u16) -> Result<StreamHeader, WireError> {
    let len = usize::from(len);
    if len > MAX_HEADER_BYTES {
        return Err(WireError::TooLarge {
            what: "stream header",
            len,
            max: MAX_HEADER_BYTES,
        });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode_versioned("stream header", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_round_trip_and_refuse_bad_input() {
        let mut h = StreamHeader::new("web");
        h.deadline_ms = Some(1500);
        h.attrs.push(("route".into(), "r1".into()));
        let mut buf = Vec::new();
        write_header(&mut buf, StreamKind::Http, &h).await.unwrap();
        assert_eq!(StreamKind::from_byte(buf[0]), Some(StreamKind::Http));
        let back = read_header(&mut &buf[1..]).await.unwrap();
        assert_eq!(back, h);
        assert_eq!(back.attr("route"), Some("r1"));

        // Oversized length prefix: refused before reading the body.
        let huge = [0xff, 0xff];
        assert!(matches!(
            read_header(&mut &huge[..]).await,
            Err(WireError::TooLarge { .. })
        ));
        // Truncated body.
        assert!(read_header(&mut &buf[1..buf.len() - 1]).await.is_err());

        // The preface: kind and header together, after what the buffer held, and nothing
        // read past them.
        let mut first = b"keep".to_vec();
        put_header(&mut first, StreamKind::Tcp, &h).unwrap();
        assert_eq!(&first[..4], b"keep");
        assert_eq!(&first[5..], &buf[1..]);
        first.extend_from_slice(b"body");
        let mut rest = &first[4..];
        let (kind, back) = read_preface(&mut rest).await.unwrap();
        assert_eq!(StreamKind::from_byte(kind), Some(StreamKind::Tcp));
        assert_eq!(back, h);
        assert_eq!(rest, b"body");
        let mut huge = vec![StreamKind::Http as u8, 0xff, 0xff];
        huge.extend_from_slice(&[0; 16]);
        assert!(matches!(
            read_preface(&mut &huge[..]).await,
            Err(WireError::TooLarge { .. })
        ));

        // A header over the limit is not written, and the buffer is left as it was.
        let mut big = StreamHeader::new("web");
        big.attrs.push(("a".into(), "x".repeat(MAX_HEADER_BYTES)));
        let mut out = b"keep".to_vec();
        assert!(matches!(
            put_header(&mut out, StreamKind::Http, &big),
            Err(WireError::TooLarge { .. })
        ));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn other_versions_are_refused() {
        let mut h = StreamHeader::new("x");
        h.version = 9;
        let bytes = postcard::to_stdvec(&h).unwrap();
        assert!(matches!(
            decode_versioned::<StreamHeader>("h", &bytes),
            Err(WireError::Version(9))
        ));
    }

    #[test]
    fn gossip_frames_round_trip_and_trailing_bytes_are_refused() {
        let frame = GossipFrame {
            version: WIRE_VERSION,
            from: "127.0.0.2:7420".parse().unwrap(),
            payload: vec![1, 2, 3],
        };
        let bytes = encode_gossip(&frame).unwrap();
        assert_eq!(decode_gossip(&bytes[1..]).unwrap(), frame);
        let mut longer = bytes[1..].to_vec();
        longer.push(0);
        assert!(decode_gossip(&longer).is_err());
    }

    #[test]
    fn packed_gossip_frames_round_trip_and_oversized_payloads_are_refused() {
        let mut frame = PackedGossipFrame {
            version: WIRE_VERSION,
            from: "127.0.0.2:7420".parse().unwrap(),
            base: Some(u64::MAX),
            payload: vec![1, 2, 3],
        };
        let bytes = encode_packed_gossip(3, &frame).unwrap();
        assert_eq!(&bytes[..2], &[StreamKind::GossipPacked as u8, 3]);
        assert_eq!(decode_packed_gossip(&bytes[2..]).unwrap(), frame);
        frame.payload = vec![0; MAX_GOSSIP_FRAME];
        assert!(matches!(
            encode_packed_gossip(3, &frame),
            Err(WireError::TooLarge { .. })
        ));
        let big = postcard::to_stdvec(&frame).unwrap();
        assert!(matches!(
            decode_packed_gossip(&big),
            Err(WireError::TooLarge { .. })
        ));
        // A frame within bounds whose payload is over a datagram.
        frame.payload = vec![0; MAX_GOSSIP_PAYLOAD + 1];
        let over = postcard::to_stdvec(&frame).unwrap();
        assert!(matches!(
            decode_packed_gossip(&over),
            Err(WireError::TooLarge {
                what: "packed gossip payload",
                ..
            })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_gossip(&bytes);
            let _ = decode_packed_gossip(&bytes);
            let _ = decode_versioned::<StreamHeader>("h", &bytes);
        }
    }
}

//! How one HTTP exchange travels on a QUIC stream between nodes, after the stream header.
//!
//! Each direction is a sequence of frames, then the end of the stream (QUIC FIN):
//!
//! ```text
//! request:  HEAD(RequestHead)  DATA*  TRAILERS?  FIN
//! response: HEAD(ResponseHead) DATA*  TRAILERS?  FIN      or   REFUSED(Refusal) FIN
//! ```
//!
//! An upgrade request (`Upgrade`, such as WebSocket) announces [`BodyKind::Upgrade`] and sends
//! no body: if the answer's head is a `101`, both directions carry the new protocol's bytes,
//! unframed, after the heads, each ending with its FIN; any other answer ends as above.
//!
//! A frame is a type byte, a 32-bit big-endian length and that many bytes. HEAD, TRAILERS and
//! REFUSED carry versioned postcard and are refused above [`MAX_HEAD_BYTES`] before anything is
//! decoded; DATA is raw body bytes, streamed on without waiting for the whole frame. Why an own
//! framing rather than HTTP/1.1 or HTTP/3 on the stream: it carries trailers (gRPC status) the
//! same way whatever HTTP version the caller and the app speak, the inner hop never re-parses
//! HTTP text, and a small request is a single write.

use std::future::Future;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use quinn::RecvStream;
use serde::{Deserialize, Serialize};

mod fields;

/// Version of every envelope below.
pub const FRAME_VERSION: u16 = 1;
/// Largest HEAD, TRAILERS or REFUSED frame.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bytes before every frame's payload.
pub const FRAME_HEADER: usize = 5;

const HEAD: u8 = 1;
const DATA: u8 = 2;
const TRAILERS: u8 = 3;
const REFUSED: u8 = 4;

/// How much body follows a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BodyKind {
    /// None: the stream ends after the head.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Unknown in advance.
    Stream,
    /// None, and the request asks to switch protocols: after a `101` answer the stream
    /// carries the new protocol's bytes both ways, unframed.
    Upgrade,
}

impl BodyKind {
    /// The body's length, when it is known in advance (for the access log).
    pub fn length(self) -> Option<u64> {
        match self {
            Self::Empty => Some(0),
            Self::Length(n) => Some(n),
            Self::Stream | Self::Upgrade => None,
        }
    }
}

/// The request line and headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHead {
    /// [`FRAME_VERSION`].
    pub version: u16,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The authority the caller addressed (`Host`).
    pub authority: String,
    /// End-to-end headers (hop-by-hop ones removed).
    #[serde(with = "fields")]
    pub headers: HeaderMap,
    /// What body follows.
    pub body: BodyKind,
}

/// The status line and headers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHead {
    /// [`FRAME_VERSION`].
    pub version: u16,
    /// Status code.
    pub status: u16,
    /// End-to-end headers.
    #[serde(with = "fields")]
    pub headers: HeaderMap,
    /// What body follows.
    pub body: BodyKind,
}

/// Header fields encoded straight from a borrowed [`HeaderMap`], as an owned head's are (the
/// same bytes on the wire), without copying them first.
#[derive(Clone, Copy, Debug)]
pub struct FieldsOf<'a>(pub &'a HeaderMap);

impl Serialize for FieldsOf<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fields::serialize(self.0, s)
    }
}

/// A [`ResponseHead`] whose headers are borrowed from the response: encodes to the same bytes.
#[derive(Debug, Serialize)]
pub struct ResponseHeadOf<'a> {
    /// [`FRAME_VERSION`].
    pub version: u16,
    /// Status code.
    pub status: u16,
    /// End-to-end headers.
    pub headers: FieldsOf<'a>,
    /// What body follows.
    pub body: BodyKind,
}

/// [`Trailers`] borrowed from a header map: encodes to the same bytes.
#[derive(Debug, Serialize)]
struct TrailersOf<'a> {
    version: u16,
    headers: FieldsOf<'a>,
}

/// Trailing headers (gRPC status travels here).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailers {
    /// [`FRAME_VERSION`].
    pub version: u16,
    /// The fields.
    #[serde(with = "fields")]
    pub headers: HeaderMap,
}

/// The receiving node did not hand the request to its app (it does not serve the service, or
/// the app refused the connection): nothing was processed, so the caller may try elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// [`FRAME_VERSION`].
    pub version: u16,
    /// Why, for the caller's error message.
    pub reason: String,
}

/// A decoded frame.
#[derive(Debug)]
pub enum Frame {
    /// A head (request or response: the reader's user knows which), still encoded.
    Head(Bytes),
    /// Body bytes.
    Data(Bytes),
    /// Trailers.
    Trailers(HeaderMap),
    /// The request was refused.
    Refused(Refusal),
}

/// Why a frame sequence was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream failed.
    #[error("stream failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// An unknown frame type.
    #[error("unknown frame type {0}")]
    Unknown(u8),
    /// A head or trailers frame over the limit.
    #[error("frame of {0} bytes exceeds the {MAX_HEAD_BYTES}-byte limit")]
    TooLarge(usize),
    /// Bytes that do not decode.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame where it may not be.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// A timeout of the `timeout` policy fired while the body was streaming.
    #[error("the {0} timeout expired while the body was streaming")]
    Expired(&'static str),
}

fn frame_header(kind: u8, len: usize) -> Result<[u8; FRAME_HEADER], FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    let l = len.to_be_bytes();
    Ok([kind, l[0], l[1], l[2], l[3]])
}

fn put_encoded<T: Serialize>(kind: u8, value: &T, out: &mut BytesMut) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[kind, 0, 0, 0, 0]);
    if let Err(e) = murmur_transport::wire::append_encoded(value, out) {
        out.truncate(start);
        return Err(FrameError::Malformed(e.to_string()));
    }
    let len = out.len() - start - FRAME_HEADER;
    if len > MAX_HEAD_BYTES {
        out.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    out[start..start + FRAME_HEADER].copy_from_slice(&frame_header(kind, len)?);
    Ok(())
}

/// Appends a HEAD frame.
pub fn put_head<T: Serialize>(head: &T, out: &mut BytesMut) -> Result<(), FrameError> {
    put_encoded(HEAD, head, out)
}

/// Appends a TRAILERS frame.
pub fn put_trailers(trailers: &HeaderMap, out: &mut BytesMut) -> Result<(), FrameError> {
    let t = TrailersOf {
        version: FRAME_VERSION,
        headers: FieldsOf(trailers),
    };
    put_encoded(TRAILERS, &t, out)
}

/// A REFUSED frame.
pub fn refused(reason: &str) -> Bytes {
    let mut out = BytesMut::new();
    let r = Refusal {
        version: FRAME_VERSION,
        reason: reason.to_owned(),
    };
    if put_encoded(REFUSED, &r, &mut out).is_err() {
        out.clear();
        let _ = put_encoded(
            REFUSED,
            &Refusal {
                version: FRAME_VERSION,
                reason: "refused".into(),
            },
            &mut out,
        );
    }
    out.freeze()
}

/// The header of a DATA frame of `len` bytes.
pub fn data_header(len: usize) -> Result<[u8; FRAME_HEADER], FrameError> {
    frame_header(DATA, len)
}

/// Decodes a HEAD payload. A refused header field is named in the error.
pub fn decode_head<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    murmur_transport::wire::decode_versioned("head", bytes).map_err(|e| match e {
        murmur_transport::wire::WireError::Version(v) => FrameError::Malformed(format!(
            "frame version {v} is not supported (this node speaks {FRAME_VERSION})"
        )),
        other => match fields::take_refused() {
            Some(field) => FrameError::Malformed(format!("{other}: {field}")),
            None => FrameError::Malformed(other.to_string()),
        },
    })
}

/// Reads frames from a QUIC receive stream. DATA is handed out as it arrives, never buffered
/// whole; heads are buffered up to [`MAX_HEAD_BYTES`].
#[derive(Debug)]
pub struct FrameReader {
    recv: RecvStream,
    buf: BytesMut,
    data_left: u64,
    after_trailers: bool,
}

/// Received chunks taken from the stream per read.
const READ_CHUNKS: usize = 16;

/// What one read of the stream gave.
enum Read {
    /// The end of the stream.
    End,
    /// Bytes, appended to the buffer.
    Buffered,
    /// Body bytes of the DATA frame being read, as they arrived.
    Data(Bytes),
}

impl FrameReader {
    /// A reader of `recv`.
    pub fn new(recv: RecvStream) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
            data_left: 0,
            after_trailers: false,
        }
    }

    /// The next frame; `None` at the end of the stream.
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, FrameError>> {
        loop {
            if self.data_left > 0 {
                if !self.buf.is_empty() {
                    let n = usize::try_from(self.data_left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    self.data_left -= n as u64;
                    return Poll::Ready(Ok(Some(Frame::Data(self.buf.split_to(n).freeze()))));
                }
                match ready!(self.read(cx))? {
                    Read::End => return Poll::Ready(Err(FrameError::Truncated)),
                    Read::Buffered => continue,
                    Read::Data(bytes) => {
                        self.data_left -= bytes.len() as u64;
                        return Poll::Ready(Ok(Some(Frame::Data(bytes))));
                    }
                }
            }
            if self.buf.len() >= FRAME_HEADER {
                let kind = self.buf[0];
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = len as usize;
                if self.after_trailers {
                    return Poll::Ready(Err(FrameError::Unexpected("after-trailers")));
                }
                match kind {
                    DATA => {
                        self.buf.advance(FRAME_HEADER);
                        self.data_left = len as u64;
                        continue;
                    }
                    HEAD | TRAILERS | REFUSED if len > MAX_HEAD_BYTES => {
                        return Poll::Ready(Err(FrameError::TooLarge(len)));
                    }
                    HEAD | TRAILERS | REFUSED if self.buf.len() >= FRAME_HEADER + len => {
                        self.buf.advance(FRAME_HEADER);
                        let payload = self.buf.split_to(len).freeze();
                        return Poll::Ready(decode(kind, payload, &mut self.after_trailers));
                    }
                    HEAD | TRAILERS | REFUSED => {}
                    other => return Poll::Ready(Err(FrameError::Unknown(other))),
                }
            }
            if let Read::End = ready!(self.read(cx))? {
                return Poll::Ready(if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                });
            }
        }
    }

    /// The next frame, awaited.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Takes the chunks the stream has ready, without copying them out of QUIC's buffers:
    /// with the buffer empty, a lone chunk that lies inside the DATA frame being read is
    /// handed out as it is; anything else is appended to the buffer (at most [`READ_CHUNKS`]
    /// received chunks at a time, so the buffer stays bounded).
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<Result<Read, FrameError>> {
        let mut chunks: [Bytes; READ_CHUNKS] = Default::default();
        let read = {
            let read = std::pin::pin!(self.recv.read_chunks(&mut chunks));
            read.poll(cx)
        };
        let n = match ready!(read) {
            Ok(Some(n)) => n,
            Ok(None) => return Poll::Ready(Ok(Read::End)),
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        if let [one] = &mut chunks[..n]
            && self.buf.is_empty()
            && !one.is_empty()
            && one.len() as u64 <= self.data_left
        {
            return Poll::Ready(Ok(Read::Data(std::mem::take(one))));
        }
        let total = chunks[..n].iter().map(Bytes::len).sum();
        self.buf.reserve(total);
        for c in &chunks[..n] {
            self.buf.extend_from_slice(c);
        }
        Poll::Ready(Ok(Read::Buffered))
    }

    /// Stops the peer's sending side (we will not read further).
    pub fn stop(&mut self, code: quinn::VarInt) {
        let _ = self.recv.stop(code);
    }

    /// The stream and the bytes read from it past the last frame (an upgraded stream's first
    /// raw bytes).
    pub fn into_parts(self) -> (BytesMut, RecvStream) {
        (self.buf, self.recv)
    }
}

fn decode(
    kind: u8,
    payload: Bytes,
    after_trailers: &mut bool,
) -> Result<Option<Frame>, FrameError> {
    match kind {
        HEAD => Ok(Some(Frame::Head(payload))),
        TRAILERS => {
            let t: Trailers = decode_head(&payload)?;
            *after_trailers = true;
            Ok(Some(Frame::Trailers(t.headers)))
        }
        _ => {
            let r: Refusal = decode_head(&payload)?;
            Ok(Some(Frame::Refused(r)))
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn map(fields: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in fields {
            map.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    fn head() -> RequestHead {
        RequestHead {
            version: FRAME_VERSION,
            method: "POST".into(),
            path: "/a?b=c".into(),
            authority: "web".into(),
            headers: map(&[("content-type", b"text/plain"), ("x-bin", &[0x80, b'a'])]),
            body: BodyKind::Length(5),
        }
    }

    /// The error of decoding `payload` with the byte `at` past the first `needle` replaced.
    fn refused_with(payload: &[u8], needle: &[u8], at: usize, byte: u8) -> String {
        let mut bad = payload.to_vec();
        let start = bad.windows(needle.len()).position(|w| w == needle).unwrap();
        bad[start + at] = byte;
        decode_head::<RequestHead>(&bad).unwrap_err().to_string()
    }

    #[test]
    fn a_refused_header_field_is_named_in_the_error() {
        let mut out = BytesMut::new();
        put_head(&head(), &mut out).unwrap();
        let payload = &out[FRAME_HEADER..];

        let e = refused_with(payload, b"content-type", 7, b' ');
        assert!(
            e.contains("`content type` is not a valid header name"),
            "{e}"
        );

        let e = refused_with(payload, b"text/plain", 4, b'\n');
        assert!(
            e.contains("the value of header `content-type` is not"),
            "{e}"
        );
        assert!(!e.contains("plain"), "a value is not quoted: {e}");

        // A head refused for another reason names no field.
        let e = decode_head::<RequestHead>(&payload[..payload.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("header"), "{e}");
    }

    #[test]
    fn heads_round_trip_and_oversized_ones_are_refused() {
        let mut out = BytesMut::new();
        put_head(&head(), &mut out).unwrap();
        assert_eq!(out[0], HEAD);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(len, out.len() - FRAME_HEADER);
        let back: RequestHead = decode_head(&out[FRAME_HEADER..]).unwrap();
        assert_eq!(back, head());
        assert_eq!(back.headers["x-bin"].as_bytes(), [0x80, b'a']);

        let mut big = head();
        let value = HeaderValue::from_bytes(&[b'a'; MAX_HEAD_BYTES]).unwrap();
        big.headers.append("x-big", value);
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(matches!(
            put_head(&big, &mut out),
            Err(FrameError::TooLarge(_))
        ));
        assert_eq!(
            &out[..],
            b"keep",
            "a refused frame leaves the buffer as it was"
        );
    }

    /// The layout heads had when their fields were a list of owned pairs: the wire format
    /// nodes of that build speak.
    #[derive(Serialize)]
    struct ListedHead {
        version: u16,
        status: u16,
        headers: Vec<(String, Listed)>,
        body: BodyKind,
    }

    struct Listed(Vec<u8>);

    impl Serialize for Listed {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    fn listed(fields: &[(&str, &[u8])]) -> Vec<u8> {
        let head = ListedHead {
            version: FRAME_VERSION,
            status: 200,
            headers: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Listed(v.to_vec())))
                .collect(),
            body: BodyKind::Empty,
        };
        postcard::to_stdvec(&head).unwrap()
    }

    #[test]
    fn fields_keep_the_listed_wire_format_and_a_names_values_in_order() {
        // Repeated names, apart: decoded in order per name, encoded grouped.
        let fields: &[(&str, &[u8])] = &[("x-a", b"1"), ("x-b", b"2"), ("x-a", b"3")];
        let back: ResponseHead = decode_head(&listed(fields)).unwrap();
        let values: Vec<_> = back.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "3"]);
        assert_eq!(back.headers["x-b"], "2");
        let grouped: &[(&str, &[u8])] = &[("x-a", b"1"), ("x-a", b"3"), ("x-b", b"2")];
        assert_eq!(postcard::to_stdvec(&back).unwrap(), listed(grouped));
    }

    #[test]
    fn the_names_of_the_mesh_and_of_grpc_decode_as_themselves() {
        // Each field's value is its name: a name decoded as another would not find its own.
        let names = [
            "x-murmur-hops",
            "traceparent",
            "tracestate",
            "grpc-status",
            "grpc-message",
            "grpc-timeout",
            "x-other",
        ];
        let fields: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, n.as_bytes())).collect();
        let back: ResponseHead = decode_head(&listed(&fields)).unwrap();
        for n in names {
            assert_eq!(
                back.headers.get(n).map(|v| v.as_bytes()),
                Some(n.as_bytes())
            );
        }
        assert_eq!(back.headers.len(), names.len());
    }

    #[test]
    fn borrowed_heads_and_trailers_encode_as_owned_ones_do() {
        let map = map(&[
            ("content-type", b"text/plain"),
            ("x-many", b"1"),
            ("x-many", b"2"),
            ("x-bin", &[0x80, b'a']),
        ]);
        let owned = ResponseHead {
            version: FRAME_VERSION,
            status: 203,
            headers: map.clone(),
            body: BodyKind::Stream,
        };
        let borrowed = ResponseHeadOf {
            version: FRAME_VERSION,
            status: 203,
            headers: FieldsOf(&map),
            body: BodyKind::Stream,
        };
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        put_head(&owned, &mut a).unwrap();
        put_head(&borrowed, &mut b).unwrap();
        assert_eq!(a, b);
        let back: ResponseHead = decode_head(&b[FRAME_HEADER..]).unwrap();
        assert_eq!(back, owned);

        let mut t = BytesMut::new();
        put_trailers(&map, &mut t).unwrap();
        let mut after = false;
        match decode(TRAILERS, t.split_off(FRAME_HEADER).freeze(), &mut after) {
            Ok(Some(Frame::Trailers(back))) => assert_eq!(back, map),
            other => panic!("trailers came back as {other:?}"),
        }
        assert!(after);
    }

    #[test]
    fn other_versions_and_bad_header_names_or_values_are_refused() {
        let mut h = head();
        h.version = 7;
        let bytes = postcard::to_stdvec(&h).unwrap();
        assert!(decode_head::<RequestHead>(&bytes).is_err());
        assert!(decode_head::<ResponseHead>(&listed(&[("x-ok", b"1")])).is_ok());
        for bad in [
            listed(&[("bad name", b"1")]),
            listed(&[("", b"1")]),
            listed(&[("x-caf\u{e9}", b"1")]),
            listed(&[("x-ok", b"a\nb")]),
        ] {
            assert!(decode_head::<ResponseHead>(&bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_head::<RequestHead>(&bytes);
            let _ = decode_head::<ResponseHead>(&bytes);
            let mut t = false;
            let _ = decode(TRAILERS, Bytes::from(bytes.clone()), &mut t);
            let _ = decode(REFUSED, Bytes::from(bytes), &mut t);
        }
    }
}

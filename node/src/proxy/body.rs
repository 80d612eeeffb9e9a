//! Bodies in both directions: a hyper body read from frames on a QUIC stream, and the pump that
//! writes a hyper body to one. Nothing is buffered whole: frames go out as the body yields them,
//! and QUIC flow control pushes back on a fast sender.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame as BodyFrame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use murmur_membership::policy::spec::GrpcCode;
use quinn::{SendStream, VarInt};

use super::frame::{self, BodyKind, Frame, FrameError, FrameReader};
use super::timed::{TimedBody, TimedError};

/// Stream error code: the sender's body failed midway.
pub const BODY_FAILED: VarInt = VarInt::from_u32(0x20);
/// Stream error code: the frames received were malformed.
pub const BAD_FRAMES: VarInt = VarInt::from_u32(0x21);
/// Stream error code: the sender gave up on the exchange (timeout, retry elsewhere).
pub const CANCELLED: VarInt = VarInt::from_u32(0x22);
/// Stream error code: the deadline the caller set ran out on the serving node.
pub const DEADLINE_EXPIRED: VarInt = VarInt::from_u32(0x23);

/// Data frames up to this size are copied into the pending write with their header; larger
/// ones are handed to QUIC as they are.
const COALESCE: usize = 16 * 1024;

/// A body read from frames: DATA frames, then maybe trailers.
#[derive(Debug)]
pub struct FrameBody {
    reader: Option<FrameReader>,
    left: Option<u64>,
    /// A frame already read from the stream (looking for a gRPC status), handed out first.
    /// Boxed: bodies are moved around a lot, and most never have one.
    first: Option<Box<BodyFrame<Bytes>>>,
}

impl FrameBody {
    /// The body announced by `kind`, read from `reader`.
    pub fn new(reader: FrameReader, kind: BodyKind) -> Self {
        match kind {
            BodyKind::Empty | BodyKind::Upgrade => Self::empty(),
            BodyKind::Length(n) => Self {
                reader: Some(reader),
                left: Some(n),
                first: None,
            },
            BodyKind::Stream => Self {
                reader: Some(reader),
                left: None,
                first: None,
            },
        }
    }

    /// The same, of which `first` was already read.
    pub fn resume(reader: FrameReader, kind: BodyKind, first: Frame) -> Result<Self, FrameError> {
        let mut body = Self::new(reader, kind);
        body.first = Some(Box::new(match first {
            Frame::Data(data) => {
                if let Some(left) = &mut body.left {
                    *left = left
                        .checked_sub(data.len() as u64)
                        .ok_or(FrameError::Unexpected("oversized data"))?;
                }
                BodyFrame::data(data)
            }
            Frame::Trailers(t) => BodyFrame::trailers(t),
            Frame::Head(_) => return Err(FrameError::Unexpected("head")),
            Frame::Refused(_) => return Err(FrameError::Unexpected("refused")),
        }));
        Ok(body)
    }
}

impl FrameBody {
    /// No body (the stream, if any, is kept elsewhere).
    pub fn empty() -> Self {
        Self {
            reader: None,
            left: Some(0),
            first: None,
        }
    }
}

impl Body for FrameBody {
    type Data = Bytes;
    type Error = FrameError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, FrameError>>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(*first)));
        }
        let Some(reader) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let next = match reader.poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let out = match next {
            Ok(Some(Frame::Data(data))) => {
                if let Some(left) = &mut this.left {
                    match left.checked_sub(data.len() as u64) {
                        Some(l) => *left = l,
                        None => {
                            return Poll::Ready(Some(Err(FrameError::Unexpected(
                                "oversized data",
                            ))));
                        }
                    }
                }
                Some(Ok(BodyFrame::data(data)))
            }
            Ok(Some(Frame::Trailers(t))) => Some(Ok(BodyFrame::trailers(t))),
            Ok(Some(Frame::Head(_))) => Some(Err(FrameError::Unexpected("head"))),
            Ok(Some(Frame::Refused(_))) => Some(Err(FrameError::Unexpected("refused"))),
            Ok(None) => {
                this.reader = None;
                if this.left.is_some_and(|l| l > 0) {
                    return Poll::Ready(Some(Err(FrameError::Truncated)));
                }
                None
            }
            Err(e) => {
                if let Some(mut r) = this.reader.take() {
                    r.stop(BAD_FRAMES);
                }
                Some(Err(e))
            }
        };
        Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_none() && self.first.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map_or(0, |d| d.len() as u64);
        match self.left {
            Some(n) => SizeHint::with_exact(n + first),
            None => SizeHint::default(),
        }
    }
}

/// The body of every response the outbound proxy returns: proxied, or made here.
#[derive(Debug)]
pub enum ProxyBody {
    /// From the remote node.
    Remote(FrameBody),
    /// From the remote node, under a deadline or idle timeout.
    Timed(TimedBody<FrameBody>),
    /// Made by this node (errors).
    Local(Option<Bytes>),
    /// From a host outside the mesh, passed through.
    Direct(Incoming),
    /// One of the above, watched to its end (gRPC status in trailers, access log).
    Observed(Box<Observed<Self>>),
}

/// Why a response body broke off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The frames from the serving node.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection to a host outside the mesh.
    #[error("{0}")]
    Direct(#[from] hyper::Error),
}

impl ProxyBody {
    /// A locally made body.
    pub fn text(s: impl Into<Bytes>) -> Self {
        Self::Local(Some(s.into()))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Remote(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Self::Timed(b) => Pin::new(b).poll_frame(cx).map(|f| {
                f.map(|r| {
                    r.map_err(|e| match e {
                        TimedError::Inner(e) => e.into(),
                        TimedError::Expired(fired) => FrameError::Expired(fired.as_str()).into(),
                    })
                })
            }),
            Self::Local(b) => Poll::Ready(b.take().map(|b| Ok(BodyFrame::data(b)))),
            Self::Direct(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::from),
            Self::Observed(b) => Pin::new(&mut **b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Remote(b) => b.is_end_stream(),
            Self::Timed(b) => b.is_end_stream(),
            Self::Local(b) => b.is_none(),
            Self::Direct(b) => b.is_end_stream(),
            Self::Observed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Remote(b) => b.size_hint(),
            Self::Timed(b) => b.size_hint(),
            Self::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Direct(b) => b.size_hint(),
            Self::Observed(b) => b.size_hint(),
        }
    }
}

/// How an observed body ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum End {
    /// Read to its end.
    Complete,
    /// It failed (the stream broke, a timeout fired).
    Failed,
    /// Dropped before its end (the reader went away).
    #[default]
    Dropped,
}

/// What went by in an observed body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Data bytes.
    pub bytes: u64,
    /// The `grpc-status` of its trailers.
    pub grpc: Option<GrpcCode>,
    /// How it ended.
    pub end: End,
}

/// Called once when an observed body ends, however it ends.
pub type OnEnd = Box<dyn FnOnce(Tally) + Send>;

/// A body passed through while its bytes are counted and its trailers' `grpc-status` read; at
/// its end (or when dropped) `on_end`, if any, is told.
pub struct Observed<B> {
    inner: B,
    tally: Tally,
    on_end: Option<OnEnd>,
    /// Nothing more is due (no body, or all of its announced length was read): a reader that
    /// knows the length drops it without reading its end, and that is its normal end.
    done: bool,
}

impl<B> std::fmt::Debug for Observed<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Observed<B> {
    /// Watches `inner`.
    pub fn new(inner: B, on_end: Option<OnEnd>) -> Self {
        Self {
            done: inner.is_end_stream(),
            inner,
            tally: Tally::default(),
            on_end,
        }
    }
}

impl<B> Observed<B> {
    /// What went by so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    fn end(&mut self, end: End) {
        if let Some(f) = self.on_end.take() {
            self.tally.end = end;
            f(self.tally);
        }
    }
}

/// The gRPC status in `headers`, if any.
pub fn grpc_status(headers: &HeaderMap) -> Option<GrpcCode> {
    headers
        .get("grpc-status")
        .and_then(|v| GrpcCode::from_header(v.as_bytes()))
}

impl<B: Body<Data = Bytes> + Unpin> Body for Observed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.tally.bytes += d.len() as u64;
                } else if let Some(t) = f.trailers_ref() {
                    this.tally.grpc = grpc_status(t);
                }
                if this.inner.is_end_stream() {
                    this.end(End::Complete);
                } else if this.inner.size_hint().exact() == Some(0) {
                    this.done = true;
                }
            }
            Poll::Ready(Some(Err(_))) => this.end(End::Failed),
            Poll::Ready(None) => this.end(End::Complete),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        self.end(if self.done {
            End::Complete
        } else {
            End::Dropped
        });
    }
}

/// What the head of a message announces about `body`.
pub fn body_kind<B: Body>(body: &B) -> BodyKind {
    if body.is_end_stream() {
        return BodyKind::Empty;
    }
    match body.size_hint().exact() {
        Some(0) => BodyKind::Empty,
        Some(n) => BodyKind::Length(n),
        None => BodyKind::Stream,
    }
}

/// Why a body could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The QUIC stream failed (peer gone or stopped reading).
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The body we were forwarding failed.
    #[error("body failed: {0}")]
    Body(String),
    /// Trailers too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Polls `fut` once: its output if ready now, else `None` (the waker stays registered).
async fn ready_now<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *fut).poll(cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        })
    })
    .await
}

/// Writes `pending` (a head, usually) and then `body` as frames, and finishes the stream.
/// Frames that are ready at once are coalesced into one write, so a small message is one
/// QUIC write with FIN. A body of known small length is awaited before the head is written
/// (it is on its way: hyper's bodies only read once asked), so head, body and FIN leave in one
/// packet; a streaming body gets its head sent at once. A failing body resets the stream so
/// the reader sees an error, not a short body.
///
/// Not an `async fn` of its own: that would hold `pending` and `body` once more beside the
/// future it awaits, for the whole of the send (160 bytes more in every answer's future).
pub fn send<B>(
    send: &mut SendStream,
    pending: BytesMut,
    body: B,
) -> impl Future<Output = Result<(), SendError>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    send_noting(send, pending, body, None)
}

/// [`send`], recording in `failed` (if given) why the body itself failed before the stream is
/// reset: the caller learns it was the body's fault (the app's request was malformed), not the
/// peer's.
pub async fn send_noting<B>(
    send: &mut SendStream,
    mut pending: BytesMut,
    mut body: B,
    failed: Option<&std::sync::OnceLock<String>>,
) -> Result<(), SendError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut hold = body
        .size_hint()
        .exact()
        .is_some_and(|n| n > 0 && n <= COALESCE as u64);
    loop {
        let next = if pending.is_empty() || std::mem::take(&mut hold) {
            body.frame().await
        } else {
            match ready_now(&mut body.frame()).await {
                Some(next) => next,
                None => {
                    send.write_chunk(pending.split().freeze()).await?;
                    continue;
                }
            }
        };
        match next {
            None => break,
            Some(Ok(f)) => match f.into_data() {
                Ok(data) => {
                    if data.is_empty() {
                        continue;
                    }
                    pending.extend_from_slice(&frame::data_header(data.len())?);
                    if data.len() <= COALESCE {
                        pending.extend_from_slice(&data);
                    } else {
                        let mut chunks = [pending.split().freeze(), data];
                        send.write_all_chunks(&mut chunks).await?;
                    }
                }
                Err(f) => {
                    if let Ok(trailers) = f.into_trailers() {
                        frame::put_trailers(&trailers, &mut pending)?;
                    }
                }
            },
            Some(Err(e)) => {
                if let Some(failed) = failed {
                    let _ = failed.set(e.to_string());
                }
                let _ = send.reset(BODY_FAILED);
                return Err(SendError::Body(e.to_string()));
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    if !pending.is_empty() {
        send.write_chunk(pending.freeze()).await?;
    }
    let _ = send.finish();
    Ok(())
}

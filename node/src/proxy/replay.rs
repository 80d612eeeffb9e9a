//! Request bodies that can be sent again. While a retry policy applies, the body is *recorded
//! as it is sent* (the chunks are reference-counted, so nothing is copied) up to the policy's
//! `max_body_bytes`; a retry replays the recording if the body was complete within the limit by
//! then. Nothing waits for the body before the first attempt, so streaming calls (gRPC, bidi)
//! are not held up, and a body over the limit is simply not retried. (Linkerd's approach.)
//!
//! An instance may answer before it has read the whole body (a gRPC server failing a call at
//! once): the attempt is then abandoned and hands the unread rest of the body back, and the
//! retry sends what was recorded and reads on from there.

#![allow(
    clippy::disallowed_types,
    reason = "each request's body recording has its own lock: no other request contends for it"
)]

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// What was recorded of a body, and the rest of it if an attempt gave up before reading it all.
#[derive(Debug)]
pub struct Recording<B> {
    chunks: Vec<Bytes>,
    len: u64,
    limit: u64,
    trailers: Option<HeaderMap>,
    complete: bool,
    /// Over the limit, or the body failed: it cannot be replayed.
    lost: bool,
    /// The unread rest of the body, handed back by an attempt that was abandoned (its instance
    /// answered before the whole body was sent): the next attempt sends the recording and then
    /// reads on from here.
    rest: Option<B>,
}

impl<B> Recording<B> {
    fn new(limit: u64) -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
            limit,
            trailers: None,
            complete: false,
            lost: false,
            rest: None,
        }
    }

    fn data(&mut self, data: &Bytes) {
        if self.lost {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.limit {
            self.lost = true;
            self.chunks = Vec::new();
            self.rest = None;
        } else {
            self.chunks.push(data.clone());
        }
    }

    /// A body replaying the recording, if it is complete.
    fn replay(&self) -> Option<ReplayBody> {
        (self.complete && !self.lost).then(|| ReplayBody {
            chunks: self.chunks.iter().cloned().collect(),
            trailers: self.trailers.clone(),
        })
    }

    /// Whether another attempt can have the whole body: recorded whole, or recorded so far with
    /// the rest still to read.
    fn resumable(&self) -> bool {
        !self.lost && (self.complete || self.rest.is_some())
    }
}

fn lock<B>(r: &Mutex<Recording<B>>) -> std::sync::MutexGuard<'_, Recording<B>> {
    r.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A body passed through while being recorded. Dropped before its end, it hands the rest of the
/// body back to the recording.
#[derive(Debug)]
pub struct TeeBody<B> {
    inner: Option<B>,
    rec: Arc<Mutex<Recording<B>>>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for TeeBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let mut rec = lock(&this.rec);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    rec.data(d);
                } else if let Some(t) = f.trailers_ref() {
                    rec.trailers = Some(t.clone());
                }
                // Senders stop polling once the body says it has ended.
                if inner.is_end_stream() {
                    rec.complete = true;
                }
            }
            Poll::Ready(Some(Err(_))) => rec.lost = true,
            Poll::Ready(None) => rec.complete = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

impl<B> Drop for TeeBody<B> {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let mut rec = lock(&self.rec);
        if !rec.complete && !rec.lost {
            rec.rest = Some(inner);
        }
    }
}

/// A recorded body, sent again.
#[derive(Debug)]
pub struct ReplayBody {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(c) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(c))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.trailers.is_some() {
            SizeHint::default()
        } else {
            SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum())
        }
    }
}

/// The body of one attempt.
#[derive(Debug)]
pub enum RequestBody<B = Incoming> {
    /// The app's body, not recorded (no retry policy).
    Plain(B),
    /// The app's body, recorded.
    Tee(TeeBody<B>),
    /// A recording.
    Replay(ReplayBody),
    /// What was recorded, then the rest of the app's body, recorded too.
    Resumed(VecDeque<Bytes>, TeeBody<B>),
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Plain(b) => Pin::new(b).poll_frame(cx),
            Self::Tee(b) => Pin::new(b).poll_frame(cx),
            Self::Replay(b) => Pin::new(b).poll_frame(cx),
            Self::Resumed(chunks, rest) => match chunks.pop_front() {
                Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Plain(b) => b.is_end_stream(),
            Self::Tee(b) => b.is_end_stream(),
            Self::Replay(b) => b.is_end_stream(),
            Self::Resumed(chunks, rest) => chunks.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Plain(b) => b.size_hint(),
            Self::Tee(b) => b.size_hint(),
            Self::Replay(b) => b.size_hint(),
            Self::Resumed(..) => SizeHint::default(),
        }
    }
}

/// Where the bodies of successive attempts come from.
#[derive(Debug)]
pub struct Source<B = Incoming> {
    body: Option<B>,
    empty: bool,
    /// With a limit: record the body for replay.
    limit: Option<u64>,
    rec: Option<Arc<Mutex<Recording<B>>>>,
}

impl<B: Body<Data = Bytes, Error = hyper::Error> + Unpin> Source<B> {
    /// The app's `body`; `empty` if it has none; recorded up to `limit` if given.
    pub fn new(body: B, empty: bool, limit: Option<u64>) -> Self {
        Self {
            body: Some(body),
            empty,
            limit,
            rec: None,
        }
    }

    /// Whether the request has no body at all.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether another attempt can have the whole body: it has none, it was never sent, it was
    /// recorded complete, or recorded so far with the rest handed back unread.
    pub fn available(&self) -> bool {
        self.empty || self.body.is_some() || self.rec.as_ref().is_some_and(|r| lock(r).resumable())
    }

    /// Whether the body was recorded so far but not whole: an attempt still sending it may hand
    /// the rest back ([`TeeBody`]'s drop), after which [`Source::available`] says yes.
    pub fn partly_recorded(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| {
            let r = lock(r);
            !r.lost && !r.complete && r.rest.is_none()
        })
    }

    /// A replay of the recording, if the body was sent whole and kept (for a mirrored copy).
    pub fn replay(&self) -> Option<ReplayBody> {
        self.rec.as_ref().and_then(|r| lock(r).replay())
    }

    /// The body for the next attempt, if there is one to give.
    pub fn next(&mut self) -> Option<RequestBody<B>> {
        if let Some(b) = self.body.take() {
            return Some(match self.limit {
                Some(limit) => {
                    let rec = Arc::new(Mutex::new(Recording::new(limit)));
                    self.rec = Some(rec.clone());
                    RequestBody::Tee(TeeBody {
                        inner: Some(b),
                        rec,
                    })
                }
                None => RequestBody::Plain(b),
            });
        }
        let rec = self.rec.as_ref()?;
        let mut r = lock(rec);
        if let Some(replay) = r.replay() {
            return Some(RequestBody::Replay(replay));
        }
        let rest = r.rest.take().filter(|_| !r.lost)?;
        let chunks = r.chunks.iter().cloned().collect();
        Some(RequestBody::Resumed(
            chunks,
            TeeBody {
                inner: Some(rest),
                rec: rec.clone(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    /// Frames handed out one per poll; says it has ended as soon as the last one is out (as
    /// hyper's bodies with a content-length do).
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn frames(chunks: &[&'static [u8]], trailers: bool) -> Frames {
        let mut f: VecDeque<Frame<Bytes>> = chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c)))
            .collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", http::HeaderValue::from_static("0"));
            f.push_back(Frame::trailers(t));
        }
        Frames(f)
    }

    /// Reads a body the way the sender does: stops once it says it has ended.
    async fn send_like(mut b: RequestBody<Frames>) -> (Vec<u8>, bool) {
        let (mut data, mut trailers) = (Vec::new(), false);
        while !b.is_end_stream() {
            let Some(f) = b.frame().await else { break };
            let f = f.unwrap();
            if let Some(d) = f.data_ref() {
                data.extend_from_slice(d);
            }
            trailers |= f.is_trailers();
        }
        (data, trailers)
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_replayed_whole() {
        let mut s = Source::new(frames(&[b"hello ", b"mesh"], true), false, Some(64));
        assert!(s.available());
        let first = s.next().unwrap();
        assert!(!s.available(), "not complete before it was sent");
        assert_eq!(send_like(first).await, (b"hello mesh".to_vec(), true));
        assert!(s.available());
        for _ in 0..2 {
            let again = s.next().unwrap();
            assert_eq!(send_like(again).await, (b"hello mesh".to_vec(), true));
        }
    }

    #[tokio::test]
    async fn bodies_over_the_limit_or_unrecorded_are_not_replayed() {
        let mut s = Source::new(
            frames(&[b"0123456789", b"0123456789"], false),
            false,
            Some(15),
        );
        let first = s.next().unwrap();
        assert_eq!(send_like(first).await.0.len(), 20);
        assert!(!s.available());
        assert!(s.next().is_none());

        let mut plain = Source::new(frames(&[b"x"], false), false, None);
        assert!(matches!(plain.next(), Some(RequestBody::Plain(_))));
        assert!(!plain.available() && plain.next().is_none());

        let empty = Source::new(frames(&[], false), true, None);
        assert!(empty.is_empty() && empty.available());
    }

    #[tokio::test]
    async fn an_attempt_abandoned_midway_hands_the_rest_to_the_next() {
        let mut s = Source::new(frames(&[b"one ", b"two ", b"three"], true), false, Some(64));
        let mut first = s.next().unwrap();
        // The instance answered after one chunk: the attempt reads no further.
        let chunk = first.frame().await.unwrap().unwrap();
        assert_eq!(chunk.data_ref().unwrap(), &b"one "[..]);
        assert!(s.partly_recorded() && !s.available());
        drop(first);
        assert!(!s.partly_recorded() && s.available(), "the rest came back");
        let again = s.next().unwrap();
        assert!(matches!(again, RequestBody::Resumed(..)));
        assert_eq!(send_like(again).await, (b"one two three".to_vec(), true));
        // Read whole now: later attempts replay the recording.
        assert!(matches!(s.next(), Some(RequestBody::Replay(_))));
        assert!(s.replay().is_some());
    }

    #[test]
    fn a_replay_announces_its_length() {
        let r = ReplayBody {
            chunks: VecDeque::from([Bytes::from_static(b"ab"), Bytes::from_static(b"c")]),
            trailers: None,
        };
        assert_eq!(r.size_hint().exact(), Some(3));
    }
}

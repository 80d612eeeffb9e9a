//! A body with the `timeout` policy's clocks on it: the request deadline (the body must be done
//! by then) and the idle timeout (no silence longer than this between chunks). Expiry is an
//! error of the body, so the stream it is read into or written from is cut, not ended cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::traffic::timeout::Fired;

/// Why a timed body failed.
#[derive(Debug, thiserror::Error)]
pub enum TimedError<E> {
    /// The body itself failed.
    #[error("{0}")]
    Inner(E),
    /// A timeout fired.
    #[error("the {} timeout expired while the body was streaming", .0.as_str())]
    Expired(Fired),
}

/// `B` under a deadline and an idle timeout (either may be absent).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    deadline: Option<Pin<Box<Sleep>>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, deadline: Option<Instant>, idle: Option<Duration>) -> Self {
        Self {
            inner,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d.into()))),
            idle: idle.map(|i| (i, Box::pin(tokio::time::sleep(i)))),
        }
    }
}

impl<B: Body + Unpin> Body for TimedBody<B> {
    type Data = B::Data;
    type Error = TimedError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(d) = this.deadline.as_mut()
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(TimedError::Expired(Fired::Request))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                if let Some((i, sleep)) = this.idle.as_mut() {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *i);
                }
                Poll::Ready(f.map(|r| r.map_err(TimedError::Inner)))
            }
            Poll::Pending => {
                if let Some((_, sleep)) = this.idle.as_mut()
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(TimedError::Expired(Fired::Idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::*;

    /// Chunks sent through a channel; the body ends when the sender goes.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }

    async fn drain<B: Body<Data = Bytes> + Unpin>(mut b: B) -> Result<usize, B::Error> {
        let mut n = 0;
        while let Some(f) = b.frame().await {
            n += f?.into_data().map_or(0, |d| d.len());
        }
        Ok(n)
    }

    fn body() -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ChannelBody(rx))
    }

    #[tokio::test]
    async fn silence_longer_than_idle_cuts_the_body_and_steady_chunks_do_not() {
        let ms = Duration::from_millis;
        let (tx, b) = body();
        tokio::spawn(async move {
            for _ in 0..5 {
                let _ = tx.send(Bytes::from_static(b"abc")).await;
                tokio::time::sleep(ms(5)).await;
            }
        });
        assert_eq!(
            drain(TimedBody::new(b, None, Some(ms(2000))))
                .await
                .unwrap(),
            15
        );

        let (tx, b) = body();
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        let got = drain(TimedBody::new(b, None, Some(ms(30)))).await;
        assert!(
            matches!(got, Err(TimedError::Expired(Fired::Idle))),
            "{got:?}"
        );
        drop(tx);

        let (tx, b) = body();
        let deadline = Instant::now() + ms(30);
        let got = drain(TimedBody::new(b, Some(deadline), Some(ms(2000)))).await;
        assert!(
            matches!(got, Err(TimedError::Expired(Fired::Request))),
            "{got:?}"
        );
        drop(tx);
    }
}

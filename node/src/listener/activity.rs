//! What a connection is doing: when it last moved a byte either way, and how many requests are
//! in flight on it, so that a watchdog can close it once it has been silent too long.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::limits::ListenerLimits;

/// Why a connection was found silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// It never sent a byte.
    FirstByte,
    /// Nothing in flight and nothing moved.
    Idle,
}

/// Shared by a connection's I/O wrapper, its request handler and its watchdog.
#[derive(Clone, Debug)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds after `start` of the last byte moved.
    last_ms: AtomicU64,
    /// Whether any byte moved yet, either way (a server may speak first on TCP).
    moved_any: AtomicU64,
    in_flight: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// A connection that starts now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
                moved_any: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_ms.store(ms, Ordering::Relaxed);
        self.inner.moved_any.store(1, Ordering::Relaxed);
    }

    /// Marks a request in flight until the returned guard drops: a slow answer is not idling.
    pub fn request(&self) -> InFlight {
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves once the connection has been silent beyond `limits`.
    pub async fn silence(&self, limits: ListenerLimits) -> Silence {
        // Look again at least this often (activity moves deadlines later): a tenth of the
        // shorter timeout, so a deadline is met within 10 % and an idle connection of an
        // hour-long timeout costs a wake-up every few minutes, not every second.
        let shortest = limits.first_byte_timeout.min(limits.idle_timeout);
        let granularity =
            (shortest / 10).clamp(Duration::from_millis(100), Duration::from_secs(600));
        loop {
            let now = Instant::now();
            let (why, deadline) = self.deadline(limits);
            if now >= deadline {
                return why;
            }
            tokio::time::sleep(deadline.saturating_duration_since(now).min(granularity)).await;
        }
    }

    fn deadline(&self, limits: ListenerLimits) -> (Silence, Instant) {
        let far = Instant::now() + Duration::from_secs(3600);
        if self.inner.moved_any.load(Ordering::Relaxed) == 0 {
            let at = self
                .inner
                .start
                .checked_add(limits.first_byte_timeout)
                .unwrap_or(far);
            return (Silence::FirstByte, at);
        }
        if self.inner.in_flight.load(Ordering::Relaxed) > 0 {
            return (Silence::Idle, far);
        }
        let last = Duration::from_millis(self.inner.last_ms.load(Ordering::Relaxed));
        let at = self
            .inner
            .start
            .checked_add(last)
            .and_then(|t| t.checked_add(limits.idle_timeout))
            .unwrap_or(far);
        (Silence::Idle, at)
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An I/O object that records activity on every byte moved.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ListenerLimits = ListenerLimits {
        max_connections: 1,
        first_byte_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(20),
    };

    #[tokio::test(start_paused = true)]
    async fn silence_is_the_first_byte_then_idling_with_nothing_in_flight() {
        let a = Activity::new();
        assert_eq!(a.silence(LIMITS).await, Silence::FirstByte);
        assert!(a.inner.start.elapsed() >= Duration::from_secs(5));

        let a = Activity::new();
        a.touch();
        let busy = a.request();
        // In flight: never idle, however long.
        let waited = tokio::time::timeout(Duration::from_secs(600), a.silence(LIMITS)).await;
        assert!(waited.is_err());
        drop(busy);
        let t = Instant::now();
        assert_eq!(a.silence(LIMITS).await, Silence::Idle);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_secs(19) && took <= Duration::from_secs(23),
            "{took:?}"
        );
    }
}

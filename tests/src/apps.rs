//! Apps behind nodes in tests: small HTTP servers that say who they are and count requests, and
//! real servers run as processes (Redis).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTP app answering `<name> <method> <path>` plus the request body.
#[derive(Debug, Clone)]
pub struct EchoApp {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests served.
    pub hits: Arc<AtomicU64>,
}

impl EchoApp {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr, name: &str) -> Self {
        Self::start_with_delay(addr, name, Duration::ZERO).await
    }

    /// Starts the app on `addr`; it waits `delay` before answering each request.
    pub async fn start_with_delay(addr: SocketAddr, name: &str, delay: Duration) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind echo app");
        let hits = Arc::new(AtomicU64::new(0));
        let (name, counter) = (name.to_owned(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, counter) = (name.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, counter) = (name.clone(), counter.clone());
                        async move {
                            counter.fetch_add(1, Ordering::Relaxed);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let head = format!("{name} {} {}\n", req.method(), req.uri().path());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut out = head.into_bytes();
                            out.extend_from_slice(&body);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, hits }
    }

    /// Requests served so far.
    pub fn count(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// The byte at offset `i` of the test pattern (not periodic at any power of two).
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) % 251) as u8
}

/// A checksum that notices lost, duplicated or reordered bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Bytes seen.
    pub len: u64,
    /// Position-weighted sum.
    pub sum: u64,
}

impl Digest {
    /// Folds in `data`.
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.len += 1;
            self.sum = self
                .sum
                .wrapping_mul(1_000_003)
                .wrapping_add(u64::from(*b) ^ self.len);
        }
    }

    /// The digest of the first `n` bytes of [`pattern`].
    pub fn of_pattern(n: u64) -> Self {
        let mut d = Self::default();
        let mut chunk = Vec::with_capacity(64 * 1024);
        let mut i = 0;
        while i < n {
            chunk.clear();
            let end = (i + 64 * 1024).min(n);
            chunk.extend((i..end).map(pattern));
            d.update(&chunk);
            i = end;
        }
        d
    }
}

/// `n` bytes of [`pattern`] as a body of 64 KiB chunks, produced as they are read.
#[derive(Debug)]
pub struct PatternBody {
    next: u64,
    end: u64,
}

impl PatternBody {
    /// The first `n` bytes of the pattern.
    pub fn new(n: u64) -> Self {
        Self { next: 0, end: n }
    }
}

impl hyper::body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.next >= self.end {
            return std::task::Poll::Ready(None);
        }
        let end = (self.next + 64 * 1024).min(self.end);
        let chunk: Vec<u8> = (self.next..end).map(pattern).collect();
        self.next = end;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.end
    }
}

/// An HTTP app (HTTP/1.1 and HTTP/2) for streaming tests:
/// `POST /sink` answers `<len> <sum>` of the body it read as it arrived;
/// `GET /source?bytes=N` streams N bytes of [`pattern`];
/// `POST /echo` streams the request body back as it arrives;
/// anything else answers `<name> <method> <path> <version>` and echoes `x-*` request headers.
#[derive(Debug, Clone)]
pub struct StreamApp {
    /// Its address.
    pub addr: SocketAddr,
}

impl StreamApp {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr, name: &str) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind stream app");
        let name = name.to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let name = name.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let name = name.clone();
                        async move { Ok::<_, Infallible>(stream_route(&name, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        Self { addr }
    }
}

type AppBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

fn full(text: String) -> AppBody {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

async fn stream_route(name: &str, req: Request<hyper::body::Incoming>) -> Response<AppBody> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/sink" => {
            let mut body = req.into_body();
            let mut d = Digest::default();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(data) = f.data_ref() {
                            d.update(data);
                        }
                    }
                    Err(e) => return Response::new(full(format!("body error: {e}"))),
                }
            }
            Response::new(full(format!("{} {}", d.len, d.sum)))
        }
        "/source" => {
            let n = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Response::new(
                PatternBody::new(n)
                    .map_err(|never: Infallible| match never {})
                    .boxed_unsync(),
            )
        }
        "/echo" => Response::new(req.into_body().boxed_unsync()),
        _ => {
            let mut text = format!("{name} {} {} {:?}\n", req.method(), path, req.version());
            for (k, v) in req.headers() {
                if k.as_str().starts_with("x-") || k == "host" || k == "te" || k == "connection" {
                    text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                }
            }
            Response::new(full(text))
        }
    }
}

/// A TCP echo: writes back what it reads; when the client half-closes, it writes
/// `bye <n>\n` (n = bytes read) and closes.
#[derive(Debug, Clone)]
pub struct TcpEcho {
    /// Its address.
    pub addr: SocketAddr,
}

impl TcpEcho {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind(addr).await.expect("bind tcp echo");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    let mut total = 0u64;
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) => break,
                            Ok(n) => {
                                total += n as u64;
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                    let _ = s.write_all(format!("bye {total}\n").as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self { addr }
    }
}

/// How a [`FlakyApp`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// It answers every request.
    Never,
    /// Every other request gets this status (the 2nd, 4th, ... it sees).
    EveryOther(u16),
    /// Every request gets this status.
    Always(u16),
}

impl Failing {
    fn encode(self) -> u64 {
        match self {
            Self::Never => 0,
            Self::EveryOther(s) => (1 << 16) | u64::from(s),
            Self::Always(s) => (2 << 16) | u64::from(s),
        }
    }

    /// The status for the `n`th request (from 1), if it is to fail.
    fn status(code: u64, n: u64) -> Option<u16> {
        let status = (code & 0xffff) as u16;
        match code >> 16 {
            1 if n.is_multiple_of(2) => Some(status),
            2 => Some(status),
            _ => None,
        }
    }
}

/// An HTTP app whose failures the test switches: it answers `<name> <method> <path>` and the
/// request body, or the status its [`Failing`] mode says, with the body `<name> failed`.
#[derive(Debug, Clone)]
pub struct FlakyApp {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests seen.
    pub hits: Arc<AtomicU64>,
    /// POST requests seen.
    pub posts: Arc<AtomicU64>,
    mode: Arc<AtomicU64>,
}

impl FlakyApp {
    /// Starts the app on `addr`, failing as `failing` says.
    pub async fn start(addr: SocketAddr, name: &str, failing: Failing) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind flaky app");
        let app = Self {
            addr,
            hits: Arc::new(AtomicU64::new(0)),
            posts: Arc::new(AtomicU64::new(0)),
            mode: Arc::new(AtomicU64::new(failing.encode())),
        };
        let (name, a) = (name.to_owned(), app.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (name, a) = (name.clone(), a.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (name, a) = (name.clone(), a.clone());
                        async move {
                            let n = a.hits.fetch_add(1, Ordering::Relaxed) + 1;
                            if req.method() == hyper::Method::POST {
                                a.posts.fetch_add(1, Ordering::Relaxed);
                            }
                            let line = format!("{name} {} {}\n", req.method(), req.uri().path());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut echo = line.into_bytes();
                            echo.extend_from_slice(&body);
                            let mode = a.mode.load(Ordering::Relaxed);
                            let mut resp = match Failing::status(mode, n) {
                                Some(status) => {
                                    let mut r = Response::new(Full::new(Bytes::from(format!(
                                        "{name} failed\n"
                                    ))));
                                    *r.status_mut() = hyper::StatusCode::from_u16(status)
                                        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                                    r
                                }
                                None => Response::new(Full::new(Bytes::from(echo))),
                            };
                            resp.headers_mut().insert(
                                "x-app",
                                hyper::header::HeaderValue::from_str(&name)
                                    .unwrap_or(hyper::header::HeaderValue::from_static("app")),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        app
    }

    /// Switches how it fails from the next request on.
    pub fn set(&self, failing: Failing) {
        self.mode.store(failing.encode(), Ordering::Relaxed);
    }

    /// Requests seen so far.
    pub fn count(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// A plain HTTP/1.1 app over raw TCP that takes `delay` to answer each request and notices
/// when the caller gives up first: it watches its connection while it waits and counts the
/// request as cancelled if the connection closes. (GET requests without bodies only.)
#[derive(Debug, Clone)]
pub struct SlowApp {
    /// Its address.
    pub addr: SocketAddr,
    /// Requests whose head it read.
    pub started: Arc<AtomicU64>,
    /// Requests it answered.
    pub answered: Arc<AtomicU64>,
    /// Requests whose connection closed before the answer.
    pub cancelled: Arc<AtomicU64>,
}

impl SlowApp {
    /// Starts the app on `addr`.
    pub async fn start(addr: SocketAddr, delay: Duration) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind(addr).await.expect("bind slow app");
        let app = Self {
            addr,
            started: Arc::new(AtomicU64::new(0)),
            answered: Arc::new(AtomicU64::new(0)),
            cancelled: Arc::new(AtomicU64::new(0)),
        };
        let a = app.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let a = a.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // Read one request head.
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            if buf.len() > 64 * 1024 {
                                return;
                            }
                        }
                        buf.clear();
                        a.started.fetch_add(1, Ordering::Relaxed);
                        let sleep = tokio::time::sleep(delay);
                        tokio::pin!(sleep);
                        loop {
                            tokio::select! {
                                () = &mut sleep => break,
                                r = s.read(&mut chunk) => match r {
                                    Ok(0) | Err(_) => {
                                        a.cancelled.fetch_add(1, Ordering::Relaxed);
                                        return;
                                    }
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                },
                            }
                        }
                        let body = "slow\n";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            a.cancelled.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        a.answered.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        app
    }

    /// `(started, answered, cancelled)`.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.started.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
            self.cancelled.load(Ordering::Relaxed),
        )
    }
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A redis-server on `addr`, keeping nothing on disk.
pub fn redis_server(addr: SocketAddr, dir: &Path) -> Proc {
    let child = Command::new("redis-server")
        .args(["--bind", &addr.ip().to_string()])
        .args(["--port", &addr.port().to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server not found: install redis-server (scripts/test does)");
    Proc(child)
}

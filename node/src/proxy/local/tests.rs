//! The kept connections to the app, against a local app that counts the connections it accepts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use murmur_membership::records::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::conn::{IDLE, Kept};
use super::{AppBody, LocalClients};
use crate::proxy::body::FrameBody;

/// What the app does with a connection after answering.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Keeps it for more requests.
    Keep,
    /// Answers its first request with 7 bytes, then closes it without having said so.
    Close,
}

struct App {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

/// An app answering `GET /n` with n bytes in one frame, `/204` with no body, and `/endless` with
/// frames until the reader goes away.
async fn app(h2: bool, after: After) -> App {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, h2, after));
        }
    });
    App { addr, accepted }
}

async fn serve(mut stream: tokio::net::TcpStream, h2: bool, after: After) {
    if after == After::Close {
        let mut buf = [0; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nxxxxxxx")
            .await;
        return;
    }
    let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().trim_start_matches('/').to_owned();
        let body = match path.as_str() {
            "204" => http_body_util::Either::Left(Full::new(Bytes::new())),
            "endless" => {
                return Ok::<_, Infallible>(hyper::Response::new(http_body_util::Either::Right(
                    Endless,
                )));
            }
            n => http_body_util::Either::Left(Full::new(Bytes::from(vec![
                b'x';
                n.parse().unwrap_or(0)
            ]))),
        };
        let mut resp = hyper::Response::new(body);
        if path == "204" {
            *resp.status_mut() = StatusCode::NO_CONTENT;
        }
        Ok(resp)
    });
    let io = TokioIo::new(stream);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
        return;
    }
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

/// A body of 1 KiB frames that never ends.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[0; 1024])))))
    }
}

fn get(path: &str) -> Request<FrameBody> {
    let mut req = Request::new(FrameBody::empty());
    *req.uri_mut() = format!("http://app.test{path}").parse().unwrap();
    req
}

async fn fetch(clients: &LocalClients, protocol: Protocol, addr: SocketAddr, path: &str) -> usize {
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        clients.request(protocol, addr, get(path)),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    read_all(resp.into_body()).await
}

async fn read_all(body: AppBody) -> usize {
    body.collect().await.unwrap().to_bytes().len()
}

#[tokio::test]
async fn http1_requests_one_after_another_share_one_connection() {
    let app = app(false, After::Keep).await;
    let clients = LocalClients::new(1);
    for path in ["/10", "/204", "/100000", "/0", "/5"] {
        let want: usize = path[1..].parse().unwrap_or(0);
        let got = fetch(&clients, Protocol::Http, app.addr, path).await;
        assert_eq!(got, if path == "/204" { 0 } else { want });
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http1_concurrent_requests_open_connections_that_are_kept_after() {
    let app = app(false, After::Keep).await;
    let clients = LocalClients::new(1);
    let both = tokio::join!(
        clients.request(Protocol::Http, app.addr, get("/1")),
        clients.request(Protocol::Http, app.addr, get("/2")),
    );
    let (a, b) = (both.0.unwrap(), both.1.unwrap());
    assert_eq!(
        read_all(a.into_body()).await + read_all(b.into_body()).await,
        3
    );
    for _ in 0..4 {
        fetch(&clients, Protocol::Http, app.addr, "/3").await;
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn http1_connection_the_app_closed_is_replaced_without_failing_the_request() {
    let app = app(false, After::Close).await;
    let clients = LocalClients::new(1);
    for _ in 0..3 {
        assert_eq!(fetch(&clients, Protocol::Http, app.addr, "/7").await, 7);
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn http1_answer_dropped_before_its_end_takes_its_connection_along() {
    let app = app(false, After::Keep).await;
    let clients = LocalClients::new(1);
    let resp = clients
        .request(Protocol::Http, app.addr, get("/endless"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    drop(body);
    assert_eq!(fetch(&clients, Protocol::Http, app.addr, "/4").await, 4);
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let clients = LocalClients::new(1);
    for protocol in [Protocol::Http, Protocol::Grpc] {
        let e = clients.request(protocol, addr, get("/")).await.unwrap_err();
        assert!(e.is_connect(), "{e:?}");
    }
}

#[tokio::test]
async fn http2_requests_share_one_connection() {
    let app = app(true, After::Keep).await;
    let clients = LocalClients::new(1);
    let (a, b) = tokio::join!(
        fetch(&clients, Protocol::Grpc, app.addr, "/3"),
        fetch(&clients, Protocol::Grpc, app.addr, "/4"),
    );
    assert_eq!(a + b, 7);
    assert_eq!(fetch(&clients, Protocol::Grpc, app.addr, "/5").await, 5);
    assert_eq!(app.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idle_connections_close_after_their_time() {
    let app = app(false, After::Keep).await;
    let clients = LocalClients::new(1);
    fetch(&clients, Protocol::Http, app.addr, "/1").await;
    let pool = clients.shard().http1.get(app.addr);
    assert!(!pool.is_empty());
    // Only the clock is stopped (and moved): the connections are real.
    tokio::time::pause();
    tokio::time::sleep(IDLE / 2).await;
    assert!(!pool.is_empty(), "closed before its time");
    tokio::time::sleep(IDLE).await;
    assert!(pool.is_empty(), "still kept after its time");
    tokio::time::resume();
    fetch(&clients, Protocol::Http, app.addr, "/1").await;
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
}

/// Runs on one thread: between the app closing and the next request, the connection's task
/// does not run, so the kept connection still looks ready when the request is sent on it.
#[tokio::test(flavor = "current_thread")]
async fn http1_request_on_a_connection_closed_unnoticed_goes_again_on_a_new_one() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (read_tx, read) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The first connection answers once and, once told, closes without a word.
        let (mut first, _) = listener.accept().await.unwrap();
        let mut buf = [0; 4096];
        let _ = first.read(&mut buf).await;
        let _ = first
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nxxxxxxx")
            .await;
        let _ = read.await;
        drop(first);
        let _ = closed_tx.send(());
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, false, After::Keep));
        }
    });
    let clients = LocalClients::new(1);
    assert_eq!(fetch(&clients, Protocol::Http, addr, "/7").await, 7);
    let _ = read_tx.send(());
    closed.await.unwrap();
    assert_eq!(fetch(&clients, Protocol::Http, addr, "/5").await, 5);
}

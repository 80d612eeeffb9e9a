//! The request-smuggling corpus, against the outbound proxy of a real node with a real app
//! behind the mesh: ambiguous framing (Content-Length with Transfer-Encoding, doubled or
//! disguised codings, signed, listed and overflowing lengths, oversized chunk sizes, obs-fold,
//! NUL and bare CR, `_` for `-`, ...) in HTTP/1.1, and malformed HTTP/2 (connection-specific
//! headers, CRLF in values, lengths that disagree with the data, ...).
//!
//! Each probe must be refused, or framed one way only: every request the app receives was
//! answered to the client, with the body length the client was answered for, and no hidden
//! request (`/smuggled`) ever reaches the app unanswered.

// Test helpers may panic: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use murmur_tests::{Cluster, netns};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the app saw: `METHOD PATH LEN`, one line per request.
type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 app that records each request and answers `seen METHOD PATH LEN`.
async fn recorder(addr: SocketAddr) -> Seen {
    let seen: Seen = Arc::default();
    let listener = TcpListener::bind(addr).await.unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_owned();
                        let weird = req
                            .headers()
                            .iter()
                            .any(|(_, v)| v.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'));
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let len = body
                            .as_ref()
                            .map_or_else(|_| "ABORTED".to_owned(), |b| b.len().to_string());
                        let line =
                            format!("{method} {path} {len}{}", if weird { " CRLF" } else { "" });
                        log.lock().unwrap().push(line.clone());
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(format!(
                            "seen {line}"
                        )))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    seen
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n";

/// The HTTP/1.1 probes: name, bytes.
fn http1_corpus() -> Vec<(&'static str, String)> {
    let post = |headers: &str, body: &str| {
        format!("POST /front HTTP/1.1\r\nHost: web\r\n{headers}\r\n{body}")
    };
    let s = SMUGGLED;
    vec![
        (
            "CL then TE",
            post(
                "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE then CL",
            post(
                "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE chunked, chunked",
            post(
                "Transfer-Encoding: chunked, chunked\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE xchunked with CL",
            post(
                "Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE leading space",
            post(
                "Transfer-Encoding:  chunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE trailing space",
            post(
                "Transfer-Encoding: chunked \r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE mixed case",
            post(
                "Transfer-Encoding: ChUnKeD\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE identity, chunked",
            post(
                "Transfer-Encoding: identity, chunked\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE chunked, identity",
            post(
                "Transfer-Encoding: chunked, identity\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "two TE headers",
            post(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE tab",
            post(
                "Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE space before colon",
            post(
                "Transfer-Encoding : chunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE obs-fold",
            post(
                "Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE vertical tab",
            post(
                "Transfer-Encoding:\x0bchunked\r\nContent-Length: 4\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "TE gzip, chunked",
            post(
                "Transfer-Encoding: gzip, chunked\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "CL plus sign",
            post("Content-Length: +3\r\n", &format!("abc{s}")),
        ),
        (
            "CL minus",
            post("Content-Length: -1\r\n", &format!("abc{s}")),
        ),
        (
            "CL list differing",
            post("Content-Length: 3, 40\r\n", &format!("abc{s}")),
        ),
        (
            "CL twice differing",
            post(
                "Content-Length: 3\r\nContent-Length: 40\r\n",
                &format!("abc{s}"),
            ),
        ),
        (
            "CL twice equal",
            post(
                "Content-Length: 3\r\nContent-Length: 3\r\n",
                &format!("abc{s}"),
            ),
        ),
        (
            "CL leading zeros",
            post("Content-Length: 0003\r\n", &format!("abc{s}")),
        ),
        (
            "CL overflow",
            post(
                "Content-Length: 99999999999999999999\r\n",
                &format!("abc{s}"),
            ),
        ),
        (
            "CL trailing space",
            post("Content-Length: 3 \r\n", &format!("abc{s}")),
        ),
        (
            "CL hex",
            post("Content-Length: 0x3\r\n", &format!("abc{s}")),
        ),
        ("CL empty", post("Content-Length: \r\n", &format!("abc{s}"))),
        (
            "chunk size 2^64",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("10000000000000000\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk size overflow to small",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("fffffffffffffffff3\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk extension",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3;ext=1\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk size uppercase hex",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("A\r\n0123456789\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk data overrun",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3\r\nabcdef\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk size negative",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("-3\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk size leading space",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!(" 3\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
        (
            "chunk LF only",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3\nabc\n0\n\n{s}"),
            ),
        ),
        (
            "trailer smuggle",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0\r\nX: y\r\n{s}"),
            ),
        ),
        (
            "NUL in header value",
            post("X-A: a\0b\r\nContent-Length: 3\r\n", &format!("abc{s}")),
        ),
        (
            "NUL in header name",
            post("X-\0A: a\r\nContent-Length: 3\r\n", &format!("abc{s}")),
        ),
        (
            "bare CR in header value",
            post("X-A: a\rb\r\nContent-Length: 3\r\n", &format!("abc{s}")),
        ),
        (
            "LF-only request",
            format!("POST /front HTTP/1.1\nHost: web\nContent-Length: 3\n\nabc{s}"),
        ),
        (
            "underscore CL with TE",
            post(
                "Content_Length: 40\r\nTransfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "underscore TE with CL",
            post(
                "Transfer_Encoding: chunked\r\nContent-Length: 5\r\n",
                &format!("0\r\n\r\n{s}"),
            ),
        ),
        (
            "leading whitespace header",
            post(
                " Content-Length: 40\r\nContent-Length: 3\r\n",
                &format!("abc{s}"),
            ),
        ),
        (
            "HTTP/1.0 with TE",
            format!(
                "POST /front HTTP/1.0\r\nHost: web\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{s}"
            ),
        ),
        (
            "GET with body by CL",
            format!("GET /front HTTP/1.1\r\nHost: web\r\nContent-Length: 38\r\n\r\n{s}"),
        ),
        (
            "Expect with CL",
            post(
                "Expect: 100-continue\r\nContent-Length: 3\r\n",
                &format!("abc{s}"),
            ),
        ),
        (
            "pipelined after chunked",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3\r\nabc\r\n0\r\n\r\n{s}"),
            ),
        ),
    ]
}

/// Sends `probe` and reads what comes back until the connection closes or stays quiet for a
/// second (without half-closing: the proxy drops a request whose client half-closes early).
async fn exchange(to: SocketAddr, probe: &[u8]) -> String {
    let mut s = TcpStream::connect(to).await.unwrap();
    let _ = s.write_all(probe).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the app saw, once its last request (answered or aborted) has been logged.
async fn settled(seen: &Seen) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.lock().unwrap().clone()
}

/// Checks one probe's outcome: every request the app saw is answered in `reply` (or was cut
/// short: its body never completed, the front request's own, whose client was answered 400 or
/// gave up), and no mesh-made 5xx (a framing the proxy blamed on the instance).
fn consistent(name: &str, reply: &str, seen: &[String]) -> Result<String, String> {
    for line in seen {
        if line.ends_with(" ABORTED") && line.contains(" /front ") {
            continue;
        }
        if !reply.contains(&format!("seen {line}")) {
            return Err(format!(
                "{name}: the app saw {line:?}, the client was not answered it: {reply:?}"
            ));
        }
        if line.ends_with("CRLF") {
            return Err(format!("{name}: a header with CR or LF reached the app"));
        }
    }
    let statuses: Vec<&str> = reply
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &reply[i + 9..(i + 12).min(reply.len())])
        .collect();
    if statuses.iter().any(|s| s.starts_with('5')) {
        return Err(format!("{name}: answered {statuses:?}: {reply:?}"));
    }
    Ok(format!("{statuses:?}, app saw {seen:?}"))
}

#[test]
fn the_http1_corpus_is_refused_or_framed_one_way_only() {
    netns::run(|| async {
        let app: SocketAddr = "127.0.1.3:8080".parse().unwrap();
        let seen = recorder(app).await;
        let c = Cluster::serving_pair("web", app, "http").await;
        let out = c.node("n1").outbound();
        let corpus = http1_corpus();
        assert!(corpus.len() >= 41, "{}", corpus.len());
        let mut failures = Vec::new();
        for (name, probe) in &corpus {
            seen.lock().unwrap().clear();
            let reply = exchange(out, probe.as_bytes()).await;
            let got = settled(&seen).await;
            match consistent(name, &reply, &got) {
                Ok(summary) => println!("{name:32} {summary}"),
                Err(e) => failures.push(e),
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK: each header as a literal without indexing, new name, no Huffman coding.
fn hpack(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        out.push(0);
        out.push(u8::try_from(n.len()).unwrap());
        out.extend(n.as_bytes());
        out.push(u8::try_from(v.len()).unwrap());
        out.extend(v.as_bytes());
    }
    out
}

/// An HTTP/2 connection: preface, empty SETTINGS, then one request on stream 1 with
/// `headers` and, if any, `data`.
fn h2_request(headers: &[(&str, &str)], data: Option<&[u8]>) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    let end_stream = if data.is_some() { 0 } else { 1 };
    out.extend(frame(1, 4 | end_stream, 1, &hpack(headers)));
    if let Some(d) = data {
        out.extend(frame(0, 1, 1, d));
    }
    out
}

fn h2_corpus() -> Vec<(&'static str, Vec<u8>)> {
    let base = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        let mut h = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/front"),
            (":authority", "web"),
        ];
        h.extend_from_slice(extra);
        h
    };
    let body = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web\r\n\r\n".as_slice();
    vec![
        (
            "content-length below the data",
            h2_request(&base(&[("content-length", "5")]), Some(body)),
        ),
        (
            "content-length above the data",
            h2_request(&base(&[("content-length", "500")]), Some(body)),
        ),
        (
            "transfer-encoding chunked",
            h2_request(&base(&[("transfer-encoding", "chunked")]), Some(body)),
        ),
        (
            "connection header",
            h2_request(&base(&[("connection", "keep-alive")]), Some(body)),
        ),
        (
            "CRLF in a value",
            h2_request(&base(&[("x-a", "a\r\nGET /smuggled HTTP/1.1")]), Some(body)),
        ),
        (
            "uppercase name",
            h2_request(&base(&[("X-Upper", "a")]), Some(body)),
        ),
        (
            "space in a name",
            h2_request(&base(&[("x a", "b")]), Some(body)),
        ),
        ("te gzip", h2_request(&base(&[("te", "gzip")]), Some(body))),
        (
            "duplicate :path",
            h2_request(&base(&[(":path", "/smuggled")]), Some(body)),
        ),
        ("pseudo-header after a regular one", {
            let mut h = base(&[("x-a", "b")]);
            h.push((":status", "200"));
            h2_request(&h, Some(body))
        }),
        (
            "missing :method",
            h2_request(
                &[
                    (":scheme", "http"),
                    (":path", "/front"),
                    (":authority", "web"),
                ],
                None,
            ),
        ),
        (
            "empty :path",
            h2_request(
                &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", ""),
                    (":authority", "web"),
                ],
                None,
            ),
        ),
    ]
}

#[test]
fn the_http2_corpus_is_refused_or_framed_one_way_only() {
    netns::run(|| async {
        let app: SocketAddr = "127.0.1.3:8080".parse().unwrap();
        let seen = recorder(app).await;
        let c = Cluster::serving_pair("web", app, "http").await;
        let out = c.node("n1").outbound();
        let mut failures = Vec::new();
        for (name, probe) in h2_corpus() {
            seen.lock().unwrap().clear();
            let mut s = TcpStream::connect(out).await.unwrap();
            s.write_all(&probe).await.unwrap();
            let mut reply = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut reply)).await;
            let got = settled(&seen).await;
            // At most the one request, never a hidden one, never a header with CR or LF, and
            // its body exactly what content-length (if any) promised.
            let bad = got.len() > 1
                || got
                    .iter()
                    .any(|l| l.contains("smuggled") || l.ends_with("CRLF"))
                || (name.starts_with("content-length") && !got.is_empty());
            if bad {
                failures.push(format!("{name}: the app saw {got:?}"));
            }
            println!("{name:36} {} reply bytes, app saw {got:?}", reply.len());
        }
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

#[test]
fn the_corpus_harness_sees_a_plain_request_through() {
    // The checks above must be able to see what reaches the app.
    netns::run(|| async {
        let app: SocketAddr = "127.0.1.3:8080".parse().unwrap();
        let seen = recorder(app).await;
        let c = Cluster::serving_pair("web", app, "http").await;
        let out = c.node("n1").outbound();
        let reply = exchange(
            out,
            b"POST /front HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(got, ["POST /front 3"], "{reply}");
        assert!(consistent("plain", &reply, &got).is_ok(), "{reply}");
        let h2 = h2_request(
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/h2"),
                (":authority", "web"),
            ],
            None,
        );
        let mut s = TcpStream::connect(out).await.unwrap();
        s.write_all(&h2).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        assert_eq!(
            seen.lock().unwrap().last().map(String::as_str),
            Some("GET /h2 0")
        );
    });
}

//! gRPC outcomes end to end (issue 18, acceptance 1): a gRPC instance answering UNAVAILABLE in
//! its trailers, over HTTP 200, is counted as an error with its grpc-status on both nodes and
//! in the traffic windows; a `grpc_statuses = ["UNAVAILABLE"]` retry turns a set of instances
//! of which half fail into at least 70 % success within the retry budget (once a route allows
//! retrying the non-idempotent calls, and not before); a server's negative
//! `grpc-retry-pushback-ms` stops the retries; and outlier ejection removes the failing instance.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue};
use hyper::body::Incoming;
use murmur_node::api::traffic::{Direction, TrafficResponse};
use murmur_tests::grpc::{EchoReply, EchoRequest, H2, client};
use murmur_tests::traffic::{apply, default_retry_budget, metric, pct};
use murmur_tests::{Cluster, netns};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// A response body that is nothing but trailers.
struct Trailers(Option<HeaderMap>);

impl hyper::body::Body for Trailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|t| Ok(hyper::body::Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

const ANSWER: u8 = 0;
const UNAVAILABLE: u8 = 1;
const UNAVAILABLE_NO_RETRY: u8 = 2;

/// A gRPC app: echoes, or answers HTTP 200 with headers and then trailers saying
/// UNAVAILABLE (with `grpc-retry-pushback-ms: -1` in the last mode). Counts calls.
#[derive(Clone)]
struct App {
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicU64>,
}

impl App {
    async fn start(addr: SocketAddr, mode: u8) -> Self {
        let app = Self {
            mode: Arc::new(AtomicU8::new(mode)),
            calls: Arc::new(AtomicU64::new(0)),
        };
        let a = app.clone();
        murmur_tests::grpc::serve(addr, move |req| {
            let a = a.clone();
            async move { Ok(a.answer(req).await) }
        })
        .await;
        app
    }

    async fn answer(&self, req: http::Request<Incoming>) -> http::Response<tonic::body::Body> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mode = self.mode.load(Ordering::Relaxed);
        if mode == ANSWER {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
            return grpc.unary(Echo, req).await;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        trailers.insert("grpc-message", HeaderValue::from_static("backend%20down"));
        if mode == UNAVAILABLE_NO_RETRY {
            trailers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("-1"));
        }
        let mut resp = http::Response::new(tonic::body::Body::new(Trailers(Some(trailers))));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        resp
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

struct Echo;

impl tonic::server::UnaryService<EchoRequest> for Echo {
    type Response = EchoReply;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<EchoReply>, Status>> + Send>>;
    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let message = format!("echo: {}", req.into_inner().message);
        Box::pin(async move { Ok(tonic::Response::new(EchoReply { message, seq: 0 })) })
    }
}

/// `n` unary calls one after the other; the codes they ended with.
async fn calls(g: &mut tonic::client::Grpc<H2>, n: usize) -> Vec<Code> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        g.ready().await.unwrap();
        let r = g
            .unary::<EchoRequest, EchoReply, _>(
                tonic::Request::new(EchoRequest {
                    message: format!("call {i}"),
                    count: 0,
                }),
                PathAndQuery::from_static("/demo.Echo/Unary"),
                ProstCodec::default(),
            )
            .await;
        out.push(match r {
            Ok(reply) => {
                assert_eq!(reply.into_inner().message, format!("echo: call {i}"));
                Code::Ok
            }
            Err(s) => s.code(),
        });
    }
    out
}

/// Requests `node` counted as UNAVAILABLE (class 5xx) in `direction` with `peer`.
async fn unavailable(c: &Cluster, node: &str, direction: &str, peer: &str) -> f64 {
    let labels = [
        ("direction", direction),
        ("service", "grpc-echo"),
        ("peer", peer),
        ("status_class", "5xx"),
        ("grpc_status", "UNAVAILABLE"),
    ];
    metric(c, node, "murmur_requests_total", &labels).await
}

fn ok(codes: &[Code]) -> usize {
    codes.iter().filter(|c| **c == Code::Ok).count()
}

#[test]
fn unavailable_in_trailers_is_an_error_that_retries_and_ejection_act_on() {
    netns::run(|| async {
        let good_addr = SocketAddr::from((Cluster::ip(3), 50051));
        let bad_addr = SocketAddr::from((Cluster::ip(4), 50051));
        let good = App::start(good_addr, ANSWER).await;
        let bad = App::start(bad_addr, UNAVAILABLE).await;
        let mut c = Cluster::new();
        let rr = "balancer = \"round-robin\"";
        c.chain(3, |s| match s.name.as_str() {
            "n2" => s.service_with("grpc-echo", good_addr, "grpc", rr),
            "n3" => s.service_with("grpc-echo", bad_addr, "grpc", rr),
            _ => s,
        });
        c.node("n1")
            .wait_instances("grpc-echo", &["n2", "n3"])
            .await;
        let mut g = client(c.node("n1").outbound(), "grpc-echo").await;

        // Without policy: every call to n3 fails, over HTTP 200, and is counted so.
        let started = std::time::Instant::now();
        let codes = calls(&mut g, 200).await;
        println!("200 calls in {:?}", started.elapsed());
        let failed = codes.iter().filter(|c| **c == Code::Unavailable).count();
        let (out_bad, in_bad) = (
            unavailable(&c, "n1", "outbound", "n3").await,
            unavailable(&c, "n3", "inbound", "n1").await,
        );
        let ok_n2 = metric(
            &c,
            "n1",
            "murmur_requests_total",
            &[
                ("peer", "n2"),
                ("status_class", "2xx"),
                ("grpc_status", "OK"),
            ],
        )
        .await;
        let traffic: TrafficResponse = c
            .node("n1")
            .admin_get("/v1/traffic")
            .await
            .unwrap()
            .decode()
            .unwrap();
        let window = traffic
            .services
            .iter()
            .find(|s| s.direction == Direction::Outbound && s.service == "grpc-echo")
            .unwrap();
        println!(
            "no policy: {} of 200 calls UNAVAILABLE; murmur_requests_total UNAVAILABLE/5xx: {} \
             outbound to n3, {} inbound on n3; OK to n2: {}; traffic window success rate {:.3}",
            failed, out_bad, in_bad, ok_n2, window.success_rate
        );
        assert_eq!(
            failed, 100,
            "round robin over one good and one failing instance"
        );
        assert_eq!(out_bad, 100.0);
        assert_eq!(in_bad, 100.0);
        assert_eq!(ok_n2, 100.0);
        assert!((window.success_rate - 0.5).abs() < 0.01, "{window:?}");

        // A retry policy for the service: gRPC calls are POSTs, not retried without leave.
        let retries = || {
            metric(
                &c,
                "n1",
                "murmur_retries_total",
                &[("service", "grpc-echo")],
            )
        };
        apply(
            &c,
            "n1",
            r#"
[[retry]]
name = "echo-retry"
service = "grpc-echo"
grpc_statuses = ["UNAVAILABLE"]
"#,
        )
        .await;
        let (r0, bad0) = (retries().await, bad.calls());
        let codes = calls(&mut g, 200).await;
        println!(
            "retry without non_idempotent: {} of 200 succeed, {} retries",
            ok(&codes),
            retries().await - r0
        );
        assert_eq!(ok(&codes), 100);
        assert_eq!(retries().await, r0, "no POST retried");
        assert_eq!(bad.calls() - bad0, 100);

        // A route for the calls whose retry policy allows them.
        apply(
            &c,
            "n1",
            r#"
[[route]]
name = "echo-calls"
service = "grpc-echo"
match = { path = { prefix = "/demo.Echo" } }
backends = [{ service = "grpc-echo" }]

[[retry]]
name = "echo-calls-retry"
service = "grpc-echo"
route = "echo-calls"
grpc_statuses = ["UNAVAILABLE"]
non_idempotent = true
"#,
        )
        .await;
        let (r0, bad0, good0) = (retries().await, bad.calls(), good.calls());
        let n = 1000;
        let started = std::time::Instant::now();
        let codes = calls(&mut g, n).await;
        let took = started.elapsed();
        let sent = retries().await - r0;
        let exhausted = metric(
            &c,
            "n1",
            "murmur_retry_budget_exhausted_total",
            &[("service", "grpc-echo")],
        )
        .await;
        let budget = default_retry_budget(n, took);
        let apps = (bad.calls() - bad0) + (good.calls() - good0);
        println!(
            "retry on UNAVAILABLE, route allowing it: {} of {n} succeed ({:.1} %); {sent} retries \
             in {:.1} s (budget {budget}), {exhausted} refused by the budget; the apps saw \
             {apps} calls",
            ok(&codes),
            pct(ok(&codes), n),
            took.as_secs_f64()
        );
        assert!(pct(ok(&codes), n) >= 70.0, "{}", ok(&codes));
        assert!(sent <= budget, "retries {sent} within the budget {budget}");
        assert_eq!(apps, n as u64 + sent as u64, "every retry reached an app");
        let route_ok = metric(
            &c,
            "n1",
            "murmur_route_requests_total",
            &[("route", "echo-calls"), ("status_class", "2xx")],
        )
        .await;
        assert_eq!(route_ok, ok(&codes) as f64, "per-route metrics count them");

        // The server asks not to be retried: no retry.
        bad.mode.store(UNAVAILABLE_NO_RETRY, Ordering::Relaxed);
        let r0 = retries().await;
        let codes = calls(&mut g, 100).await;
        println!(
            "grpc-retry-pushback-ms: -1: {} of 100 succeed, {} retries",
            ok(&codes),
            retries().await - r0
        );
        assert_eq!(ok(&codes), 50);
        assert_eq!(retries().await, r0);

        // Ejection: the failing instance is out after 5 failures in a row, then every call
        // succeeds and it sees none.
        bad.mode.store(UNAVAILABLE, Ordering::Relaxed);
        apply(
            &c,
            "n1",
            r#"
[[circuit]]
name = "echo-outliers"
service = "grpc-echo"
consecutive_failures = 5
base_ejection = "60s"
"#,
        )
        .await;
        let codes = calls(&mut g, 100).await;
        let ejections = metric(&c, "n1", "murmur_ejections_total", &[("peer", "n3")]).await;
        let bad0 = bad.calls();
        let after = calls(&mut g, 300).await;
        println!(
            "circuit: {} of 100 succeed while n3 fails, ejections of n3: {ejections}; then {} of \
             300 succeed and n3 saw {}",
            ok(&codes),
            ok(&after),
            bad.calls() - bad0
        );
        assert_eq!(ejections, 1.0);
        assert_eq!(ok(&after), 300);
        assert_eq!(bad.calls(), bad0, "the ejected instance gets nothing");
    });
}

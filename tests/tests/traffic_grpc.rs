//! Traffic policy seen by a gRPC client (tonic): answers the mesh makes itself arrive as gRPC
//! statuses (PERMISSION_DENIED from authorization, DEADLINE_EXCEEDED from a timeout,
//! RESOURCE_EXHAUSTED from a rate limit), and calls under a retry policy (whose request bodies
//! are recorded for replay) and a route by method path still work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use murmur_tests::grpc::{EchoReply, EchoRequest, H2, client};
use murmur_tests::traffic::apply;
use murmur_tests::{Cluster, netns};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

type Reply = Pin<Box<dyn Future<Output = Result<tonic::Response<EchoReply>, Status>> + Send>>;

/// Echoes the message after `delay`.
struct Echo(Duration);

impl tonic::server::UnaryService<EchoRequest> for Echo {
    type Response = EchoReply;
    type Future = Reply;
    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let delay = self.0;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let message = format!("echo: {}", req.into_inner().message);
            Ok(tonic::Response::new(EchoReply { message, seq: 0 }))
        })
    }
}

async fn route(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    Ok(match req.uri().path() {
        "/demo.Echo/Unary" | "/demo.Echo/Admin" => grpc.unary(Echo(Duration::ZERO), req).await,
        "/demo.Echo/Slow" => grpc.unary(Echo(Duration::from_secs(2)), req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

async fn call(
    g: &mut tonic::client::Grpc<H2>,
    method: &'static str,
    message: &str,
) -> Result<String, Status> {
    g.ready().await.unwrap();
    g.unary::<EchoRequest, EchoReply, _>(
        tonic::Request::new(EchoRequest {
            message: message.into(),
            count: 0,
        }),
        PathAndQuery::from_static(method),
        ProstCodec::default(),
    )
    .await
    .map(|r| r.into_inner().message)
}

#[test]
fn policy_answers_reach_grpc_clients_as_grpc_statuses() {
    netns::run(|| async {
        let app = SocketAddr::from((Cluster::ip(3), 50051));
        murmur_tests::grpc::serve(app, route).await;
        let c = Cluster::serving_pair("grpc-echo", app, "grpc").await;
        apply(
            &c,
            "n1",
            r#"
[[route]]
name = "echo-slow"
service = "grpc-echo"
match = { path = { exact = "/demo.Echo/Slow" } }
backends = [{ service = "grpc-echo" }]

[[timeout]]
name = "echo-slow-timeout"
service = "grpc-echo"
route = "echo-slow"
request = "300ms"

[[retry]]
name = "echo-retry"
service = "grpc-echo"
statuses = [503]

[[authz]]
name = "echo-authz"
service = "grpc-echo"
default = "allow"
rules = [{ name = "no-admin", action = "deny", paths = [{ exact = "/demo.Echo/Admin" }] }]

[[ratelimit]]
name = "echo-limit"
service = "grpc-echo"
rate = 5
per = "1m"
"#,
        )
        .await;
        let mut g = client(c.node("n1").outbound(), "grpc-echo").await;

        let ok = call(&mut g, "/demo.Echo/Unary", "hi").await.unwrap();
        println!("unary under a retry policy (body recorded for replay): {ok:?}");
        assert_eq!(ok, "echo: hi");

        let denied = call(&mut g, "/demo.Echo/Admin", "x").await.unwrap_err();
        println!("denied: {:?} {:?}", denied.code(), denied.message());
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("rule \"no-admin\""),
            "{}",
            denied.message()
        );

        let started = Instant::now();
        let slow = call(&mut g, "/demo.Echo/Slow", "zzz").await.unwrap_err();
        println!(
            "timeout: {:?} {:?} after {:?}",
            slow.code(),
            slow.message(),
            started.elapsed()
        );
        assert_eq!(slow.code(), Code::DeadlineExceeded);
        assert!(
            slow.message().contains("request timeout (300ms)"),
            "{}",
            slow.message()
        );

        // Five a minute: two calls so far were admitted (the denied one never reached the
        // limit), three more pass, then the limit answers.
        for i in 0..3 {
            call(&mut g, "/demo.Echo/Unary", &format!("{i}"))
                .await
                .unwrap();
        }
        let limited = call(&mut g, "/demo.Echo/Unary", "one too many")
            .await
            .unwrap_err();
        println!("rate limited: {:?} {:?}", limited.code(), limited.message());
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(
            limited.message().contains("ratelimit \"echo-limit\""),
            "{}",
            limited.message()
        );
    });
}

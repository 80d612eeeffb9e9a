//! gRPC across the mesh with a tonic client and server: unary, server streaming, and an error
//! status whose code and message arrive intact (trailers survive the hop).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;

use http::uri::PathAndQuery;
use hyper::body::Incoming;
use murmur_tests::grpc::{EchoReply, EchoRequest, Unary, client};
use murmur_tests::{Cluster, netns};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

type Ready<T> = std::future::Ready<Result<tonic::Response<T>, Status>>;

struct Fail;
impl tonic::server::UnaryService<EchoRequest> for Fail {
    type Response = EchoReply;
    type Future = Ready<EchoReply>;
    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let m = req.into_inner().message;
        std::future::ready(Err(Status::new(
            Code::FailedPrecondition,
            format!("cannot echo {m}: ünïcode, 100% sure"),
        )))
    }
}

struct Streamer;
impl tonic::server::ServerStreamingService<EchoRequest> for Streamer {
    type Response = EchoReply;
    type ResponseStream = tokio_stream::Iter<std::vec::IntoIter<Result<EchoReply, Status>>>;
    type Future = Ready<Self::ResponseStream>;
    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let r = req.into_inner();
        let items: Vec<Result<EchoReply, Status>> = (0..r.count)
            .map(|seq| {
                Ok(EchoReply {
                    message: format!("{} #{seq}", r.message),
                    seq,
                })
            })
            .collect();
        std::future::ready(Ok(tonic::Response::new(tokio_stream::iter(items))))
    }
}

async fn route(
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    Ok(match req.uri().path() {
        "/demo.Echo/Unary" => grpc.unary(Unary, req).await,
        "/demo.Echo/Stream" => grpc.server_streaming(Streamer, req).await,
        "/demo.Echo/Fail" => grpc.unary(Fail, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    })
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

#[test]
fn grpc_unary_streaming_and_error_status_cross_the_mesh() {
    netns::run(|| async {
        let app = SocketAddr::from((Cluster::ip(3), 50051));
        murmur_tests::grpc::serve(app, route).await;
        let c = Cluster::serving_pair("grpc-echo", app, "grpc").await;
        let mut g = client(c.node("n1").outbound(), "grpc-echo").await;

        g.ready().await.unwrap();
        let reply: tonic::Response<EchoReply> = g
            .unary(
                tonic::Request::new(EchoRequest {
                    message: "hi".into(),
                    count: 0,
                }),
                path("/demo.Echo/Unary"),
                ProstCodec::default(),
            )
            .await
            .unwrap();
        assert_eq!(reply.get_ref().message, "echo: hi");
        println!("unary: {:?}", reply.get_ref().message);

        g.ready().await.unwrap();
        let resp = g
            .server_streaming(
                tonic::Request::new(EchoRequest {
                    message: "tick".into(),
                    count: 50,
                }),
                path("/demo.Echo/Stream"),
                ProstCodec::<EchoRequest, EchoReply>::default(),
            )
            .await
            .unwrap();
        let mut stream = resp.into_inner();
        let mut seqs = Vec::new();
        while let Some(item) = stream.message().await.unwrap() {
            assert_eq!(item.message, format!("tick #{}", item.seq));
            seqs.push(item.seq);
        }
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        // A clean end of stream means grpc-status 0 arrived in the trailers.
        let trailers = stream.trailers().await.unwrap();
        println!(
            "server streaming: {} messages, trailers {trailers:?}",
            seqs.len()
        );

        g.ready().await.unwrap();
        let err = g
            .unary::<EchoRequest, EchoReply, _>(
                tonic::Request::new(EchoRequest {
                    message: "this".into(),
                    count: 0,
                }),
                path("/demo.Echo/Fail"),
                ProstCodec::default(),
            )
            .await
            .unwrap_err();
        println!("error status: {:?} {:?}", err.code(), err.message());
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.message(), "cannot echo this: ünïcode, 100% sure");

        // A service nobody serves: UNAVAILABLE, with the proxy's explanation.
        let mut nobody = client(c.node("n1").outbound(), "nobody").await;
        nobody.ready().await.unwrap();
        let err = nobody
            .unary::<EchoRequest, EchoReply, _>(
                tonic::Request::new(EchoRequest::default()),
                path("/demo.Echo/Unary"),
                ProstCodec::default(),
            )
            .await
            .unwrap_err();
        println!("unknown service: {:?} {:?}", err.code(), err.message());
        assert_eq!(err.code(), Code::Unavailable);
        assert!(
            err.message().contains("unknown service"),
            "{}",
            err.message()
        );
    });
}

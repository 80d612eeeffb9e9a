//! gRPC for tests without protoc: hand-written prost messages, a tonic client speaking HTTP/2
//! to a node's outbound proxy, and an HTTP/2 server for tonic services.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The request of the test service `demo.Echo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    /// What to echo.
    #[prost(string, tag = "1")]
    pub message: String,
    /// How many replies a streaming call sends.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// The reply of `demo.Echo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    /// The echo.
    #[prost(string, tag = "1")]
    pub message: String,
    /// Position in a stream.
    #[prost(uint32, tag = "2")]
    pub seq: u32,
}

/// `/demo.Echo/Unary`: replies `echo: <message>`.
#[derive(Debug, Clone, Copy)]
pub struct Unary;

impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = std::future::Ready<Result<tonic::Response<EchoReply>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<EchoRequest>) -> Self::Future {
        let m = req.into_inner().message;
        std::future::ready(Ok(tonic::Response::new(EchoReply {
            message: format!("echo: {m}"),
            seq: 0,
        })))
    }
}

/// Serves `/demo.Echo/Unary` ([`Unary`]) on `addr`; other methods are UNIMPLEMENTED.
pub async fn serve_echo(addr: SocketAddr) {
    serve(addr, |req: http::Request<Incoming>| async move {
        let mut grpc =
            tonic::server::Grpc::new(tonic_prost::ProstCodec::<EchoReply, EchoRequest>::default());
        Ok::<_, Infallible>(match req.uri().path() {
            "/demo.Echo/Unary" => grpc.unary(Unary, req).await,
            _ => tonic::Status::unimplemented("no such method").into_http(),
        })
    })
    .await;
}

/// A tonic transport over one HTTP/2 connection to the outbound proxy.
#[derive(Clone, Debug)]
pub struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// A gRPC client for `service`, through the outbound proxy at `outbound`: the origin names the
/// service, and becomes the request's `:authority`.
pub async fn client(outbound: SocketAddr, service: &str) -> tonic::client::Grpc<H2> {
    let s = tokio::net::TcpStream::connect(outbound)
        .await
        .expect("connect to the outbound proxy");
    // As gRPC clients do: no Nagle delay on small frames.
    let _ = s.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let origin = format!("http://{service}.mesh").parse().expect("origin");
    tonic::client::Grpc::with_origin(H2(sender), origin)
}

/// Serves gRPC (HTTP/2 only, like tonic's server) on `addr`, each request answered by `route`.
pub async fn serve<F, Fut>(addr: SocketAddr, route: F)
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<http::Response<tonic::body::Body>, Infallible>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind gRPC server");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let route = route.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), hyper::service::service_fn(route))
                    .await;
            });
        }
    });
}

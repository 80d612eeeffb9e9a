//! In-test OpenTelemetry collectors: OTLP/HTTP and OTLP/gRPC receivers that keep the spans they
//! get, and one that accepts connections but never answers (a stalled collector).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

/// A received span, reduced to what tests check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// 1 internal, 2 server, 3 client (OTLP `SpanKind`).
    pub kind: i32,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex (empty for a root).
    pub parent_span_id: String,
    /// `service.name` of the resource.
    pub service: String,
}

/// Spans received so far.
#[derive(Clone, Debug, Default)]
pub struct Spans(Arc<Mutex<Vec<ReceivedSpan>>>);

impl Spans {
    /// A copy of every span received.
    pub fn all(&self) -> Vec<ReceivedSpan> {
        self.0.lock().unwrap().clone()
    }

    fn add(&self, req: &ExportTraceServiceRequest) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let mut out = self.0.lock().unwrap();
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push(ReceivedSpan {
                        name: s.name.clone(),
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: hex(&s.parent_span_id),
                        service: service.clone(),
                    });
                }
            }
        }
    }
}

/// Serves OTLP/HTTP (`POST /v1/traces`, protobuf) on `addr`.
pub async fn http_receiver(addr: SocketAddr) -> Spans {
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind OTLP/HTTP receiver");
    let spans = Spans::default();
    let keep = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = keep.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let spans = spans.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if let Ok(decoded) = ExportTraceServiceRequest::decode(body) {
                            spans.add(&decoded);
                        }
                        let reply = ExportTraceServiceResponse::default().encode_to_vec();
                        let mut resp = Response::new(Full::new(Bytes::from(reply)));
                        resp.headers_mut()
                            .insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    spans
}

struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves OTLP/gRPC on `addr`.
pub async fn grpc_receiver(addr: SocketAddr) -> Spans {
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind OTLP/gRPC receiver");
    let spans = Spans::default();
    let svc = TraceServiceServer::new(Grpc(spans.clone()));
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await;
    });
    spans
}

/// Accepts TCP connections on `addr` and never answers: a collector that stalls.
pub async fn stalled_receiver(addr: SocketAddr) {
    let listener = TcpListener::bind(addr)
        .await
        .expect("bind stalled receiver");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
}

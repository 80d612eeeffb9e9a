//! Distributed traces: a client span on the calling node and a server span on the serving node
//! for every proxied request, exported over OTLP (gRPC or HTTP).
//!
//! Export never slows traffic: finished spans go into a bounded queue that a dedicated thread
//! drains to the exporter; when the collector is dead or slow the queue fills and further spans
//! are dropped and counted (`murmur_trace_spans_dropped_total`), the request path never waits.
//! With no collector configured, no span is recorded, but `traceparent` still passes through the
//! mesh unchanged so traces stay whole across nodes that do export.

#![allow(
    clippy::disallowed_types,
    reason = "the span queue is handed to the exporter's own thread, not shared by requests"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use tracing::{info, warn};

use super::traceparent::TraceParent;

/// Spans waiting for export; beyond this they are dropped.
const QUEUE: usize = 2048;
/// Spans per export call.
const BATCH: usize = 512;
/// Longest a span waits before its batch is exported.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318).
    Http,
}

/// Where and how traces are exported.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// Collector endpoint, e.g. `http://127.0.0.1:4317`; `None` disables export.
    pub endpoint: Option<String>,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Share of new traces recorded (a caller's sampling decision is followed).
    pub sampling_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Time allowed for one export call.
    pub export_timeout: Duration,
}

/// Export counters.
#[derive(Debug, Default)]
pub struct TraceStats {
    /// Spans handed to the exporter successfully.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full or the export failed.
    pub dropped: AtomicU64,
}

/// The node's tracer.
#[derive(Debug)]
pub struct Tracing {
    tracer: Option<SdkTracer>,
    provider: Option<SdkTracerProvider>,
    /// Export counters.
    pub stats: Arc<TraceStats>,
}

impl Tracing {
    /// A tracer that records nothing (traceparent still passes through).
    pub fn disabled() -> Self {
        Self {
            tracer: None,
            provider: None,
            stats: Arc::default(),
        }
    }

    /// Starts exporting to `settings.endpoint`. Must run inside the tokio runtime (the gRPC
    /// exporter keeps its connection there).
    pub fn start(settings: &TraceSettings) -> anyhow::Result<Self> {
        let Some(endpoint) = settings.endpoint.clone() else {
            return Ok(Self::disabled());
        };
        let stats = Arc::new(TraceStats::default());
        let processor = BoundedProcessor::start(exporter(settings, &endpoint)?, stats.clone());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sampling_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        info!(%endpoint, protocol = ?settings.protocol, ratio = settings.sampling_ratio, "exporting traces");
        Ok(Self {
            tracer: Some(provider.tracer("murmur")),
            provider: Some(provider),
            stats,
        })
    }

    /// Starts a span of `kind`, child of `parent` (an incoming `traceparent`); `describe` gives
    /// its name and attributes, and is called only when traces are exported (it allocates, and
    /// runs for every proxied request).
    pub fn span(
        &self,
        kind: SpanKind,
        parent: Option<TraceParent>,
        describe: impl FnOnce() -> (String, Vec<KeyValue>),
    ) -> ProxySpan {
        let Some(tracer) = &self.tracer else {
            return ProxySpan {
                cx: None,
                passthrough: parent,
            };
        };
        let parent_cx = parent.map_or_else(Context::new, |p| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(p.trace_id),
                SpanId::from_bytes(p.span_id),
                TraceFlags::new(p.flags),
                true,
                TraceState::default(),
            ))
        });
        let (name, attrs) = describe();
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attrs)
            .start_with_context(tracer, &parent_cx);
        ProxySpan {
            cx: Some(parent_cx.with_span(span)),
            passthrough: parent,
        }
    }

    /// Flushes and stops the exporter (bounded by its timeout).
    pub async fn shutdown(&self) {
        if let Some(provider) = self.provider.clone() {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// A span in progress (or, with tracing off, the caller's context passed through).
#[derive(Debug)]
pub struct ProxySpan {
    cx: Option<Context>,
    passthrough: Option<TraceParent>,
}

impl ProxySpan {
    /// The `traceparent` to send onwards: this span as parent, or the caller's unchanged.
    pub fn traceparent(&self) -> Option<String> {
        let Some(cx) = &self.cx else {
            return self.passthrough.map(|p| p.to_string());
        };
        let sc = cx.span().span_context().clone();
        if !sc.is_valid() {
            return self.passthrough.map(|p| p.to_string());
        }
        Some(
            TraceParent {
                trace_id: sc.trace_id().to_bytes(),
                span_id: sc.span_id().to_bytes(),
                flags: sc.trace_flags().to_u8(),
            }
            .to_string(),
        )
    }

    /// Adds an attribute.
    pub fn set(&self, kv: KeyValue) {
        if let Some(cx) = &self.cx {
            cx.span().set_attribute(kv);
        }
    }

    /// Ends the span of a TCP connection or tunnel, which has no status: `ok` unless it failed.
    pub fn end_connection(self, ok: bool) {
        let Some(cx) = self.cx else { return };
        let span = cx.span();
        if !ok {
            span.set_status(Status::error("connection failed"));
        }
        span.end();
    }

    /// Ends the span with an HTTP status (or `None` for a connection-level failure).
    pub fn end(self, status: Option<u16>) {
        let Some(cx) = self.cx else { return };
        let span = cx.span();
        match status {
            Some(code) => {
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(code)));
                if code >= 500 {
                    span.set_status(Status::error(format!("HTTP {code}")));
                }
            }
            None => span.set_status(Status::error("connection failed")),
        }
        span.end();
    }
}

fn exporter(s: &TraceSettings, endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match s.protocol {
        OtlpProtocol::Grpc => builder
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(s.export_timeout)
            .build()?,
        OtlpProtocol::Http => {
            // A bare host:port means the standard path.
            let url = if endpoint.trim_end_matches('/').matches('/').count() <= 2 {
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
            } else {
                endpoint.to_owned()
            };
            builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(s.export_timeout)
                .build()?
        }
    };
    Ok(exporter)
}

/// Queues finished spans without ever blocking, and exports them from its own thread.
#[derive(Debug)]
struct BoundedProcessor {
    tx: Mutex<Option<SyncSender<SpanData>>>,
    stats: Arc<TraceStats>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl BoundedProcessor {
    fn start<E: SpanExporter + 'static>(exporter: E, stats: Arc<TraceStats>) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let resource = Arc::new(Mutex::new(None));
        let (st, res) = (stats.clone(), resource.clone());
        let worker = std::thread::Builder::new()
            .name("murmur-otlp".into())
            .spawn(move || export_loop(exporter, rx, st, res))
            .map_err(|e| warn!(error = %e, "no trace export thread; spans will be dropped"))
            .ok();
        Self {
            tx: Mutex::new(Some(tx)),
            stats,
            worker: Mutex::new(worker),
            resource,
        }
    }
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let guard = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = guard.as_ref() else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(span) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // Closing the queue makes the worker export what is left and stop.
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = w.join();
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap_or_else(PoisonError::into_inner) = Some(resource.clone());
    }
}

fn export_loop<E: SpanExporter>(
    mut exporter: E,
    rx: Receiver<SpanData>,
    stats: Arc<TraceStats>,
    resource: Arc<Mutex<Option<Resource>>>,
) {
    let mut resource_set = false;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let closed = match rx.recv_timeout(FLUSH_EVERY) {
            Ok(span) => {
                batch.push(span);
                batch.extend(rx.try_iter().take(BATCH - 1));
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if !resource_set
            && let Some(r) = resource
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            exporter.set_resource(r);
            resource_set = true;
        }
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match futures_executor::block_on(exporter.export(std::mem::take(&mut batch))) {
                Ok(()) => stats.exported.fetch_add(n, Ordering::Relaxed),
                Err(_) => stats.dropped.fetch_add(n, Ordering::Relaxed),
            };
        }
        if closed {
            let _ = exporter.shutdown();
            return;
        }
    }
}

//! A real OTLP receiver for the tests: the OTLP/gRPC trace and metrics services (the tonic server
//! traits of `opentelemetry-proto`) and OTLP/HTTP `/v1/traces` and `/v1/metrics` with protobuf
//! bodies (axum). It keeps every request it accepts for assertions, and can be stopped (its ports
//! closed, every connection cut) and started again on the same ports.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            metrics_service_server::{MetricsService, MetricsServiceServer},
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        },
        trace::v1::{
            trace_service_server::{TraceService, TraceServiceServer},
            ExportTraceServiceRequest, ExportTraceServiceResponse,
        },
    },
    common::v1::{any_value, AnyValue, KeyValue},
    metrics::v1::Metric,
    trace::v1::Span,
};
use prost::Message as _;
use serde_json::Value;

/// What the receiver got.
#[derive(Debug, Default)]
pub struct Received {
    pub traces: Vec<ExportTraceServiceRequest>,
    pub metrics: Vec<ExportMetricsServiceRequest>,
    /// Requests per transport (`grpc`, `http`).
    pub grpc_requests: u64,
    pub http_requests: u64,
}

type Store = Arc<Mutex<Received>>;

#[derive(Clone)]
struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if let Ok(mut r) = self.0.lock() {
            r.grpc_requests += 1;
            r.traces.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Ok(mut r) = self.0.lock() {
            r.grpc_requests += 1;
            r.metrics.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn http_traces(
    axum::extract::State(store): axum::extract::State<Store>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            if let Ok(mut r) = store.lock() {
                r.http_requests += 1;
                r.traces.push(request);
            }
            protobuf(ExportTraceServiceResponse::default().encode_to_vec())
        }
        Err(_) => bad_request(),
    }
}

async fn http_metrics(
    axum::extract::State(store): axum::extract::State<Store>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            if let Ok(mut r) = store.lock() {
                r.http_requests += 1;
                r.metrics.push(request);
            }
            protobuf(ExportMetricsServiceResponse::default().encode_to_vec())
        }
        Err(_) => bad_request(),
    }
}

fn protobuf(body: Vec<u8>) -> axum::response::Response {
    axum::response::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

fn bad_request() -> axum::response::Response {
    axum::response::Response::builder()
        .status(400)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}

/// The running receiver.
pub struct OtlpReceiver {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    store: Store,
    /// Its own runtime: stopping it cuts every connection, as a crashed collector would.
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("running", &self.runtime.is_some())
            .finish()
    }
}

impl OtlpReceiver {
    /// Listens on free loopback ports.
    pub fn start() -> Result<Self> {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut this = Self {
            grpc_addr: any,
            http_addr: any,
            store: Store::default(),
            runtime: None,
        };
        this.listen()?;
        Ok(this)
    }

    /// `http://127.0.0.1:PORT` of the gRPC service.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT`, the base of `/v1/traces` and `/v1/metrics`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    fn listen(&mut self) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("receiver runtime")?;
        let (grpc, http) = runtime.block_on(async {
            let grpc = tokio::net::TcpListener::bind(self.grpc_addr).await?;
            let http = tokio::net::TcpListener::bind(self.http_addr).await?;
            anyhow::Ok((grpc, http))
        })?;
        self.grpc_addr = grpc.local_addr()?;
        self.http_addr = http.local_addr()?;
        let service = Grpc(Arc::clone(&self.store));
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(service.clone()))
                .add_service(MetricsServiceServer::new(service))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc)),
        );
        let router = axum::Router::new()
            .route("/v1/traces", axum::routing::post(http_traces))
            .route("/v1/metrics", axum::routing::post(http_metrics))
            .with_state(Arc::clone(&self.store));
        runtime.spawn(async move { axum::serve(http, router).await });
        self.runtime = Some(runtime);
        Ok(())
    }

    /// Closes both ports and cuts every connection.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Listens again on the same ports.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // The ports were ours a moment ago; a late TIME_WAIT does not stop a listener (SO_REUSEADDR).
        self.listen()
            .with_context(|| format!("rebinding {} and {}", self.grpc_addr, self.http_addr))
    }

    /// Requests received so far, per transport.
    pub fn request_counts(&self) -> (u64, u64) {
        self.store
            .lock()
            .map(|r| (r.grpc_requests, r.http_requests))
            .unwrap_or_default()
    }

    /// Every span received so far, with its resource.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let Ok(r) = self.store.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for request in &r.traces {
            for rs in &request.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push(ReceivedSpan {
                            resource: resource.clone(),
                            attributes: attributes(&span.attributes),
                            span: span.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every metric received so far, with its resource attributes.
    pub fn metrics(&self) -> Vec<(BTreeMap<String, Value>, Metric)> {
        let Ok(r) = self.store.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for request in &r.metrics {
            for rm in &request.resource_metrics {
                let resource = rm
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for sm in &rm.scope_metrics {
                    for metric in &sm.metrics {
                        out.push((resource.clone(), metric.clone()));
                    }
                }
            }
        }
        out
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A span and its resource, attributes as JSON values.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub resource: BTreeMap<String, Value>,
    pub attributes: BTreeMap<String, Value>,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    pub fn resource_str(&self, key: &str) -> Option<&str> {
        self.resource.get(key).and_then(Value::as_str)
    }

    /// The status code (0 unset, 1 ok, 2 error).
    pub fn status_code(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }
}

/// Attributes as a map of JSON values.
pub fn attributes(list: &[KeyValue]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json)))
        .collect()
}

fn json(value: &AnyValue) -> Value {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(json).collect()),
        Some(any_value::Value::BytesValue(b)) => Value::from(b.clone()),
        _ => Value::Null,
    }
}

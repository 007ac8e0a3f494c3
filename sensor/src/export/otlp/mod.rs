//! OTLP export: spans built with `opentelemetry-proto` (one resource per pod, client and server spans
//! as DESIGN.md's span section says) and the metric store's families, sent over gRPC (tonic) or
//! HTTP/protobuf. Batched, retried with backoff, queue bounded; what cannot be queued is counted.
//!
//! The capture thread only converts a call to spans and enqueues them (`Sink::write` never waits);
//! one task on the I/O runtime batches and sends spans, another pushes metrics every interval.

mod metrics;
mod queue;
mod resource;
mod spans;
mod transport;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use tokio::sync::watch;

use crate::{
    cli::OtlpArgs,
    export::metrics::{ExportStats, Metrics},
    model::{Call, Site},
};
use queue::BoundedQueue;
use transport::{SendError, Transport};

/// Spans per export request at most.
const BATCH_SPANS: usize = 512;
/// A partial batch waits at most this long.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Attempts per request (spans); metrics are pushed again next interval anyway.
const SPAN_ATTEMPTS: u32 = 6;
const METRIC_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long shutdown waits for the last spans and metrics to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// `--otlp-protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318; `/v1/traces`, `/v1/metrics`).
    #[value(name = "http", alias = "http/protobuf")]
    Http,
}

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// Base URL (`http://collector:4317`); empty: the protocol's default on localhost.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// Spans waiting for export at most; beyond it new spans are dropped and counted.
    pub queue_spans: usize,
    /// How often metrics are pushed.
    pub metrics_interval: Duration,
    /// `k8s.node.name` of every resource.
    pub node_name: Option<String>,
    /// Full URL for spans (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), used as it is.
    pub traces_endpoint: Option<String>,
    /// Full URL for metrics (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`), used as it is.
    pub metrics_endpoint: Option<String>,
}

impl OtlpConfig {
    /// The configuration of `podtap run`'s flags and `OTEL_EXPORTER_OTLP_*`; `None` when no
    /// endpoint is set (no export).
    ///
    /// # Errors
    /// `OTEL_EXPORTER_OTLP_HEADERS` is malformed.
    pub fn from_args(
        args: &OtlpArgs,
        node_name: Option<String>,
    ) -> Result<Option<Self>, OtlpError> {
        if args.otlp_endpoint.is_none()
            && args.otlp_traces_endpoint.is_none()
            && args.otlp_metrics_endpoint.is_none()
        {
            return Ok(None);
        }
        Ok(Some(Self {
            endpoint: args.otlp_endpoint.clone().unwrap_or_default(),
            protocol: args.otlp_protocol,
            headers: parse_headers(args.otlp_headers.as_deref().unwrap_or_default())?,
            timeout: Duration::from_millis(args.otlp_timeout.max(1)),
            queue_spans: args.otlp_queue_spans,
            metrics_interval: Duration::from_secs_f64(args.otlp_metrics_interval),
            node_name,
            traces_endpoint: args.otlp_traces_endpoint.clone(),
            metrics_endpoint: args.otlp_metrics_endpoint.clone(),
        }))
    }

    /// The URLs spans and metrics go to: for OTLP/HTTP the base endpoint plus `/v1/traces` and
    /// `/v1/metrics`, for gRPC the endpoint itself; a signal's own endpoint as it is.
    #[must_use]
    pub fn urls(&self) -> (String, String) {
        let base = match (self.endpoint.trim_end_matches('/'), self.protocol) {
            ("", OtlpProtocol::Grpc) => "http://localhost:4317",
            ("", OtlpProtocol::Http) => "http://localhost:4318",
            (base, _) => base,
        };
        let signal = |path: &str| match self.protocol {
            OtlpProtocol::Grpc => base.to_owned(),
            OtlpProtocol::Http => format!("{base}{path}"),
        };
        (
            self.traces_endpoint
                .clone()
                .unwrap_or_else(|| signal("/v1/traces")),
            self.metrics_endpoint
                .clone()
                .unwrap_or_else(|| signal("/v1/metrics")),
        )
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values percent-encoded.
///
/// # Errors
/// A pair without `=` or with an empty key.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, OtlpError> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| OtlpError::Header(pair.to_owned()))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(OtlpError::Header(pair.to_owned()));
            }
            Ok((key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP endpoint {0:?} is not a URL")]
    Endpoint(String),
    #[error(
        "OTLP endpoint {0:?}: gRPC over TLS is not supported; use --otlp-protocol http with an https URL"
    )]
    GrpcTls(String),
    #[error("OTLP header {0:?} is not `key=value` with a valid name and value")]
    Header(String),
    #[error("OTLP HTTP client: {0}")]
    Client(String),
}

/// Counters of one signal, cumulative.
#[derive(Debug, Default)]
struct SignalStats {
    exported: AtomicU64,
    failed_requests: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    /// The last request failed (a recovery is logged once).
    failing: AtomicBool,
}

impl SignalStats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the span task and the metrics task share.
struct Shared {
    queue: BoundedQueue<(Resource, Span)>,
    transport: Transport,
    traces: SignalStats,
    metrics: SignalStats,
    store: Option<Arc<Metrics>>,
}

impl Shared {
    fn report(&self) {
        let Some(store) = &self.store else { return };
        let t = &self.traces;
        store.export_stats(&ExportStats {
            signal: "traces",
            exported: SignalStats::get(&t.exported),
            failed_requests: SignalStats::get(&t.failed_requests),
            dropped: SignalStats::get(&t.dropped) + self.queue.dropped(),
            queue_depth: self.queue.len() as u64,
        });
        let m = &self.metrics;
        store.export_stats(&ExportStats {
            signal: "metrics",
            exported: SignalStats::get(&m.exported),
            failed_requests: SignalStats::get(&m.failed_requests),
            dropped: SignalStats::get(&m.dropped),
            queue_depth: 0,
        });
    }
}

/// The running exporter: a sink for calls (spans) plus a task that pushes the metric store.
pub struct OtlpExporter {
    shared: Arc<Shared>,
    node_name: Option<String>,
    /// podtap's own export connections are calls too: never exported (they would feed themselves).
    own_pid: u32,
    stop: watch::Sender<bool>,
    done: mpsc::Receiver<()>,
    tasks: usize,
}

impl OtlpExporter {
    /// Starts the export tasks on `runtime`.
    ///
    /// # Errors
    /// The endpoint is not a usable URL, or a header is malformed.
    pub fn start(
        config: OtlpConfig,
        runtime: &tokio::runtime::Handle,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, OtlpError> {
        // The HTTP client is built inside the runtime (it registers timers there).
        let transport = {
            let _guard = runtime.enter();
            Transport::new(&config)?
        };
        let shared = Arc::new(Shared {
            queue: BoundedQueue::new(config.queue_spans, BATCH_SPANS),
            transport,
            traces: SignalStats::default(),
            metrics: SignalStats::default(),
            store: metrics,
        });
        let (stop, stopped) = watch::channel(false);
        let (done_tx, done) = mpsc::channel();
        let mut tasks = 1;
        runtime.spawn(export_spans(
            Arc::clone(&shared),
            stopped.clone(),
            done_tx.clone(),
        ));
        if shared.store.is_some() {
            tasks += 1;
            let resource = resource::of_sensor(config.node_name.as_deref());
            runtime.spawn(export_metrics(
                Arc::clone(&shared),
                resource,
                config.metrics_interval,
                stopped,
                done_tx,
            ));
        }
        let (traces_url, metrics_url) = config.urls();
        log::info!(
            "OTLP export ({:?}): spans to {traces_url}, metrics to {metrics_url}",
            config.protocol
        );
        Ok(Self {
            shared,
            node_name: config.node_name,
            own_pid: std::process::id(),
            stop,
            done,
            tasks,
        })
    }
}

impl super::Sink for OtlpExporter {
    fn write(&mut self, call: &Call) -> std::io::Result<()> {
        if call.client.pid == Some(self.own_pid) || call.server.pid == Some(self.own_pid) {
            return Ok(());
        }
        if call.client.site != Site::Local && call.server.site != Site::Local {
            return Ok(());
        }
        for item in spans::of_call(call, self.node_name.as_deref()) {
            self.shared.queue.push(item);
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // The export task sends on its own schedule; flushing here would block the capture loop.
        Ok(())
    }
}

impl Drop for OtlpExporter {
    /// Sends what is queued, bounded by `FLUSH_TIMEOUT`, and says what was exported.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        for _ in 0..self.tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                log::warn!("OTLP export: flush did not finish within {FLUSH_TIMEOUT:?}");
                break;
            }
        }
        let shared = &self.shared;
        shared.report();
        let t = &shared.traces;
        let m = &shared.metrics;
        let unsent = shared.queue.len() as u64;
        eprintln!(
            "podtap: otlp spans_exported={} spans_dropped={} spans_rejected={} export_failures={} \
             metric_points_exported={} metric_export_failures={}",
            SignalStats::get(&t.exported),
            SignalStats::get(&t.dropped) + shared.queue.dropped() + unsent,
            SignalStats::get(&t.rejected),
            SignalStats::get(&t.failed_requests),
            SignalStats::get(&m.exported),
            SignalStats::get(&m.failed_requests),
        );
    }
}

/// Groups a batch by resource into one request.
fn traces_request(batch: Vec<(Resource, Span)>) -> ExportTraceServiceRequest {
    let mut groups: Vec<ResourceSpans> = Vec::new();
    for (resource, span) in batch {
        let group = groups
            .iter_mut()
            .find(|g| g.resource.as_ref() == Some(&resource));
        match group.and_then(|g| g.scope_spans.first_mut()) {
            Some(scope) => scope.spans.push(span),
            None => groups.push(ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(metrics::scope_of_podtap()),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups,
    }
}

/// Batches spans: a full batch goes at once, a partial one after `BATCH_DELAY`; on stop, what is
/// queued goes without retries.
async fn export_spans(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let mut tick = tokio::time::interval(BATCH_DELAY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    while !stopping {
        let timer = tokio::select! {
            _ = tick.tick() => true,
            () = shared.queue.ready.notified() => false,
            _ = stop.wait_for(|s| *s) => {
                stopping = true;
                true
            }
        };
        loop {
            let waiting = shared.queue.len();
            if waiting == 0 || (waiting < BATCH_SPANS && !timer) {
                break;
            }
            let batch = shared.queue.take(BATCH_SPANS);
            let items = batch.len() as u64;
            let request = traces_request(batch);
            let attempts = if stopping { 1 } else { SPAN_ATTEMPTS };
            deliver(
                request,
                items,
                attempts,
                |r| shared.transport.traces(r),
                &shared.traces,
                "spans",
                &mut stop,
            )
            .await;
            stopping |= *stop.borrow();
        }
        shared.report();
    }
    let _ = done.send(());
}

/// Pushes the metric store every `interval`, and once more on stop.
async fn export_metrics(
    shared: Arc<Shared>,
    resource: Resource,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    let Some(store) = shared.store.clone() else {
        let _ = done.send(());
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let now = crate::model::unix_now();
        let (request, points) = metrics::request(&store.snapshot(), resource.clone(), now);
        if points > 0 {
            let attempts = if stopping { 1 } else { METRIC_ATTEMPTS };
            deliver(
                request,
                points as u64,
                attempts,
                |r| shared.transport.metrics(r),
                &shared.metrics,
                "metrics",
                &mut stop,
            )
            .await;
        }
        shared.report();
        if stopping {
            break;
        }
    }
    let _ = done.send(());
}

/// Sends one request, retrying what the receiver may accept later with exponential backoff and
/// jitter; counts the outcome. A stop cuts the backoff short (the items are dropped).
async fn deliver<R, F, Fut>(
    request: R,
    items: u64,
    attempts: u32,
    send: F,
    stats: &SignalStats,
    what: &str,
    stop: &mut watch::Receiver<bool>,
) where
    R: Clone,
    F: Fn(R) -> Fut,
    Fut: Future<Output = Result<i64, SendError>>,
{
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=attempts {
        match send(request.clone()).await {
            Ok(rejected) => {
                let rejected = u64::try_from(rejected).unwrap_or(0).min(items);
                SignalStats::add(&stats.exported, items - rejected);
                SignalStats::add(&stats.rejected, rejected);
                SignalStats::add(&stats.dropped, rejected);
                if stats.failing.swap(false, Ordering::Relaxed) {
                    log::warn!("OTLP export of {what} works again");
                }
                return;
            }
            Err(error) => {
                SignalStats::add(&stats.failed_requests, 1);
                if !stats.failing.swap(true, Ordering::Relaxed) {
                    log::warn!("OTLP export of {what} failed: {}", error.message);
                } else {
                    log::debug!("OTLP export of {what} failed: {}", error.message);
                }
                if !error.retryable || attempt == attempts || *stop.borrow() {
                    break;
                }
                // Full jitter in the upper half: many nodes do not retry in step.
                let pause = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let stopped = tokio::select! {
                    () = tokio::time::sleep(pause) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if stopped {
                    break;
                }
            }
        }
    }
    SignalStats::add(&stats.dropped, items);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, protocol: OtlpProtocol) -> OtlpConfig {
        OtlpConfig {
            endpoint: endpoint.into(),
            protocol,
            headers: vec![],
            timeout: Duration::from_secs(1),
            queue_spans: 10,
            metrics_interval: Duration::from_secs(1),
            node_name: None,
            traces_endpoint: None,
            metrics_endpoint: None,
        }
    }

    #[test]
    fn urls_per_protocol() {
        let c = config("http://collector:4318/", OtlpProtocol::Http);
        assert_eq!(
            c.urls(),
            (
                "http://collector:4318/v1/traces".into(),
                "http://collector:4318/v1/metrics".into()
            )
        );
        let c = config("http://collector:4317", OtlpProtocol::Grpc);
        assert_eq!(c.urls().0, "http://collector:4317");
        let mut c = config("", OtlpProtocol::Http);
        c.traces_endpoint = Some("http://t:1/custom".into());
        assert_eq!(
            c.urls(),
            (
                "http://t:1/custom".into(),
                "http://localhost:4318/v1/metrics".into()
            )
        );
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_headers("api-key=abc%20def, x-tenant = t1").expect("headers"),
            vec![
                ("api-key".into(), "abc def".into()),
                ("x-tenant".into(), "t1".into())
            ]
        );
        assert!(parse_headers("").expect("headers").is_empty());
        assert!(parse_headers("novalue").is_err());
        assert!(parse_headers("=v").is_err());
    }

    #[test]
    fn bad_endpoints_are_errors() {
        assert!(Transport::new(&config("not a url", OtlpProtocol::Http)).is_err());
        assert!(Transport::new(&config("ftp://x", OtlpProtocol::Http)).is_err());
        assert!(Transport::new(&config("https://x:4317", OtlpProtocol::Grpc)).is_err());
        let mut c = config("http://x:4318", OtlpProtocol::Http);
        c.headers = vec![("bad header".into(), "v".into())];
        assert!(Transport::new(&c).is_err());
    }
}

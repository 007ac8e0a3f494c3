//! Metrics: the semconv duration histograms, the service graph, bytes per edge, sensitive calls and
//! podtap's own health, kept in one bounded store. Two readers: the Prometheus `/metrics` endpoint and
//! the OTLP metrics exporter (`export::otlp`), both through [`Metrics::snapshot`].

pub mod calls;
pub mod health;
pub mod prometheus;
pub mod service_graph;
pub mod store;

use std::sync::{atomic::Ordering, Arc};

use crate::{app::Summary, model::Call, model::UnixNanos};

/// How a family's values add up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic sum.
    Counter,
    /// A current value.
    Gauge,
    /// Explicit-bucket histogram.
    Histogram,
}

/// The unit of a family (the Prometheus name gets its suffix, OTLP its UCUM code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
    /// A count of things.
    None,
}

impl Unit {
    /// UCUM code for OTLP.
    #[must_use]
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "By",
            Unit::None => "1",
        }
    }
}

/// One metric family at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilySnapshot {
    /// The OpenTelemetry name (`http.server.request.duration`).
    pub otel_name: &'static str,
    /// The Prometheus name without unit or `_total` suffix (`http_server_request_duration`).
    pub prom_name: &'static str,
    pub unit: Unit,
    pub help: &'static str,
    pub kind: Kind,
    pub points: Vec<Point>,
}

/// One series of a family.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// OpenTelemetry attribute names (`http.request.method`); Prometheus labels replace dots with `_`.
    pub attributes: Vec<(&'static str, String)>,
    /// When the series started counting (cumulative temporality).
    pub start_time: UnixNanos,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram {
        count: u64,
        sum: f64,
        /// Upper bounds of the buckets, ascending; the last bucket (+Inf) is implied.
        bounds: &'static [f64],
        /// Count per bucket (not cumulative), `bounds.len() + 1` entries.
        buckets: Vec<u64>,
    },
}

/// The metric store.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: calls::CallFamilies,
    graph: service_graph::ServiceGraph,
    health: health::Health,
}

impl Metrics {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one call.
    pub fn record(&self, call: &Call) {
        let now = crate::model::unix_now();
        self.calls.record(call, now);
        self.graph.record(call, now);
    }

    /// Takes podtap's own counters.
    pub fn health(&self, summary: &Summary) {
        let now = crate::model::unix_now();
        self.health.summary(summary, now);
        let full: Vec<_> = self
            .families()
            .filter_map(|f| {
                let n = f.dropped.load(Ordering::Relaxed);
                (n > 0).then_some((f.desc.prom_name, n))
            })
            .collect();
        for (name, n) in full {
            self.health.series_dropped.set(&[name], n as f64, now);
        }
    }

    /// Takes the OTLP exporter's own counters (one signal at a time).
    pub fn export_stats(&self, stats: &ExportStats) {
        self.health.export(stats, crate::model::unix_now());
    }

    fn families(&self) -> impl Iterator<Item = &store::Family> {
        self.calls
            .families()
            .into_iter()
            .chain(self.graph.families())
            .chain(self.health.families())
    }

    /// Every family, for an exporter. Families without series are left out.
    #[must_use]
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        self.families()
            .filter(|f| !f.is_empty())
            .map(store::Family::snapshot)
            .collect()
    }
}

/// The sink that feeds the store.
pub struct MetricsSink(pub Arc<Metrics>);

impl super::Sink for MetricsSink {
    fn write(&mut self, call: &Call) -> std::io::Result<()> {
        self.0.record(call);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn health(&mut self, summary: &Summary) {
        self.0.health(summary);
    }
}

/// What the OTLP exporter reports about one signal, cumulative since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// `traces` or `metrics`.
    pub signal: &'static str,
    /// Items (spans, data points) the receiver accepted.
    pub exported: u64,
    /// Export requests that failed (each is retried until its items are dropped).
    pub failed_requests: u64,
    /// Items dropped: queue full, or retries exhausted.
    pub dropped: u64,
    /// Items waiting now.
    pub queue_depth: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CallStatus, Endpoint, HttpRequest, HttpResponse, ParsedCall, Protocol, Request, Response,
        Site, Transport,
    };

    fn call(status: u16, client_site: Site, server_site: Site) -> Call {
        let mut client = Endpoint::new([10, 0, 0, 1].into(), 40000);
        client.site = client_site;
        client.process = Some("curl".into());
        let mut server = Endpoint::new([10, 0, 0, 2].into(), 8080);
        server.site = server_site;
        server.service = Some("api".into());
        server.namespace = Some("shop".into());
        let mut call = Call::new(
            ParsedCall {
                protocol: Protocol::Http,
                version: Some("1.1"),
                start: 1_000_000_000,
                end: 1_003_000_000,
                request: Request::Http(HttpRequest {
                    method: "GET".into(),
                    path: "/items/1".into(),
                    host: None,
                }),
                response: Some(Response::Http(HttpResponse { status })),
                status: if status >= 500 {
                    CallStatus::Error
                } else {
                    CallStatus::Ok
                },
            },
            Transport::Tcp,
            client,
            server,
        );
        call.request_bytes = 100;
        call.response_bytes = 2000;
        call
    }

    fn value(snap: &[FamilySnapshot], prom: &str, label: (&str, &str)) -> Option<Value> {
        snap.iter()
            .find(|f| f.prom_name == prom)?
            .points
            .iter()
            .find(|p| {
                p.attributes
                    .iter()
                    .any(|(k, v)| *k == label.0 && v == label.1)
            })
            .map(|p| p.value.clone())
    }

    #[test]
    fn edge_counted_once_by_the_right_node() {
        let m = Metrics::new();
        m.record(&call(200, Site::Local, Site::Local));
        m.record(&call(500, Site::Local, Site::Remote));
        // The server's node reports this one.
        m.record(&call(200, Site::Local, Site::CapturedElsewhere));
        let snap = m.snapshot();
        let total = |prom: &str| -> f64 {
            snap.iter()
                .find(|f| f.prom_name == prom)
                .map(|f| {
                    f.points
                        .iter()
                        .map(|p| match p.value {
                            Value::Counter(v) => v,
                            _ => 0.0,
                        })
                        .sum()
                })
                .unwrap_or(0.0)
        };
        assert_eq!(total("traces_service_graph_request"), 2.0);
        assert_eq!(total("podtap_service_graph_response"), 4000.0);
        assert_eq!(
            value(
                &snap,
                "traces_service_graph_request_failed",
                ("connection_type", "virtual_node")
            ),
            Some(Value::Counter(1.0))
        );
        // Client histogram: three local clients; server histogram: one local server.
        let count = |prom: &str| -> u64 {
            snap.iter()
                .find(|f| f.prom_name == prom)
                .map(|f| {
                    f.points
                        .iter()
                        .map(|p| match p.value {
                            Value::Histogram { count, .. } => count,
                            _ => 0,
                        })
                        .sum()
                })
                .unwrap_or(0)
        };
        assert_eq!(count("http_client_request_duration"), 3);
        assert_eq!(count("http_server_request_duration"), 1);
    }

    #[test]
    fn prometheus_text_has_units_and_totals() {
        let m = Metrics::new();
        m.record(&call(503, Site::Local, Site::Local));
        let text = prometheus::render(&m).expect("render");
        assert!(text.contains("# TYPE http_server_request_duration_seconds histogram"));
        assert!(text.contains("http_server_request_duration_seconds_bucket{le=\"0.005\",http_request_method=\"GET\",http_response_status_code=\"503\",network_protocol_version=\"1.1\",error_type=\"503\",service_name=\"api\",service_namespace=\"shop\",k8s_namespace_name=\"shop\"} 1"), "{text}");
        assert!(text.contains("traces_service_graph_request_failed_total{client=\"curl\",server=\"api\",server_service_namespace=\"shop\"} 1.0"), "{text}");
        assert!(text.contains("podtap_service_graph_request_bytes_total{"));
        assert!(text.ends_with("# EOF\n"));
        let classic = prometheus::to_text_004(&text);
        assert!(classic.contains("# HELP traces_service_graph_request_failed_total Failed"));
        assert!(classic.contains("# TYPE traces_service_graph_request_failed_total counter\n"));
        assert!(!classic.contains("# UNIT") && !classic.contains("# EOF"));
    }

    /// The cost of `record` for an HTTP call with both ends on this node (the common case: 2 semconv
    /// histograms, 4 service-graph families). `cargo test --release -p podtap record_cost -- --nocapture`.
    #[test]
    fn record_cost() {
        let m = Metrics::new();
        let calls: Vec<Call> = (0..64)
            .map(|i| call(200 + (i % 3) * 100, Site::Local, Site::Local))
            .collect();
        let n = 200_000;
        let start = std::time::Instant::now();
        for i in 0..n {
            m.record(&calls[i % calls.len()]);
        }
        let per_call = start.elapsed().as_nanos() as f64 / n as f64;
        eprintln!("Metrics::record: {per_call:.0} ns per call");
        assert!(per_call < 100_000.0, "{per_call} ns per call");
    }
}

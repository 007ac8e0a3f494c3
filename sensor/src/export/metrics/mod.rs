//! Metrics: the semconv duration histograms, the service graph, bytes per edge, sensitive calls and
//! podtap's own health, kept in one bounded store. Two readers: the Prometheus `/metrics` endpoint and
//! the OTLP metrics exporter (`export::otlp`), both through [`Metrics::snapshot`].

use std::sync::Arc;

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
pub struct Metrics {}

impl Metrics {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one call.
    pub fn record(&self, _call: &Call) {}

    /// Takes podtap's own counters.
    pub fn health(&self, _summary: &Summary) {}

    /// Takes the OTLP exporter's own counters (one signal at a time).
    pub fn export_stats(&self, _stats: &ExportStats) {}

    /// Every family, for an exporter.
    #[must_use]
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        Vec::new()
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

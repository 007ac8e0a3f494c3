//! The Prometheus side: the store's snapshot encoded by `prometheus-client` (OpenMetrics text, units
//! and `_total` as Prometheus expects, attribute dots as `_`), served on `GET /metrics` by axum on the
//! I/O runtime.

use std::{fmt, net::SocketAddr, sync::Arc};

use axum::{extract::State, http::header, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::{Registry, Unit as PromUnit},
};

use super::{FamilySnapshot, Kind, Metrics, Unit, Value};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("--metrics-listen {0:?}: expected ADDR:PORT (e.g. 127.0.0.1:9464) or `off`")]
    BadAddress(String),
    #[error("cannot listen on {addr} for /metrics: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `off` is none; anything else must be an address with a port.
///
/// # Errors
/// Not an `ADDR:PORT`.
pub fn parse_listen(text: &str) -> Result<Option<SocketAddr>, MetricsServerError> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| MetricsServerError::BadAddress(text.to_owned()))
}

/// The collector that hands the store's snapshot to `prometheus-client` at each scrape.
#[derive(Debug)]
struct StoreCollector(Arc<Metrics>);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for family in self.0.snapshot() {
            encode_family(&family, &mut encoder)?;
        }
        Ok(())
    }
}

fn encode_family(family: &FamilySnapshot, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let unit = match family.unit {
        Unit::Seconds => Some(PromUnit::Seconds),
        Unit::Bytes => Some(PromUnit::Bytes),
        Unit::None => None,
    };
    let kind = match family.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    let mut metric =
        encoder.encode_descriptor(family.prom_name, family.help, unit.as_ref(), kind)?;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for point in &family.points {
        let labels: Vec<(String, &str)> = point
            .attributes
            .iter()
            .map(|(k, v)| (k.replace('.', "_"), v.as_str()))
            .collect();
        let mut series = metric.encode_family(&labels)?;
        match &point.value {
            Value::Counter(v) => series.encode_counter::<NoLabelSet, _, f64>(v, None)?,
            Value::Gauge(v) => series.encode_gauge(v)?,
            Value::Histogram {
                count,
                sum,
                bounds,
                buckets: counts,
            } => {
                buckets.clear();
                buckets.extend(
                    bounds
                        .iter()
                        .copied()
                        .chain([f64::INFINITY])
                        .zip(counts.iter().copied()),
                );
                series.encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?;
            }
        }
    }
    Ok(())
}

/// The exposition text of the store now.
///
/// # Errors
/// Only if formatting fails (it writes to a `String`).
pub fn render(metrics: &Arc<Metrics>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreCollector(Arc::clone(metrics))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The same exposition in the classic Prometheus text format (0.0.4), for readers that do not speak
/// OpenMetrics (`promtool check metrics`, curl): a counter family is named with its `_total`, and
/// there are no `# UNIT` or `# EOF` lines.
#[must_use]
pub fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(previous) = help.replace(rest) {
                out.push_str("# HELP ");
                out.push_str(previous);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let counter = rest.strip_suffix(" counter");
            if let Some(h) = help.take() {
                out.push_str("# HELP ");
                match (counter, h.split_once(' ')) {
                    (Some(_), Some((name, text))) => {
                        out.push_str(name);
                        out.push_str("_total ");
                        out.push_str(text);
                    }
                    _ => out.push_str(h),
                }
                out.push('\n');
            }
            match counter {
                Some(name) => {
                    out.push_str("# TYPE ");
                    out.push_str(name);
                    out.push_str("_total counter");
                }
                None => out.push_str(line),
            }
            out.push('\n');
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn scrape(
    State(metrics): State<Arc<Metrics>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    // Prometheus asks for OpenMetrics; anything else gets the classic text format.
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    match render(&metrics) {
        Ok(text) if openmetrics => (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], text),
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT_004)],
            to_text_004(&text),
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "encoding failed\n".to_owned(),
        ),
    }
}

/// Binds `addr` now (a taken port is a start-up error) and serves `/metrics` on `runtime`; returns
/// the bound address (the real port when given port 0).
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    runtime: &tokio::runtime::Handle,
) -> Result<SocketAddr, MetricsServerError> {
    let bind_error = |source| MetricsServerError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(bind_error)?
    };
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            log::error!("metrics endpoint stopped: {error}");
        }
    });
    Ok(local)
}

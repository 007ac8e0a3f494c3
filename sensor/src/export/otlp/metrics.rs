//! The metric store's snapshot as an OTLP metrics request: cumulative temporality, counters as
//! monotonic sums, gauges, explicit-bucket histograms; one resource, podtap itself.

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::InstrumentationScope,
    metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    },
    resource::v1::Resource,
};

use super::resource::{int, string};
use crate::{
    export::metrics::{FamilySnapshot, Kind, Point, Value},
    model::UnixNanos,
};

/// The request for `families` at `now`, and how many data points it carries.
pub(crate) fn request(
    families: &[FamilySnapshot],
    resource: Resource,
    now: UnixNanos,
) -> (ExportMetricsServiceRequest, usize) {
    let mut points = 0;
    let metrics: Vec<Metric> = families
        .iter()
        .filter_map(|family| {
            let metric = metric(family, now)?;
            points += data_points(&metric);
            Some(metric)
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope_of_podtap()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (request, points)
}

fn data_points(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Sum(sum)) => sum.data_points.len(),
        Some(Data::Gauge(gauge)) => gauge.data_points.len(),
        Some(Data::Histogram(histogram)) => histogram.data_points.len(),
        _ => 0,
    }
}

/// One family; `None` when it has no point of its own kind.
fn metric(family: &FamilySnapshot, now: UnixNanos) -> Option<Metric> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match family.kind {
        Kind::Counter => Data::Sum(Sum {
            data_points: numbers(&family.points, now, |v| match v {
                Value::Counter(x) => Some(*x),
                _ => None,
            }),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Gauge => Data::Gauge(Gauge {
            data_points: numbers(&family.points, now, |v| match v {
                Value::Gauge(x) => Some(*x),
                _ => None,
            }),
        }),
        Kind::Histogram => Data::Histogram(Histogram {
            data_points: family
                .points
                .iter()
                .filter_map(|point| histogram_point(point, now))
                .collect(),
            aggregation_temporality: cumulative,
        }),
    };
    let metric = Metric {
        name: family.otel_name.to_owned(),
        description: family.help.to_owned(),
        unit: family.unit.ucum().to_owned(),
        data: Some(data),
        ..Default::default()
    };
    (data_points(&metric) > 0).then_some(metric)
}

/// Attributes the conventions type as integers (the store keeps every label as text).
const INT_ATTRIBUTES: &[&str] = &["http.response.status_code", "server.port"];

fn attributes(point: &Point) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
    point
        .attributes
        .iter()
        .map(|(key, value)| match value.parse::<i64>() {
            Ok(number) if INT_ATTRIBUTES.contains(key) => int(key, number),
            _ => string(key, value.clone()),
        })
        .collect()
}

fn numbers(
    points: &[Point],
    now: UnixNanos,
    value: impl Fn(&Value) -> Option<f64>,
) -> Vec<NumberDataPoint> {
    points
        .iter()
        .filter_map(|point| {
            Some(NumberDataPoint {
                attributes: attributes(point),
                start_time_unix_nano: point.start_time,
                time_unix_nano: now,
                value: Some(number_data_point::Value::AsDouble(value(&point.value)?)),
                ..Default::default()
            })
        })
        .collect()
}

fn histogram_point(point: &Point, now: UnixNanos) -> Option<HistogramDataPoint> {
    let Value::Histogram {
        count,
        sum,
        bounds,
        buckets,
    } = &point.value
    else {
        return None;
    };
    // A point whose buckets do not fit its bounds would be rejected by the receiver.
    if buckets.len() != bounds.len() + 1 {
        return None;
    }
    Some(HistogramDataPoint {
        attributes: attributes(point),
        start_time_unix_nano: point.start_time,
        time_unix_nano: now,
        count: *count,
        sum: Some(*sum),
        bucket_counts: buckets.clone(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    })
}

/// The instrumentation scope of everything podtap exports.
pub(crate) fn scope_of_podtap() -> InstrumentationScope {
    InstrumentationScope {
        name: "podtap".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::metrics::Unit;

    const BOUNDS: &[f64] = &[0.005, 0.01, 0.1];

    fn families() -> Vec<FamilySnapshot> {
        vec![
            FamilySnapshot {
                otel_name: "http.server.request.duration",
                prom_name: "http_server_request_duration",
                unit: Unit::Seconds,
                help: "Duration of HTTP server requests.",
                kind: Kind::Histogram,
                points: vec![Point {
                    attributes: vec![("http.request.method", "GET".into())],
                    start_time: 10,
                    value: Value::Histogram {
                        count: 3,
                        sum: 0.05,
                        bounds: BOUNDS,
                        buckets: vec![1, 1, 1, 0],
                    },
                }],
            },
            FamilySnapshot {
                otel_name: "podtap.events",
                prom_name: "podtap_events",
                unit: Unit::None,
                help: "Events read.",
                kind: Kind::Counter,
                points: vec![
                    Point {
                        attributes: vec![],
                        start_time: 10,
                        value: Value::Counter(7.0),
                    },
                    // Wrong kind of value for the family: left out.
                    Point {
                        attributes: vec![],
                        start_time: 10,
                        value: Value::Gauge(1.0),
                    },
                ],
            },
            FamilySnapshot {
                otel_name: "podtap.connections",
                prom_name: "podtap_connections",
                unit: Unit::None,
                help: "Connections tracked.",
                kind: Kind::Gauge,
                points: vec![Point {
                    attributes: vec![("state", "open".into())],
                    start_time: 10,
                    value: Value::Gauge(4.0),
                }],
            },
            // No points: no metric.
            FamilySnapshot {
                otel_name: "podtap.empty",
                prom_name: "podtap_empty",
                unit: Unit::Bytes,
                help: "",
                kind: Kind::Counter,
                points: vec![],
            },
        ]
    }

    #[test]
    fn snapshot_to_request() {
        let (request, points) = request(&families(), Resource::default(), 99);
        assert_eq!(points, 3);
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let histogram = &metrics[0];
        assert_eq!(histogram.name, "http.server.request.duration");
        assert_eq!(histogram.unit, "s");
        let Some(Data::Histogram(h)) = &histogram.data else {
            panic!("not a histogram: {histogram:?}")
        };
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum), (3, Some(0.05)));
        assert_eq!(p.bucket_counts, vec![1, 1, 1, 0]);
        assert_eq!(p.explicit_bounds, BOUNDS.to_vec());
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (10, 99));
        assert_eq!(p.attributes[0].key, "http.request.method");
        let Some(Data::Sum(sum)) = &metrics[1].data else {
            panic!("not a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(7.0))
        );
        assert_eq!(metrics[1].unit, "1");
        let Some(Data::Gauge(gauge)) = &metrics[2].data else {
            panic!("not a gauge")
        };
        assert_eq!(
            gauge.data_points[0].value,
            Some(number_data_point::Value::AsDouble(4.0))
        );
    }

    #[test]
    fn mismatched_buckets_are_left_out() {
        let mut f = families();
        if let Value::Histogram { buckets, .. } = &mut f[0].points[0].value {
            buckets.pop();
        }
        let (request, points) = request(&f[..1], Resource::default(), 1);
        assert_eq!(points, 0);
        assert!(request.resource_metrics[0].scope_metrics[0]
            .metrics
            .is_empty());
    }
}

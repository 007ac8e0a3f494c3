//! The service graph in the names Tempo's metrics-generator writes and Grafana's service map reads,
//! plus bytes per edge. Each edge is counted once across the cluster: by the node of the server when
//! podtap captures it there, else by the client's node; never by a node that sees only the client of
//! a server another podtap reports.

use std::borrow::Cow;

use super::store::{Desc, Family};
use super::{Kind, Unit};
use crate::model::{Call, CallStatus, Endpoint, Protocol, Site, UnixNanos};

/// Tempo's default service-graph histogram buckets (seconds).
pub const BOUNDS: &[f64] = &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];

const LABELS: &[&str] = &[
    "client",
    "server",
    "client_service_namespace",
    "server_service_namespace",
    "connection_type",
];

/// A family of the graph: every one has the edge labels; histograms Tempo's buckets.
const fn desc(
    otel_name: &'static str,
    prom_name: &'static str,
    unit: Unit,
    kind: Kind,
    help: &'static str,
) -> Desc {
    let desc = Desc::new(otel_name, prom_name, unit, kind, LABELS, help);
    if matches!(kind, Kind::Histogram) {
        desc.with_bounds(BOUNDS)
    } else {
        desc
    }
}

#[derive(Debug)]
pub struct ServiceGraph {
    total: Family,
    failed: Family,
    server_seconds: Family,
    client_seconds: Family,
    request_bytes: Family,
    response_bytes: Family,
}

impl Default for ServiceGraph {
    fn default() -> Self {
        Self {
            total: Family::new(desc(
                "traces_service_graph_request_total",
                "traces_service_graph_request",
                Unit::None,
                Kind::Counter,
                "Requests between two nodes of the service graph.",
            )),
            failed: Family::new(desc(
                "traces_service_graph_request_failed_total",
                "traces_service_graph_request_failed",
                Unit::None,
                Kind::Counter,
                "Failed requests between two nodes of the service graph.",
            )),
            server_seconds: Family::new(desc(
                "traces_service_graph_request_server_seconds",
                "traces_service_graph_request_server",
                Unit::Seconds,
                Kind::Histogram,
                "Request duration between two nodes, as seen from the server.",
            )),
            client_seconds: Family::new(desc(
                "traces_service_graph_request_client_seconds",
                "traces_service_graph_request_client",
                Unit::Seconds,
                Kind::Histogram,
                "Request duration between two nodes, as seen from the client.",
            )),
            request_bytes: Family::new(desc(
                "podtap.service_graph.request.bytes",
                "podtap_service_graph_request",
                Unit::Bytes,
                Kind::Counter,
                "Bytes clients sent to servers, per service-graph edge.",
            )),
            response_bytes: Family::new(desc(
                "podtap.service_graph.response.bytes",
                "podtap_service_graph_response",
                Unit::Bytes,
                Kind::Counter,
                "Bytes servers sent back to clients, per service-graph edge.",
            )),
        }
    }
}

/// The node name of an end: its service, else pod, else process, else address.
fn name(end: &Endpoint) -> Cow<'_, str> {
    end.service
        .as_deref()
        .or(end.pod.as_deref())
        .or(end.process.as_deref())
        .map_or_else(|| Cow::Owned(end.ip.to_string()), Cow::Borrowed)
}

fn service_namespace(end: &Endpoint) -> &str {
    end.meta
        .as_deref()
        .map(|m| m.service_namespace.as_str())
        .filter(|s| !s.is_empty())
        .or(end.namespace.as_deref())
        .unwrap_or("")
}

/// Whether this node counts the edge of `call`.
#[must_use]
pub fn counted_here(call: &Call) -> bool {
    match call.server.site {
        Site::Local => true,
        Site::Remote => call.client.site == Site::Local,
        Site::CapturedElsewhere => false,
    }
}

impl ServiceGraph {
    pub fn families(&self) -> [&Family; 6] {
        [
            &self.total,
            &self.failed,
            &self.server_seconds,
            &self.client_seconds,
            &self.request_bytes,
            &self.response_bytes,
        ]
    }

    pub fn record(&self, call: &Call, now: UnixNanos) {
        if !counted_here(call) {
            return;
        }
        let connection_type = match call.protocol {
            Protocol::Redis => "database",
            Protocol::Kafka | Protocol::Amqp => "messaging_system",
            _ if call.server.site != Site::Local || call.client.site != Site::Local => {
                "virtual_node"
            }
            _ => "",
        };
        let client = name(&call.client);
        let server = name(&call.server);
        let labels = [
            &client,
            &server,
            service_namespace(&call.client),
            service_namespace(&call.server),
            connection_type,
        ];
        self.total.add(&labels, 1.0, now);
        if call.status == CallStatus::Error {
            self.failed.add(&labels, 1.0, now);
        }
        if let Some(ms) = call.duration_ms {
            let seconds = ms / 1e3;
            // Each side's histogram only for an end this node sees (a virtual node has no view).
            if call.server.site == Site::Local {
                self.server_seconds.observe(&labels, seconds, now);
            }
            if call.client.site == Site::Local {
                self.client_seconds.observe(&labels, seconds, now);
            }
        }
        if call.request_bytes > 0 {
            self.request_bytes
                .add(&labels, call.request_bytes as f64, now);
        }
        if call.response_bytes > 0 {
            self.response_bytes
                .add(&labels, call.response_bytes as f64, now);
        }
    }
}

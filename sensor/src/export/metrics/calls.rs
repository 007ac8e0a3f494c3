//! The OpenTelemetry semantic-convention duration histograms of each call, recorded for the end(s) of
//! the call on this node, and the sensitive-calls counter. Only low-cardinality attributes: method,
//! status, protocol version, operation names, `error.type` and the local end's service and namespace;
//! never paths, query text or peer addresses.

use super::store::{Desc, Family};
use super::{Kind, Unit};
use crate::model::{Call, CallStatus, Endpoint, Request, Response, Site, UnixNanos};

/// Semconv advice for HTTP, RPC, messaging and DNS durations (seconds).
pub const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Semconv advice for `db.client.operation.duration`.
pub const DB_BOUNDS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

const LOCAL: [&str; 3] = ["service.name", "service.namespace", "k8s.namespace.name"];

const fn hist(
    otel_name: &'static str,
    prom_name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
) -> Desc {
    Desc::new(
        otel_name,
        prom_name,
        Unit::Seconds,
        Kind::Histogram,
        labels,
        help,
    )
    .with_bounds(bounds)
}

const HTTP_LABELS: &[&str] = &[
    "http.request.method",
    "http.response.status_code",
    "network.protocol.version",
    "error.type",
    LOCAL[0],
    LOCAL[1],
    LOCAL[2],
];
const RPC_LABELS: &[&str] = &[
    "rpc.system.name",
    "rpc.method",
    "rpc.response.status_code",
    "error.type",
    LOCAL[0],
    LOCAL[1],
    LOCAL[2],
];
const DB_LABELS: &[&str] = &[
    "db.system.name",
    "db.operation.name",
    "error.type",
    LOCAL[0],
    LOCAL[1],
    LOCAL[2],
];
const MESSAGING_LABELS: &[&str] = &[
    "messaging.system",
    "messaging.operation.name",
    "error.type",
    LOCAL[0],
    LOCAL[1],
    LOCAL[2],
];
const DNS_LABELS: &[&str] = &["error.type", LOCAL[0], LOCAL[1], LOCAL[2]];

/// `podtap_sensitive_calls_total` labels: the category, how it went, and the calling pod.
const SENSITIVE_LABELS: &[&str] = &["category", "outcome", "namespace", "pod"];

/// The families fed by each call.
#[derive(Debug)]
pub struct CallFamilies {
    http_server: Family,
    http_client: Family,
    rpc_server: Family,
    rpc_client: Family,
    db_client: Family,
    messaging_client: Family,
    dns_lookup: Family,
    sensitive: Family,
}

impl Default for CallFamilies {
    fn default() -> Self {
        Self {
            http_server: Family::new(hist(
                "http.server.request.duration",
                "http_server_request_duration",
                "Duration of HTTP server requests, as the server's node saw them.",
                HTTP_LABELS,
                DURATION_BOUNDS,
            )),
            http_client: Family::new(hist(
                "http.client.request.duration",
                "http_client_request_duration",
                "Duration of HTTP client requests, as the client's node saw them.",
                HTTP_LABELS,
                DURATION_BOUNDS,
            )),
            rpc_server: Family::new(hist(
                "rpc.server.call.duration",
                "rpc_server_call_duration",
                "Duration of gRPC calls on the server side.",
                RPC_LABELS,
                DURATION_BOUNDS,
            )),
            rpc_client: Family::new(hist(
                "rpc.client.call.duration",
                "rpc_client_call_duration",
                "Duration of gRPC calls on the client side.",
                RPC_LABELS,
                DURATION_BOUNDS,
            )),
            db_client: Family::new(hist(
                "db.client.operation.duration",
                "db_client_operation_duration",
                "Duration of database (Redis) operations on the client side.",
                DB_LABELS,
                DB_BOUNDS,
            )),
            messaging_client: Family::new(hist(
                "messaging.client.operation.duration",
                "messaging_client_operation_duration",
                "Duration of messaging (Kafka, AMQP) operations on the client side.",
                MESSAGING_LABELS,
                DURATION_BOUNDS,
            )),
            dns_lookup: Family::new(hist(
                "dns.lookup.duration",
                "dns_lookup_duration",
                "Duration of DNS lookups on the client side.",
                DNS_LABELS,
                DURATION_BOUNDS,
            )),
            sensitive: Family::new(Desc::new(
                "podtap.sensitive.calls",
                "podtap_sensitive_calls",
                Unit::None,
                Kind::Counter,
                SENSITIVE_LABELS,
                "Calls to cloud metadata services and Kubernetes Secret reads, by category, \
                 outcome (ok, denied, error, no_response) and calling pod.",
            )),
        }
    }
}

/// gRPC status code names, by number.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The methods semconv names; anything else is `_OTHER` (a method is client-chosen text).
fn http_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            method
        }
        _ => "_OTHER",
    }
}

/// Small integers as label text without allocating.
fn small_number(n: u64, buf: &mut itoa_buf::Buf) -> &str {
    buf.format(n)
}

mod itoa_buf {
    /// A stack buffer for a decimal number.
    pub struct Buf([u8; 20], usize);

    impl Buf {
        pub fn new() -> Self {
            Self([0; 20], 20)
        }

        pub fn format(&mut self, mut n: u64) -> &str {
            self.1 = 20;
            loop {
                self.1 -= 1;
                self.0[self.1] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            std::str::from_utf8(&self.0[self.1..]).unwrap_or("")
        }
    }
}

/// The service, service namespace and namespace of a local end.
fn local_attrs(end: &Endpoint) -> [&str; 3] {
    let service = end
        .service
        .as_deref()
        .or(end.pod.as_deref())
        .or(end.process.as_deref())
        .unwrap_or("");
    let service_ns = end
        .meta
        .as_deref()
        .map(|m| m.service_namespace.as_str())
        .filter(|s| !s.is_empty())
        .or(end.namespace.as_deref())
        .unwrap_or("");
    [service, service_ns, end.namespace.as_deref().unwrap_or("")]
}

impl CallFamilies {
    pub fn families(&self) -> [&Family; 8] {
        [
            &self.http_server,
            &self.http_client,
            &self.rpc_server,
            &self.rpc_client,
            &self.db_client,
            &self.messaging_client,
            &self.dns_lookup,
            &self.sensitive,
        ]
    }

    /// Records the call's durations for its local end(s), and its sensitivity.
    pub fn record(&self, call: &Call, now: UnixNanos) {
        if let Some(category) = call.sensitive {
            let pod = call
                .client
                .pod
                .as_deref()
                .or(call.client.pod_uid.as_deref())
                .unwrap_or("");
            let ns = call.client.namespace.as_deref().unwrap_or("");
            self.sensitive
                .add(&[category.as_str(), outcome(call), ns, pod], 1.0, now);
        }
        // A call without a response has no duration to record.
        let Some(ms) = call.duration_ms else {
            return;
        };
        let seconds = ms / 1e3;
        let client = call.client.site == Site::Local;
        let server = call.server.site == Site::Local;
        let mut num = itoa_buf::Buf::new();
        let error = call.status == CallStatus::Error;
        match (&call.request, &call.response) {
            (Request::Http(req), response) => {
                let status = match response {
                    Some(Response::Http(r)) => r.status,
                    _ => 0,
                };
                let status_text = if status == 0 {
                    ""
                } else {
                    small_number(u64::from(status), &mut num)
                };
                let method = http_method(&req.method);
                let version = call.version.unwrap_or("");
                if server {
                    // 4xx is the client's fault: not a server error.
                    let e = if status >= 500 { status_text } else { "" };
                    let [s, sn, ns] = local_attrs(&call.server);
                    self.http_server.observe(
                        &[method, status_text, version, e, s, sn, ns],
                        seconds,
                        now,
                    );
                }
                if client {
                    let e = if status >= 400 { status_text } else { "" };
                    let [s, sn, ns] = local_attrs(&call.client);
                    self.http_client.observe(
                        &[method, status_text, version, e, s, sn, ns],
                        seconds,
                        now,
                    );
                }
            }
            (Request::Grpc(req), response) => {
                let code = match response {
                    Some(Response::Grpc(r)) => r.grpc_status,
                    _ => None,
                };
                let code_name = code.map_or("", |c| {
                    GRPC_CODES.get(c as usize).copied().unwrap_or("UNKNOWN")
                });
                let e = if error { code_name } else { "" };
                let method = req.method.strip_prefix('/').unwrap_or(&req.method);
                for (local, end, family) in [
                    (server, &call.server, &self.rpc_server),
                    (client, &call.client, &self.rpc_client),
                ] {
                    if local {
                        let [s, sn, ns] = local_attrs(end);
                        family.observe(&["grpc", method, code_name, e, s, sn, ns], seconds, now);
                    }
                }
            }
            (Request::Redis(req), response) if client => {
                let e = match response {
                    Some(Response::Redis(r)) => r.error.as_deref().map_or("", |m| {
                        // The error's code word (`ERR`, `WRONGTYPE`), not its free text.
                        m.split_whitespace().next().unwrap_or("")
                    }),
                    _ => "",
                };
                let [s, sn, ns] = local_attrs(&call.client);
                self.db_client
                    .observe(&["redis", &req.command, e, s, sn, ns], seconds, now);
            }
            (Request::Kafka(req), response) if client => {
                let e = match response {
                    Some(Response::Kafka(r)) => match r.error_code {
                        Some(c) if c != 0 => small_number(u64::from(c.unsigned_abs()), &mut num),
                        _ => "",
                    },
                    _ => "",
                };
                let [s, sn, ns] = local_attrs(&call.client);
                self.messaging_client
                    .observe(&["kafka", &req.api, e, s, sn, ns], seconds, now);
            }
            (Request::Amqp(req), response) if client => {
                let e = match response {
                    Some(Response::Amqp(r)) if error => r
                        .reply_code
                        .map_or("error", |c| small_number(u64::from(c), &mut num)),
                    _ => "",
                };
                let [s, sn, ns] = local_attrs(&call.client);
                self.messaging_client.observe(
                    &["rabbitmq", &req.method, e, s, sn, ns],
                    seconds,
                    now,
                );
            }
            (Request::Dns(_), response) if client => {
                let e = match response {
                    Some(Response::Dns(r)) if r.rcode != "NOERROR" => r.rcode.as_str(),
                    _ => "",
                };
                let [s, sn, ns] = local_attrs(&call.client);
                self.dns_lookup.observe(&[e, s, sn, ns], seconds, now);
            }
            _ => {}
        }
    }
}

/// The `outcome` label of a sensitive call: `ok`, `denied` (HTTP 401/403, gRPC UNAUTHENTICATED /
/// PERMISSION_DENIED), `error` (any other failure: 4xx, 5xx, a gRPC error) or `no_response`.
#[must_use]
pub fn outcome(call: &Call) -> &'static str {
    match &call.response {
        None => "no_response",
        Some(Response::Http(r)) => match r.status {
            401 | 403 => "denied",
            s if s >= 400 => "error",
            _ => "ok",
        },
        Some(Response::Grpc(r)) => match (r.grpc_status, r.status) {
            (Some(16 | 7), _) | (_, Some(401 | 403)) => "denied",
            (Some(0), _) | (None, Some(200)) => "ok",
            _ => "error",
        },
        Some(_) if call.status == CallStatus::Error => "error",
        Some(_) => "ok",
    }
}

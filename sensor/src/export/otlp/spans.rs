//! Calls to spans (DESIGN.md, "Spans"): a client span on the client's resource when the client runs on
//! this node, a server span on the server's when the server does; both in one trace, the server span
//! a child of the client span. Names, attributes and status follow the OpenTelemetry semantic
//! conventions of each protocol. Bodies, query strings and argument values never leave.

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    resource::v1::Resource,
    trace::v1::{span::SpanKind, status::StatusCode, Span, Status},
};

use super::resource::{self, int, string, strings};
use crate::model::{
    AmqpRequest, Call, CallStatus, DnsRequest, Endpoint, GrpcRequest, HttpRequest, KafkaRequest,
    RedisRequest, Request, Response, Site, Transport,
};

/// Which end a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

/// The spans of one call, each with its resource.
pub(crate) fn of_call(call: &Call, node: Option<&str>) -> Vec<(Resource, Span)> {
    let client_local = call.client.site == Site::Local;
    // DNS: the resolver's side is not a span of its own (DESIGN.md: a client span).
    let server_local =
        call.server.site == Site::Local && call.protocol != crate::model::Protocol::Dns;
    if !client_local && !server_local {
        return Vec::new();
    }
    let trace_id = random_id::<16>();
    let start = call.time;
    let end = call
        .duration_ms
        .map_or(start, |ms| start.saturating_add((ms * 1e6).max(0.0) as u64));
    let mut spans = Vec::with_capacity(2);
    let mut client_span_id = Vec::new();
    if client_local {
        let span = span(call, End::Client, trace_id.clone(), Vec::new(), start, end);
        client_span_id.clone_from(&span.span_id);
        spans.push((resource::of_endpoint(&call.client, node), span));
    }
    if server_local {
        let span = span(call, End::Server, trace_id, client_span_id, start, end);
        spans.push((resource::of_endpoint(&call.server, node), span));
    }
    spans
}

/// A random non-zero id of N bytes.
fn random_id<const N: usize>() -> Vec<u8> {
    loop {
        let mut id = [0u8; N];
        fastrand::fill(&mut id);
        if id.iter().any(|b| *b != 0) {
            return id.to_vec();
        }
    }
}

/// What a protocol says about one span.
struct Shape {
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    /// `Some(message)`: an error.
    error: Option<String>,
}

fn span(
    call: &Call,
    end: End,
    trace_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    start: u64,
    finish: u64,
) -> Span {
    let mut shape = match &call.request {
        Request::Http(request) => http(call, request, end),
        Request::Grpc(request) => grpc(call, request, end),
        Request::Dns(request) => dns(call, request),
        Request::Redis(request) => redis(call, request, end),
        Request::Kafka(request) => kafka(call, request, end),
        Request::Amqp(request) => amqp(call, request, end),
    };
    network(call, end, &mut shape.attributes);
    if let Some(category) = call.sensitive {
        shape
            .attributes
            .push(string("podtap.sensitive.category", category.as_str()));
    }
    if call.status == CallStatus::NoResponse {
        shape.error = Some("no response".to_owned());
        shape.attributes.push(string("error.type", "no_response"));
    }
    let status = match shape.error {
        Some(message) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status::default(),
    };
    Span {
        trace_id,
        span_id: random_id::<8>(),
        parent_span_id,
        name: shape.name,
        kind: shape.kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: finish,
        attributes: shape.attributes,
        status: Some(status),
        ..Default::default()
    }
}

/// The peer of a span's end: the server for a client span, the client for a server span.
fn network(call: &Call, end: End, attributes: &mut Vec<KeyValue>) {
    let transport = match call.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    attributes.push(string("network.transport", transport));
    match end {
        End::Client => {
            attributes.push(string("network.peer.address", call.server.ip.to_string()));
            attributes.push(int("network.peer.port", i64::from(call.server.port)));
            if !attributes.iter().any(|kv| kv.key == "server.address") {
                attributes.push(string("server.address", call.server.ip.to_string()));
                attributes.push(int("server.port", i64::from(call.server.port)));
            }
            if let Some(peer) = peer_service(&call.server) {
                attributes.push(string("peer.service", peer));
            }
        }
        End::Server => {
            attributes.push(string("network.peer.address", call.client.ip.to_string()));
            attributes.push(int("network.peer.port", i64::from(call.client.port)));
            attributes.push(string("client.address", call.client.ip.to_string()));
            attributes.push(int("client.port", i64::from(call.client.port)));
        }
    }
}

/// The name Tempo gives the other end of a client span.
fn peer_service(server: &Endpoint) -> Option<String> {
    server
        .meta
        .as_ref()
        .map(|m| m.service_name.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| server.service.clone())
        .or_else(|| server.pod.clone())
}

/// `host[:port]` of a Host header or `:authority` into `server.address` / `server.port`.
fn host_attributes(host: &str, default_port: u16, attributes: &mut Vec<KeyValue>) {
    let (name, port) = split_host(host);
    if name.is_empty() {
        return;
    }
    attributes.push(string("server.address", name));
    attributes.push(int("server.port", i64::from(port.unwrap_or(default_port))));
}

fn split_host(host: &str) -> (&str, Option<u16>) {
    // `[v6]:port`, `name:port`, `name`, bare v6.
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((addr, tail)) = rest.split_once(']') {
            return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (host, None),
        },
        _ => (host, None),
    }
}

fn http(call: &Call, request: &HttpRequest, end: End) -> Shape {
    let mut attributes = Vec::with_capacity(14);
    let method = request.method.as_str();
    if !method.is_empty() {
        attributes.push(string("http.request.method", known_method(method)));
        if known_method(method) != method {
            attributes.push(string("http.request.method_original", method));
        }
    }
    if !request.path.is_empty() {
        // The query string may carry credentials: never exported.
        let path = request.path.split(['?', '#']).next().unwrap_or_default();
        attributes.push(string("url.path", path));
    }
    attributes.push(string(
        "url.scheme",
        if call.tls { "https" } else { "http" },
    ));
    if let Some(version) = call.version {
        attributes.push(string("network.protocol.name", "http"));
        attributes.push(string("network.protocol.version", version));
    }
    match (end, &request.host) {
        (End::Client, Some(host)) => host_attributes(host, call.server.port, &mut attributes),
        (End::Server, Some(host)) => {
            let (name, _) = split_host(host);
            if !name.is_empty() {
                attributes.push(string("server.address", name));
            }
            attributes.push(int("server.port", i64::from(call.server.port)));
        }
        (End::Server, None) => {
            attributes.push(string("server.address", call.server.ip.to_string()));
            attributes.push(int("server.port", i64::from(call.server.port)));
        }
        (End::Client, None) => {}
    }
    let mut error = None;
    if let Some(Response::Http(response)) = &call.response {
        attributes.push(int("http.response.status_code", i64::from(response.status)));
        // 5xx: an error on both ends; 4xx: the client's error only.
        if response.status >= 500 || (end == End::Client && response.status >= 400) {
            attributes.push(string("error.type", response.status.to_string()));
            error = Some(format!("HTTP {}", response.status));
        }
    }
    Shape {
        name: if method.is_empty() {
            "HTTP".to_owned()
        } else {
            known_method(method).to_owned()
        },
        kind: kind(end),
        attributes,
        error,
    }
}

/// The method, or `_OTHER` for methods the conventions do not know (no unbounded span names).
fn known_method(method: &str) -> &str {
    match method {
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
        | "QUERY" => method,
        _ => "_OTHER",
    }
}

fn kind(end: End) -> SpanKind {
    match end {
        End::Client => SpanKind::Client,
        End::Server => SpanKind::Server,
    }
}

/// gRPC status codes by number.
pub(crate) fn grpc_code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn grpc(call: &Call, request: &GrpcRequest, end: End) -> Shape {
    let mut attributes = Vec::with_capacity(12);
    attributes.push(string("rpc.system.name", "grpc"));
    // Older conventions, still what many back ends read.
    attributes.push(string("rpc.system", "grpc"));
    let method = request.method.trim_start_matches('/');
    if !method.is_empty() {
        attributes.push(string("rpc.method", method));
        if let Some((service, short)) = method.rsplit_once('/') {
            attributes.push(string("rpc.service", service));
            attributes.push(string("rpc.method_name", short));
        }
    }
    if let (End::Client, Some(authority)) = (end, &request.authority) {
        host_attributes(authority, call.server.port, &mut attributes);
    }
    let mut error = None;
    let grpc_status = match &call.response {
        Some(Response::Grpc(response)) => response.grpc_status,
        _ => None,
    };
    if let Some(code) = grpc_status {
        let name = grpc_code_name(code);
        attributes.push(string("rpc.status_code", name));
        attributes.push(int("rpc.grpc.status_code", i64::from(code)));
        // Client: every non-OK status; server: only the codes that mean the server failed.
        let failed = match end {
            End::Client => code != 0,
            End::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        };
        if failed {
            attributes.push(string("error.type", name));
            error = Some(name.to_owned());
        }
    } else if call.status == CallStatus::Error {
        error = Some("gRPC call failed".to_owned());
    }
    Shape {
        name: if method.is_empty() {
            "grpc".to_owned()
        } else {
            method.to_owned()
        },
        kind: kind(end),
        attributes,
        error,
    }
}

fn dns(call: &Call, request: &DnsRequest) -> Shape {
    let mut attributes = vec![
        string("dns.question.name", request.name.clone()),
        string("dns.question.type", request.kind.clone()),
    ];
    let mut error = None;
    if let Some(Response::Dns(response)) = &call.response {
        attributes.push(strings("dns.answers", &response.answers));
        attributes.push(string("dns.response_code", response.rcode.clone()));
        if response.rcode != "NOERROR" {
            attributes.push(string("error.type", response.rcode.clone()));
            error = Some(response.rcode.clone());
        }
    }
    Shape {
        name: format!("{} {}", request.kind, request.name),
        kind: SpanKind::Client,
        attributes,
        error,
    }
}

fn redis(call: &Call, request: &RedisRequest, end: End) -> Shape {
    // The database index is not tracked (SELECT): `db.namespace` is left out rather than guessed.
    let mut attributes = vec![
        string("db.system.name", "redis"),
        string("db.operation.name", request.command.clone()),
        string("db.query.text", request.text.clone()),
    ];
    let mut error = None;
    if let Some(Response::Redis(response)) = &call.response {
        if let Some(message) = &response.error {
            // The error prefix (`ERR`, `WRONGTYPE`) is the status code; the rest may quote data.
            let code = message
                .split_whitespace()
                .next()
                .unwrap_or("ERR")
                .to_owned();
            attributes.push(string("db.response.status_code", code.clone()));
            attributes.push(string("error.type", code.clone()));
            error = Some(code);
        }
    }
    Shape {
        name: request.command.clone(),
        kind: kind(end),
        attributes,
        error,
    }
}

fn kafka(call: &Call, request: &KafkaRequest, end: End) -> Shape {
    let (operation, kind_of_op, client_kind) = match request.api.as_str() {
        "Produce" => ("send", Some("send"), SpanKind::Producer),
        "Fetch" => ("poll", Some("receive"), SpanKind::Consumer),
        "OffsetCommit" => ("commit", Some("settle"), SpanKind::Client),
        other => (other, None, SpanKind::Client),
    };
    let mut attributes = vec![
        string("messaging.system", "kafka"),
        string("messaging.operation.name", operation),
    ];
    if let Some(kind_of_op) = kind_of_op {
        attributes.push(string("messaging.operation.type", kind_of_op));
    }
    let destination = match request.topics.as_slice() {
        [topic] => Some(topic.clone()),
        _ => None,
    };
    if let Some(topic) = &destination {
        attributes.push(string("messaging.destination.name", topic.clone()));
    }
    if let Some(client_id) = &request.client_id {
        attributes.push(string("messaging.client.id", client_id.clone()));
    }
    let mut error = None;
    if let Some(Response::Kafka(response)) = &call.response {
        if let Some(code) = response.error_code.filter(|c| *c != 0) {
            attributes.push(string("error.type", code.to_string()));
            error = Some(format!("Kafka error code {code}"));
        }
    }
    if error.is_none() && call.status == CallStatus::Error {
        error = Some("Kafka request failed".to_owned());
    }
    messaging_shape(operation, destination, client_kind, end, attributes, error)
}

/// A Kafka or AMQP span: named `{operation} {destination}`, the client's kind by operation.
fn messaging_shape(
    operation: &str,
    destination: Option<String>,
    client_kind: SpanKind,
    end: End,
    attributes: Vec<KeyValue>,
    error: Option<String>,
) -> Shape {
    Shape {
        name: match destination {
            Some(destination) => format!("{operation} {destination}"),
            None => operation.to_owned(),
        },
        kind: match end {
            End::Client => client_kind,
            End::Server => SpanKind::Server,
        },
        attributes,
        error,
    }
}

fn amqp(call: &Call, request: &AmqpRequest, end: End) -> Shape {
    let (operation, kind_of_op, client_kind) = match request.method.as_str() {
        "basic.publish" => ("publish", Some("send"), SpanKind::Producer),
        "basic.deliver" | "basic.get" | "basic.get-ok" => {
            ("receive", Some("receive"), SpanKind::Consumer)
        }
        "basic.ack" => ("ack", Some("settle"), SpanKind::Client),
        "basic.nack" => ("nack", Some("settle"), SpanKind::Client),
        "basic.reject" => ("reject", Some("settle"), SpanKind::Client),
        other => (other, None, SpanKind::Client),
    };
    let mut attributes = vec![
        string("messaging.system", "rabbitmq"),
        string("messaging.operation.name", operation),
    ];
    if let Some(kind_of_op) = kind_of_op {
        attributes.push(string("messaging.operation.type", kind_of_op));
    }
    let destination = match (&request.exchange, &request.queue) {
        (Some(exchange), _) if !exchange.is_empty() => Some(exchange.clone()),
        (Some(_), _) => Some("amq.default".to_owned()),
        (None, Some(queue)) if !queue.is_empty() => Some(queue.clone()),
        _ => None,
    };
    if let Some(destination) = &destination {
        attributes.push(string("messaging.destination.name", destination.clone()));
    }
    if let Some(key) = request.routing_key.as_ref().filter(|k| !k.is_empty()) {
        attributes.push(string(
            "messaging.rabbitmq.destination.routing_key",
            key.clone(),
        ));
    }
    let mut error = None;
    if let Some(Response::Amqp(response)) = &call.response {
        if let Some(code) = response.reply_code.filter(|c| *c >= 300) {
            attributes.push(string("error.type", code.to_string()));
            error = Some(format!("AMQP reply {code}"));
        }
    }
    if error.is_none() && call.status == CallStatus::Error {
        error = Some("AMQP method failed".to_owned());
    }
    messaging_shape(operation, destination, client_kind, end, attributes, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        DnsResponse, GrpcResponse, HttpResponse, ParsedCall, Protocol, SensitiveCategory,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
        match attr(span, key) {
            Some(Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn call(request: Request, response: Option<Response>, protocol: Protocol) -> Call {
        let parsed = ParsedCall {
            protocol,
            version: Some("1.1"),
            start: 1_000_000_000,
            end: 1_002_000_000,
            request,
            response,
            status: CallStatus::Ok,
        };
        let mut client = Endpoint::new("10.0.0.1".parse().expect("address"), 40000);
        client.site = Site::Local;
        client.pod_uid = Some("client-uid".into());
        client.process = Some("curl".into());
        let mut server = Endpoint::new("10.0.0.2".parse().expect("address"), 8080);
        server.site = Site::Local;
        server.pod_uid = Some("server-uid".into());
        Call::new(parsed, Transport::Tcp, client, server)
    }

    fn http_call(status: u16) -> Call {
        call(
            Request::Http(HttpRequest {
                method: "GET".into(),
                path: "/items/1?token=secret".into(),
                host: Some("api:8080".into()),
            }),
            Some(Response::Http(HttpResponse { status })),
            Protocol::Http,
        )
    }

    #[test]
    fn both_local_ends_one_trace_server_child_of_client() {
        let spans = of_call(&http_call(200), Some("node"));
        assert_eq!(spans.len(), 2);
        let (client, server) = (&spans[0].1, &spans[1].1);
        assert_eq!(client.kind, SpanKind::Client as i32);
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(client.trace_id, server.trace_id);
        assert_eq!(client.trace_id.len(), 16);
        assert_eq!(server.parent_span_id, client.span_id);
        assert!(client.parent_span_id.is_empty());
        assert_ne!(client.span_id, server.span_id);
        assert_eq!(client.start_time_unix_nano, 1_000_000_000);
        assert_eq!(client.end_time_unix_nano, 1_002_000_000);
        assert_eq!(client.name, "GET");
        assert_eq!(text(client, "url.path"), Some("/items/1"));
        assert_eq!(text(client, "server.address"), Some("api"));
        assert_eq!(attr(client, "server.port"), Some(&Value::IntValue(8080)));
        assert_eq!(
            attr(client, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
        assert_eq!(text(server, "client.address"), Some("10.0.0.1"));
        assert!(!format!("{spans:?}").contains("secret"));
    }

    #[test]
    fn remote_ends_get_no_span() {
        let mut c = http_call(200);
        c.server.site = Site::Remote;
        let spans = of_call(&c, None);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].1.kind, SpanKind::Client as i32);
        c.client.site = Site::CapturedElsewhere;
        c.server.site = Site::Local;
        let spans = of_call(&c, None);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].1.kind, SpanKind::Server as i32);
        assert!(spans[0].1.parent_span_id.is_empty());
    }

    #[test]
    fn http_status_rules() {
        let code = |s: &Span| s.status.as_ref().map(|s| s.code);
        let spans = of_call(&http_call(500), None);
        assert_eq!(code(&spans[0].1), Some(StatusCode::Error as i32));
        assert_eq!(code(&spans[1].1), Some(StatusCode::Error as i32));
        let spans = of_call(&http_call(404), None);
        assert_eq!(code(&spans[0].1), Some(StatusCode::Error as i32));
        assert_eq!(code(&spans[1].1), Some(StatusCode::Unset as i32));
    }

    #[test]
    fn grpc_status_rules() {
        let grpc = |status| {
            call(
                Request::Grpc(GrpcRequest {
                    method: "/podtap.Test/Unary".into(),
                    authority: Some("10.0.0.2:8080".into()),
                    messages: 1,
                }),
                Some(Response::Grpc(GrpcResponse {
                    grpc_status: Some(status),
                    status: Some(200),
                    messages: 0,
                })),
                Protocol::Grpc,
            )
        };
        let spans = of_call(&grpc(14), None);
        assert_eq!(spans[0].1.name, "podtap.Test/Unary");
        assert_eq!(text(&spans[0].1, "rpc.method"), Some("podtap.Test/Unary"));
        assert_eq!(text(&spans[0].1, "rpc.status_code"), Some("UNAVAILABLE"));
        for (_, span) in &spans {
            assert_eq!(
                span.status.as_ref().expect("status").code,
                StatusCode::Error as i32
            );
        }
        // NOT_FOUND: the client's error, not the server's.
        let spans = of_call(&grpc(5), None);
        assert_eq!(
            spans[0].1.status.as_ref().expect("status").code,
            StatusCode::Error as i32
        );
        assert_eq!(
            spans[1].1.status.as_ref().expect("status").code,
            StatusCode::Unset as i32
        );
    }

    #[test]
    fn dns_client_span_only() {
        let mut c = call(
            Request::Dns(DnsRequest {
                id: 1,
                name: "example.com".into(),
                kind: "A".into(),
            }),
            Some(Response::Dns(DnsResponse {
                rcode: "NXDOMAIN".into(),
                answers: vec![],
            })),
            Protocol::Dns,
        );
        c.transport = Transport::Udp;
        let spans = of_call(&c, None);
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].1.name, "A example.com");
        assert_eq!(
            spans[0].1.status.as_ref().expect("status").code,
            StatusCode::Error as i32
        );
    }

    #[test]
    fn no_response_and_sensitive() {
        let mut c = http_call(200);
        c.response = None;
        c.duration_ms = None;
        c.status = CallStatus::NoResponse;
        c.sensitive = Some(SensitiveCategory::CloudCredentials);
        let spans = of_call(&c, None);
        let span = &spans[0].1;
        assert_eq!(
            span.status.as_ref().expect("status").code,
            StatusCode::Error as i32
        );
        assert_eq!(
            text(span, "podtap.sensitive.category"),
            Some("cloud_credentials")
        );
        assert_eq!(span.end_time_unix_nano, span.start_time_unix_nano);
    }

    #[test]
    fn hosts_split() {
        assert_eq!(split_host("api:8080"), ("api", Some(8080)));
        assert_eq!(split_host("api"), ("api", None));
        assert_eq!(split_host("[::1]:443"), ("::1", Some(443)));
        assert_eq!(split_host("::1"), ("::1", None));
    }
}

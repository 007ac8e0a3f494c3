//! The shared vocabulary of the pipeline: connection ids, directions, and the `Call` record that flows from
//! the protocol parsers through attribution to every sink. Its JSON form is the call record contract of
//! DESIGN.md ("Output contracts"): absent knowledge is an absent key, never an invented value.

use std::{net::IpAddr, sync::Arc};

use serde::Serialize;

use crate::k8s::meta::PodMeta;

/// Nanoseconds since the Unix epoch. Every timestamp inside the pipeline is wall-clock time; capture
/// sources convert their own clocks at the edge.
pub type UnixNanos = u64;

/// Now, as Unix nanoseconds (0 before 1970, saturated far in the future).
#[must_use]
pub fn unix_now() -> UnixNanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Which end of a connection sent some bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Direction of a packet relative to the socket that saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by the local socket.
    Egress,
    /// Received by the local socket.
    Ingress,
}

impl Direction {
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Direction::Egress => 0,
            Direction::Ingress => 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Grpc,
    Dns,
    Redis,
    Kafka,
    Amqp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Ok,
    Error,
    NoResponse,
}

/// One end of a call. Only `ip` and `port` are always known.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Where this end runs (for spans and the service graph; not part of the record).
    #[serde(skip)]
    pub site: Site,
    /// The pod's metadata from the Kubernetes API, when this end is a known pod (the resource of its
    /// spans; not part of the record, whose name fields above are filled from it).
    #[serde(skip)]
    pub meta: Option<Arc<PodMeta>>,
}

/// Where an end of a call runs, as far as this node knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Site {
    /// A socket on this node.
    Local,
    /// A pod on another node whose podtap captures it (that node reports its side).
    CapturedElsewhere,
    /// Anything else: outside the cluster, a host-network or filtered-out pod, a Service whose
    /// backends podtap cannot see, or an address nobody knows.
    #[default]
    Remote,
}

/// Why a call is security-relevant (DESIGN.md, "Sensitive calls").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveCategory {
    /// A cloud instance metadata service (169.254.169.254, fd00:ec2::254, metadata.google.internal).
    CloudMetadata,
    /// A metadata service path that hands out credentials or tokens.
    CloudCredentials,
    /// A Kubernetes API read (get, list, watch) of Secrets.
    K8sSecret,
}

impl SensitiveCategory {
    /// The `category` label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SensitiveCategory::CloudMetadata => "cloud_metadata",
            SensitiveCategory::CloudCredentials => "cloud_credentials",
            SensitiveCategory::K8sSecret => "k8s_secret",
        }
    }
}

impl Endpoint {
    #[must_use]
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Self {
            ip,
            port,
            pod_uid: None,
            container_id: None,
            namespace: None,
            pod: None,
            container: None,
            workload: None,
            service: None,
            pid: None,
            process: None,
            site: Site::Remote,
            meta: None,
        }
    }
}

/// HTTP request fields of the call record (HTTP/1.x and HTTP/2). An empty `method` or `path` is one
/// podtap could not decode (an HTTP/2 header field that refers to an HPACK table entry sent before
/// podtap joined the connection): its key is left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// HTTP response fields of the call record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpResponse {
    pub status: u16,
}

/// gRPC request fields: the call's method and the HTTP/2 `:authority`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcRequest {
    /// Fully qualified: `/pkg.Service/Method` (the HTTP/2 `:path`); empty (and left out) when it did
    /// not decode.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Length-prefixed messages the client sent on the stream (more than one: client streaming).
    pub messages: u64,
}

/// gRPC response fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrpcResponse {
    /// `grpc-status` from the trailers (or from a trailers-only response); absent when they were not seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u32>,
    /// HTTP `:status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Length-prefixed messages the server sent on the stream.
    pub messages: u64,
}

/// DNS question of a query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRequest {
    pub id: u16,
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, ... (or `TYPE65534` for types without a name).
    #[serde(rename = "type")]
    pub kind: String,
}

/// DNS answer of a response.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsResponse {
    /// `NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...
    pub rcode: String,
    /// The answer section's data, one string per record (`93.184.216.34`, `alias.example.com`).
    pub answers: Vec<String>,
}

/// A Redis command, or a pushed message (`MESSAGE`, `PMESSAGE`, ...). Argument values are never
/// exported: `text` shows where they were (`SET key ?`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedisRequest {
    /// Upper case; container commands keep their subcommand (`GET`, `CONFIG GET`, `CLIENT SETNAME`).
    pub command: String,
    /// Arguments after the command (and subcommand).
    pub args: u32,
    /// Sanitised: the command, its first argument when it is a key or a channel, `?` for each other
    /// argument (rules in `protocols::redis`).
    pub text: String,
}

/// A Redis reply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RedisResponse {
    /// `simple`, `error`, `integer`, `bulk`, `array`, `null`, `map`, `set`, `push`, `double`,
    /// `boolean`, `verbatim`, `big_number` (a reply with RESP3 attributes has the type of the reply).
    #[serde(rename = "type")]
    pub kind: String,
    /// The error message of an error reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A Kafka request header and the topics it names.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KafkaRequest {
    /// `Produce`, `Fetch`, `Metadata`, ...
    pub api: String,
    pub api_version: i16,
    pub correlation_id: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub topics: Vec<String>,
}

/// A Kafka response, matched to its request by correlation id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KafkaResponse {
    /// The first non-zero error code of the response (top level, then per topic/partition), else 0;
    /// absent when the response body was not decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i16>,
}

/// An AMQP 0-9-1 method (request, or one-way message).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AmqpRequest {
    /// `class.method`: `basic.publish`, `queue.declare`, `connection.start`, ...
    pub method: String,
    pub channel: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_tag: Option<u64>,
}

/// The method that answers a synchronous AMQP method.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AmqpResponse {
    /// `queue.declare-ok`, `channel.close`, ...
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
}

/// The protocol-specific request part; serialized as the bare object of its protocol.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Request {
    Http(HttpRequest),
    Grpc(GrpcRequest),
    Dns(DnsRequest),
    Redis(RedisRequest),
    Kafka(KafkaRequest),
    Amqp(AmqpRequest),
}

/// The protocol-specific response part.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Response {
    Http(HttpResponse),
    Grpc(GrpcResponse),
    Dns(DnsResponse),
    Redis(RedisResponse),
    Kafka(KafkaResponse),
    Amqp(AmqpResponse),
}

/// What a parser knows of one exchange, before the flow layer adds the endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedCall {
    pub protocol: Protocol,
    pub version: Option<&'static str>,
    /// First byte of the request.
    pub start: UnixNanos,
    /// Last byte of the response (or of the request, for one-way messages and `no_response`).
    pub end: UnixNanos,
    pub request: Request,
    pub response: Option<Response>,
    pub status: CallStatus,
}

/// A reconstructed call: the record every sink receives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    #[serde(serialize_with = "serialize_time")]
    pub time: UnixNanos,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<&'static str>,
    pub transport: Transport,
    pub tls: bool,
    pub client: Endpoint,
    pub server: Endpoint,
    pub request: Request,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    pub status: CallStatus,
    /// Set when the call touches something an alert should know about (cloud metadata, Secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<SensitiveCategory>,
    /// Bytes the client sent on the connection for this call (from the stream positions; 0 when
    /// unknown). Not part of the record: feeds the bytes-per-edge metrics.
    #[serde(skip)]
    pub request_bytes: u64,
    /// Bytes the server sent for this call.
    #[serde(skip)]
    pub response_bytes: u64,
}

impl Call {
    /// Builds the record from what a parser found and the two ends the flow layer knows.
    #[must_use]
    pub fn new(
        parsed: ParsedCall,
        transport: Transport,
        client: Endpoint,
        server: Endpoint,
    ) -> Self {
        let duration_ms = (parsed.response.is_some() && parsed.end >= parsed.start)
            .then(|| (parsed.end - parsed.start) as f64 / 1e6);
        Self {
            time: parsed.start,
            duration_ms,
            protocol: parsed.protocol,
            version: parsed.version,
            transport,
            tls: false,
            client,
            server,
            request: parsed.request,
            response: parsed.response,
            status: parsed.status,
            sensitive: None,
            request_bytes: 0,
            response_bytes: 0,
        }
    }
}

/// RFC 3339 with microseconds, UTC: `2026-11-21T10:00:00.123456Z`.
#[must_use]
pub fn format_time(nanos: UnixNanos) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    humantime::format_rfc3339_micros(time).to_string()
}

fn serialize_time<S: serde::Serializer>(
    nanos: &UnixNanos,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_time(*nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_micros() {
        assert_eq!(
            format_time(1_795_255_200_123_456_789),
            "2026-11-21T10:00:00.123456Z"
        );
    }
}

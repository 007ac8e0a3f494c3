//! `--output jsonl`: one call record per line, in the DESIGN.md call record shape.
//!
//! The record is what `serde_json` makes of `Call`'s derived `Serialize`, byte for byte, but the parts
//! every call has (the envelope, both ends, HTTP requests and responses) are written by hand: this is the
//! hot path of `podtap replay`, and serde_json spends most of its time escaping the constant keys. The
//! structs are destructured exhaustively, so a new field does not compile until it is written here too;
//! the other protocols' request and response objects go through serde_json. The tests (and the fuzz
//! harnesses, on every call they make) compare the two.

use std::{
    io::{self, Write},
    net::IpAddr,
};

use super::Sink;
use crate::model::{
    Call, CallStatus, Endpoint, HttpRequest, HttpResponse, Protocol, Request, Response, Transport,
    UnixNanos,
};

pub struct JsonLines<W: Write> {
    out: W,
    line: Vec<u8>,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::with_capacity(512),
        }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        self.line.clear();
        write_call(&mut self.line, call)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Appends the JSON record of `call` (no newline) to `out`: the same bytes as
/// `serde_json::to_writer(out, call)`.
///
/// # Errors
/// Only from serde_json, for request or response types it cannot write (none today).
pub fn write_call(out: &mut Vec<u8>, call: &Call) -> io::Result<()> {
    let Call {
        time,
        duration_ms,
        protocol,
        version,
        transport,
        tls,
        client,
        server,
        request,
        response,
        status,
        sensitive,
        request_bytes: _,
        response_bytes: _,
    } = call;
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, *time);
    out.push(b'"');
    if let Some(ms) = duration_ms {
        out.extend_from_slice(b",\"duration_ms\":");
        serde_json::to_writer(&mut *out, ms)?;
    }
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(protocol_name(*protocol).as_bytes());
    out.push(b'"');
    if let Some(version) = version {
        out.extend_from_slice(b",\"version\":");
        write_str(out, version);
    }
    out.extend_from_slice(b",\"transport\":\"");
    out.extend_from_slice(match transport {
        Transport::Tcp => b"tcp",
        Transport::Udp => b"udp",
    });
    out.extend_from_slice(if *tls {
        b"\",\"tls\":true"
    } else {
        b"\",\"tls\":false"
    });
    out.extend_from_slice(b",\"client\":");
    write_endpoint(out, client);
    out.extend_from_slice(b",\"server\":");
    write_endpoint(out, server);
    out.extend_from_slice(b",\"request\":");
    match request {
        Request::Http(HttpRequest { method, path, host }) => {
            // Empty method or path: not decoded, so left out (as the model's serde attributes say).
            let fields = [
                ("method", Some(method.as_str()).filter(|m| !m.is_empty())),
                ("path", Some(path.as_str()).filter(|p| !p.is_empty())),
                ("host", host.as_deref()),
            ];
            out.push(b'{');
            let mut first = true;
            for (key, value) in fields {
                let Some(value) = value else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                write_str(out, value);
            }
            out.push(b'}');
        }
        other => serde_json::to_writer(&mut *out, other)?,
    }
    if let Some(response) = response {
        out.extend_from_slice(b",\"response\":");
        match response {
            Response::Http(HttpResponse { status }) => {
                out.extend_from_slice(b"{\"status\":");
                write_u64(out, u64::from(*status));
                out.push(b'}');
            }
            other => serde_json::to_writer(&mut *out, other)?,
        }
    }
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(match status {
        CallStatus::Ok => b"ok",
        CallStatus::Error => b"error",
        CallStatus::NoResponse => b"no_response",
    });
    out.push(b'"');
    if let Some(category) = sensitive {
        out.extend_from_slice(b",\"sensitive\":\"");
        out.extend_from_slice(category.as_str().as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    Ok(())
}

/// `Protocol`'s serde name (`rename_all = "lowercase"`).
fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http => "http",
        Protocol::Grpc => "grpc",
        Protocol::Dns => "dns",
        Protocol::Redis => "redis",
        Protocol::Kafka => "kafka",
        Protocol::Amqp => "amqp",
    }
}

fn write_endpoint(out: &mut Vec<u8>, end: &Endpoint) {
    let Endpoint {
        ip,
        port,
        pod_uid,
        container_id,
        namespace,
        pod,
        container,
        workload,
        service,
        pid,
        process,
        site: _,
        meta: _,
    } = end;
    out.extend_from_slice(b"{\"ip\":\"");
    // Addresses need no escaping; `Display` is the form serde writes.
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            write_u64(out, u64::from(a));
            for octet in [b, c, d] {
                out.push(b'.');
                write_u64(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.extend_from_slice(b"\",\"port\":");
    write_u64(out, u64::from(*port));
    for (key, value) in [
        (&b",\"pod_uid\":"[..], pod_uid),
        (b",\"container_id\":", container_id),
        (b",\"namespace\":", namespace),
        (b",\"pod\":", pod),
        (b",\"container\":", container),
        (b",\"workload\":", workload),
        (b",\"service\":", service),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            write_str(out, value);
        }
    }
    if let Some(pid) = pid {
        out.extend_from_slice(b",\"pid\":");
        write_u64(out, u64::from(*pid));
    }
    if let Some(process) = process {
        out.extend_from_slice(b",\"process\":");
        write_str(out, process);
    }
    out.push(b'}');
}

/// A JSON string as serde_json escapes it: `"` and `\`, the short forms of the control characters that
/// have one, `\u00XX` (lower-case hex) for the others; everything else as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Byte by byte: these numbers are short, and a `memcpy` call per number costs more.
    for &digit in &digits[at..] {
        out.push(digit);
    }
}

/// `model::format_time` (RFC 3339, microseconds, UTC: `2026-11-21T10:00:00.123456Z`) without the
/// `SystemTime` and formatter round trip.
fn write_time(out: &mut Vec<u8>, nanos: UnixNanos) {
    let secs = nanos / 1_000_000_000;
    let micros = (nanos % 1_000_000_000) / 1_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    let two = |out: &mut Vec<u8>, n: u64| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8])
    };
    let y = year;
    out.extend_from_slice(&[
        b'0' + (y / 1000 % 10) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
    ]);
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, of_day / 3600);
    out.push(b':');
    two(out, of_day / 60 % 60);
    out.push(b':');
    two(out, of_day % 60);
    out.push(b'.');
    let mut fraction = [b'0'; 6];
    let mut m = micros;
    for digit in fraction.iter_mut().rev() {
        *digit = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&fraction);
    out.push(b'Z');
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::model::{
        AmqpRequest, AmqpResponse, DnsRequest, DnsResponse, GrpcRequest, GrpcResponse,
        KafkaRequest, KafkaResponse, RedisRequest, RedisResponse, SensitiveCategory,
    };

    fn ours(call: &Call) -> String {
        let mut out = Vec::new();
        write_call(&mut out, call).expect("write");
        String::from_utf8(out).expect("UTF-8")
    }

    fn full_endpoint(ip: IpAddr, text: &str) -> Endpoint {
        Endpoint {
            ip,
            port: 65_535,
            pod_uid: Some(format!("uid {text}")),
            container_id: Some(format!("cid {text}")),
            namespace: Some(format!("ns {text}")),
            pod: Some(format!("pod {text}")),
            container: Some(format!("c {text}")),
            workload: Some(format!("w {text}")),
            service: Some(format!("s {text}")),
            pid: Some(u32::MAX),
            process: Some(format!("p {text}")),
            site: crate::model::Site::Local,
            meta: None,
        }
    }

    /// Strings with everything serde_json escapes, and what it does not.
    const NASTY: &[&str] = &[
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{e}\u{1f} \u{7f}",
        "ünïcødé ✓ 😀",
        "\u{2028}\u{2029}",
    ];

    fn requests() -> Vec<(Request, Response)> {
        let mut all = Vec::new();
        for text in NASTY {
            let t = (*text).to_owned();
            all.push((
                Request::Http(HttpRequest {
                    method: t.clone(),
                    path: t.clone(),
                    host: Some(t.clone()),
                }),
                Response::Http(HttpResponse { status: 599 }),
            ));
            all.push((
                Request::Grpc(GrpcRequest {
                    method: t.clone(),
                    authority: Some(t.clone()),
                    messages: 3,
                }),
                Response::Grpc(GrpcResponse {
                    grpc_status: Some(14),
                    status: Some(200),
                    messages: 2,
                }),
            ));
            all.push((
                Request::Dns(DnsRequest {
                    id: 7,
                    name: t.clone(),
                    kind: "AAAA".into(),
                }),
                Response::Dns(DnsResponse {
                    rcode: "NOERROR".into(),
                    answers: vec![t.clone(), "::1".into()],
                }),
            ));
            all.push((
                Request::Redis(RedisRequest {
                    command: "SET".into(),
                    args: 2,
                    text: t.clone(),
                }),
                Response::Redis(RedisResponse {
                    kind: "error".into(),
                    error: Some(t.clone()),
                }),
            ));
            all.push((
                Request::Kafka(KafkaRequest {
                    api: "Produce".into(),
                    api_version: -1,
                    correlation_id: i32::MIN,
                    client_id: Some(t.clone()),
                    topics: vec![t.clone()],
                }),
                Response::Kafka(KafkaResponse {
                    error_code: Some(-1),
                }),
            ));
            all.push((
                Request::Amqp(AmqpRequest {
                    method: "basic.publish".into(),
                    channel: 1,
                    exchange: Some(t.clone()),
                    routing_key: None,
                    queue: Some(t.clone()),
                    delivery_tag: Some(u64::MAX),
                }),
                Response::Amqp(AmqpResponse {
                    method: t.clone(),
                    reply_code: Some(200),
                }),
            ));
        }
        all
    }

    #[test]
    fn same_bytes_as_serde_json() {
        let ends = [
            Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 41_234),
            Endpoint::new(IpAddr::V4(Ipv4Addr::new(0, 9, 10, 199)), 1),
            Endpoint::new(IpAddr::V4(Ipv4Addr::new(100, 255, 20, 0)), 10),
            Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
            Endpoint::new(
                IpAddr::V6("2001:db8::ffff:1.2.3.4".parse().expect("v6")),
                8080,
            ),
            full_endpoint(IpAddr::V4(Ipv4Addr::BROADCAST), "x\"y\u{1}"),
        ];
        let protocols = [
            Protocol::Http,
            Protocol::Grpc,
            Protocol::Dns,
            Protocol::Redis,
            Protocol::Kafka,
            Protocol::Amqp,
        ];
        let statuses = [CallStatus::Ok, CallStatus::Error, CallStatus::NoResponse];
        let durations = [
            None,
            Some(0.0),
            Some(1.234),
            Some(1e-7),
            Some(123_456_789.5),
            Some(f64::NAN),
        ];
        let mut n = 0;
        for (i, (request, response)) in requests().into_iter().enumerate() {
            let call = Call {
                time: 1_795_255_200_123_456_789 + i as u64 * 86_400_000_000_000,
                duration_ms: durations[i % durations.len()],
                protocol: protocols[i % protocols.len()],
                version: [None, Some("1.1"), Some("\"2\"")][i % 3],
                transport: if i % 2 == 0 {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                tls: i % 3 == 0,
                client: ends[i % ends.len()].clone(),
                server: ends[(i + 1) % ends.len()].clone(),
                request,
                response: (i % 4 != 0).then_some(response),
                status: statuses[i % statuses.len()],
                sensitive: [
                    None,
                    Some(SensitiveCategory::CloudMetadata),
                    Some(SensitiveCategory::CloudCredentials),
                    Some(SensitiveCategory::K8sSecret),
                ][i % 4],
                request_bytes: 1,
                response_bytes: 2,
            };
            assert_eq!(
                ours(&call),
                serde_json::to_string(&call).expect("serde"),
                "{call:?}"
            );
            n += 1;
        }
        assert!(n >= 36);
    }

    #[test]
    fn time_matches_format_time() {
        let mut cases = vec![
            0,
            1,
            999,
            1_000,
            59_999_999_999,
            86_399_999_999_999,
            951_782_400_000_000_000, // 2000-02-29
            951_868_799_999_999_999,
            4_107_542_400_000_000_000, // 2100-02-28 (not a leap year)
            1_795_255_200_123_456_789,
            u64::MAX,
        ];
        // Every day for 600 years, at a time of day that moves.
        let mut t: u64 = 0;
        while let Some(next) = t.checked_add(86_400_000_000_000 + 3_600_000_123_457) {
            cases.push(next);
            t = next;
            if cases.len() > 250_000 {
                break;
            }
        }
        for nanos in cases {
            let mut out = Vec::new();
            write_time(&mut out, nanos);
            assert_eq!(
                String::from_utf8(out).expect("UTF-8"),
                crate::model::format_time(nanos),
                "{nanos}"
            );
        }
    }
}

//! Replays the real AMQP 0-9-1 captures of `tests/fixtures/corpus/amqp` and compares the records with
//! what tshark found in them.
//!
//! The expected values are tshark 4.0.17's dissection, one line per method frame, recorded beside each
//! capture (so tshark is not needed to run this) with `tests/python/tshark_amqp.py FILE.pcap >
//! FILE.methods.tsv` (columns: frame, ports, channel, class id, method id, exchange, routing key, queue,
//! delivery tag, reply code).
//!
//! Every method frame is in exactly one record, as its request, its response, or a one-way record, so:
//! the methods podtap reports (requests plus responses) are tshark's, name for name and count for count;
//! each request carries the channel, exchange, routing key, queue and delivery tag of a distinct tshark
//! line of that method; the reply codes of the closes are those of the responses.
//!
//! Sources and licences of the captures: `tests/fixtures/corpus/amqp/SOURCES.md`.

mod common;

use std::collections::BTreeMap;

use common::{fixture, replay_sorted, tsv_rows};
use podtap::model::{AmqpRequest, AmqpResponse, Call, CallStatus, Request, Response};

/// AMQP 0-9-1 method names by (class id, method id), as the specification writes them.
fn method_name(class: u16, method: u16) -> String {
    let class_name = match class {
        10 => "connection",
        20 => "channel",
        30 => "access",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        other => panic!("class {other}"),
    };
    let method_name = match (class, method) {
        (10, 10) => "start",
        (10, 11) => "start-ok",
        (10, 20) => "secure",
        (10, 21) => "secure-ok",
        (10, 30) => "tune",
        (10, 31) => "tune-ok",
        (10, 40) | (20, 10) => "open",
        (10, 41) | (20, 11) => "open-ok",
        (10, 50) | (20, 40) => "close",
        (10, 51) | (20, 41) => "close-ok",
        (20, 20) => "flow",
        (20, 21) => "flow-ok",
        (40 | 50 | 85 | 90, 10) => match class {
            85 | 90 => "select",
            _ => "declare",
        },
        (40 | 50 | 85 | 90, 11) => match class {
            85 | 90 => "select-ok",
            _ => "declare-ok",
        },
        (40, 20) => "delete",
        (40, 21) => "delete-ok",
        (40, 30) | (50, 20) => "bind",
        (40, 31) | (50, 21) => "bind-ok",
        (40, 40) | (50, 50) => "unbind",
        (40 | 50, 51) => "unbind-ok",
        (50, 30) => "purge",
        (50, 31) => "purge-ok",
        (50, 40) => "delete",
        (50, 41) => "delete-ok",
        (60, 10) => "qos",
        (60, 11) => "qos-ok",
        (60, 20) => "consume",
        (60, 21) => "consume-ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel-ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 70) => "get",
        (60, 71) => "get-ok",
        (60, 72) => "get-empty",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 100) => "recover-async",
        (60, 110) => "recover",
        (60, 111) => "recover-ok",
        (60, 120) => "nack",
        (90, 20) => "commit",
        (90, 21) => "commit-ok",
        (90, 30) => "rollback",
        (90, 31) => "rollback-ok",
        other => panic!("method {other:?}"),
    };
    format!("{class_name}.{method_name}")
}

/// One method frame as tshark dissected it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    method: String,
    channel: u16,
    /// Empty when absent: tshark's fields do not tell an empty argument from a missing one.
    exchange: String,
    routing_key: String,
    queue: String,
    delivery_tag: Option<u64>,
}

#[derive(Debug)]
struct Line {
    seen: Seen,
    reply_code: Option<u16>,
}

fn tshark_methods(name: &str) -> Vec<Line> {
    tsv_rows("amqp", &format!("{name}.methods.tsv"))
        .into_iter()
        .map(|f| {
            assert_eq!(f.len(), 11, "{f:?}");
            let number = |s: &str| s.parse::<u16>().expect("number");
            Line {
                seen: Seen {
                    method: method_name(number(&f[4]), number(&f[5])),
                    channel: number(&f[3]),
                    exchange: f[6].clone(),
                    routing_key: f[7].clone(),
                    queue: f[8].clone(),
                    delivery_tag: (!f[9].is_empty()).then(|| f[9].parse().expect("tag")),
                },
                reply_code: (!f[10].is_empty()).then(|| number(&f[10])),
            }
        })
        .collect()
}

fn amqp(call: &Call) -> (&AmqpRequest, Option<&AmqpResponse>) {
    let Request::Amqp(request) = &call.request else {
        panic!("not an AMQP request: {call:?}")
    };
    let response = call.response.as_ref().map(|r| match r {
        Response::Amqp(r) => r,
        other => panic!("not an AMQP response: {other:?}"),
    });
    (request, response)
}

fn seen(request: &AmqpRequest) -> Seen {
    Seen {
        method: request.method.clone(),
        channel: request.channel,
        exchange: request.exchange.clone().unwrap_or_default(),
        routing_key: request.routing_key.clone().unwrap_or_default(),
        queue: request.queue.clone().unwrap_or_default(),
        delivery_tag: request.delivery_tag,
    }
}

fn counts<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for name in names {
        *out.entry(name.to_owned()).or_default() += 1;
    }
    out
}

/// Replays `name`.pcap and checks it against tshark; returns the records in time order.
fn check(name: &str) -> Vec<Call> {
    let (calls, summary) = replay_sorted(&fixture("amqp", &format!("{name}.pcap")));
    let lines = tshark_methods(name);
    let dump = || {
        calls
            .iter()
            .map(|c| serde_json::to_string(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Every method once: as a request, a response or a one-way record.
    let ours = counts(calls.iter().flat_map(|c| {
        let (request, response) = amqp(c);
        std::iter::once(request.method.as_str()).chain(response.map(|r| r.method.as_str()))
    }));
    let theirs = counts(lines.iter().map(|l| l.seen.method.as_str()));
    assert_eq!(ours, theirs, "{name}: method counts\n{}", dump());

    // Each request's arguments are those of a distinct tshark line of that method.
    let mut unused: Vec<&Seen> = lines.iter().map(|l| &l.seen).collect();
    for call in &calls {
        let (request, _) = amqp(call);
        let want = seen(request);
        let Some(at) = unused.iter().position(|s| **s == want) else {
            panic!("{name}: no tshark line for {want:?}\n{}", dump());
        };
        unused.remove(at);
    }

    // The closes' reply codes are the responses' (a close answers the method that caused it, or its
    // close-ok acknowledges it).
    let mut want: Vec<u16> = lines
        .iter()
        .filter(|l| l.seen.method.ends_with(".close"))
        .filter_map(|l| l.reply_code)
        .collect();
    let mut got: Vec<u16> = calls
        .iter()
        .filter_map(|c| amqp(c).1.and_then(|r| r.reply_code))
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "{name}: reply codes\n{}", dump());

    for call in &calls {
        let (_, response) = amqp(call);
        let expected = match response {
            None if call.status == CallStatus::NoResponse => CallStatus::NoResponse,
            Some(r) if r.reply_code.is_some_and(|code| code >= 300) => CallStatus::Error,
            _ => CallStatus::Ok,
        };
        assert_eq!(call.status, expected, "{name}: {call:?}");
        assert_eq!(call.duration_ms.is_some(), response.is_some(), "{call:?}");
    }
    assert_eq!(summary.flow.parsers.malformed, 0, "{name}: {summary:?}");
    calls
}

/// The method and response of each record, in time order, for readable assertions.
fn shape(calls: &[Call]) -> Vec<(String, Option<String>, CallStatus)> {
    calls
        .iter()
        .map(|c| {
            let (request, response) = amqp(c);
            (
                request.method.clone(),
                response.map(|r| r.method.clone()),
                c.status,
            )
        })
        .collect()
}

fn record(
    method: &str,
    response: Option<&str>,
    status: CallStatus,
) -> (String, Option<String>, CallStatus) {
    (method.to_owned(), response.map(str::to_owned), status)
}

/// Four connections: two refused at `connection.open` (vhost `/bad`: `connection.close` 530, over IPv6
/// and IPv4), one whose second `exchange.declare` fails (`channel.close` 406), one whose mandatory
/// publish comes back (`basic.return` 312).
#[test]
fn deepflow_amqp_error() {
    use CallStatus::{Error, Ok};
    let calls = check("deepflow_amqp-error");
    let handshake = [
        record("connection.start", Some("connection.start-ok"), Ok),
        record("connection.tune", Some("connection.tune-ok"), Ok),
    ];
    let refused = record("connection.open", Some("connection.close"), Error);
    let open = [
        record("connection.open", Some("connection.open-ok"), Ok),
        record("channel.open", Some("channel.open-ok"), Ok),
        record("exchange.declare", Some("exchange.declare-ok"), Ok),
    ];
    let mut expected = Vec::new();
    for _ in 0..2 {
        expected.extend(handshake.clone());
        expected.push(refused.clone());
    }
    expected.extend(handshake.clone());
    expected.extend(open.clone());
    expected.extend([
        record("exchange.declare", Some("channel.close"), Error),
        record("channel.close-ok", None, Ok),
        record("connection.close", Some("connection.close-ok"), Ok),
    ]);
    expected.extend(handshake);
    expected.extend(open);
    expected.extend([
        record("basic.publish", None, Ok),
        record("basic.return", None, Ok),
        record("channel.close", Some("channel.close-ok"), Ok),
        record("connection.close", Some("connection.close-ok"), Ok),
    ]);
    assert_eq!(shape(&calls), expected);
    let refused: Vec<_> = calls
        .iter()
        .filter(|c| amqp(c).1.is_some_and(|r| r.method == "connection.close"))
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused[0].client.ip.is_ipv6(), "{:?}", refused[0]);
    assert!(refused[1].client.ip.is_ipv4(), "{:?}", refused[1]);
    for call in &calls {
        assert_eq!(call.server.port, 5672, "{call:?}");
    }
}

/// A publisher, then a consumer: queue.bind with its exchange, routing key and queue, basic.consume and
/// the delivery (its content in the same packet as consume-ok).
#[test]
fn deepflow_amqp1() {
    let calls = check("deepflow_amqp1");
    assert_eq!(calls.len(), 18);
    let (deliver, response) = amqp(&calls[17]);
    assert!(response.is_none());
    assert_eq!(deliver.method, "basic.deliver");
    assert_eq!(deliver.exchange.as_deref(), Some("exchange-1"));
    assert_eq!(deliver.routing_key.as_deref(), Some("rk-1"));
    assert_eq!(deliver.delivery_tag, Some(1));
    // The consumer's connection is still open at the end of the capture: nothing is left pending.
    assert!(calls.iter().all(|c| c.status == CallStatus::Ok));
}

/// A publish on a whole connection, and a `basic.deliver` on a connection that opened before the
/// capture: found mid-stream by its frame (and port 5672).
#[test]
fn deepflow_amqp2_delivery_caught_mid_stream() {
    let calls = check("deepflow_amqp2");
    let deliver = calls
        .iter()
        .find(|c| amqp(c).0.method == "basic.deliver")
        .expect("deliver");
    assert_eq!(deliver.client.port, 46900);
    assert_eq!(deliver.server.port, 5672);
    assert_eq!(amqp(deliver).0.exchange.as_deref(), Some("logs"));
}

#[test]
fn deepflow_amqp3() {
    let calls = check("deepflow_amqp3");
    assert_eq!(calls.len(), 6);
    let (publish, _) = amqp(&calls[5]);
    assert_eq!(publish.method, "basic.publish");
    assert_eq!(publish.exchange.as_deref(), Some("logs"));
    assert_eq!(publish.routing_key.as_deref(), Some(""));
}

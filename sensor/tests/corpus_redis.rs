//! Replays the real Redis captures of `tests/fixtures/corpus/redis` and compares the calls with what
//! tshark found in them.
//!
//! tshark counts RESP *packets*, not commands, so the expected calls beside each capture
//! (`F.tshark.tsv`) were extracted from its dissection by `tshark_calls.py` (kept beside the captures;
//! tshark 4.0.17, Debian bookworm):
//!
//! ```text
//! python3 tshark_calls.py F.pcap [TSHARK OPTIONS] > F.tshark.tsv
//! ```
//!
//! One row per command tshark decodes on the client side (`frame`, first bulk string upper case,
//! array length - 1) with the type of the reply that answered it (the server side's top-level
//! elements, in order, per TCP stream: `resp.string` simple, `resp.error` error and its text,
//! `resp.integer`, `resp.bulk_string` bulk or null, `resp.array` array or null), and one row per
//! pushed pub/sub message (`MESSAGE`/`PMESSAGE`, no reply). The script's header says how it reads
//! what tshark 4.0 does not dissect: inline commands (`PING\r\n`, shown as `resp.fragment`; read from
//! the fragment's bytes), RESP3 (a `resp.fragment` header line, whose first byte gives the type), and
//! replies longer than the few segments it reassembles (the rest is passed over).
//!
//! podtap's record maps onto a row as: `command`'s first word is tshark's command, the rest of it (the
//! subcommand podtap keeps for container commands, `COMMAND DOCS`) is one more argument; `args`;
//! `response.type` (absent for pushes and `no_response`); `response.error`. Rows are in frame order,
//! records in time order.
//!
//! Sources and licences of the captures: `tests/fixtures/corpus/redis/SOURCES.md`.

mod common;

use common::{fixture, replay_sorted, tsv_rows};
use podtap::model::{Call, CallStatus, Request, Response};

/// One expected or reported call: command (tshark's first word), args, reply type, error.
type Row = (String, u32, String, String);

fn tshark_rows(file: &str) -> Vec<Row> {
    tsv_rows("redis", file)
        .into_iter()
        .map(|fields| {
            assert_eq!(fields.len(), 5, "{file}: {fields:?}");
            (
                fields[1].clone(),
                fields[2].parse().expect("args"),
                fields[3].clone(),
                fields[4].clone(),
            )
        })
        .collect()
}

/// Replays `capture`; returns the calls in time order and the parser's malformed count.
fn replay_file(capture: &str) -> (Vec<Call>, u64) {
    let (calls, summary) = replay_sorted(&fixture("redis", capture));
    assert_eq!(summary.flow.streams.gaps, 0, "{capture}: {summary:?}");
    (calls, summary.flow.parsers.malformed)
}

fn row(call: &Call) -> Row {
    let Request::Redis(request) = &call.request else {
        panic!("not a Redis request: {call:?}")
    };
    let mut words = request.command.split(' ');
    let command = words.next().unwrap_or_default().to_owned();
    let args = request.args + words.count() as u32;
    let (kind, error) = match &call.response {
        Some(Response::Redis(r)) => (r.kind.clone(), r.error.clone().unwrap_or_default()),
        Some(other) => panic!("not a Redis response: {other:?}"),
        None => (String::new(), String::new()),
    };
    (command, args, kind, error)
}

/// Replays `capture` and checks every call against `expected` (a `*.tshark.tsv`); returns the calls.
fn check_with(capture: &str, expected: &str) -> Vec<Call> {
    let (calls, malformed) = replay_file(capture);
    let want = tshark_rows(expected);
    let got: Vec<Row> = calls.iter().map(row).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{capture}: calls = tshark's commands and pushes"
    );
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        assert_eq!(got, want, "{capture}: call {i}");
    }
    assert_eq!(malformed, 0, "{capture}");
    for call in &calls {
        assert_eq!(call.protocol, podtap::model::Protocol::Redis);
        let pushed = matches!(&call.request, Request::Redis(r) if r.command.ends_with("MESSAGE"));
        let expected = match &call.response {
            None if pushed => CallStatus::Ok,
            None => CallStatus::NoResponse,
            Some(Response::Redis(r)) if r.kind == "error" => CallStatus::Error,
            Some(_) => CallStatus::Ok,
        };
        assert_eq!(call.status, expected, "{capture}: {call:?}");
        if call.response.is_some() {
            assert!(call.duration_ms.is_some_and(|d| d >= 0.0), "{call:?}");
        }
    }
    calls
}

fn check(name: &str) -> Vec<Call> {
    let capture = if name.ends_with("django-cloud") {
        format!("{name}.pcapng")
    } else {
        format!("{name}.pcap")
    };
    check_with(&capture, &format!("{name}.tshark.tsv"))
}

fn texts(calls: &[Call]) -> Vec<&str> {
    calls
        .iter()
        .map(|c| match &c.request {
            Request::Redis(r) => r.text.as_str(),
            _ => "",
        })
        .collect()
}

fn versions(calls: &[Call]) -> Vec<&str> {
    calls
        .iter()
        .map(|c| c.version.unwrap_or_default())
        .collect()
}

#[test]
fn deepflow_error() {
    let calls = check("deepflow_redis-error");
    assert_eq!(texts(&calls), ["GET abcd"]);
}

/// tshark lists 10 commands and 9 replies. The reply it misses is the last one: a 490,493-byte bulk
/// string (`$490493\r\n` in frame 33, then 7 segments of 64 KiB) whose final CRLF the capture does not
/// hold; tshark waits for the whole string to reassemble it and never reports it. podtap skips the
/// value from its header on and reports the reply, cut short by the end of the capture. tshark agrees
/// once it stops reassembling (`-o resp.desegment_data:FALSE`, recorded as
/// `deepflow_redis.no-desegment.tshark.tsv`).
#[test]
fn deepflow_reply_cut_short_by_the_end_of_the_capture() {
    let default = tshark_rows("deepflow_redis.tshark.tsv");
    assert_eq!(
        default[9].2, "",
        "tshark's default has no reply for the last GET"
    );
    let calls = check_with(
        "deepflow_redis.pcap",
        "deepflow_redis.no-desegment.tshark.tsv",
    );
    assert_eq!(calls.len(), 10);
    assert_eq!(
        texts(&calls)[9],
        "GET 1 1 http://127.0.0.1:20013/v2/pod-groups"
    );
}

#[test]
fn zeek_auth_never_shows_credentials() {
    let calls = check("zeek_redis_auth");
    assert_eq!(texts(&calls), ["AUTH ? ?"; 3]);
}

#[test]
fn zeek_bulk_loading_pipeline_of_a_thousand_sets() {
    let calls = check("zeek_redis_bulk-loading");
    assert_eq!(calls.len(), 1001);
    assert_eq!(texts(&calls)[999], "SET Key999 ?");
    assert_eq!(texts(&calls)[1000], "ECHO ?");
}

#[test]
fn zeek_django_cloud_on_a_non_standard_port() {
    let calls = check("zeek_redis_django-cloud");
    assert_eq!(calls.len(), 158);
    assert!(calls.iter().all(|c| c.server.port == 10625));
    assert_eq!(texts(&calls)[3], "SET :1:factorial_1 ? ? ?");
}

#[test]
fn zeek_large_requests_and_responses() {
    let calls = check("zeek_redis_large-requests-responses");
    assert_eq!(
        texts(&calls),
        [
            "COMMAND DOCS",
            "SET FIVE_HUNDRED_X ?",
            "SET THOUSAND_X ?",
            "GET FIVE_HUNDRED_X",
            "GET THOUSAND_X",
        ]
    );
}

#[test]
fn zeek_inline_pipeline() {
    let calls = check("zeek_redis_pipelining-example");
    assert_eq!(texts(&calls), ["PING"; 3]);
}

#[test]
fn zeek_pubsub_resp2() {
    let calls = check("zeek_redis_pubsub");
    assert_eq!(
        texts(&calls),
        [
            "SUBSCRIBE Foo",
            "PSUBSCRIBE F*",
            "PUBLISH Foo ?",
            "MESSAGE Foo ?",
            "PMESSAGE F* ? ?",
            "PUBLISH FeeFooFiiFum ?",
            "PMESSAGE F* ? ?",
            "SET sanity_check ?",
            "RESET",
            "GET sanity_check",
        ]
    );
    assert!(versions(&calls).iter().all(|v| *v == "2"));
}

#[test]
fn zeek_pubsub_resp3() {
    let calls = check("zeek_redis_pubsub-resp3");
    assert_eq!(calls.len(), 13);
    assert!(versions(&calls).iter().all(|v| *v == "3"), "{calls:?}");
    // The subscriber's messages are pushes; the publisher's connection has its own calls.
    let subscriber = calls[0].client.port;
    let pushes: Vec<_> = calls.iter().filter(|c| c.response.is_none()).collect();
    assert_eq!(pushes.len(), 3);
    assert!(pushes.iter().all(|c| c.client.port == subscriber));
}

#[test]
fn zeek_set() {
    check("zeek_redis_set");
}

#[test]
fn zeek_stream() {
    let calls = check("zeek_redis_stream");
    assert_eq!(texts(&calls)[3], "XRANGE race:france ? ? ? ?");
}

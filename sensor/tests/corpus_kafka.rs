//! Replays the real Kafka captures of `tests/fixtures/corpus/kafka` and compares the calls with what
//! tshark found in them.
//!
//! The expected values are tshark 4.0.17's field output, recorded beside each capture (so tshark is not
//! needed to run this), made with the decode-as options `SOURCES.md` gives per file (`OPTS`):
//!
//! ```text
//! tshark -r F.pcap OPTS -Y kafka.request_key -T fields -e frame.number -e kafka.request_key \
//!   -e kafka.api_version -e kafka.correlation_id -e kafka.client_id -e kafka.topic_name \
//!   -e _ws.malformed > F.requests.tsv
//! tshark -r F.pcap OPTS -Y 'kafka && !kafka.request_key' -T fields -e frame.number \
//!   -e kafka.correlation_id -e kafka.request_frame -e kafka.error > F.responses.tsv
//! ```
//!
//! tshark 4.0 decodes Produce up to v8 and Fetch up to v11: it reads the headers of newer ones but
//! marks their bodies malformed, finds no topics in them, and then cannot decode their responses
//! ("Request missing": no `kafka.request_frame`). For those, the tests below assert what podtap
//! decodes, checked by hand against the bytes.
//!
//! Sources and licences of the captures: `tests/fixtures/corpus/kafka/SOURCES.md`.

mod common;

use common::{fixture, replay_sorted, tsv_rows};
use kafka_protocol::messages::ApiKey;
use podtap::model::{Call, CallStatus, KafkaRequest, Request, Response};

/// One request row of tshark's output.
#[derive(Debug)]
struct TsharkRequest {
    api_key: i16,
    api_version: i16,
    correlation_id: i32,
    client_id: String,
    topics: Vec<String>,
    /// tshark could not decode the body (a version newer than it knows).
    malformed: bool,
}

/// One response row of tshark's output.
#[derive(Debug)]
struct TsharkResponse {
    correlation_id: i32,
    /// tshark matched it to its request (and so decoded it).
    matched: bool,
    /// The error codes tshark read, in wire order.
    errors: Vec<i16>,
}

fn list<T: std::str::FromStr>(field: &str) -> Vec<T> {
    field
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn tshark_requests(name: &str) -> Vec<TsharkRequest> {
    tsv_rows("kafka", &format!("{name}.requests.tsv"))
        .into_iter()
        .map(|f| TsharkRequest {
            api_key: f[1].parse().expect("api key"),
            api_version: f[2].parse().expect("version"),
            correlation_id: f[3].parse().expect("correlation id"),
            client_id: f[4].clone(),
            topics: list(&f[5]),
            malformed: f.get(6).is_some_and(|m| m.contains("_ws.malformed")),
        })
        .collect()
}

fn tshark_responses(name: &str) -> Vec<TsharkResponse> {
    tsv_rows("kafka", &format!("{name}.responses.tsv"))
        .into_iter()
        .map(|f| TsharkResponse {
            correlation_id: f[1].parse().expect("correlation id"),
            matched: !f[2].is_empty(),
            errors: list(&f[3]),
        })
        .collect()
}

fn kafka(call: &Call) -> (&KafkaRequest, Option<Option<i16>>) {
    let Request::Kafka(r) = &call.request else {
        panic!("not a Kafka request: {call:?}")
    };
    let response = call.response.as_ref().map(|r| match r {
        Response::Kafka(r) => r.error_code,
        other => panic!("not a Kafka response: {other:?}"),
    });
    (r, response)
}

/// Replays `name`.pcap and checks it against tshark: one call per request, same api, version,
/// correlation id, client id and topics (where tshark decoded the body), and the error code of each
/// response tshark decoded (the first non-zero of its codes, else 0). A request tshark saw no response
/// to is `no_response`.
fn check(name: &str) -> Vec<Call> {
    let (calls, _) = replay_sorted(&fixture("kafka", &format!("{name}.pcap")));
    let requests = tshark_requests(name);
    let responses = tshark_responses(name);
    assert_eq!(calls.len(), requests.len(), "{name}: one call per request");
    for (call, want) in calls.iter().zip(&requests) {
        let (got, error_code) = kafka(call);
        let api = ApiKey::try_from(want.api_key).expect("known api key");
        assert_eq!(got.api, format!("{api:?}"), "{name}");
        assert_eq!(got.api_version, want.api_version, "{name}");
        assert_eq!(got.correlation_id, want.correlation_id, "{name}");
        assert_eq!(
            got.client_id.as_deref(),
            Some(want.client_id.as_str()),
            "{name}"
        );
        if !want.malformed {
            assert_eq!(got.topics, want.topics, "{name}: topics");
        }
        match responses
            .iter()
            .find(|r| r.correlation_id == want.correlation_id)
        {
            None => assert_eq!(call.status, CallStatus::NoResponse, "{name}: {call:?}"),
            Some(response) if response.matched => {
                let first = response.errors.iter().copied().find(|&c| c != 0);
                let code = first.unwrap_or(0);
                assert_eq!(error_code, Some(Some(code)), "{name}: error code");
                let status = if code == 0 {
                    CallStatus::Ok
                } else {
                    CallStatus::Error
                };
                assert_eq!(call.status, status, "{name}");
            }
            // tshark did not decode it: the caller asserts what podtap found.
            Some(_) => assert!(error_code.is_some(), "{name}: a response was seen"),
        }
        assert!(call.duration_ms.is_some(), "{name}: {call:?}");
    }
    calls
}

fn only(calls: &[Call]) -> (&KafkaRequest, Option<Option<i16>>) {
    assert_eq!(calls.len(), 1, "{calls:?}");
    kafka(&calls[0])
}

#[test]
fn produce_v2_port_9092() {
    // tshark flags a record inside the batch (the message set) as malformed; the topic is decoded.
    let requests = tshark_requests("deepflow_kafka_00-produce-v2");
    assert!(requests[0].malformed);
    let calls = check("deepflow_kafka_00-produce-v2");
    let (request, error_code) = only(&calls);
    assert_eq!(request.topics, requests[0].topics);
    assert_eq!(request.topics, ["topic2"]);
    assert_eq!(error_code, Some(Some(0)));
}

#[test]
fn produce_v7_on_another_port_whole_connection() {
    let calls = check("deepflow_kafka_00-produce-v7-sw8");
    let (request, _) = only(&calls);
    assert_eq!(request.topics, ["quickstart-events"]);
    assert_eq!(calls[0].server.port, 36333);
}

/// tshark 4.0 knows Produce up to v8: it reads the header of this v9 request, no topic, and not the
/// response. podtap decodes both (compact strings, tagged fields): topic `zqy-test`, error code 0.
#[test]
fn produce_v9_tshark_cannot_decode() {
    assert!(tshark_requests("deepflow_kafka_00-produce-v9")[0]
        .topics
        .is_empty());
    assert!(!tshark_responses("deepflow_kafka_00-produce-v9")[0].matched);
    let calls = check("deepflow_kafka_00-produce-v9");
    let (request, error_code) = only(&calls);
    assert_eq!(request.topics, ["zqy-test"]);
    assert_eq!(error_code, Some(Some(0)));
    assert_eq!(calls[0].status, CallStatus::Ok);
}

/// Fetch v12 (tshark 4.0 knows up to v11): podtap reads topic `zqy-test` and the response's
/// top-level error code 0 (a response with no topic data).
#[test]
fn fetch_v12_tshark_cannot_decode() {
    assert!(!tshark_responses("deepflow_kafka_01-fetch-v12-ok")[0].matched);
    let calls = check("deepflow_kafka_01-fetch-v12-ok");
    let (request, error_code) = only(&calls);
    assert_eq!(request.topics, ["zqy-test"]);
    assert_eq!(error_code, Some(Some(0)));
}

/// An incremental fetch (session epoch 9): no topic listed, none forgotten.
#[test]
fn fetch_v12_incremental_session_names_no_topic() {
    let calls = check("deepflow_kafka_01-fetch-v12-perf");
    let (request, error_code) = only(&calls);
    assert!(request.topics.is_empty());
    assert_eq!(error_code, Some(Some(0)));
}

/// JoinGroup and SyncGroup answered with error -1 (UNKNOWN_SERVER_ERROR), as tshark reads them too.
#[test]
fn group_calls_with_errors() {
    for name in [
        "deepflow_kafka_11-join-group-v7",
        "deepflow_kafka_14-sync-group-v5",
    ] {
        let calls = check(name);
        let (_, error_code) = only(&calls);
        assert_eq!(error_code, Some(Some(-1)), "{name}");
        assert_eq!(calls[0].status, CallStatus::Error, "{name}");
    }
    let calls = check("deepflow_kafka_13-leave-group-v4");
    assert_eq!(only(&calls).1, Some(Some(0)));
}

#[test]
fn api_versions_v3() {
    let calls = check("deepflow_kafka_18-api-versions-v3");
    assert_eq!(only(&calls).0.api, "ApiVersions");
}

/// Two connections: OffsetCommit v8 (topic `orders`) and Heartbeat v4 on one, Fetch v13 on the other.
/// tshark cannot decode Fetch v13 (topic ids) nor, so, its response; podtap reads an incremental fetch
/// (no topic) answered with error code 0.
#[test]
fn mixed_with_a_version_tshark_does_not_support() {
    let calls = check("deepflow_kafka_mixed-with-unsupported");
    assert_eq!(calls.len(), 3);
    let fetch = calls
        .iter()
        .map(kafka)
        .find(|(r, _)| r.api == "Fetch")
        .expect("the Fetch call");
    assert_eq!(fetch.0.api_version, 13);
    assert!(fetch.0.topics.is_empty());
    assert_eq!(fetch.1, Some(Some(0)));
    let (commit, _) = kafka(&calls[1]);
    assert_eq!(commit.api, "OffsetCommit");
    assert_eq!(commit.topics, ["orders"]);
}

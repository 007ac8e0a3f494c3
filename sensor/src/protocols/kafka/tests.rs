//! Kafka parser cases. Messages are encoded by `kafka-protocol` itself and driven through the real
//! `flow::stream::Stream`, so skips and lost bytes are applied exactly as the flow layer applies them.

use bytes::{Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        api_versions_response::ApiVersion,
        fetch_request::{FetchPartition, FetchTopic},
        fetch_response::{FetchableTopicResponse, PartitionData},
        metadata_request::MetadataRequestTopic,
        metadata_response::{MetadataResponsePartition, MetadataResponseTopic},
        produce_request::{PartitionProduceData, TopicProduceData},
        produce_response::{PartitionProduceResponse, TopicProduceResponse},
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse,
        HeartbeatRequest, HeartbeatResponse, MetadataRequest, MetadataResponse, ProduceRequest,
        ProduceResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind, TopicName,
    },
    protocol::{Encodable, StrBytes},
};

use super::*;
use crate::protocols::testing::{self, XorShift};

const CLIENT: &str = "podtap-test";

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// A request as a client sends it: size, header (the version's header version), body.
fn request(key: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT)))
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    framed(&buf)
}

/// A response as a broker sends it.
fn response(key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Vec<u8> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, key.response_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    framed(&buf)
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

fn produce(acks: i16, topics: &[&str], record_bytes: usize) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(30_000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(topic(t))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(vec![0x5a; record_bytes])))])
                    })
                    .collect(),
            ),
    )
}

fn produce_response(topics: &[(&str, i16)]) -> ResponseKind {
    ResponseKind::Produce(
        ProduceResponse::default().with_responses(
            topics
                .iter()
                .map(|(t, code)| {
                    TopicProduceResponse::default()
                        .with_name(topic(t))
                        .with_partition_responses(vec![PartitionProduceResponse::default()
                            .with_index(0)
                            .with_error_code(*code)])
                })
                .collect(),
        ),
    )
}

fn fetch(topics: &[&str]) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default().with_max_wait_ms(500).with_topics(
            topics
                .iter()
                .map(|t| {
                    FetchTopic::default()
                        .with_topic(topic(t))
                        .with_partitions(vec![FetchPartition::default().with_partition(0)])
                })
                .collect(),
        ),
    )
}

fn fetch_response(top: i16, partitions: &[(&str, i16, usize)]) -> ResponseKind {
    ResponseKind::Fetch(
        FetchResponse::default()
            .with_error_code(top)
            .with_responses(
                partitions
                    .iter()
                    .map(|(t, code, records)| {
                        FetchableTopicResponse::default()
                            .with_topic(topic(t))
                            .with_partitions(vec![PartitionData::default()
                                .with_error_code(*code)
                                .with_records(Some(Bytes::from(vec![0x33; *records])))])
                    })
                    .collect(),
            ),
    )
}

fn metadata(topics: Option<&[&str]>) -> RequestKind {
    RequestKind::Metadata(MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(topic(t))))
            .collect()
    })))
}

fn metadata_response(topics: &[(&str, i16, [u8; 16])]) -> ResponseKind {
    ResponseKind::Metadata(
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .map(|(t, code, id)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(topic(t)))
                        .with_error_code(*code)
                        .with_topic_id(uuid::Uuid::from_bytes(*id))
                        .with_partitions(vec![MetadataResponsePartition::default()])
                })
                .collect(),
        ),
    )
}

fn api_versions() -> RequestKind {
    RequestKind::ApiVersions(
        ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("podtap"))
            .with_client_software_version(StrBytes::from_static_str("1")),
    )
}

fn api_versions_response(code: i16) -> ResponseKind {
    ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(code)
            .with_api_keys(vec![ApiVersion::default().with_max_version(9)]),
    )
}

/// One connection through the real `Stream`s (see `protocols::testing`).
type Conn = testing::Conn<KafkaParser>;

fn conn() -> Conn {
    Conn::with_seq([1000, 7_000_000])
}

impl Conn {
    /// Sends `data` in segments of at most `mss` bytes, of which at most `cap` are copied.
    fn send_capped(&mut self, side: Side, data: &[u8], mss: usize, cap: usize) {
        for chunk in data.chunks(mss) {
            self.segment(side, len(chunk.len()), &chunk[..chunk.len().min(cap)]);
        }
    }

    /// Closes the connection: the calls and the parser's counters.
    fn finish(mut self) -> (Vec<ParsedCall>, ParserStats) {
        self.parser.close(self.ts + 1, &mut self.calls);
        (self.calls, self.parser.stats())
    }
}

/// A test segment's length on the wire.
fn len(bytes: usize) -> u32 {
    u32::try_from(bytes).expect("test segment fits u32")
}

fn kafka(call: &ParsedCall) -> (&KafkaRequest, Option<Option<i16>>) {
    let Request::Kafka(r) = &call.request else {
        panic!("not Kafka: {call:?}")
    };
    let response = call.response.as_ref().map(|r| match r {
        Response::Kafka(r) => r.error_code,
        other => panic!("not Kafka: {other:?}"),
    });
    (r, response)
}

/// (api, version, correlation id, topics, error code or None for no response, status).
type Summary = (
    String,
    i16,
    i32,
    Vec<String>,
    Option<Option<i16>>,
    CallStatus,
);

fn summary(calls: &[ParsedCall]) -> Vec<Summary> {
    calls
        .iter()
        .map(|c| {
            let (r, response) = kafka(c);
            assert_eq!(r.client_id.as_deref(), Some(CLIENT), "{c:?}");
            (
                r.api.clone(),
                r.api_version,
                r.correlation_id,
                r.topics.clone(),
                response,
                c.status,
            )
        })
        .collect()
}

fn s(api: &str, v: i16, id: i32, topics: &[&str], code: Option<Option<i16>>) -> Summary {
    let status = match code {
        None => CallStatus::NoResponse,
        Some(Some(c)) if c != 0 => CallStatus::Error,
        Some(_) => CallStatus::Ok,
    };
    (
        api.to_owned(),
        v,
        id,
        topics.iter().map(|t| (*t).to_owned()).collect(),
        code,
        status,
    )
}

/// A session as kafka-python runs it: ApiVersions, Metadata, Produce, Fetch, Heartbeat; `flex`
/// picks flexible versions (header v2, compact encodings, tagged fields) or classic ones.
fn session(flex: bool) -> (Vec<(Side, Vec<u8>)>, Vec<Summary>) {
    let (av, md, pr, fe, hb) = if flex {
        (3, 12, 9, 12, 4)
    } else {
        (2, 5, 7, 11, 2)
    };
    let id = [7u8; 16];
    let messages = vec![
        (
            Side::Client,
            request(ApiKey::ApiVersions, av, 1, &api_versions()),
        ),
        (
            Side::Server,
            response(ApiKey::ApiVersions, av, 1, &api_versions_response(0)),
        ),
        (
            Side::Client,
            request(
                ApiKey::Metadata,
                md,
                2,
                &metadata(Some(&["orders", "audit"])),
            ),
        ),
        (
            Side::Server,
            response(
                ApiKey::Metadata,
                md,
                2,
                &metadata_response(&[("orders", 0, id), ("audit", 3, [8; 16])]),
            ),
        ),
        (
            Side::Client,
            request(ApiKey::Produce, pr, 3, &produce(-1, &["orders"], 200)),
        ),
        (
            Side::Server,
            response(ApiKey::Produce, pr, 3, &produce_response(&[("orders", 0)])),
        ),
        (
            Side::Client,
            request(ApiKey::Fetch, fe, 4, &fetch(&["orders", "audit"])),
        ),
        (
            Side::Server,
            response(
                ApiKey::Fetch,
                fe,
                4,
                &fetch_response(0, &[("orders", 0, 300), ("audit", 6, 0)]),
            ),
        ),
        (
            Side::Client,
            request(
                ApiKey::Heartbeat,
                hb,
                5,
                &RequestKind::Heartbeat(HeartbeatRequest::default()),
            ),
        ),
        (
            Side::Server,
            response(
                ApiKey::Heartbeat,
                hb,
                5,
                &ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(27)),
            ),
        ),
    ];
    let expected = vec![
        s("ApiVersions", av, 1, &[], Some(Some(0))),
        s("Metadata", md, 2, &["orders", "audit"], Some(Some(3))),
        s("Produce", pr, 3, &["orders"], Some(Some(0))),
        s("Fetch", fe, 4, &["orders", "audit"], Some(Some(6))),
        s("Heartbeat", hb, 5, &[], Some(Some(27))),
    ];
    (messages, expected)
}

#[test]
fn a_session_classic_and_flexible_versions() {
    for flex in [false, true] {
        let (messages, expected) = session(flex);
        let mut conn = conn();
        for (side, bytes) in &messages {
            conn.send(*side, bytes);
        }
        let (calls, stats) = conn.finish();
        assert_eq!(summary(&calls), expected, "flexible: {flex}");
        assert_eq!(stats, ParserStats::default());
        assert!(calls.iter().all(|c| c.end > c.start));
    }
}

#[test]
fn every_split_of_a_session_gives_the_same_calls() {
    for flex in [false, true] {
        let (messages, expected) = session(flex);
        for (i, (_, bytes)) in messages.iter().enumerate() {
            for at in 1..bytes.len() {
                let mut conn = conn();
                conn.play(&messages, Some((i, at)));
                let (calls, stats) = conn.finish();
                assert_eq!(summary(&calls), expected, "message {i} split at {at}");
                assert_eq!(stats, ParserStats::default());
            }
        }
    }
}

#[test]
fn pipelined_requests_in_one_segment() {
    let (messages, expected) = session(true);
    let requests: Vec<u8> = messages
        .iter()
        .filter(|(side, _)| *side == Side::Client)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let responses: Vec<u8> = messages
        .iter()
        .filter(|(side, _)| *side == Side::Server)
        .flat_map(|(_, b)| b.clone())
        .collect();
    let mut conn = conn();
    conn.send(Side::Client, &requests);
    conn.send(Side::Server, &responses);
    let (calls, _) = conn.finish();
    assert_eq!(summary(&calls), expected);
}

#[test]
fn acks_zero_produce_is_one_way() {
    let mut conn = conn();
    conn.send(
        Side::Client,
        &request(ApiKey::Produce, 7, 9, &produce(0, &["logs"], 50)),
    );
    conn.send(
        Side::Client,
        &request(ApiKey::Metadata, 5, 10, &metadata(None)),
    );
    conn.send(
        Side::Server,
        &response(ApiKey::Metadata, 5, 10, &metadata_response(&[])),
    );
    let (calls, _) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            (
                "Produce".to_owned(),
                7,
                9,
                vec!["logs".to_owned()],
                None,
                CallStatus::Ok
            ),
            s("Metadata", 5, 10, &[], Some(Some(0))),
        ]
    );
    assert!(calls[0].response.is_none());
}

#[test]
fn requests_answered_out_of_turn_were_not_answered() {
    let mut conn = conn();
    for id in 1..=3 {
        conn.send(
            Side::Client,
            &request(ApiKey::Produce, 7, id, &produce(1, &["t"], 10)),
        );
    }
    // The response to 1 never came (not captured); 2 is answered, then 3.
    for id in 2..=3 {
        conn.send(
            Side::Server,
            &response(ApiKey::Produce, 7, id, &produce_response(&[("t", 0)])),
        );
    }
    // A response to a request never seen is passed over.
    conn.send(
        Side::Server,
        &response(ApiKey::Produce, 7, 77, &produce_response(&[("t", 0)])),
    );
    let (calls, stats) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            s("Produce", 7, 1, &["t"], None),
            s("Produce", 7, 2, &["t"], Some(Some(0))),
            s("Produce", 7, 3, &["t"], Some(Some(0))),
        ]
    );
    assert_eq!(stats, ParserStats::default());
}

#[test]
fn unanswered_requests_are_bounded_and_flushed_at_close() {
    let mut conn = conn();
    for id in 0..(MAX_PENDING as i32 + 10) {
        conn.send(
            Side::Client,
            &request(ApiKey::Metadata, 1, id, &metadata(Some(&["a"]))),
        );
    }
    let (calls, stats) = conn.finish();
    assert_eq!(calls.len(), MAX_PENDING);
    assert!(calls.iter().all(|c| c.status == CallStatus::NoResponse));
    assert_eq!(stats.pending_overflow, 10);
}

#[test]
fn large_produce_and_fetch_are_read_from_their_start_and_skipped() {
    let mut conn = conn();
    let big_produce = request(ApiKey::Produce, 9, 1, &produce(-1, &["big"], 200_000));
    let big_fetch = response(
        ApiKey::Fetch,
        12,
        2,
        &fetch_response(0, &[("big", 0, 150_000), ("other", 1, 100)]),
    );
    conn.send_capped(Side::Client, &big_produce, 1448, 1448);
    conn.send(
        Side::Server,
        &response(ApiKey::Produce, 9, 1, &produce_response(&[("big", 0)])),
    );
    conn.send(
        Side::Client,
        &request(ApiKey::Fetch, 12, 2, &fetch(&["big"])),
    );
    conn.send_capped(Side::Server, &big_fetch, 65_000, 4096);
    // After the skipped bodies, the next exchange parses as usual.
    conn.send(
        Side::Client,
        &request(ApiKey::Metadata, 12, 3, &metadata(None)),
    );
    conn.send(
        Side::Server,
        &response(ApiKey::Metadata, 12, 3, &metadata_response(&[])),
    );
    let buffered = conn.streams[0].buffered().len() + conn.streams[1].buffered().len();
    let (calls, stats) = conn.finish();
    // The error of the second partition lies after 150 KB of records: not seen.
    assert_eq!(
        summary(&calls),
        vec![
            s("Produce", 9, 1, &["big"], Some(Some(0))),
            s("Fetch", 12, 2, &["big"], Some(Some(0))),
            s("Metadata", 12, 3, &[], Some(Some(0))),
        ]
    );
    assert_eq!(stats, ParserStats::default());
    assert_eq!(buffered, 0);
}

#[test]
fn a_large_fetch_response_reports_the_errors_of_its_start() {
    let mut conn = conn();
    conn.send(Side::Client, &request(ApiKey::Fetch, 11, 1, &fetch(&["a"])));
    conn.send_capped(
        Side::Server,
        &response(
            ApiKey::Fetch,
            11,
            1,
            &fetch_response(0, &[("a", 0, 10), ("b", 3, 100_000)]),
        ),
        30_000,
        4096,
    );
    conn.send(Side::Client, &request(ApiKey::Fetch, 11, 2, &fetch(&["a"])));
    conn.send(
        Side::Server,
        &response(
            ApiKey::Fetch,
            11,
            2,
            &fetch_response(7, &[("a", 0, 100_000)]),
        ),
    );
    let (calls, _) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            s("Fetch", 11, 1, &["a"], Some(Some(3))),
            s("Fetch", 11, 2, &["a"], Some(Some(7))),
        ]
    );
}

#[test]
fn a_message_whose_tail_was_not_copied_is_reported_from_its_start() {
    // 6 KB messages (below MAX_WHOLE) in one segment each, the kernel copying 4096 bytes of it.
    let mut conn = conn();
    let produce_6k = request(ApiKey::Produce, 8, 1, &produce(1, &["cut"], 6000));
    conn.segment(Side::Client, len(produce_6k.len()), &produce_6k[..4096]);
    let fetch_6k = response(
        ApiKey::Fetch,
        11,
        2,
        &fetch_response(0, &[("cut", 9, 6000)]),
    );
    conn.send(
        Side::Server,
        &response(ApiKey::Produce, 8, 1, &produce_response(&[("cut", 0)])),
    );
    conn.send(
        Side::Client,
        &request(ApiKey::Fetch, 11, 2, &fetch(&["cut"])),
    );
    conn.segment(Side::Server, len(fetch_6k.len()), &fetch_6k[..4096]);
    // Two messages in one segment, the cut falling inside the second: its rest comes later.
    let a = request(ApiKey::Metadata, 9, 3, &metadata(Some(&["x"])));
    let b = request(ApiKey::Produce, 9, 4, &produce(-1, &["y"], 5000));
    let both = [a.clone(), b.clone()].concat();
    let copied = a.len() + 100;
    conn.segment(Side::Client, len(both.len() - 1000), &both[..copied]);
    conn.send(Side::Client, &both[both.len() - 1000..]);
    conn.send(
        Side::Server,
        &[
            response(ApiKey::Metadata, 9, 3, &metadata_response(&[])),
            response(ApiKey::Produce, 9, 4, &produce_response(&[("y", 0)])),
        ]
        .concat(),
    );
    let (calls, stats) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            s("Produce", 8, 1, &["cut"], Some(Some(0))),
            s("Fetch", 11, 2, &["cut"], Some(Some(9))),
            s("Metadata", 9, 3, &["x"], Some(Some(0))),
            s("Produce", 9, 4, &["y"], Some(Some(0))),
        ]
    );
    assert_eq!(stats.malformed, 0);
}

#[test]
fn lost_bytes_between_messages_resynchronise() {
    let mut conn = conn();
    let first = request(ApiKey::Metadata, 9, 1, &metadata(Some(&["a"])));
    let second = request(ApiKey::Metadata, 9, 2, &metadata(Some(&["b"])));
    let third = request(ApiKey::Metadata, 9, 3, &metadata(Some(&["c"])));
    conn.send(Side::Client, &first);
    // The second request is lost whole; the third arrives after garbage-looking bytes.
    conn.segment(Side::Client, len(second.len()), &[]);
    conn.send(Side::Client, &third);
    for id in 1..=3 {
        conn.send(
            Side::Server,
            &response(ApiKey::Metadata, 9, id, &metadata_response(&[])),
        );
    }
    let (calls, _) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            s("Metadata", 9, 1, &["a"], Some(Some(0))),
            s("Metadata", 9, 3, &["c"], Some(Some(0))),
        ]
    );
}

#[test]
fn a_lost_response_makes_its_request_unanswered() {
    let mut conn = conn();
    for id in 1..=2 {
        conn.send(
            Side::Client,
            &request(ApiKey::Metadata, 9, id, &metadata(Some(&["a"]))),
        );
    }
    let lost = response(ApiKey::Metadata, 9, 1, &metadata_response(&[]));
    conn.segment(Side::Server, len(lost.len()), &[]);
    conn.send(
        Side::Server,
        &response(
            ApiKey::Metadata,
            9,
            2,
            &metadata_response(&[("a", 5, [1; 16])]),
        ),
    );
    let (calls, _) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            s("Metadata", 9, 1, &["a"], None),
            s("Metadata", 9, 2, &["a"], Some(Some(5))),
        ]
    );
}

#[test]
fn fetch_by_topic_id_names_topics_from_metadata() {
    let mut conn = conn();
    let id = [0xab; 16];
    conn.send(
        Side::Client,
        &request(ApiKey::Metadata, 12, 1, &metadata(Some(&["orders"]))),
    );
    conn.send(
        Side::Server,
        &response(
            ApiKey::Metadata,
            12,
            1,
            &metadata_response(&[("orders", 0, id)]),
        ),
    );
    let by_id = |ids: &[[u8; 16]]| {
        RequestKind::Fetch(
            FetchRequest::default().with_topics(
                ids.iter()
                    .map(|id| FetchTopic::default().with_topic_id(uuid::Uuid::from_bytes(*id)))
                    .collect(),
            ),
        )
    };
    conn.send(
        Side::Client,
        &request(ApiKey::Fetch, 13, 2, &by_id(&[id, [0xcd; 16]])),
    );
    let (calls, _) = conn.finish();
    let (r, _) = kafka(&calls[1]);
    assert_eq!(
        r.topics,
        vec![
            "orders".to_owned(),
            "cdcdcdcd-cdcd-cdcd-cdcd-cdcdcdcdcdcd".to_owned()
        ]
    );
}

#[test]
fn unknown_keys_and_versions_report_their_header() {
    let mut conn = conn();
    // Api key 120 (unknown to the crate), header v1.
    let mut unknown = vec![0, 120, 0, 1, 0, 0, 0, 5, 0, CLIENT.len() as u8];
    unknown.extend_from_slice(CLIENT.as_bytes());
    unknown.extend_from_slice(&[1, 2, 3]);
    conn.send(Side::Client, &framed(&unknown));
    conn.send(Side::Server, &framed(&[0, 0, 0, 5, 0, 0]));
    // Produce v12 (newer than the crate): header, and topics by the prefix walk.
    let v11 = request(ApiKey::Produce, 11, 6, &produce(-1, &["new"], 10));
    let mut v12 = v11.clone();
    v12[7] = 12;
    conn.send(Side::Client, &v12);
    conn.send(
        Side::Server,
        &response(ApiKey::Produce, 11, 6, &produce_response(&[("new", 0)])),
    );
    let (calls, stats) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![
            (
                "Unknown(120)".to_owned(),
                1,
                5,
                vec![],
                Some(None),
                CallStatus::Ok
            ),
            s("Produce", 12, 6, &["new"], Some(Some(0))),
        ]
    );
    assert_eq!(stats, ParserStats::default());
}

#[test]
fn apiversions_answered_in_v0_after_an_unsupported_version() {
    let mut conn = conn();
    conn.send(
        Side::Client,
        &request(ApiKey::ApiVersions, 3, 1, &api_versions()),
    );
    conn.send(
        Side::Server,
        &response(ApiKey::ApiVersions, 0, 1, &api_versions_response(35)),
    );
    let (calls, _) = conn.finish();
    assert_eq!(
        summary(&calls),
        vec![s("ApiVersions", 3, 1, &[], Some(Some(35)))]
    );
}

#[test]
fn a_forged_array_count_is_a_decode_error_not_an_abort() {
    let mut conn = conn();
    // Metadata v0 claiming 2^31 - 1 topics in 3 bytes of body.
    let mut msg = vec![0, 3, 0, 0, 0, 0, 0, 1, 0, 1, b'c'];
    msg.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0, 1, b'a']);
    conn.send(Side::Client, &framed(&msg));
    // And a response to a good request that claims as many topics.
    conn.send(
        Side::Client,
        &request(ApiKey::Metadata, 1, 2, &metadata(Some(&["a"]))),
    );
    conn.send(
        Side::Server,
        &framed(&[0, 0, 0, 2, 0x7f, 0xff, 0xff, 0xff, 0, 0]),
    );
    let (calls, _) = conn.finish();
    assert_eq!(calls.len(), 2);
    let (r, response) = kafka(&calls[1]);
    assert_eq!(r.correlation_id, 2);
    assert_eq!(response, Some(None));
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next();
    let (messages, _) = session(true);
    for round in 0..300 {
        let mut conn = conn();
        for (side, bytes) in &messages {
            let mut bytes = bytes.clone();
            // Flip a few bytes of some messages, cut others.
            match next() % 4 {
                0 => {
                    for _ in 0..3 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                _ => {}
            }
            conn.send(*side, &bytes);
        }
        let noise: Vec<u8> = (0..(next() % 3000)).map(|_| next() as u8).collect();
        conn.send(
            if round % 2 == 0 {
                Side::Client
            } else {
                Side::Server
            },
            &noise,
        );
        let _ = conn.finish();
    }
}

#[test]
fn the_prefix_walk_agrees_with_the_crate_on_whole_messages() {
    let ids = TopicIds::new();
    for version in [0, 2, 3, 7, 8, 9, 11] {
        let body = produce(1, &["a", "b", "a2"], 30);
        let msg = request(ApiKey::Produce, version, 1, &body);
        let (header, len) = decode::request_header(&msg[4..]).expect("header");
        let walked = prefix::request(0, version, version >= 9, &msg[4 + len..], &ids);
        let kind = decode::request_body(0, version, &msg[4 + len..]).expect("decodes");
        assert_eq!(walked.topics, decode::request_topics(&kind, &ids));
        assert_eq!(walked.acks, Some(1));
        assert_eq!(header.correlation_id, 1);
    }
    for version in [0, 4, 7, 11, 12] {
        let msg = request(ApiKey::Fetch, version, 1, &fetch(&["x", "y"]));
        let (_, len) = decode::request_header(&msg[4..]).expect("header");
        let walked = prefix::request(1, version, version >= 12, &msg[4 + len..], &ids);
        assert_eq!(
            walked.topics,
            vec!["x".to_owned(), "y".to_owned()],
            "v{version}"
        );
    }
    for version in [0, 1, 4, 9, 10, 12] {
        let msg = request(ApiKey::Metadata, version, 1, &metadata(Some(&["m", "n"])));
        let (_, len) = decode::request_header(&msg[4..]).expect("header");
        let walked = prefix::request(3, version, version >= 9, &msg[4 + len..], &ids);
        assert_eq!(
            walked.topics,
            vec!["m".to_owned(), "n".to_owned()],
            "v{version}"
        );
    }
    let mut learned = TopicIds::new();
    for (key, version, body, code) in [
        (
            ApiKey::Produce,
            7,
            produce_response(&[("a", 0), ("b", 45)]),
            45,
        ),
        (ApiKey::Produce, 9, produce_response(&[("a", 0)]), 0),
        (
            ApiKey::Fetch,
            4,
            fetch_response(0, &[("a", 0, 10), ("b", 1, 5)]),
            1,
        ),
        (
            ApiKey::Fetch,
            12,
            fetch_response(0, &[("a", 0, 10), ("b", 1, 5)]),
            1,
        ),
        (ApiKey::Fetch, 13, fetch_response(15, &[("a", 0, 10)]), 15),
        (
            ApiKey::Metadata,
            12,
            metadata_response(&[("a", 0, [1; 16]), ("b", 3, [2; 16])]),
            3,
        ),
        (
            ApiKey::Metadata,
            1,
            metadata_response(&[("a", 0, [1; 16])]),
            0,
        ),
    ] {
        let msg = response(key, version, 1, &body);
        let len = decode::response_header_len(&msg[4..], key as i16, version).expect("header");
        let flexible = decode::flexible(key as i16, version);
        let walked =
            prefix::response_error(key as i16, version, flexible, &msg[4 + len..], &mut learned);
        let kind = decode::response_body(key as i16, version, &msg[4 + len..]).expect("decodes");
        assert_eq!(
            walked,
            Some(error_code::error_code(&kind)),
            "{key:?} v{version}"
        );
        assert_eq!(walked, Some(code));
    }
    assert_eq!(learned.get(&[1; 16]).map(String::as_str), Some("a"));
}

fn hints(sender_port: u16, receiver_port: u16) -> Hints {
    Hints {
        transport: crate::model::Transport::Tcp,
        sender_port,
        receiver_port,
    }
}

#[test]
fn probe_by_content_any_port() {
    let (messages, _) = session(true);
    let h = hints(40000, 36333);
    for (side, bytes) in &messages {
        let got = probe(bytes, &h);
        if *side == Side::Client {
            assert_eq!(
                got,
                Detection::Match {
                    protocol: Known::Kafka,
                    sender: Side::Client
                }
            );
            // A few bytes: too early to tell; the header without the client id too.
            assert_eq!(probe(&bytes[..3], &h), Detection::NeedMore);
            assert_eq!(probe(&bytes[..14], &h), Detection::NeedMore);
        } else {
            // Responses are recognised only from the well-known port.
            assert_eq!(
                probe(bytes, &h),
                Detection::NoMatch,
                "{:02x?}",
                &bytes[..bytes.len().min(40)]
            );
            assert_eq!(
                probe(bytes, &hints(9092, 40000)),
                Detection::Match {
                    protocol: Known::Kafka,
                    sender: Side::Server
                }
            );
        }
    }
    // Produce v2 (old clients) and v12 (newer than the crate; by port only).
    let v2 = request(ApiKey::Produce, 2, 1, &produce(1, &["t"], 10));
    assert!(matches!(probe(&v2, &h), Detection::Match { .. }));
    let mut v12 = request(ApiKey::Produce, 11, 1, &produce(1, &["t"], 10));
    v12[7] = 12;
    assert_eq!(probe(&v12, &h), Detection::NoMatch);
    assert!(matches!(
        probe(&v12, &hints(40000, 9092)),
        Detection::Match { .. }
    ));
}

#[test]
fn probe_rejects_other_protocols_and_random_bytes() {
    let h = hints(40000, 5432);
    let others: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"AMQP\x00\x00\x09\x01",
        // PostgreSQL startup: length, protocol 3.0, "user\0postgres\0database\0..." (key 3 v0!).
        b"\x00\x00\x00\x56\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00application_name\x00psql\x00client_encoding\x00UTF8\x00\x00",
        // PostgreSQL SSLRequest.
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    ];
    for data in others {
        assert_eq!(probe(data, &h), Detection::NoMatch, "{data:?}");
    }
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut matched = 0;
    for _ in 0..200_000 {
        let data: Vec<u8> = (0..64)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for h in [hints(40000, 5432), hints(9092, 40000), hints(40000, 9092)] {
            if matches!(probe(&data, &h), Detection::Match { .. }) {
                matched += 1;
            }
        }
    }
    assert_eq!(matched, 0);
}

//! Whole Kafka messages decoded with the `kafka-protocol` crate: request and response headers (every
//! api key, flexible versions included), request bodies for the topics they name, response bodies for
//! their error code.
//!
//! The crate sizes an array from its count before reading an element (upstream bug: a count of
//! 2^31 in an 11-byte message asks for hundreds of GiB). podtap feeds it at most `MAX_WHOLE` bytes
//! and its allocator (`crate::allocator`) maps such requests without reserving memory, so a forged count
//! is a decode error, not an abort.

use bytes::Bytes;
use kafka_protocol::{
    messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind},
    protocol::Decodable,
};

use super::prefix::{learn_topic, push_topic, topic_of_id, TopicIds};

/// A request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

fn api(key: i16) -> Option<ApiKey> {
    ApiKey::try_from(key).ok()
}

/// `Produce`, `Fetch`, `ApiVersions`, ... (`Unknown(N)` for a key the crate does not know).
#[must_use]
pub fn api_name(key: i16) -> String {
    match api(key) {
        Some(api) => format!("{api:?}"),
        None => format!("Unknown({key})"),
    }
}

/// Whether the crate knows this api key and decodes this version of it.
#[must_use]
pub fn supported(key: i16, version: i16) -> bool {
    api(key).is_some_and(|api| {
        let range = api.valid_versions();
        (range.min..=range.max).contains(&version)
    })
}

/// Whether this version of this api uses compact strings and arrays and tagged fields ("flexible
/// versions": request header v2). Unknown keys are taken as not flexible.
#[must_use]
pub fn flexible(key: i16, version: i16) -> bool {
    api(key).is_some_and(|api| api.request_header_version(version) >= 2)
}

/// Decodes the request header at the start of `msg` (the bytes after the size); returns it and its
/// length. `None` when it is not complete or not valid. The first four fields are the same in every
/// header version, so an unknown key still yields them (read as header v1).
#[must_use]
pub fn request_header(msg: &[u8]) -> Option<(Header, usize)> {
    let key = i16::from_be_bytes(msg.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(msg.get(2..4)?.try_into().ok()?);
    let header_version = api(key).map_or(1, |api| api.request_header_version(version));
    let mut buf = msg;
    let header = RequestHeader::decode(&mut buf, header_version).ok()?;
    let client_id = if header_version >= 1 {
        header.client_id.map(|id| id.to_string())
    } else {
        None
    };
    Some((
        Header {
            api_key: header.request_api_key,
            api_version: header.request_api_version,
            correlation_id: header.correlation_id,
            client_id,
        },
        msg.len() - buf.len(),
    ))
}

/// The length of the response header at the start of `msg`, for a response to this request.
#[must_use]
pub fn response_header_len(msg: &[u8], key: i16, version: i16) -> Option<usize> {
    let header_version = api(key).map_or(0, |api| api.response_header_version(version));
    let mut buf = msg;
    ResponseHeader::decode(&mut buf, header_version).ok()?;
    Some(msg.len() - buf.len())
}

/// The request body, when the crate decodes this key and version.
#[must_use]
pub fn request_body(key: i16, version: i16, body: &[u8]) -> Option<RequestKind> {
    if !supported(key, version) {
        return None;
    }
    let mut bytes = Bytes::copy_from_slice(body);
    RequestKind::decode(api(key)?, &mut bytes, version).ok()
}

/// The response body, when the crate decodes this key and version.
#[must_use]
pub fn response_body(key: i16, version: i16, body: &[u8]) -> Option<ResponseKind> {
    if !supported(key, version) {
        return None;
    }
    let api = api(key)?;
    let decoded = ResponseKind::decode(api, &mut Bytes::copy_from_slice(body), version).ok();
    if decoded.is_none() && api == ApiKey::ApiVersions && version > 0 {
        // A broker that does not support the requested ApiVersions version answers in v0 (error 35
        // and the versions it does support).
        return ResponseKind::decode(api, &mut Bytes::copy_from_slice(body), 0).ok();
    }
    decoded
}

/// Produce: the acknowledgements asked for.
#[must_use]
pub fn produce_acks(request: &RequestKind) -> Option<i16> {
    match request {
        RequestKind::Produce(r) => Some(r.acks),
        _ => None,
    }
}

/// The topics a request names, in order, each once (Fetch: the fetched topics, not the forgotten
/// ones). A topic given by id is named from `ids`, else by the id's text. Requests of APIs that
/// name no topics (or broker-to-broker APIs): none.
#[must_use]
pub fn request_topics(request: &RequestKind, ids: &TopicIds) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = |n: &str| push_topic(&mut out, n.to_owned());
    match request {
        RequestKind::Produce(r) => r.topic_data.iter().for_each(|t| name(&t.name)),
        RequestKind::Fetch(r) => {
            for t in &r.topics {
                if t.topic.is_empty() {
                    if let Some(n) = topic_of_id(ids, t.topic_id.as_bytes()) {
                        name(&n);
                    }
                } else {
                    name(&t.topic);
                }
            }
        }
        RequestKind::ListOffsets(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::Metadata(r) => {
            for t in r.topics.iter().flatten() {
                match &t.name {
                    Some(n) => name(n),
                    None => {
                        if let Some(n) = topic_of_id(ids, t.topic_id.as_bytes()) {
                            name(&n);
                        }
                    }
                }
            }
        }
        RequestKind::OffsetCommit(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::OffsetFetch(r) => {
            r.topics.iter().flatten().for_each(|t| name(&t.name));
            for g in &r.groups {
                g.topics.iter().flatten().for_each(|t| name(&t.name));
            }
        }
        RequestKind::CreateTopics(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::DeleteTopics(r) => {
            r.topic_names.iter().for_each(|t| name(t));
            for t in &r.topics {
                match &t.name {
                    Some(n) => name(n),
                    None => {
                        if let Some(n) = topic_of_id(ids, t.topic_id.as_bytes()) {
                            name(&n);
                        }
                    }
                }
            }
        }
        RequestKind::DeleteRecords(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::OffsetForLeaderEpoch(r) => r.topics.iter().for_each(|t| name(&t.topic)),
        RequestKind::AddPartitionsToTxn(r) => {
            r.v3_and_below_topics.iter().for_each(|t| name(&t.name));
            for tx in &r.transactions {
                tx.topics.iter().for_each(|t| name(&t.name));
            }
        }
        RequestKind::TxnOffsetCommit(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::OffsetDelete(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::CreatePartitions(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::DescribeProducers(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::DescribeTopicPartitions(r) => r.topics.iter().for_each(|t| name(&t.name)),
        RequestKind::ElectLeaders(r) => r
            .topic_partitions
            .iter()
            .flatten()
            .for_each(|t| name(&t.topic)),
        RequestKind::AlterPartitionReassignments(r) => {
            r.topics.iter().for_each(|t| name(&t.name));
        }
        RequestKind::ListPartitionReassignments(r) => {
            r.topics.iter().flatten().for_each(|t| name(&t.name));
        }
        _ => {}
    }
    out
}

/// Remembers the topic ids a Metadata response names (v10+), for Fetch requests that use ids.
pub fn learn_topic_ids(response: &ResponseKind, ids: &mut TopicIds) {
    if let ResponseKind::Metadata(r) = response {
        for t in &r.topics {
            if let Some(name) = &t.name {
                learn_topic(ids, *t.topic_id.as_bytes(), name);
            }
        }
    }
}

/// Whether the crate knows this api key.
#[must_use]
pub fn known_key(key: i16) -> bool {
    api(key).is_some()
}

/// The newest version of this api key the crate decodes (0 for an unknown key).
#[must_use]
pub fn newest_version(key: i16) -> i16 {
    api(key).map_or(0, |api| api.valid_versions().max)
}

//! Kafka on a passive, possibly cut byte stream.
//!
//! Framing: every message is a 4-byte size and that many bytes. Requests start with a header (api
//! key, api version, correlation id, client id; header v2 adds tagged fields in flexible versions);
//! responses carry only the correlation id, so each connection keeps its requests waiting for an
//! answer (bounded) and decodes a response with the api key and version of the request it answers.
//! A broker answers a connection's requests in order (the protocol guarantees it and clients check
//! it), so when a response arrives the requests sent before its own will never be answered: they
//! become `no_response` at once.
//!
//! A message of at most `MAX_WHOLE` bytes is buffered whole and decoded by `kafka-protocol`
//! (`decode`): the topics a request names, the error code a response carries (`error_code`). A
//! longer one is never buffered: its header is decoded from its first bytes, the topics and error code
//! are read from the start of its body (`prefix`), and the rest is skipped (`Feed.skip`, so the kernel
//! stops copying it). When bytes of a message are lost (the kernel copies a capped prefix of each
//! packet), what its first bytes say is reported and the rest of it is skipped, the size prefix telling
//! where the next message starts; lost bytes between messages make the parser look for the next
//! plausible header (requests: a known api key and version, this connection's client id; responses: the
//! correlation id of a waiting request).
//!
//! Produce requests with `acks = 0` get no response: they are reported at once as one-way calls (no
//! `response`, status `ok`). Unknown api keys and versions the crate does not decode are still reported
//! with their header (and, for Produce, Fetch and Metadata, the topics their body's start names).

mod decode;
mod error_code;
pub mod prefix;

use std::collections::VecDeque;

use super::{
    detect::{Detection, Hints, Known},
    Feed, Parser, ParserStats,
};
use crate::model::{
    CallStatus, KafkaRequest, KafkaResponse, ParsedCall, Protocol, Request, Response, Side,
    UnixNanos,
};
use crate::protocols::pending::push_bounded;
use prefix::TopicIds;

/// The broker's well-known port: the second signal of detection.
pub const PORTS: &[u16] = &[9092];
/// Requests waiting for a response before the oldest is dropped (counted as `pending_overflow`).
const MAX_PENDING: usize = 128;
/// Messages up to this size (size prefix included) are buffered whole and decoded by the crate; the
/// first bytes of longer ones are read and the rest skipped.
pub const MAX_WHOLE: usize = 16 * 1024;
/// A size beyond this is not Kafka (brokers refuse requests over 100 MiB by default).
const MAX_MESSAGE: usize = 128 << 20;
/// Bytes of an incomplete message kept, to report it should the rest be lost.
const KEEP_PREFIX: usize = 2048;
/// A longer client id makes detection and resynchronisation reject a header.
const MAX_CLIENT_ID: usize = 512;
/// Client id bytes detection looks at before deciding.
const CLIENT_ID_LOOK: usize = 32;
/// Smallest request after the size: api key, version, correlation id (header v0).
const MIN_REQUEST: usize = 8;
/// Smallest response after the size: the correlation id.
const MIN_RESPONSE: usize = 4;
/// Detection and resynchronisation: smallest request (header v1 with an empty client id).
const MIN_REQUEST_V1: usize = 10;
/// With the well-known port as second signal, api keys and versions up to these are accepted.
const MAX_KEY_BY_PORT: i16 = 127;
const MAX_VERSION_BY_PORT: i16 = 31;
/// Resynchronisation accepts versions up to this many past the crate's newest.
const NEWER_VERSIONS: i16 = 8;

/// Probes the first bytes one side sent. Content first: a request header with a known api key, a
/// version the crate decodes, a non-negative correlation id and a plausible client id, with a size
/// that fits the bytes. Port 9092 second: towards it, any plausible request header (keys and versions
/// the crate does not know); from it, a whole response (a stream joined after its requests).
#[must_use]
pub fn probe(data: &[u8], hints: &Hints) -> Detection {
    let by_port = hints.sender_by_port(PORTS);
    let matched = |sender| Detection::Match {
        protocol: Known::Kafka,
        sender,
    };
    if by_port == Some(Side::Server) {
        // The broker's end speaks: only responses come from it.
        return match response_check(data) {
            Check::Yes => matched(Side::Server),
            Check::Maybe => Detection::NeedMore,
            Check::No => Detection::NoMatch,
        };
    }
    let check = match request_check(data, Level::Content, None) {
        Check::No if by_port == Some(Side::Client) => request_check(data, Level::Port, None),
        check => check,
    };
    match check {
        Check::Yes => matched(Side::Client),
        Check::Maybe => Detection::NeedMore,
        Check::No => Detection::NoMatch,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Yes,
    No,
    /// Consistent so far; more bytes decide.
    Maybe,
}

/// How much a request header check asks of the api key and version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    /// A key and version the crate decodes.
    Content,
    /// Any key and version in a plausible range (the connection uses the well-known port).
    Port,
    /// A key the crate knows, a version up to a few past its newest (inside a Kafka connection).
    Resync,
}

fn be_i16(data: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(data: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// Whether the 4 bytes at the start of `data` (as many as there are) can be a size in `min..=MAX`.
fn size_check(data: &[u8], min: usize) -> Check {
    match be_i32(data, 0) {
        Some(size) => match usize::try_from(size) {
            Ok(size) if (min..=MAX_MESSAGE).contains(&size) => Check::Yes,
            _ => Check::No,
        },
        // Sizes up to MAX_MESSAGE start with a byte below 8.
        None if data.first().is_none_or(|&b| b < 8) => Check::Maybe,
        None => Check::No,
    }
}

/// After a message of `total` bytes at the start of `data`: nothing, or the start of a plausible
/// next message.
fn next_check(data: &[u8], total: usize, min: usize) -> bool {
    data.len() <= total || size_check(&data[total..], min) != Check::No
}

/// Whether `data` starts with a plausible request (size, header, client id).
fn request_check(data: &[u8], level: Level, client_id: Option<&str>) -> Check {
    match size_check(data, MIN_REQUEST_V1) {
        Check::Yes => {}
        other => return other,
    }
    let size = be_i32(data, 0).unwrap_or_default() as usize;
    let Some(key) = be_i16(data, 4) else {
        return Check::Maybe;
    };
    let key_ok = match level {
        Level::Content | Level::Resync => decode::known_key(key),
        Level::Port => (0..=MAX_KEY_BY_PORT).contains(&key),
    };
    if !key_ok {
        return Check::No;
    }
    let Some(version) = be_i16(data, 6) else {
        return Check::Maybe;
    };
    let version_ok = match level {
        Level::Content => decode::supported(key, version),
        Level::Port => (0..=MAX_VERSION_BY_PORT).contains(&version),
        Level::Resync => (0..=decode::newest_version(key) + NEWER_VERSIONS).contains(&version),
    };
    if !version_ok {
        return Check::No;
    }
    let Some(correlation_id) = be_i32(data, 8) else {
        return Check::Maybe;
    };
    if correlation_id < 0 {
        return Check::No;
    }
    let Some(id_len) = be_i16(data, 12) else {
        return Check::Maybe;
    };
    let id_len = match usize::try_from(id_len) {
        Ok(len) if len <= MAX_CLIENT_ID => len,
        Ok(_) => return Check::No,
        Err(_) if id_len == -1 => 0,
        Err(_) => return Check::No,
    };
    if MIN_REQUEST_V1 + id_len > size {
        return Check::No;
    }
    let visible = &data[14..data.len().min(14 + id_len)];
    if !visible.iter().all(|&b| b >= 0x20 && b != 0x7f) {
        return Check::No;
    }
    if let Some(known) = client_id {
        if !known.as_bytes().starts_with(visible)
            || (visible.len() == id_len && known.len() != id_len)
        {
            return Check::No;
        }
    }
    if visible.len() < id_len.min(CLIENT_ID_LOOK) {
        return Check::Maybe;
    }
    if !next_check(data, 4 + size, MIN_REQUEST) {
        return Check::No;
    }
    if key == 0 && !produce_body_check(data, version, 14 + id_len, 4 + size) {
        return Check::No;
    }
    Check::Yes
}

/// Produce (api key 0) is also what a response to correlation id 0..=11 looks like (the id's two
/// zero bytes read as key 0): its body must start as a Produce body does (valid `acks`, a timeout, a
/// first topic with a legal topic name) with room for one topic with one partition. `at`: where the
/// header's client id ends; `total`: where the message ends. Bytes not captured yet decide nothing.
fn produce_body_check(data: &[u8], version: i16, at: usize, total: usize) -> bool {
    let flexible = decode::flexible(0, version);
    let mut at = at;
    if flexible {
        // Header tagged fields: none is what clients send.
        match data.get(at) {
            Some(0) => at += 1,
            Some(_) => return false,
            None => return true,
        }
    }
    if version >= 3 {
        // transactional_id: a nullable (compact) string.
        let len = if flexible {
            match data.get(at) {
                Some(&b) if b < 0x80 => {
                    at += 1;
                    usize::from(b).saturating_sub(1)
                }
                Some(_) => return false,
                None => return true,
            }
        } else {
            match be_i16(data, at) {
                Some(-1) => {
                    at += 2;
                    0
                }
                Some(len) if len >= 0 => {
                    at += 2;
                    len as usize
                }
                Some(_) => return false,
                None => return true,
            }
        };
        at += len;
    }
    // acks, timeout, topics (count, name, partitions (count, index, records)), tagged fields.
    let smallest = if flexible { 18 } else { 25 };
    if at + smallest > total {
        return false;
    }
    if be_i16(data, at).is_some_and(|acks| !(-1..=1).contains(&acks))
        || be_i32(data, at + 2).is_some_and(|timeout| timeout < 0)
    {
        return false;
    }
    let (topics, name_at) = if flexible {
        (data.get(at + 6).map(|&b| i32::from(b) - 1), at + 7)
    } else {
        (be_i32(data, at + 6), at + 10)
    };
    let Some(topics) = topics else {
        return true;
    };
    if topics < 1 || topics as usize > (total - at) / 11 {
        return false;
    }
    // The first topic's name: 1 to 249 of the characters Kafka allows in topic names.
    let name_len = if flexible {
        data.get(name_at).map(|&b| (i32::from(b) - 1, name_at + 1))
    } else {
        be_i16(data, name_at).map(|n| (i32::from(n), name_at + 2))
    };
    let Some((len, from)) = name_len else {
        return true;
    };
    if !(1..=249).contains(&len) {
        return false;
    }
    let name = &data[from.min(data.len())..(from + len as usize).min(data.len())];
    name.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether `data` starts with a whole response (size, non-negative correlation id) followed by
/// nothing or by the start of another.
fn response_check(data: &[u8]) -> Check {
    match size_check(data, MIN_RESPONSE) {
        Check::Yes => {}
        other => return other,
    }
    let size = be_i32(data, 0).unwrap_or_default() as usize;
    let Some(correlation_id) = be_i32(data, 4) else {
        return Check::Maybe;
    };
    if correlation_id < 0 || data.len() < 4 + size || !next_check(data, 4 + size, MIN_RESPONSE) {
        return Check::No;
    }
    Check::Yes
}

/// Where one side's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a message boundary: a size comes next.
    Frame,
    /// The rest of a message is being skipped (`Feed.skip`).
    Skipping,
    /// Lost bytes ended inside a message: this many of its bytes are still to come, to be skipped.
    Discard(u64),
    /// Lost track of the message boundaries: looking for the next plausible message start.
    Resync,
}

/// A message offered in part, waiting for the rest.
#[derive(Debug)]
struct Partial {
    /// Size prefix included.
    total: usize,
    /// Bytes of it offered so far.
    seen: usize,
    start: UnixNanos,
    /// Its first bytes (size prefix included), at most `KEEP_PREFIX`.
    prefix: Vec<u8>,
}

#[derive(Debug)]
struct SideState {
    state: State,
    partial: Option<Partial>,
}

impl SideState {
    fn new() -> Self {
        Self {
            state: State::Frame,
            partial: None,
        }
    }
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    request: KafkaRequest,
    api_key: i16,
    start: UnixNanos,
}

/// A response whose start was read and whose rest is being skipped.
#[derive(Debug)]
struct InFlight {
    pending: Pending,
    error_code: Option<i16>,
}

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    /// Its first bytes do not hold its header yet.
    NeedMore,
    Malformed,
}

/// The Kafka parser of one connection.
#[derive(Debug)]
pub struct KafkaParser {
    client: SideState,
    server: SideState,
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    /// Calls decided by a `gap` (which has no output), emitted by the next call that has one.
    ready: Vec<ParsedCall>,
    /// Topic ids learned from this connection's Metadata responses.
    topic_ids: TopicIds,
    /// The client id of this connection's last request (resynchronisation looks for it).
    client_id: Option<String>,
    last_ts: UnixNanos,
    stats: ParserStats,
}

impl Default for KafkaParser {
    fn default() -> Self {
        Self::new()
    }
}

impl KafkaParser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            client: SideState::new(),
            server: SideState::new(),
            pending: VecDeque::new(),
            in_flight: None,
            ready: Vec::new(),
            topic_ids: TopicIds::new(),
            client_id: None,
            last_ts: 0,
            stats: ParserStats::default(),
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn malformed(&mut self, side: Side) {
        self.stats.malformed += 1;
        let s = self.side_mut(side);
        s.state = State::Resync;
        s.partial = None;
    }

    fn feed_side(
        &mut self,
        side: Side,
        data: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Feed {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            if rest.is_empty() {
                return Feed { consumed, skip: 0 };
            }
            match self.side_mut(side).state {
                State::Discard(n) => {
                    self.side_mut(side).state = State::Skipping;
                    return Feed { consumed, skip: n };
                }
                // The flow layer feeds no skipped byte: the skip is over.
                State::Skipping => self.side_mut(side).state = State::Frame,
                State::Resync => match self.find_start(side, rest) {
                    Ok(at) => {
                        consumed += at;
                        self.side_mut(side).state = State::Frame;
                    }
                    Err(keep_from) => {
                        return Feed {
                            consumed: consumed + keep_from,
                            skip: 0,
                        }
                    }
                },
                State::Frame => {
                    let Some(size) = be_i32(rest, 0) else {
                        return Feed { consumed, skip: 0 };
                    };
                    let min = match side {
                        Side::Client => MIN_REQUEST,
                        Side::Server => MIN_RESPONSE,
                    };
                    let Some(size) = usize::try_from(size)
                        .ok()
                        .filter(|s| (min..=MAX_MESSAGE).contains(s))
                    else {
                        self.malformed(side);
                        consumed += 1;
                        continue;
                    };
                    let total = 4 + size;
                    let start = self.side_mut(side).partial.as_ref().map_or(ts, |p| p.start);
                    if rest.len() >= total {
                        self.side_mut(side).partial = None;
                        match self.message(side, &rest[4..total], true, start, ts, calls) {
                            Outcome::Done => consumed += total,
                            Outcome::NeedMore | Outcome::Malformed => {
                                self.malformed(side);
                                consumed += 1;
                            }
                        }
                        continue;
                    }
                    if total <= MAX_WHOLE {
                        self.remember(side, rest, total, start);
                        return Feed { consumed, skip: 0 };
                    }
                    // Too long to buffer: what its first bytes say, and skip the rest.
                    match self.message(side, &rest[4..], false, start, ts, calls) {
                        Outcome::Done => {
                            let s = self.side_mut(side);
                            s.partial = None;
                            s.state = State::Skipping;
                            return Feed {
                                consumed: consumed + rest.len(),
                                skip: (total - rest.len()) as u64,
                            };
                        }
                        Outcome::NeedMore => {
                            self.remember(side, rest, total, start);
                            return Feed { consumed, skip: 0 };
                        }
                        Outcome::Malformed => {
                            self.malformed(side);
                            consumed += 1;
                        }
                    }
                }
            }
        }
    }

    /// Keeps the first bytes of an incomplete message, in case the rest is lost.
    fn remember(&mut self, side: Side, rest: &[u8], total: usize, start: UnixNanos) {
        let keep = rest.len().min(KEEP_PREFIX);
        let s = self.side_mut(side);
        match &mut s.partial {
            Some(p) => {
                if p.prefix.len() < keep {
                    p.prefix.extend_from_slice(&rest[p.prefix.len()..keep]);
                }
                p.seen = rest.len();
            }
            None => {
                s.partial = Some(Partial {
                    total,
                    seen: rest.len(),
                    start,
                    prefix: rest[..keep].to_vec(),
                });
            }
        }
    }

    /// Where the next message of `side` plausibly starts in `data` (`Ok`), or how many bytes
    /// certainly hold none (`Err`: the rest is kept until more arrives).
    fn find_start(&self, side: Side, data: &[u8]) -> Result<usize, usize> {
        for at in 0..data.len() {
            let here = &data[at..];
            let check = match side {
                Side::Client => request_check(here, Level::Resync, self.client_id.as_deref()),
                Side::Server => match size_check(here, MIN_RESPONSE) {
                    Check::Yes => match be_i32(here, 4) {
                        Some(id) if self.pending.iter().any(|p| p.request.correlation_id == id) => {
                            Check::Yes
                        }
                        Some(_) => Check::No,
                        None => Check::Maybe,
                    },
                    other => other,
                },
            };
            match check {
                Check::Yes => return Ok(at),
                Check::Maybe => return Err(at),
                Check::No => {}
            }
        }
        Err(data.len())
    }

    /// One message of `side` (`msg`: after the size), whole or only its first bytes.
    fn message(
        &mut self,
        side: Side,
        msg: &[u8],
        whole: bool,
        start: UnixNanos,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Outcome {
        match side {
            Side::Client => self.request(msg, whole, start, ts, calls),
            Side::Server => self.response(msg, whole, ts, calls),
        }
    }

    fn request(
        &mut self,
        msg: &[u8],
        whole: bool,
        start: UnixNanos,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Outcome {
        let Some((header, header_len)) = decode::request_header(msg) else {
            return if whole || msg.len() >= KEEP_PREFIX {
                Outcome::Malformed
            } else {
                Outcome::NeedMore
            };
        };
        let (key, version) = (header.api_key, header.api_version);
        let body = &msg[header_len..];
        let decoded = if whole {
            decode::request_body(key, version, body)
        } else {
            None
        };
        let (topics, acks) = match decoded {
            Some(kind) => (
                decode::request_topics(&kind, &self.topic_ids),
                decode::produce_acks(&kind),
            ),
            None => {
                let flexible = decode::flexible(key, version);
                let found = prefix::request(key, version, flexible, body, &self.topic_ids);
                (found.topics, found.acks)
            }
        };
        if header.client_id.is_some() && self.client_id != header.client_id {
            self.client_id.clone_from(&header.client_id);
        }
        let request = KafkaRequest {
            api: decode::api_name(key),
            api_version: version,
            correlation_id: header.correlation_id,
            client_id: header.client_id,
            topics,
        };
        if key == 0 && acks == Some(0) {
            // acks=0: the broker sends nothing back.
            calls.push(ParsedCall {
                protocol: Protocol::Kafka,
                version: None,
                start,
                end: ts,
                request: Request::Kafka(request),
                response: None,
                status: CallStatus::Ok,
            });
            return Outcome::Done;
        }
        let pending = Pending {
            request,
            api_key: key,
            start,
        };
        if push_bounded(&mut self.pending, pending, MAX_PENDING).is_some() {
            self.stats.pending_overflow += 1;
        }
        Outcome::Done
    }

    fn response(
        &mut self,
        msg: &[u8],
        whole: bool,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Outcome {
        let Some(correlation_id) = be_i32(msg, 0) else {
            return if whole {
                Outcome::Malformed
            } else {
                Outcome::NeedMore
            };
        };
        let Some(at) = self
            .pending
            .iter()
            .position(|p| p.request.correlation_id == correlation_id)
        else {
            // The answer to a request not seen (before capture, or lost): passed over.
            return Outcome::Done;
        };
        let (key, version) = {
            let p = &self.pending[at];
            (p.api_key, p.request.api_version)
        };
        let header_len = decode::response_header_len(msg, key, version);
        if header_len.is_none() && !whole && msg.len() < KEEP_PREFIX {
            return Outcome::NeedMore;
        }
        // Answers come in request order: the requests before this one will not be answered.
        for _ in 0..at {
            if let Some(unanswered) = self.pending.pop_front() {
                calls.push(Self::unanswered(unanswered, ts));
            }
        }
        let Some(pending) = self.pending.pop_front() else {
            return Outcome::Done;
        };
        let error_code = header_len.and_then(|len| {
            let body = &msg[len..];
            if whole {
                if let Some(kind) = decode::response_body(key, version, body) {
                    decode::learn_topic_ids(&kind, &mut self.topic_ids);
                    return Some(error_code::error_code(&kind));
                }
            }
            let flexible = decode::flexible(key, version);
            prefix::response_error(key, version, flexible, body, &mut self.topic_ids)
        });
        let in_flight = InFlight {
            pending,
            error_code,
        };
        if whole {
            calls.push(Self::complete(in_flight, ts));
        } else if let Some(previous) = self.in_flight.replace(in_flight) {
            calls.push(Self::complete(previous, ts));
        }
        Outcome::Done
    }

    fn complete(in_flight: InFlight, end: UnixNanos) -> ParsedCall {
        let status = match in_flight.error_code {
            Some(code) if code != 0 => CallStatus::Error,
            _ => CallStatus::Ok,
        };
        ParsedCall {
            protocol: Protocol::Kafka,
            version: None,
            start: in_flight.pending.start,
            end,
            request: Request::Kafka(in_flight.pending.request),
            response: Some(Response::Kafka(KafkaResponse {
                error_code: in_flight.error_code,
            })),
            status,
        }
    }

    fn unanswered(pending: Pending, end: UnixNanos) -> ParsedCall {
        ParsedCall {
            protocol: Protocol::Kafka,
            version: None,
            start: pending.start,
            end,
            request: Request::Kafka(pending.request),
            response: None,
            status: CallStatus::NoResponse,
        }
    }

    /// Reports what the kept first bytes of a message say; the response it may start completes now.
    fn report_partial(
        &mut self,
        side: Side,
        partial: &Partial,
        end: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Outcome {
        let outcome = match partial.prefix.get(4..) {
            Some(msg) => self.message(side, msg, false, partial.start, end, calls),
            None => Outcome::NeedMore,
        };
        if let Some(in_flight) = self.in_flight.take() {
            calls.push(Self::complete(in_flight, end));
        }
        outcome
    }
}

impl Parser for KafkaParser {
    fn protocol(&self) -> Protocol {
        Protocol::Kafka
    }

    fn feed(
        &mut self,
        side: Side,
        data: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Feed {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        self.feed_side(side, data, ts, calls)
    }

    fn gap(&mut self, side: Side, len: u64) {
        let mut calls = std::mem::take(&mut self.ready);
        let state = self.side_mut(side).state;
        let partial = self.side_mut(side).partial.take();
        let next = match (state, partial) {
            (State::Frame, Some(partial)) => {
                // The first `seen` bytes of a message were offered, then `len` were lost.
                let outcome = self.report_partial(side, &partial, self.last_ts, &mut calls);
                let reached = partial.seen as u64 + len;
                let total = partial.total as u64;
                if outcome == Outcome::Malformed {
                    self.stats.malformed += 1;
                    State::Resync
                } else if reached < total {
                    State::Discard(total - reached)
                } else if reached == total {
                    State::Frame
                } else {
                    State::Resync
                }
            }
            (State::Discard(n), _) if len < n => State::Discard(n - len),
            (State::Discard(n), _) if len == n => State::Frame,
            // Lost the start of a message (a request lost: its response is passed over; a response
            // lost: its request becomes `no_response` when the next response comes).
            _ => State::Resync,
        };
        self.side_mut(side).state = next;
        self.ready = calls;
    }

    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        let s = self.side_mut(side);
        if s.state == State::Skipping {
            s.state = State::Frame;
            if side == Side::Server {
                if let Some(in_flight) = self.in_flight.take() {
                    calls.push(Self::complete(in_flight, ts));
                }
            }
        }
    }

    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.append(&mut self.ready);
        // Messages cut by the close: what their first bytes say.
        for side in [Side::Client, Side::Server] {
            if let Some(partial) = self.side_mut(side).partial.take() {
                self.report_partial(side, &partial, ts, calls);
            }
        }
        if let Some(in_flight) = self.in_flight.take() {
            calls.push(Self::complete(in_flight, ts));
        }
        while let Some(pending) = self.pending.pop_front() {
            calls.push(Self::unanswered(pending, ts));
        }
    }

    fn held(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;

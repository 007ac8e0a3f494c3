//! AMQP 0-9-1 (RabbitMQ) on a passive, possibly truncated byte stream.
//!
//! In: both sides' bytes. Frames are read by their 7-byte head; method frames are decoded with
//! `amq-protocol` (`frame.rs`); content header frames are read for their body size only, and body frames
//! are never read: their payload becomes a skip request, so message bodies are neither buffered nor
//! exported. Heartbeats are passed over. Out: one record per method, in one of three shapes:
//!
//! - A synchronous method and the method that answers it, per channel: `queue.declare` +
//!   `queue.declare-ok`, `basic.get` + `basic.get-ok` or `basic.get-empty`, `connection.close` +
//!   `connection.close-ok`, ... The server starts some exchanges (`connection.start`, `tune`, a close);
//!   the record's client and server are still the connection's. A method sent with `nowait` is
//!   one-way.
//! - A close that names the pending method that caused it (`class-id`/`method-id`) is that method's
//!   answer: `queue.declare` answered by `channel.close` with `reply_code` 404, status `error`. The
//!   `close-ok` that acknowledges such a close has no request left and is reported alone, one-way.
//!   A close that answers nothing waits for its `close-ok`; the response then carries the close's
//!   `reply_code`.
//! - One-way: `basic.publish`, `basic.deliver`, `basic.return`, `basic.ack`/`nack`/`reject` from the
//!   consumer, `basic.recover-async`, `connection.blocked`/`unblocked`, and any answer whose request
//!   was not seen (joined mid-stream, lost in a gap). A method followed by content is reported when
//!   its last body byte has passed.
//!
//! Publisher confirms: after `confirm.select` on a channel, publishes are numbered from 1
//! (`delivery_tag`) and each waits for the server's `basic.ack` or `basic.nack` with its number (or a
//! `multiple` one covering it), which becomes its response; a nack is an `error`. A confirm whose
//! publish was not seen is one-way.
//!
//! `status` is `error` for an answer or acknowledged close with `reply_code` >= 300 and for a nack;
//! `no_response` for a synchronous method (or confirmed publish) left unanswered when its channel or
//! connection closed. Bounded: channels tracked, requests pending per channel, publishes awaiting
//! confirms; a request that finds no room (or the oldest one, pushed out) is reported `no_response`
//! at once and counted in `pending_overflow`. After lost bytes or a frame that does not parse, the
//! side resynchronises on the next method frame that decodes (its frame-end byte 0xCE in place) or
//! heartbeat.

mod frame;

use std::collections::{BTreeMap, VecDeque};

use frame::{FrameHead, FrameKind, Method, MethodId, Role, FRAME_END, HEAD_LEN, PROTOCOL_HEADER};

use super::{
    detect::{Detection, Hints, Known},
    Feed, Parser, ParserStats,
};
use crate::model::{
    AmqpRequest, AmqpResponse, CallStatus, ParsedCall, Protocol, Request, Response, Side, UnixNanos,
};
use crate::protocols::pending::push_bounded;

/// The well-known port of plaintext AMQP.
pub const AMQP_PORTS: &[u16] = &[5672];
/// Synchronous methods waiting for an answer on one channel.
const MAX_PENDING: usize = 16;
/// Publishes waiting for a confirm on one channel.
const MAX_UNCONFIRMED: usize = 1024;
/// Channels with state (RabbitMQ's default `channel_max` is 2047).
const MAX_CHANNELS: usize = 2048;
/// Channel 0: the connection's own methods.
const CONNECTION_CHANNEL: u16 = 0;

/// Probes the first bytes of one side: the protocol header (client), else a whole valid frame of a
/// connection caught mid-stream, whose sender is told by its method or by port 5672.
#[must_use]
pub fn probe(data: &[u8], hints: &Hints) -> Detection {
    if data.is_empty() {
        return Detection::NeedMore;
    }
    if data.len() < PROTOCOL_HEADER.len() && PROTOCOL_HEADER.starts_with(data) {
        return Detection::NeedMore;
    }
    if data.starts_with(PROTOCOL_HEADER) {
        return Detection::Match {
            protocol: Known::Amqp,
            sender: Side::Client,
        };
    }
    if !matches!(data[0], 1 | 2 | 3 | 8) {
        return Detection::NoMatch;
    }
    let matched = |sender: Option<Side>| match sender.or_else(|| hints.sender_by_port(AMQP_PORTS)) {
        Some(sender) => Detection::Match {
            protocol: Known::Amqp,
            sender,
        },
        None => Detection::NoMatch,
    };
    match frame::checked_frame(data) {
        Some(Ok((_, Some(method)))) => matched(method.info.sender.side()),
        // Content and heartbeat frames flow both ways: only the port tells the sender.
        Some(Ok((_, None))) => matched(None),
        Some(Err(_)) => Detection::NoMatch,
        None => match frame::frame_head(data) {
            None => Detection::NeedMore,
            Some(Err(_)) => Detection::NoMatch,
            Some(Ok(head)) => {
                // The frame is not whole yet. A known method on the AMQP port is enough.
                let known = (head.kind == FrameKind::Method)
                    .then(|| frame::method_id(&data[HEAD_LEN..]).and_then(frame::method_info))
                    .flatten();
                match known {
                    Some(info) if hints.uses_port(AMQP_PORTS) => matched(info.sender.side()),
                    _ => Detection::NeedMore,
                }
            }
        },
    }
}

/// A synchronous method waiting for its answer, or a publish waiting for its confirm.
#[derive(Debug)]
struct Pending {
    request: AmqpRequest,
    id: MethodId,
    sender: Side,
    /// Method ids (same class) that answer it.
    answers: &'static [u16],
    start: UnixNanos,
    /// A close: its reply code decides the status.
    reply_code: Option<u16>,
}

/// The content (header and body frames) of a method, passing.
#[derive(Debug)]
struct Content {
    /// The record completed by the content's last byte (none for a publish awaiting its confirm).
    call: Option<ParsedCall>,
    /// Body bytes still to come; `None` until the content header.
    remaining: Option<u64>,
}

/// What one channel has open.
#[derive(Debug, Default)]
struct Channel {
    pending: VecDeque<Pending>,
    /// Publisher confirms are on: the number of the next publish.
    next_publish: Option<u64>,
    unconfirmed: VecDeque<Pending>,
    /// Content passing on this channel, per side (client, server).
    content: [Option<Content>; 2],
}

/// Where one side's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Frames,
    /// Passing the rest of a frame: `body` bytes of content of `channel` (0 for a header or method
    /// frame's rest).
    Skipping { channel: u16, body: u64 },
    /// Lost bytes or garbage: looking for the next frame.
    Resync,
}

/// The AMQP parser of one connection.
#[derive(Debug)]
pub struct AmqpParser {
    /// Per side: client, server.
    state: [State; 2],
    channels: BTreeMap<u16, Channel>,
    /// Calls decided by a `gap` (which has no output), emitted by the next call that has one.
    ready: Vec<ParsedCall>,
    last_ts: UnixNanos,
    stats: ParserStats,
}

impl Default for AmqpParser {
    fn default() -> Self {
        Self::new()
    }
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// The result of reading one frame.
enum Step {
    /// This many bytes were used.
    Used(usize),
    /// The frame is not whole yet.
    Incomplete,
    /// Used this many, and the next `skip` bytes are not needed.
    Skip { used: usize, skip: u64 },
    /// Not a frame: resynchronise.
    Malformed,
}

impl AmqpParser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: [State::Frames; 2],
            channels: BTreeMap::new(),
            ready: Vec::new(),
            last_ts: 0,
            stats: ParserStats::default(),
        }
    }

    /// Reads the frame `rest` starts with.
    fn frame(
        &mut self,
        side: Side,
        rest: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Step {
        if rest[0] == b'A' {
            // A protocol header: the client's first bytes, or a server refusing the version.
            if rest.len() < PROTOCOL_HEADER.len() {
                return if b"AMQP".starts_with(&rest[..rest.len().min(4)]) {
                    Step::Incomplete
                } else {
                    Step::Malformed
                };
            }
            return if rest.starts_with(b"AMQP") {
                Step::Used(PROTOCOL_HEADER.len())
            } else {
                Step::Malformed
            };
        }
        let head = match frame::frame_head(rest) {
            None => return Step::Incomplete,
            Some(Err(_)) => return Step::Malformed,
            Some(Ok(head)) => head,
        };
        let total = head.total();
        let whole = rest.get(..total);
        if let Some(frame) = whole {
            if frame[total - 1] != FRAME_END {
                return Step::Malformed;
            }
        }
        match head.kind {
            FrameKind::Heartbeat => whole.map_or(Step::Incomplete, |_| Step::Used(total)),
            FrameKind::Method => self.method_frame(side, head, rest, ts, calls),
            FrameKind::Header => {
                if head.size < frame::CONTENT_HEADER_PREFIX as u32 {
                    return Step::Malformed;
                }
                let Some((_, body)) = frame::content_header(&rest[HEAD_LEN..]) else {
                    return Step::Incomplete;
                };
                self.content_progress(side, head.channel, Some(body), 0, ts, calls);
                match whole {
                    Some(_) => Step::Used(total),
                    // Large properties: pass them over.
                    None => {
                        let used = HEAD_LEN + frame::CONTENT_HEADER_PREFIX;
                        self.state[index(side)] = State::Skipping {
                            channel: head.channel,
                            body: 0,
                        };
                        Step::Skip {
                            used,
                            skip: (total - used) as u64,
                        }
                    }
                }
            }
            FrameKind::Body => match whole {
                Some(_) => {
                    let body = u64::from(head.size);
                    self.content_progress(side, head.channel, None, body, ts, calls);
                    Step::Used(total)
                }
                None => {
                    // The payload and the frame end pass without being copied.
                    self.state[index(side)] = State::Skipping {
                        channel: head.channel,
                        body: u64::from(head.size),
                    };
                    Step::Skip {
                        used: HEAD_LEN,
                        skip: u64::from(head.size) + 1,
                    }
                }
            },
        }
    }

    fn method_frame(
        &mut self,
        side: Side,
        head: FrameHead,
        rest: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Step {
        let total = head.total();
        if head.size > frame::MAX_DECODED_PAYLOAD {
            // Too large to wait for: name it by its id and pass the arguments over.
            let Some(id) = frame::method_id(&rest[HEAD_LEN..]) else {
                return Step::Incomplete;
            };
            let Some(info) = frame::method_info(id) else {
                return Step::Malformed;
            };
            self.method(side, head.channel, Method::bare(info), ts, calls);
            self.state[index(side)] = State::Skipping {
                channel: head.channel,
                body: 0,
            };
            let used = HEAD_LEN + 4;
            return Step::Skip {
                used,
                skip: (total - used) as u64,
            };
        }
        let Some(whole) = rest.get(..total) else {
            return Step::Incomplete;
        };
        match frame::decode_method(whole) {
            Ok(method) => {
                self.method(side, head.channel, method, ts, calls);
                Step::Used(total)
            }
            // Framing is intact: only this method is lost.
            Err(_) => {
                self.stats.malformed += 1;
                Step::Used(total)
            }
        }
    }

    /// Content of `channel` from `side`: a header announcing `header` body bytes, or `body` bytes.
    fn content_progress(
        &mut self,
        side: Side,
        channel: u16,
        header: Option<u64>,
        body: u64,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let Some(state) = self.channels.get_mut(&channel) else {
            return;
        };
        let slot = &mut state.content[index(side)];
        let Some(content) = slot else {
            // Content whose method was not seen.
            return;
        };
        let remaining = match (content.remaining, header) {
            (None, Some(size)) => size,
            (Some(left), None) => left.saturating_sub(body),
            // A body before its header, or a second header: the content is over.
            _ => 0,
        };
        content.remaining = Some(remaining);
        if remaining == 0 {
            if let Some(mut call) = slot.take().and_then(|c| c.call) {
                call.end = ts;
                calls.push(call);
            }
        }
    }

    /// The channel's state, made if there is room for it.
    fn channel(&mut self, channel: u16) -> Option<&mut Channel> {
        if !self.channels.contains_key(&channel) && self.channels.len() >= MAX_CHANNELS {
            return None;
        }
        Some(self.channels.entry(channel).or_default())
    }

    /// One decoded method of `channel` sent by `side`.
    fn method(
        &mut self,
        side: Side,
        channel: u16,
        method: Method,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        // Content frames come right after their method: one still passing was cut short.
        if let Some(content) = self
            .channels
            .get_mut(&channel)
            .and_then(|c| c.content[index(side)].take())
        {
            if let Some(mut call) = content.call {
                call.end = ts;
                calls.push(call);
            }
        }
        let info = method.info;
        if info.id == (85, 10) {
            // confirm.select: the channel's publishes are numbered from here on.
            if let Some(state) = self.channel(channel) {
                state.next_publish.get_or_insert(1);
            }
        }
        match info.role {
            Role::Answer => self.answer(side, channel, method, ts, calls),
            Role::Request(_) if info.id == (10, 50) || info.id == (20, 40) => {
                self.close_method(side, channel, method, ts, calls);
            }
            Role::Request(answers) if !method.nowait => {
                let pending = Pending {
                    request: request(channel, &method),
                    id: info.id,
                    sender: side,
                    answers,
                    start: ts,
                    reply_code: None,
                };
                self.push_pending(channel, pending, calls);
            }
            Role::Request(_) | Role::OneWay => self.one_way(side, channel, method, ts, calls),
        }
    }

    fn push_pending(&mut self, channel: u16, pending: Pending, calls: &mut Vec<ParsedCall>) {
        let ts = self.last_ts;
        let Some(state) = self.channel(channel) else {
            // No room to wait for its answer.
            self.stats.pending_overflow += 1;
            calls.push(unanswered(pending, ts));
            return;
        };
        if let Some(oldest) = push_bounded(&mut state.pending, pending, MAX_PENDING) {
            self.stats.pending_overflow += 1;
            calls.push(unanswered(oldest, ts));
        }
    }

    /// connection.close or channel.close: the answer to the pending method that caused it, or a
    /// request of its own awaiting its close-ok.
    fn close_method(
        &mut self,
        side: Side,
        channel: u16,
        method: Method,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let connection = channel == CONNECTION_CHANNEL;
        let cause = method.cause.filter(|&c| c != (0, 0));
        let caused = cause.and_then(|cause| {
            self.channels
                .iter_mut()
                .filter(|(&c, _)| connection || c == channel)
                .find_map(|(_, state)| {
                    let at = state
                        .pending
                        .iter()
                        .position(|p| p.sender != side && p.id == cause)?;
                    state.pending.remove(at)
                })
        });
        match caused {
            Some(pending) => calls.push(answered(pending, &method, ts)),
            None => {
                let pending = Pending {
                    request: request(channel, &method),
                    id: method.info.id,
                    sender: side,
                    answers: match method.info.role {
                        Role::Request(answers) => answers,
                        _ => &[],
                    },
                    start: ts,
                    reply_code: method.reply_code,
                };
                self.push_pending(channel, pending, calls);
            }
        }
    }

    /// An answer from `side`: completes the oldest request of the other side on `channel` that it
    /// answers; reported alone when there is none.
    fn answer(
        &mut self,
        side: Side,
        channel: u16,
        method: Method,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let id = method.info.id;
        let found = self.channels.get_mut(&channel).and_then(|state| {
            let at = state
                .pending
                .iter()
                .position(|p| p.sender != side && p.id.0 == id.0 && p.answers.contains(&id.1))?;
            state.pending.remove(at)
        });
        match found {
            Some(pending) if method.info.content => {
                // basic.get-ok: complete once its message has passed.
                let call = answered(pending, &method, ts);
                if let Some(state) = self.channels.get_mut(&channel) {
                    state.content[index(side)] = Some(Content {
                        call: Some(call),
                        remaining: None,
                    });
                }
            }
            Some(pending) => calls.push(answered(pending, &method, ts)),
            None => self.one_way(side, channel, method, ts, calls),
        }
        if id == (10, 51) {
            // The connection is closed: nothing open on it will be answered.
            let channels = std::mem::take(&mut self.channels);
            for (_, state) in channels {
                flush_channel(state, ts, calls);
            }
        } else if id == (20, 41) {
            if let Some(state) = self.channels.remove(&channel) {
                flush_channel(state, ts, calls);
            }
        }
    }

    /// A method nothing answers (or one that asked for no answer). Publishes in confirm mode wait for
    /// their confirm; server confirms complete them.
    fn one_way(
        &mut self,
        side: Side,
        channel: u16,
        method: Method,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let info = method.info;
        let confirm = side == Side::Server && (info.id == (60, 80) || info.id == (60, 120));
        if confirm && self.confirmed(channel, &method, ts, calls) {
            return;
        }
        let mut request = request(channel, &method);
        if info.id == (60, 40) && side == Side::Client {
            let confirming = self
                .channels
                .get_mut(&channel)
                .and_then(|state| state.next_publish.as_mut())
                .map(|next| {
                    let tag = *next;
                    *next += 1;
                    tag
                });
            if let Some(tag) = confirming {
                request.delivery_tag = Some(tag);
                let pending = Pending {
                    request,
                    id: info.id,
                    sender: side,
                    answers: &[80, 120],
                    start: ts,
                    reply_code: None,
                };
                if let Some(state) = self.channels.get_mut(&channel) {
                    if let Some(oldest) =
                        push_bounded(&mut state.unconfirmed, pending, MAX_UNCONFIRMED)
                    {
                        self.stats.pending_overflow += 1;
                        calls.push(unanswered(oldest, ts));
                    }
                    state.content[index(side)] = Some(Content {
                        call: None,
                        remaining: None,
                    });
                }
                return;
            }
        }
        let call = ParsedCall {
            protocol: Protocol::Amqp,
            version: None,
            start: ts,
            end: ts,
            request: Request::Amqp(request),
            response: None,
            status: CallStatus::Ok,
        };
        if info.content {
            if let Some(state) = self.channel(channel) {
                state.content[index(side)] = Some(Content {
                    call: Some(call),
                    remaining: None,
                });
                return;
            }
        }
        calls.push(call);
    }

    /// A server's basic.ack / basic.nack: completes the publishes it confirms. False: it confirms
    /// none that was seen.
    fn confirmed(
        &mut self,
        channel: u16,
        method: &Method,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> bool {
        let Some(state) = self.channels.get_mut(&channel) else {
            return false;
        };
        let tag = method.delivery_tag.unwrap_or_default();
        let before = calls.len();
        if method.multiple {
            while let Some(front) = state.unconfirmed.front() {
                let seq = front.request.delivery_tag.unwrap_or_default();
                if tag != 0 && seq > tag {
                    break;
                }
                if let Some(pending) = state.unconfirmed.pop_front() {
                    calls.push(answered(pending, method, ts));
                }
            }
        } else if let Some(at) = state
            .unconfirmed
            .iter()
            .position(|p| p.request.delivery_tag == Some(tag))
        {
            if let Some(pending) = state.unconfirmed.remove(at) {
                calls.push(answered(pending, method, ts));
            }
        }
        calls.len() > before
    }

    /// Emits everything a side's lost bytes leave without an end: content passing on that side.
    fn lose_content(&mut self, side: Side) {
        let ts = self.last_ts;
        for state in self.channels.values_mut() {
            if let Some(content) = state.content[index(side)].take() {
                if let Some(mut call) = content.call {
                    call.end = ts;
                    self.ready.push(call);
                }
            }
        }
    }
}

/// The request part of a method's record.
fn request(channel: u16, method: &Method) -> AmqpRequest {
    AmqpRequest {
        method: method.info.name.to_owned(),
        channel,
        exchange: method.exchange.clone(),
        routing_key: method.routing_key.clone(),
        queue: method.queue.clone(),
        delivery_tag: method.delivery_tag,
    }
}

/// `pending` answered by `answer`.
fn answered(pending: Pending, answer: &Method, end: UnixNanos) -> ParsedCall {
    // A close-ok acknowledges the close's reply code.
    let reply_code = answer.reply_code.or(pending.reply_code);
    let nack = answer.info.id == (60, 120);
    let status = if nack || reply_code.is_some_and(|code| code >= 300) {
        CallStatus::Error
    } else {
        CallStatus::Ok
    };
    ParsedCall {
        protocol: Protocol::Amqp,
        version: None,
        start: pending.start,
        end,
        request: Request::Amqp(pending.request),
        response: Some(Response::Amqp(AmqpResponse {
            method: answer.info.name.to_owned(),
            reply_code,
        })),
        status,
    }
}

/// `pending` left unanswered: `no_response`, or `error` for a close that said so.
fn unanswered(pending: Pending, end: UnixNanos) -> ParsedCall {
    let status = if pending.reply_code.is_some_and(|code| code >= 300) {
        CallStatus::Error
    } else {
        CallStatus::NoResponse
    };
    ParsedCall {
        protocol: Protocol::Amqp,
        version: None,
        start: pending.start,
        end,
        request: Request::Amqp(pending.request),
        response: None,
        status,
    }
}

/// A channel that closed: its content passing is over, its requests and publishes unanswered.
fn flush_channel(state: Channel, end: UnixNanos, calls: &mut Vec<ParsedCall>) {
    let Channel {
        pending,
        unconfirmed,
        content,
        ..
    } = state;
    for content in content.into_iter().flatten() {
        if let Some(mut call) = content.call {
            call.end = end;
            calls.push(call);
        }
    }
    let mut left: Vec<Pending> = pending.into_iter().chain(unconfirmed).collect();
    left.sort_by_key(|p| p.start);
    calls.extend(left.into_iter().map(|p| unanswered(p, end)));
}

/// Where the next frame of a side that lost its place starts: a method frame that decodes, or a
/// heartbeat. `Ok(at)`: there; `Err(keep)`: none yet, keep the bytes from `keep` on.
fn find_frame(data: &[u8]) -> Result<usize, usize> {
    for at in 0..data.len() {
        let rest = &data[at..];
        match frame::frame_head(rest) {
            None => return Err(at),
            Some(Err(_)) => {}
            Some(Ok(head)) => match head.kind {
                FrameKind::Heartbeat if head.channel == 0 => match rest.get(HEAD_LEN) {
                    Some(&FRAME_END) => return Ok(at),
                    Some(_) => {}
                    None => return Err(at),
                },
                FrameKind::Method if head.size <= frame::MAX_DECODED_PAYLOAD => {
                    match rest.get(..head.total()) {
                        Some(whole) => {
                            if whole[whole.len() - 1] == FRAME_END
                                && frame::decode_method(whole).is_ok()
                            {
                                return Ok(at);
                            }
                        }
                        // Wait for the rest of a frame that names a known method.
                        None => match frame::method_id(&rest[HEAD_LEN..]) {
                            None => return Err(at),
                            Some(id) if frame::method_info(id).is_some() => return Err(at),
                            Some(_) => {}
                        },
                    }
                }
                _ => {}
            },
        }
    }
    Err(data.len())
}

impl Parser for AmqpParser {
    fn protocol(&self) -> Protocol {
        Protocol::Amqp
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
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            if rest.is_empty() {
                return Feed { consumed, skip: 0 };
            }
            match self.state[index(side)] {
                State::Resync => match find_frame(rest) {
                    Ok(at) => {
                        consumed += at;
                        self.state[index(side)] = State::Frames;
                    }
                    Err(keep) => {
                        return Feed {
                            consumed: consumed + keep,
                            skip: 0,
                        }
                    }
                },
                // The flow layer feeds no skipped bytes: a skip that ended without `skip_done`.
                State::Skipping { .. } => self.state[index(side)] = State::Frames,
                State::Frames => match self.frame(side, rest, ts, calls) {
                    Step::Used(n) => consumed += n,
                    Step::Incomplete => return Feed { consumed, skip: 0 },
                    Step::Skip { used, skip } => {
                        return Feed {
                            consumed: consumed + used,
                            skip,
                        }
                    }
                    Step::Malformed => {
                        self.stats.malformed += 1;
                        self.lose_content(side);
                        calls.append(&mut self.ready);
                        self.state[index(side)] = State::Resync;
                        consumed += 1;
                    }
                },
            }
        }
    }

    fn gap(&mut self, side: Side, _len: u64) {
        self.state[index(side)] = State::Resync;
        self.lose_content(side);
    }

    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        if let State::Skipping { channel, body } = self.state[index(side)] {
            self.state[index(side)] = State::Frames;
            if body > 0 {
                self.content_progress(side, channel, None, body, ts, calls);
            }
        }
    }

    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.append(&mut self.ready);
        let channels = std::mem::take(&mut self.channels);
        for (_, state) in channels {
            flush_channel(state, ts, calls);
        }
    }

    fn held(&self) -> usize {
        self.ready.len()
            + self
                .channels
                .values()
                .map(|c| 1 + c.pending.len() + c.unconfirmed.len())
                .sum::<usize>()
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;

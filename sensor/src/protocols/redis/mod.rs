//! Redis (RESP2 and RESP3) on a passive, possibly truncated byte stream.
//!
//! `frame` reads each side's frames with `redis-protocol` (long values are skipped, never buffered);
//! this module matches them: commands wait in a bounded FIFO and take the replies in order (pipelines).
//! Pub/sub: `SUBSCRIBE a b` is answered by one confirmation per channel, all of them the one call's
//! reply; an `UNSUBSCRIBE` without channels takes confirmations until one says no subscription is left
//! (or another reply follows). Pushed messages (`message`, `pmessage`, `smessage` arrays on a subscribed
//! RESP2 connection, RESP3 `>` pushes) answer no command: each is a one-way record whose command is the
//! push kind in upper case. RESP3 is followed from `HELLO 3` (and from the first RESP3-only reply).
//! Lost bytes: the client side resynchronises on the next command array, the server side on the next
//! reply line; commands still waiting when server bytes are lost are reported `no_response`.
//!
//! Known limits: `CLIENT REPLY OFF|SKIP` (replies the server never sends) and `MONITOR` output are not
//! followed; inline commands are recognised on any port once the connection is detected, but detected
//! by themselves only on port 6379.

mod command;
mod frame;

use std::collections::VecDeque;

use super::{
    detect::{Detection, Hints, Known},
    Feed, Parser, ParserStats,
};
use crate::model::{
    CallStatus, ParsedCall, Protocol, RedisRequest, RedisResponse, Request, Response, Side,
    UnixNanos,
};
use crate::protocols::pending::push_bounded;
use frame::{Event, Found, Frame, Kind, Reader, Scalar};

/// The well-known Redis port: inline commands and bare replies are only recognised there.
pub const PORT: u16 = 6379;
/// Commands waiting for replies before the oldest is given up. Pipelines are long in Redis
/// (`redis-benchmark -P`, `redis-cli --pipe` for mass insertion), so more than HTTP's.
const MAX_PENDING: usize = 1024;
/// Longest error text exported.
const MAX_ERROR_CHARS: usize = 256;

/// Probes the first bytes of one side: a command (`*N\r\n$M\r\n` and a letter) on any port; on port 6379
/// also an inline command from the client or a reply line from the server.
#[must_use]
pub fn probe(data: &[u8], hints: &Hints) -> Detection {
    let by_port = hints.sender_by_port(&[PORT]);
    let found = match command_header(data) {
        Found::Yes => {
            // Replies can be arrays of bulk strings too: on the Redis port, the port says who sent it.
            let sender = by_port.unwrap_or(Side::Client);
            return Detection::Match {
                protocol: Known::Redis,
                sender,
            };
        }
        found => found,
    };
    let second = match by_port {
        Some(Side::Client) => inline_header(data),
        Some(Side::Server) => reply_header(data),
        None => Found::No,
    };
    match (found, second) {
        (_, Found::Yes) => Detection::Match {
            protocol: Known::Redis,
            sender: by_port.unwrap_or(Side::Client),
        },
        (Found::NeedMore, _) | (_, Found::NeedMore) => Detection::NeedMore,
        _ => Detection::NoMatch,
    }
}

/// `data` starts with a command's header: `*` count `\r\n$` length `\r\n` and a letter.
fn command_header(data: &[u8]) -> Found {
    let mut at = 0;
    let mut expect = |pattern: &[Part]| -> Found {
        for part in pattern {
            let found = part.matches(data, &mut at);
            if found != Found::Yes {
                return found;
            }
        }
        Found::Yes
    };
    expect(&[
        Part::Byte(b'*'),
        Part::Digits(1, 7),
        Part::Byte(b'\r'),
        Part::Byte(b'\n'),
        Part::Byte(b'$'),
        Part::Digits(1, 7),
        Part::Byte(b'\r'),
        Part::Byte(b'\n'),
        Part::Letter,
    ])
}

/// `data` starts with an inline command: a word of letters, then a blank or the end of the line, and
/// printable text up to the end of the line.
fn inline_header(data: &[u8]) -> Found {
    let word = data.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if word == 0 || word > 32 {
        return Found::No;
    }
    for (i, &b) in data[word..].iter().enumerate() {
        match b {
            b'\n' => return Found::Yes,
            b'\r' if data.get(word + i + 1).is_none_or(|&n| n == b'\n') => {}
            b' ' | b'\t' => {}
            0x21..=0x7e if i > 0 => {}
            _ => return Found::No,
        }
    }
    Found::NeedMore
}

/// `data` starts with a reply's first line: a type byte and what that type allows up to the CRLF.
fn reply_header(data: &[u8]) -> Found {
    let Some(&type_byte) = data.first() else {
        return Found::NeedMore;
    };
    let rest = &data[1..];
    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
        // Not complete: what is there must fit the type.
        let text_ok = rest.iter().all(|&b| b == b'\r' || line_byte(type_byte, b));
        return if text_ok && rest.len() < 64 {
            Found::NeedMore
        } else {
            Found::No
        };
    };
    let line = &rest[..end];
    let ok = match type_byte {
        b'+' | b'-' => line.iter().all(|&b| line_byte(type_byte, b)),
        b':' | b'(' => number(line),
        b'$' | b'*' => line == b"-1" || number(line) && line[0] != b'-',
        b'%' | b'~' | b'>' | b'=' | b'!' | b'|' => number(line) && line[0] != b'-',
        b'_' => line.is_empty(),
        b'#' => line == b"t" || line == b"f",
        b',' => !line.is_empty() && line.iter().all(|&b| line_byte(type_byte, b)),
        _ => false,
    };
    if ok {
        Found::Yes
    } else {
        Found::No
    }
}

fn line_byte(type_byte: u8, b: u8) -> bool {
    match type_byte {
        b'+' | b'-' => (0x20..0x7f).contains(&b) || b == b'\t',
        b',' => b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'),
        _ => b.is_ascii_digit() || b == b'-',
    }
}

fn number(line: &[u8]) -> bool {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit)
}

/// One piece of a byte pattern.
enum Part {
    Byte(u8),
    /// Between `min` and `max` decimal digits.
    Digits(usize, usize),
    Letter,
}

impl Part {
    fn matches(&self, data: &[u8], at: &mut usize) -> Found {
        match *self {
            Part::Byte(want) => match data.get(*at) {
                None => Found::NeedMore,
                Some(&b) if b == want => {
                    *at += 1;
                    Found::Yes
                }
                Some(_) => Found::No,
            },
            Part::Letter => match data.get(*at) {
                None => Found::NeedMore,
                Some(b) if b.is_ascii_alphabetic() => {
                    *at += 1;
                    Found::Yes
                }
                Some(_) => Found::No,
            },
            Part::Digits(min, max) => {
                let digits = data[(*at).min(data.len())..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > max {
                    return Found::No;
                }
                if *at + digits == data.len() {
                    return Found::NeedMore;
                }
                if digits < min {
                    return Found::No;
                }
                *at += digits;
                Found::Yes
            }
        }
    }
}

/// The confirmation kind that answers a pub/sub (un)subscribe command.
fn confirmation(command: &str) -> Option<&'static str> {
    Some(match command {
        "SUBSCRIBE" => "subscribe",
        "PSUBSCRIBE" => "psubscribe",
        "SSUBSCRIBE" => "ssubscribe",
        "UNSUBSCRIBE" => "unsubscribe",
        "PUNSUBSCRIBE" => "punsubscribe",
        "SUNSUBSCRIBE" => "sunsubscribe",
        _ => return None,
    })
}

const CONFIRMATIONS: &[&str] = &[
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
];

/// What is special about a command's reply.
#[derive(Debug, PartialEq, Eq)]
enum Special {
    None,
    /// Answered by confirmations of this kind: one per channel (`Some(n)` still to come) or, without
    /// channels, until one says 0 subscriptions remain (`None`).
    PubSub {
        confirms: &'static str,
        remaining: Option<u64>,
    },
    /// `HELLO` with this protocol version: a reply that is no error switches the server side.
    Hello(u8),
    /// `RESET`: leaves pub/sub mode and returns to RESP2.
    Reset,
}

#[derive(Debug)]
struct Pending {
    request: RedisRequest,
    start: UnixNanos,
    special: Special,
    /// Stands for a command lost in a gap: its reply is passed over.
    lost: bool,
    /// The first confirmation of a pub/sub command answered by several, and when the last arrived.
    reply: Option<(RedisResponse, UnixNanos)>,
}

/// The Redis parser of one connection.
#[derive(Debug)]
pub struct RedisParser {
    client: Reader,
    server: Reader,
    pending: VecDeque<Pending>,
    /// The connection subscribed to something: RESP2 arrays may be pushed messages.
    subscribed: bool,
    /// Calls decided by a `gap` (which has no output), emitted by the next call that has one.
    ready: Vec<ParsedCall>,
    events: Vec<Event>,
    last_ts: UnixNanos,
    pending_overflow: u64,
}

impl Default for RedisParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisParser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            client: Reader::new(Side::Client),
            server: Reader::new(Side::Server),
            pending: VecDeque::new(),
            subscribed: false,
            ready: Vec::new(),
            events: Vec::new(),
            last_ts: 0,
            pending_overflow: 0,
        }
    }

    fn reader(&mut self, side: Side) -> &mut Reader {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn version(&self) -> &'static str {
        if self.server.resp3 {
            "3"
        } else {
            "2"
        }
    }

    /// Handles what one side's reader produced.
    fn handle(&mut self, side: Side, calls: &mut Vec<ParsedCall>) {
        let mut events = std::mem::take(&mut self.events);
        for event in events.drain(..) {
            match (side, event) {
                (Side::Client, Event::Frame(frame)) => self.command(frame),
                (Side::Server, Event::Frame(frame)) => self.reply(frame, calls),
                (side, Event::Lost) => self.lost(side, true, calls),
            }
        }
        self.events = events;
    }

    fn command(&mut self, frame: Frame) {
        if frame.elements == 0 {
            return; // `*0\r\n`: redis-server passes over an empty command without a reply.
        }
        let request = command::request(&frame);
        let special = match (request.command.as_str(), frame.head.get(1)) {
            ("HELLO", Some(Scalar::Text(version))) if version == b"2" || version == b"3" => {
                Special::Hello(version[0] - b'0')
            }
            ("RESET", _) => Special::Reset,
            (name, _) => match confirmation(name) {
                Some(confirms) => {
                    self.subscribed = true;
                    Special::PubSub {
                        confirms,
                        remaining: (request.args > 0).then_some(u64::from(request.args)),
                    }
                }
                None => Special::None,
            },
        };
        self.push(Pending {
            request,
            start: frame.start,
            special,
            lost: false,
            reply: None,
        });
    }

    fn push(&mut self, pending: Pending) {
        if push_bounded(&mut self.pending, pending, MAX_PENDING).is_some() {
            self.pending_overflow += 1;
        }
    }

    fn reply(&mut self, frame: Frame, calls: &mut Vec<ParsedCall>) {
        let first = frame.head.first().and_then(Scalar::text);
        let pushable = match frame.kind {
            Kind::Push => true,
            // RESP2 has no push type: a subscribed connection gets messages as arrays.
            Kind::Array => !self.server.resp3 && (self.subscribed || self.pending.is_empty()),
            _ => false,
        };
        let confirms = first.and_then(|f| CONFIRMATIONS.iter().find(|c| c.as_bytes() == f));
        if let (true, Some(&confirms)) = (pushable, confirms) {
            self.confirmation(confirms, &frame, calls);
            return;
        }
        if frame.kind == Kind::Push
            || pushable
                && first.is_some_and(|f| matches!(f, b"message" | b"pmessage" | b"smessage"))
        {
            calls.push(ParsedCall {
                protocol: Protocol::Redis,
                version: Some(self.version()),
                start: frame.start,
                end: frame.end,
                request: Request::Redis(command::request(&frame)),
                response: None,
                status: CallStatus::Ok,
            });
            return;
        }
        self.finish_open_pubsub(calls);
        let Some(pending) = self.pending.pop_front() else {
            return; // a reply to a command not seen (joined mid-stream)
        };
        if pending.lost {
            return;
        }
        let response = response(&frame);
        if response.kind != "error" {
            match pending.special {
                Special::Hello(version) => self.server.resp3 = version == 3,
                Special::Reset => {
                    self.server.resp3 = false;
                    self.subscribed = false;
                }
                Special::None | Special::PubSub { .. } => {}
            }
        }
        calls.push(self.complete(pending, response, frame.end));
    }

    /// A pub/sub confirmation: one of the replies of the oldest command when it is the matching
    /// (un)subscribe; otherwise one the server sent by itself, passed over.
    fn confirmation(&mut self, confirms: &str, frame: &Frame, calls: &mut Vec<ParsedCall>) {
        let left = match frame.head.get(2) {
            Some(Scalar::Integer(n)) => Some(*n),
            _ => None,
        };
        if left == Some(0) {
            self.subscribed = false;
        }
        let matches =
            |p: &Pending| matches!(p.special, Special::PubSub { confirms: c, .. } if c == confirms);
        if !self.pending.front().is_some_and(matches) {
            self.finish_open_pubsub(calls);
        }
        let Some(pending) = self.pending.front_mut().filter(|p| matches(p)) else {
            return;
        };
        if pending.reply.is_none() {
            pending.reply = Some((response(frame), frame.end));
        } else if let Some((_, end)) = &mut pending.reply {
            *end = frame.end;
        }
        let done = match &mut pending.special {
            Special::PubSub {
                remaining: Some(n), ..
            } => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            _ => left == Some(0),
        };
        if done {
            self.finish_front(calls);
        }
    }

    /// An `UNSUBSCRIBE` without channels that has confirmations is complete once something else comes.
    fn finish_open_pubsub(&mut self, calls: &mut Vec<ParsedCall>) {
        if self.pending.front().is_some_and(|p| p.reply.is_some()) {
            self.finish_front(calls);
        }
    }

    fn finish_front(&mut self, calls: &mut Vec<ParsedCall>) {
        if let Some(mut pending) = self.pending.pop_front() {
            if let Some((response, end)) = pending.reply.take() {
                calls.push(self.complete(pending, response, end));
            }
        }
    }

    fn complete(&self, pending: Pending, response: RedisResponse, end: UnixNanos) -> ParsedCall {
        let status = if response.kind == "error" {
            CallStatus::Error
        } else {
            CallStatus::Ok
        };
        ParsedCall {
            protocol: Protocol::Redis,
            version: Some(self.version()),
            start: pending.start,
            end,
            request: Request::Redis(pending.request),
            response: Some(Response::Redis(response)),
            status,
        }
    }

    fn unanswered(&self, pending: Pending, end: UnixNanos) -> ParsedCall {
        ParsedCall {
            protocol: Protocol::Redis,
            version: Some(self.version()),
            start: pending.start,
            end,
            request: Request::Redis(pending.request),
            response: None,
            status: CallStatus::NoResponse,
        }
    }

    /// Bytes of `side` were lost (or malformed). A lost command still takes a reply: a placeholder waits
    /// for it (when the loss began between commands). Lost server bytes held replies of unknown number:
    /// every command waiting is reported `no_response`.
    fn lost(&mut self, side: Side, at_boundary: bool, calls: &mut Vec<ParsedCall>) {
        match side {
            Side::Client => {
                if at_boundary {
                    self.push(Pending {
                        request: RedisRequest {
                            command: String::new(),
                            args: 0,
                            text: String::new(),
                        },
                        start: self.last_ts,
                        special: Special::None,
                        lost: true,
                        reply: None,
                    });
                }
            }
            Side::Server => self.flush(self.last_ts, calls),
        }
    }

    /// Reports every command still waiting: with the confirmations that came (pub/sub), else as
    /// `no_response` at `end`.
    fn flush(&mut self, end: UnixNanos, calls: &mut Vec<ParsedCall>) {
        while let Some(mut pending) = self.pending.pop_front() {
            if pending.lost {
                continue;
            }
            let call = match pending.reply.take() {
                Some((response, last)) => self.complete(pending, response, last),
                None => self.unanswered(pending, end),
            };
            calls.push(call);
        }
    }
}

/// The response part of a reply frame.
fn response(frame: &Frame) -> RedisResponse {
    RedisResponse {
        kind: frame.kind.name().to_owned(),
        error: frame.error.as_deref().map(error_text),
    }
}

/// An error reply's text, without what may quote the command's arguments: redis-server 7 appends
/// `, with args beginning with: ...` to unknown-command errors.
fn error_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text
        .split(", with args beginning with:")
        .next()
        .unwrap_or_default();
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect()
}

impl Parser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
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
        let mut events = std::mem::take(&mut self.events);
        let feed = self.reader(side).read(data, ts, &mut events);
        self.events = events;
        self.handle(side, calls);
        feed
    }

    fn gap(&mut self, side: Side, _len: u64) {
        let at_boundary = self.reader(side).idle();
        self.reader(side).lost();
        let mut ready = std::mem::take(&mut self.ready);
        self.lost(side, at_boundary, &mut ready);
        self.ready = ready;
    }

    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        let mut events = std::mem::take(&mut self.events);
        self.reader(side).skip_done(ts, &mut events);
        self.events = events;
        self.handle(side, calls);
    }

    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.append(&mut self.ready);
        if let Some(kind) = self.server.in_progress() {
            // A reply whose start was seen and whose end was not: the close cut it short.
            if let Some(pending) = self.pending.front_mut().filter(|p| p.reply.is_none()) {
                let response = RedisResponse {
                    kind: kind.name().to_owned(),
                    error: None,
                };
                pending.reply = Some((response, ts));
            }
        }
        self.flush(ts, calls);
    }

    fn held(&self) -> usize {
        self.pending.len() + self.ready.len() + self.events.len()
    }

    fn stats(&self) -> ParserStats {
        ParserStats {
            malformed: self.client.malformed + self.server.malformed,
            pending_overflow: self.pending_overflow,
            ..ParserStats::default()
        }
    }
}

#[cfg(test)]
mod tests;

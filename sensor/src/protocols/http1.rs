//! HTTP/1.0 and HTTP/1.1 on a passive, possibly truncated byte stream.
//!
//! Heads are parsed with `httparse`; bodies are never read: their length (`Content-Length`, chunked
//! framing, or "until close") becomes a skip request, so the kernel stops copying them. Requests wait
//! in a bounded FIFO for their responses (keep-alive and pipelining). Informational responses (1xx other
//! than 101) are passed over; HEAD, 204 and 304 responses have no body; `101 Switching Protocols` ends
//! HTTP/1 on the connection. After lost bytes the parser resynchronises on the next line that starts a
//! request or a response.
//!
//! h2c: a request with `Upgrade: h2c` answered by `101 Switching Protocols` (`Upgrade: h2c`) goes on
//! as HTTP/2. This parser then owns an HTTP/2 parser and hands it everything each side sends after
//! the switch (the server's bytes after the 101 head, the client's from its connection preface on).
//! The upgrade request becomes that parser's stream 1, whose response comes in HTTP/2: one call, with
//! the HTTP/1 request's method, path and host and the HTTP/2 response (version "2"); the 101 itself is
//! not a call. Any other 101 (WebSocket, ...) is a call of its own and ends parsing.

use std::{collections::VecDeque, mem::MaybeUninit};

use super::{
    detect::{Detection, Hints, Known},
    http2::{frame::PREFACE, Http2Parser},
    Feed, Parser, ParserStats,
};
use crate::model::{
    CallStatus, HttpRequest, HttpResponse, ParsedCall, Protocol, Request, Response, Side, UnixNanos,
};
use crate::protocols::pending::push_bounded;

/// Requests waiting for a response before the oldest is given up as `no_response`.
const MAX_PENDING: usize = 64;
/// Headers one message may carry; more is treated as malformed.
const MAX_HEADERS: usize = 96;
/// A head (or chunk-size line) that is not complete after this many bytes is malformed.
const MAX_HEAD_BYTES: usize = 64 * 1024;

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"PURGE",
];
const RESPONSE_PREFIX: &[u8] = b"HTTP/1.";

/// Probes the first bytes of one side for an HTTP/1 request line or status line (any port).
#[must_use]
pub fn probe(data: &[u8], _hints: &Hints) -> Detection {
    probe_bytes(data)
}

fn probe_bytes(data: &[u8]) -> Detection {
    if data.starts_with(RESPONSE_PREFIX) {
        return Detection::Match {
            protocol: Known::Http1,
            sender: Side::Server,
        };
    }
    let mut maybe = RESPONSE_PREFIX.starts_with(data);
    for method in METHODS {
        if data.len() > method.len() {
            if data.starts_with(method) && data[method.len()] == b' ' {
                return Detection::Match {
                    protocol: Known::Http1,
                    sender: Side::Client,
                };
            }
        } else if prefix_of_request(data, method) {
            maybe = true;
        }
    }
    if maybe {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    }
}

/// `data` (shorter than `method` + space) is a prefix of `method` followed by a space.
fn prefix_of_request(data: &[u8], method: &[u8]) -> bool {
    let n = data.len().min(method.len());
    data[..n] == method[..n] && (data.len() <= method.len() || data[method.len()] == b' ')
}

/// How the body after a head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Where one side's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a request or status line.
    Head,
    /// Inside a body whose rest is being skipped.
    SkippingBody,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data (plus its CRLF) that is being skipped.
    SkippingChunk,
    /// After the last chunk: trailer lines until an empty line.
    Trailers,
    /// Lost bytes: looking for the start of the next message.
    Resync,
    /// The connection switched to another protocol (or a tunnel): nothing more to parse.
    Done,
    /// The connection switched to HTTP/2 (h2c): this side's bytes go to the HTTP/2 parser.
    H2,
}

#[derive(Debug)]
struct PendingRequest {
    request: HttpRequest,
    start: UnixNanos,
    head: bool,
    connect: bool,
    /// Stands for a request whose head was lost in a gap: its response is passed over.
    lost: bool,
    /// Asked to switch to HTTP/2 (`Upgrade: h2c`).
    h2c: bool,
}

/// A response whose head is parsed and whose body is still passing.
#[derive(Debug)]
struct InFlight {
    request: PendingRequest,
    status: u16,
}

/// One side's framing state.
#[derive(Debug)]
struct SideState {
    state: State,
    /// The message whose body is passing is complete when its body ends (server side).
    in_flight: Option<InFlight>,
}

impl SideState {
    fn new() -> Self {
        Self {
            state: State::Head,
            in_flight: None,
        }
    }
}

/// The HTTP/1 parser of one connection.
#[derive(Debug)]
pub struct Http1Parser {
    client: SideState,
    server: SideState,
    pending: VecDeque<PendingRequest>,
    /// Calls decided by a `gap` (which has no output), emitted by the next call that has one.
    ready: Vec<ParsedCall>,
    /// When the newest bytes were seen.
    last_ts: UnixNanos,
    version: &'static str,
    stats: ParserStats,
    /// After an h2c upgrade: the parser of the rest of the connection.
    h2: Option<Box<Http2Parser>>,
}

impl Default for Http1Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http1Parser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            client: SideState::new(),
            server: SideState::new(),
            pending: VecDeque::new(),
            ready: Vec::new(),
            last_ts: 0,
            version: "1.1",
            stats: ParserStats::default(),
            h2: None,
        }
    }

    /// The connection goes on as HTTP/2 (the first side to switch makes the parser, with the upgrade
    /// request as its stream 1); `side` hands it its bytes from now on.
    fn switch_to_h2(&mut self, side: Side) {
        if self.h2.is_none() {
            let request = self
                .pending
                .iter()
                .rposition(|r| r.h2c && !r.lost)
                .and_then(|at| self.pending.remove(at));
            let parser = match request {
                Some(r) => Http2Parser::upgraded(r.request, r.start),
                None => Http2Parser::new(),
            };
            self.h2 = Some(Box::new(parser));
        }
        self.side_mut(side).state = State::H2;
        // After its upgrade request, the client sends nothing but HTTP/2 (its preface first).
        if self.client.state == State::Head {
            self.client.state = State::H2;
        }
    }

    /// Feeds `data[consumed..]` of `side` to the HTTP/2 parser.
    fn feed_h2(
        &mut self,
        side: Side,
        data: &[u8],
        consumed: usize,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Feed {
        let Some(h2) = self.h2.as_mut() else {
            return Feed {
                consumed: data.len(),
                skip: 0,
            };
        };
        let feed = h2.feed(side, &data[consumed..], ts, calls);
        Feed {
            consumed: consumed + feed.consumed,
            skip: feed.skip,
        }
    }

    /// Whether the client, with an h2c upgrade asked for, starts sending HTTP/2 (its preface: it has
    /// received the 101). `None`: too few bytes to tell it from a request line.
    fn client_switches(&self, rest: &[u8]) -> Option<bool> {
        /// Enough of the preface to tell it from any request line.
        const SURE: usize = 14;
        if !self.pending.iter().any(|r| r.h2c && !r.lost) {
            return Some(false);
        }
        if rest.len() < SURE && PREFACE.starts_with(rest) {
            return None;
        }
        Some(rest.starts_with(&PREFACE[..SURE]))
    }

    fn side_mut(&mut self, side: Side) -> &mut SideState {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn feed_client(&mut self, data: &[u8], ts: UnixNanos, calls: &mut Vec<ParsedCall>) -> Feed {
        let mut consumed = 0;
        loop {
            if let Some(feed) = self.between_messages(Side::Client, data, &mut consumed) {
                return feed;
            }
            let rest = &data[consumed..];
            match self.client.state {
                State::Head if self.client_switches(rest) != Some(false) => {
                    if self.client_switches(rest).is_none() {
                        return Feed { consumed, skip: 0 };
                    }
                    self.switch_to_h2(Side::Client);
                    return self.feed_h2(Side::Client, data, consumed, ts, calls);
                }
                State::Head => {
                    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                    let mut request = httparse::Request::new(&mut []);
                    match request.parse_with_uninit_headers(rest, &mut headers) {
                        Ok(httparse::Status::Complete(len)) => {
                            consumed += len;
                            let body = request_body(&request);
                            let method = request.method.unwrap_or_default().to_owned();
                            let (path, host_in_target) =
                                split_target(request.path.unwrap_or_default());
                            let host = header(request.headers, "host")
                                .map(str::to_owned)
                                .or(host_in_target);
                            if request.version == Some(0) {
                                self.version = "1.0";
                            }
                            let pending = PendingRequest {
                                head: method == "HEAD",
                                connect: method == "CONNECT",
                                lost: false,
                                h2c: has_token(request.headers, "upgrade", "h2c"),
                                request: HttpRequest { method, path, host },
                                start: ts,
                            };
                            if push_bounded(&mut self.pending, pending, MAX_PENDING).is_some() {
                                self.stats.pending_overflow += 1;
                            }
                            match body {
                                Body::None | Body::UntilClose => {}
                                Body::Length(len) => {
                                    self.client.state = State::SkippingBody;
                                    return Feed {
                                        consumed,
                                        skip: len,
                                    };
                                }
                                Body::Chunked => self.client.state = State::ChunkSize,
                            }
                        }
                        Ok(httparse::Status::Partial) => {
                            return self.incomplete(Side::Client, consumed, rest.len());
                        }
                        Err(_) => {
                            self.stats.malformed += 1;
                            self.client.state = State::Resync;
                            consumed += 1;
                        }
                    }
                }
                State::ChunkSize | State::Trailers => {
                    if let Some(feed) = self.chunk_step(Side::Client, rest, &mut consumed) {
                        return feed;
                    }
                }
                State::H2 => return self.feed_h2(Side::Client, data, consumed, ts, calls),
                // Settled by `between_messages` before this match.
                State::Done | State::Resync | State::SkippingBody | State::SkippingChunk => {}
            }
        }
    }

    fn feed_server(&mut self, data: &[u8], ts: UnixNanos, calls: &mut Vec<ParsedCall>) -> Feed {
        let mut consumed = 0;
        loop {
            if let Some(feed) = self.between_messages(Side::Server, data, &mut consumed) {
                return feed;
            }
            let rest = &data[consumed..];
            match self.server.state {
                State::Head => {
                    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                    let mut response = httparse::Response::new(&mut []);
                    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                        &mut response,
                        rest,
                        &mut headers,
                    ) {
                        Ok(httparse::Status::Complete(len)) => {
                            consumed += len;
                            let status = response.code.unwrap_or_default();
                            if (100..200).contains(&status) && status != 101 {
                                continue; // informational: the final response follows
                            }
                            if response.version == Some(0) {
                                self.version = "1.0";
                            }
                            if status == 101
                                && has_token(response.headers, "upgrade", "h2c")
                                && (self.h2.is_some()
                                    || self.pending.iter().any(|r| r.h2c && !r.lost))
                            {
                                self.switch_to_h2(Side::Server);
                                return self.feed_h2(Side::Server, data, consumed, ts, calls);
                            }
                            let body = response_body(&response, status);
                            let Some(request) = self.pending.pop_front().filter(|r| !r.lost) else {
                                // A response to a request we never saw (joined mid-stream or lost it).
                                self.server.in_flight = None;
                                match body {
                                    Body::Length(len) => {
                                        self.server.state = State::SkippingBody;
                                        return Feed {
                                            consumed,
                                            skip: len,
                                        };
                                    }
                                    Body::Chunked => self.server.state = State::ChunkSize,
                                    Body::UntilClose => {
                                        self.server.state = State::Done;
                                        return Feed {
                                            consumed,
                                            skip: u64::MAX,
                                        };
                                    }
                                    Body::None => {}
                                }
                                continue;
                            };
                            let upgrade =
                                status == 101 || (request.connect && (200..300).contains(&status));
                            let body = if request.head || upgrade {
                                Body::None
                            } else {
                                body
                            };
                            let in_flight = InFlight { request, status };
                            if upgrade {
                                calls.push(self.complete(in_flight, ts));
                                self.server.state = State::Done;
                                self.client.state = State::Done;
                                return Feed {
                                    consumed: data.len(),
                                    skip: 0,
                                };
                            }
                            match body {
                                Body::None => calls.push(self.complete(in_flight, ts)),
                                Body::Length(len) => {
                                    self.server.in_flight = Some(in_flight);
                                    self.server.state = State::SkippingBody;
                                    return Feed {
                                        consumed,
                                        skip: len,
                                    };
                                }
                                Body::Chunked => {
                                    self.server.in_flight = Some(in_flight);
                                    self.server.state = State::ChunkSize;
                                }
                                Body::UntilClose => {
                                    self.server.in_flight = Some(in_flight);
                                    self.server.state = State::SkippingBody;
                                    return Feed {
                                        consumed,
                                        skip: u64::MAX,
                                    };
                                }
                            }
                        }
                        Ok(httparse::Status::Partial) => {
                            return self.incomplete(Side::Server, consumed, rest.len());
                        }
                        Err(_) => {
                            self.stats.malformed += 1;
                            self.server.state = State::Resync;
                            consumed += 1;
                        }
                    }
                }
                State::ChunkSize | State::Trailers => {
                    if let Some(feed) = self.chunk_step(Side::Server, rest, &mut consumed) {
                        return feed;
                    }
                    if self.server.state == State::Head {
                        // The last trailer line: the chunked response is complete.
                        if let Some(in_flight) = self.server.in_flight.take() {
                            calls.push(self.complete(in_flight, ts));
                        }
                    }
                }
                State::H2 => return self.feed_h2(Side::Server, data, consumed, ts, calls),
                // Settled by `between_messages` before this match.
                State::Done | State::Resync | State::SkippingBody | State::SkippingChunk => {}
            }
        }
    }

    /// What both sides do before parsing a head or chunk line: stop at the end of the data, pass
    /// everything once HTTP is over, look for the next message after lost bytes, and leave a skip
    /// state (the flow layer never feeds skipped bytes). `Some`: return this; `None`: parse on from
    /// `consumed`, which it may have advanced.
    fn between_messages(&mut self, side: Side, data: &[u8], consumed: &mut usize) -> Option<Feed> {
        let rest = &data[*consumed..];
        if rest.is_empty() {
            return Some(Feed {
                consumed: *consumed,
                skip: 0,
            });
        }
        let state = &mut self.side_mut(side).state;
        match *state {
            State::Done => Some(Feed {
                consumed: data.len(),
                skip: 0,
            }),
            State::Resync => match find_message_start(rest, side) {
                Some(at) => {
                    *consumed += at;
                    *state = State::Head;
                    None
                }
                None => Some(Feed {
                    consumed: *consumed + keep_tail(rest),
                    skip: 0,
                }),
            },
            State::SkippingBody | State::SkippingChunk => {
                *state = State::Head;
                None
            }
            State::Head | State::ChunkSize | State::Trailers | State::H2 => None,
        }
    }

    /// One chunk-size or trailer line of `side`, advancing `consumed` past it. `Some`: return this
    /// (a chunk to skip, or a line not complete yet); `None`: go on parsing.
    fn chunk_step(&mut self, side: Side, rest: &[u8], consumed: &mut usize) -> Option<Feed> {
        match self.chunk_line(side, rest) {
            Some(feed) => {
                *consumed += feed.consumed;
                (feed.skip > 0).then_some(Feed {
                    consumed: *consumed,
                    skip: feed.skip,
                })
            }
            None => Some(self.incomplete(side, *consumed, rest.len())),
        }
    }

    /// Parses one chunk-size or trailer line of `side`. `None`: the line is not complete yet.
    /// On the last trailer line the side returns to `Head`.
    fn chunk_line(&mut self, side: Side, rest: &[u8]) -> Option<Feed> {
        let end = memchr_crlf(rest)?;
        let line = &rest[..end];
        let consumed = end + 2;
        if self.side_mut(side).state == State::Trailers {
            if line.is_empty() {
                self.side_mut(side).state = State::Head;
            }
            return Some(Feed { consumed, skip: 0 });
        }
        let size = line.split(|&b| b == b';').next().and_then(parse_hex);
        let (next, skip) = match size {
            Some(0) => (State::Trailers, 0),
            // The chunk's data and the CRLF after it.
            Some(size) => (State::SkippingChunk, size.saturating_add(2)),
            None => {
                self.stats.malformed += 1;
                (State::Resync, 0)
            }
        };
        self.side_mut(side).state = next;
        Some(Feed { consumed, skip })
    }

    /// An incomplete head: wait for more, unless it is already implausibly long.
    fn incomplete(&mut self, side: Side, consumed: usize, buffered: usize) -> Feed {
        if buffered > MAX_HEAD_BYTES {
            self.stats.malformed += 1;
            self.side_mut(side).state = State::Resync;
            return Feed {
                consumed: consumed + buffered,
                skip: 0,
            };
        }
        Feed { consumed, skip: 0 }
    }

    fn complete(&self, in_flight: InFlight, end: UnixNanos) -> ParsedCall {
        let status = if in_flight.status >= 500 {
            CallStatus::Error
        } else {
            CallStatus::Ok
        };
        ParsedCall {
            protocol: Protocol::Http,
            version: Some(self.version),
            start: in_flight.request.start,
            end,
            request: Request::Http(in_flight.request.request),
            response: Some(Response::Http(HttpResponse {
                status: in_flight.status,
            })),
            status,
        }
    }

    fn unanswered(&self, request: PendingRequest, end: UnixNanos) -> ParsedCall {
        ParsedCall {
            protocol: Protocol::Http,
            version: Some(self.version),
            start: request.start,
            end,
            request: Request::Http(request.request),
            response: None,
            status: CallStatus::NoResponse,
        }
    }
}

impl Parser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http
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
        match side {
            Side::Client => self.feed_client(data, ts, calls),
            Side::Server => self.feed_server(data, ts, calls),
        }
    }

    fn gap(&mut self, side: Side, len: u64) {
        let state = self.side_mut(side).state;
        if state == State::H2 {
            if let Some(h2) = self.h2.as_mut() {
                h2.gap(side, len);
            }
            return;
        }
        if state == State::Done {
            return;
        }
        self.side_mut(side).state = State::Resync;
        match side {
            // Lost bytes that start where a request would: a request was lost, and its response must
            // not be paired with the next one.
            Side::Client if state == State::Head => {
                self.pending.push_back(PendingRequest {
                    request: HttpRequest {
                        method: String::new(),
                        path: String::new(),
                        host: None,
                    },
                    start: self.last_ts,
                    head: false,
                    connect: false,
                    lost: true,
                    h2c: false,
                });
            }
            Side::Client => {}
            Side::Server => {
                if let Some(in_flight) = self.server.in_flight.take() {
                    // The rest of a response whose status line was seen.
                    let call = self.complete(in_flight, self.last_ts);
                    self.ready.push(call);
                } else if state == State::Head {
                    // The lost bytes held the start of the response to the oldest request.
                    if let Some(request) = self.pending.pop_front().filter(|r| !r.lost) {
                        let call = self.unanswered(request, self.last_ts);
                        self.ready.push(call);
                    }
                }
            }
        }
    }

    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        let state = self.side_mut(side).state;
        match state {
            State::H2 => {
                if let Some(h2) = self.h2.as_mut() {
                    h2.skip_done(side, ts, calls);
                }
            }
            State::SkippingBody => {
                self.side_mut(side).state = State::Head;
                if side == Side::Server {
                    if let Some(in_flight) = self.server.in_flight.take() {
                        calls.push(self.complete(in_flight, ts));
                    }
                }
            }
            State::SkippingChunk => self.side_mut(side).state = State::ChunkSize,
            _ => {}
        }
    }

    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.append(&mut self.ready);
        if let Some(in_flight) = self.server.in_flight.take() {
            // A body delimited by the close, or one cut short: the status line was seen.
            calls.push(self.complete(in_flight, ts));
        }
        while let Some(request) = self.pending.pop_front() {
            if request.lost {
                continue;
            }
            calls.push(self.unanswered(request, ts));
        }
        if let Some(h2) = self.h2.as_mut() {
            h2.close(ts, calls);
        }
    }

    fn stats(&self) -> ParserStats {
        let mut stats = self.stats;
        if let Some(h2) = &self.h2 {
            let inner = h2.stats();
            stats.malformed += inner.malformed;
            stats.pending_overflow += inner.pending_overflow;
        }
        stats
    }

    fn held(&self) -> usize {
        self.pending.len() + self.ready.len()
    }
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Whether header `name` lists `token` (comma-separated, any case).
fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case(name)
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn is_chunked(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && std::str::from_utf8(h.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            })
    })
}

fn content_length(headers: &[httparse::Header<'_>]) -> Option<u64> {
    header(headers, "content-length").and_then(|v| v.parse().ok())
}

fn request_body(request: &httparse::Request<'_, '_>) -> Body {
    if is_chunked(request.headers) {
        Body::Chunked
    } else {
        match content_length(request.headers) {
            Some(0) | None => Body::None,
            Some(len) => Body::Length(len),
        }
    }
}

fn response_body(response: &httparse::Response<'_, '_>, status: u16) -> Body {
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Body::None;
    }
    if is_chunked(response.headers) {
        return Body::Chunked;
    }
    match content_length(response.headers) {
        Some(0) => Body::None,
        Some(len) => Body::Length(len),
        None => Body::UntilClose,
    }
}

/// Splits a request target into its path (query dropped: it may carry secrets) and, for the
/// absolute form a proxy receives, its host.
fn split_target(target: &str) -> (String, Option<String>) {
    // The origin form (`/path?query`) is by far the most common, and may carry `://` in its query.
    let absolute = if target.starts_with('/') {
        None
    } else {
        target.split_once("://")
    };
    let (host, path) = match absolute {
        Some((_, rest)) => match rest.find('/') {
            Some(at) => (Some(rest[..at].to_owned()), &rest[at..]),
            None => (Some(rest.to_owned()), "/"),
        },
        None => (None, target),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    (path.to_owned(), host)
}

fn memchr_crlf(data: &[u8]) -> Option<usize> {
    data.windows(2).position(|w| w == b"\r\n")
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(digits).ok()?.trim();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Where the next message of `side` starts: a line beginning with a request method (client) or with
/// `HTTP/1.` (server).
fn find_message_start(data: &[u8], side: Side) -> Option<usize> {
    let starts = std::iter::once(0).chain(
        data.windows(2)
            .enumerate()
            .filter(|(_, w)| *w == b"\r\n")
            .map(|(i, _)| i + 2),
    );
    for at in starts {
        if let Detection::Match { sender, .. } = probe_bytes(&data[at..]) {
            if sender == side {
                return Some(at);
            }
        }
    }
    None
}

/// While resynchronising, keep the last few bytes: a message start may be split across deliveries.
fn keep_tail(data: &[u8]) -> usize {
    data.len().saturating_sub(16)
}

#[cfg(test)]
mod tests;

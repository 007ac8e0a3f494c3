//! HTTP/2 (RFC 9113) and gRPC on a passive, possibly truncated byte stream.
//!
//! Each side is read as a sequence of frames (`frame`): the 9-byte header, then the payload. Header
//! blocks (HEADERS or PUSH_PROMISE and their CONTINUATIONs) are assembled and decoded with one HPACK
//! decoder per direction (`hpack`); control frames (SETTINGS, RST_STREAM, GOAWAY) are read; DATA
//! payloads are never read, except the 5-byte message prefixes of gRPC streams (`grpc`): everything
//! else becomes a skip request, so the kernel stops copying bodies.
//!
//! Streams are multiplexed: each open stream (`stream`) collects its request (the client's header
//! block), its response (the server's), and for gRPC the messages of each side. A stream becomes a
//! call when the server ends it, when either side resets it, or when the connection ends:
//!
//! - HTTP: `status` is `error` for a response status >= 500, or for a stream reset with an error code
//!   (RST_STREAM other than NO_ERROR and STREAM_CLOSED, from either side) whatever came before; a stream
//!   reset with NO_ERROR (or STREAM_CLOSED: its sender had seen the stream end), refused by GOAWAY or
//!   still open at the close without any response is `no_response`; one
//!   whose response headers came is complete with that status (as a close completes an HTTP/1
//!   response). A response whose `:status` did not decode (a joined connection whose HPACK table
//!   podtap never saw) has no `response` and is `ok` once it ends.
//! - gRPC (request `content-type: application/grpc...`): `ok` only with `grpc-status: 0` and HTTP
//!   200; a non-zero `grpc-status`, another HTTP status, a response whose trailers never came, or a
//!   reset with an error code are `error`; no response at all is `no_response`.
//!
//! Joining in the middle: a side's first frame header must look like one (`FrameHeader::plausible`)
//! or the side resynchronises; fields that refer to HPACK entries podtap never saw are left out (never
//! guessed), and a header block without any request pseudo-header field opens no stream. A response
//! to a request podtap did not see is not reported. After lost bytes inside a frame the frame is
//! finished as far as its header says; lost bytes past it (or a header that breaks the protocol) make
//! the side look for the next plausible frame boundary, and forget its HPACK table.
//!
//! Bounded: streams tracked (`MAX_STREAMS`, the oldest is reported `no_response` when a new one would
//! pass it), header block bytes (`MAX_HEADER_BLOCK`), control frame bytes, and the HPACK tables
//! (`hpack::MAX_TABLE_SIZE`, whatever SETTINGS ask for).

pub mod frame;
pub mod grpc;
pub mod hpack;
pub mod stream;

use std::collections::BTreeMap;

use super::{
    detect::{Detection, Hints, Known},
    Feed, Parser, ParserStats,
};
use crate::model::{HttpRequest, ParsedCall, Protocol, Side, UnixNanos};
use frame::{FrameHeader, HEADER_LEN, PREFACE};
use hpack::HpackDecoder;
use stream::{End, Fields, H2Stream, Kind};

/// Streams followed at once; more (a client far beyond any server's `SETTINGS_MAX_CONCURRENT_STREAMS`,
/// or streams whose end podtap missed) evict the lowest stream id.
pub const MAX_STREAMS: usize = 512;
/// Bytes of one header block (all its frames); a larger block is dropped (and its HPACK effects with it).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Bytes kept of a control frame's payload (SETTINGS, RST_STREAM, GOAWAY without its debug data).
const MAX_CONTROL: usize = 1024;

/// Well-known ports of HTTP/2 without TLS: gRPC's default. A second signal only, for a connection
/// joined in the middle whose first bytes are a single frame.
const PORTS: &[u16] = &[50051];

/// Probes the first bytes of one side: the client preface, or (a server's first bytes, or a connection
/// joined in the middle) a run of plausible frame headers.
#[must_use]
pub fn probe(data: &[u8], hints: &Hints) -> Detection {
    let matched = |sender| Detection::Match {
        protocol: Known::Http2,
        sender,
    };
    if data.starts_with(PREFACE) {
        return matched(Side::Client);
    }
    if !data.is_empty() && PREFACE.starts_with(data) {
        return Detection::NeedMore;
    }
    let chain = frame::chain(data);
    if chain.broken || chain.frames == 0 {
        return if chain.broken || data.len() >= HEADER_LEN {
            Detection::NoMatch
        } else {
            Detection::NeedMore
        };
    }
    // The strongest evidence: a complete header block with request or response pseudo-header fields.
    for &(at, header) in &chain.complete {
        if header.kind != frame::HEADERS || !header.has(frame::FLAG_END_HEADERS) {
            continue;
        }
        let payload = &data[at + HEADER_LEN..at + HEADER_LEN + header.length as usize];
        let Some(fragment) = headers_fragment(&header, payload) else {
            return Detection::NoMatch;
        };
        let mut fields = Fields::default();
        let _ = HpackDecoder::new().decode(fragment, |n, v| fields.add(n, v));
        if fields.method.is_some() {
            return matched(Side::Client);
        }
        if fields.status.is_some() {
            return matched(Side::Server);
        }
    }
    let first = chain.complete.first().map(|&(_, h)| h);
    if chain.ends_exactly {
        // A server's first bytes: its SETTINGS (the client's start with the preface).
        if first.is_some_and(|h| h.kind == frame::SETTINGS && !h.has(frame::FLAG_ACK)) {
            return matched(Side::Server);
        }
        if chain.frames >= 2 || hints.uses_port(PORTS) {
            return matched(sender_by_ports(hints));
        }
    }
    if data.len() < 64 {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    }
}

/// The sender's role when the frames do not tell: the well-known port is the server's, else the
/// ephemeral-looking (higher) port is the client's.
fn sender_by_ports(hints: &Hints) -> Side {
    hints
        .sender_by_port(PORTS)
        .unwrap_or(if hints.sender_port >= hints.receiver_port {
            Side::Client
        } else {
            Side::Server
        })
}

/// The header block fragment of a HEADERS payload (padding and priority removed).
fn headers_fragment<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<&'a [u8]> {
    let mut body = payload;
    let mut pad = 0usize;
    if header.has(frame::FLAG_PADDED) {
        pad = usize::from(*body.first()?);
        body = &body[1..];
    }
    if header.has(frame::FLAG_PRIORITY) {
        body = body.get(5..)?;
    }
    body.get(..body.len().checked_sub(pad)?)
}

/// The fragment and promised stream of a PUSH_PROMISE payload.
fn push_promise_fragment<'a>(header: &FrameHeader, payload: &'a [u8]) -> Option<(u32, &'a [u8])> {
    let mut body = payload;
    let mut pad = 0usize;
    if header.has(frame::FLAG_PADDED) {
        pad = usize::from(*body.first()?);
        body = &body[1..];
    }
    let promised = u32::from_be_bytes(body.get(..4)?.try_into().ok()?) & 0x7fff_ffff;
    let body = &body[4..];
    Some((promised, body.get(..body.len().checked_sub(pad)?)?))
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// What a frame's payload is for.
#[derive(Debug)]
enum Body {
    /// Kept (header block fragments and control frames), up to `cap` bytes; `cut`: bytes were lost
    /// or went past the cap.
    Keep {
        bytes: Vec<u8>,
        cap: usize,
        cut: bool,
    },
    /// Passed over (DATA of HTTP streams, padding, frames podtap does not read).
    Skip,
    /// DATA of a stream whose gRPC messages are counted: the pad-length byte is still to come
    /// (`pad_byte`), then `data` message bytes, then padding. `resume`: counting stopped after lost
    /// bytes, and may resume at this frame (`MessageCounter::resume_at`).
    Grpc {
        pad_byte: bool,
        data: u32,
        resume: bool,
    },
}

#[derive(Debug)]
enum Phase {
    /// Nothing read yet: the client preface or a first frame header.
    Start,
    /// Matched this many bytes of the client preface.
    Preface(usize),
    /// Reading a frame header; `verify`: the first one of a side joined in the middle, which must be
    /// plausible.
    Header {
        buf: [u8; HEADER_LEN],
        have: usize,
        verify: bool,
    },
    Payload {
        header: FrameHeader,
        remaining: u32,
        body: Body,
    },
    /// Frame boundaries lost: looking for the next plausible one.
    Resync,
}

/// A header block being assembled from HEADERS / PUSH_PROMISE and CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    promised: Option<u32>,
    bytes: Vec<u8>,
    cut: bool,
}

/// One side's reader.
#[derive(Debug)]
struct Reader {
    phase: Phase,
    block: Option<Block>,
    /// The skip in progress ends a gRPC message of this stream.
    completing: Option<u32>,
}

impl Reader {
    fn new() -> Self {
        Self {
            phase: Phase::Start,
            block: None,
            completing: None,
        }
    }
}

/// What one step of a reader did with the bytes offered.
enum Step {
    /// Used this many bytes; go on (0: the phase changed).
    Next(usize),
    /// Used this many, then skip that many more.
    Skip(usize, u64),
    /// Used this many; the rest is needed again with more bytes.
    Wait(usize),
}

/// The HTTP/2 parser of one connection.
#[derive(Debug)]
pub struct Http2Parser {
    readers: [Reader; 2],
    /// The decoder of the header blocks each side sends.
    decoders: [HpackDecoder; 2],
    /// The largest frame each side may send (the other's `SETTINGS_MAX_FRAME_SIZE`).
    max_frame: [u32; 2],
    streams: BTreeMap<u32, H2Stream>,
    /// Calls decided by a `gap` (which has no output), emitted by the next call that has one.
    ready: Vec<ParsedCall>,
    last_ts: UnixNanos,
    stats: ParserStats,
}

impl Default for Http2Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Http2Parser {
    #[must_use]
    pub fn new() -> Self {
        Self {
            readers: [Reader::new(), Reader::new()],
            decoders: [HpackDecoder::new(), HpackDecoder::new()],
            max_frame: [frame::DEFAULT_MAX_FRAME_SIZE; 2],
            streams: BTreeMap::new(),
            ready: Vec::new(),
            last_ts: 0,
            stats: ParserStats::default(),
        }
    }

    /// The parser of a connection that switched from HTTP/1.1 (`Upgrade: h2c`, `101 Switching
    /// Protocols`): the upgrade request is stream 1, whose response comes as HTTP/2.
    #[must_use]
    pub fn upgraded(request: HttpRequest, start: UnixNanos) -> Self {
        let mut this = Self::new();
        this.streams.insert(1, H2Stream::upgraded(request, start));
        this
    }

    /// Streams followed at the moment.
    #[must_use]
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    fn step(
        &mut self,
        side: Side,
        data: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Step {
        let s = idx(side);
        match &mut self.readers[s].phase {
            Phase::Start => {
                self.readers[s].phase = if side == Side::Client && data[0] == PREFACE[0] {
                    Phase::Preface(0)
                } else {
                    Phase::Header {
                        buf: [0; HEADER_LEN],
                        have: 0,
                        verify: true,
                    }
                };
                Step::Next(0)
            }
            Phase::Preface(matched) => {
                let n = (PREFACE.len() - *matched).min(data.len());
                if data[..n] != PREFACE[*matched..*matched + n] {
                    // Not the preface after all.
                    self.readers[s].phase = if *matched == 0 {
                        Phase::Header {
                            buf: [0; HEADER_LEN],
                            have: 0,
                            verify: true,
                        }
                    } else {
                        Phase::Resync
                    };
                    return Step::Next(0);
                }
                *matched += n;
                if *matched == PREFACE.len() {
                    self.readers[s].phase = Phase::Header {
                        buf: [0; HEADER_LEN],
                        have: 0,
                        verify: false,
                    };
                }
                Step::Next(n)
            }
            Phase::Header { buf, have, verify } => {
                let n = (HEADER_LEN - *have).min(data.len());
                buf[*have..*have + n].copy_from_slice(&data[..n]);
                *have += n;
                if *have < HEADER_LEN {
                    return Step::Next(n);
                }
                let verify = *verify;
                let Some(header) = FrameHeader::parse(&buf[..]) else {
                    return Step::Next(n);
                };
                if verify && !header.plausible() {
                    // Joined in the middle of a frame: find the next one, starting with these bytes.
                    self.lose_sync(side);
                    return Step::Next(n.saturating_sub(HEADER_LEN - 1));
                }
                if header.violates(self.max_frame[s]) {
                    self.stats.malformed += 1;
                    self.lose_sync(side);
                    return Step::Next(n.saturating_sub(HEADER_LEN - 1));
                }
                self.begin_frame(side, header);
                Step::Next(n)
            }
            Phase::Resync => match frame::find_boundary(data) {
                Ok(at) => {
                    self.readers[s].phase = Phase::Header {
                        buf: [0; HEADER_LEN],
                        have: 0,
                        verify: false,
                    };
                    Step::Next(at)
                }
                Err(at) => Step::Wait(at),
            },
            Phase::Payload {
                header,
                remaining,
                body,
            } => {
                if *remaining == 0 {
                    self.finish_frame(side, ts, calls);
                    return Step::Next(0);
                }
                match body {
                    Body::Keep { bytes, cap, cut } => {
                        let n = (*remaining as usize).min(data.len());
                        let room = cap.saturating_sub(bytes.len()).min(n);
                        bytes.extend_from_slice(&data[..room]);
                        if room < n {
                            *cut = true;
                        }
                        *remaining -= n as u32;
                        Step::Next(n)
                    }
                    Body::Skip => {
                        let n = *remaining;
                        *remaining = 0;
                        Step::Skip(0, u64::from(n))
                    }
                    Body::Grpc {
                        pad_byte,
                        data: message_bytes,
                        resume,
                    } => {
                        if *pad_byte {
                            let pad = u32::from(data[0]);
                            *remaining -= 1;
                            *pad_byte = false;
                            if pad > *remaining {
                                self.stats.malformed += 1;
                                *body = Body::Skip;
                            } else {
                                *message_bytes = *remaining - pad;
                            }
                            return Step::Next(1);
                        }
                        if *message_bytes == 0 {
                            *body = Body::Skip; // the padding
                            return Step::Next(0);
                        }
                        let stream = header.stream;
                        let Some(counter) =
                            self.streams.get_mut(&stream).map(|st| st.counter_mut(side))
                        else {
                            *body = Body::Skip;
                            return Step::Next(0);
                        };
                        if *resume {
                            *resume = false;
                            if !counter.resume_at(data, *message_bytes) {
                                *body = Body::Skip;
                                return Step::Next(0);
                            }
                        }
                        if counter.is_lost() {
                            *body = Body::Skip;
                            return Step::Next(0);
                        }
                        if counter.body_pending() > 0 {
                            let (n, completes) = counter.take_body(u64::from(*message_bytes));
                            let n = n as u32;
                            *message_bytes -= n;
                            *remaining -= n;
                            if completes {
                                self.readers[s].completing = Some(stream);
                            }
                            return Step::Skip(0, u64::from(n));
                        }
                        let avail = data.len().min(*message_bytes as usize);
                        let n = counter.read_prefix(&data[..avail]);
                        *message_bytes -= n as u32;
                        *remaining -= n as u32;
                        Step::Next(n)
                    }
                }
            }
        }
    }

    /// A frame header was read: decide what its payload is for.
    fn begin_frame(&mut self, side: Side, header: FrameHeader) {
        let s = idx(side);
        if self.readers[s].block.is_some() && header.kind != frame::CONTINUATION {
            // A header block must continue with CONTINUATION frames and nothing else.
            self.stats.malformed += 1;
            self.readers[s].block = None;
            self.decoders[s].reset();
        }
        let keep = |cap: usize| Body::Keep {
            bytes: Vec::with_capacity((header.length as usize).min(cap)),
            cap,
            cut: false,
        };
        let body = match header.kind {
            frame::DATA => match self.streams.get(&header.stream) {
                Some(stream) if stream.kind != Kind::Http => Body::Grpc {
                    pad_byte: header.has(frame::FLAG_PADDED),
                    data: if header.has(frame::FLAG_PADDED) {
                        0
                    } else {
                        header.length
                    },
                    resume: stream.counter(side).is_lost(),
                },
                _ => Body::Skip,
            },
            frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION => keep(MAX_HEADER_BLOCK),
            frame::SETTINGS | frame::RST_STREAM | frame::GOAWAY => keep(MAX_CONTROL),
            _ => Body::Skip,
        };
        self.readers[s].phase = Phase::Payload {
            header,
            remaining: header.length,
            body,
        };
    }

    /// The current frame's payload has passed: act on it.
    fn finish_frame(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        let s = idx(side);
        let phase = std::mem::replace(
            &mut self.readers[s].phase,
            Phase::Header {
                buf: [0; HEADER_LEN],
                have: 0,
                verify: false,
            },
        );
        let Phase::Payload { header, body, .. } = phase else {
            self.readers[s].phase = phase;
            return;
        };
        let (payload, cut) = match body {
            Body::Keep { bytes, cut, .. } => (bytes, cut),
            Body::Skip | Body::Grpc { .. } => (Vec::new(), false),
        };
        match header.kind {
            frame::DATA if header.has(frame::FLAG_END_STREAM) => {
                self.end_stream(side, header.stream, ts, calls);
            }
            frame::HEADERS => {
                let fragment = if cut {
                    None
                } else {
                    headers_fragment(&header, &payload)
                };
                self.start_block(side, header, None, fragment, ts, calls);
            }
            frame::PUSH_PROMISE => {
                let promise = if cut {
                    None
                } else {
                    push_promise_fragment(&header, &payload)
                };
                let promised = promise.map(|(id, _)| id);
                self.start_block(side, header, promised, promise.map(|(_, f)| f), ts, calls);
            }
            frame::CONTINUATION => {
                let reader = &mut self.readers[s];
                match &mut reader.block {
                    Some(block) if block.stream == header.stream => {
                        if cut || block.bytes.len() + payload.len() > MAX_HEADER_BLOCK {
                            block.cut = true;
                        } else {
                            block.bytes.extend_from_slice(&payload);
                        }
                        if header.has(frame::FLAG_END_HEADERS) {
                            self.complete_block(side, ts, calls);
                        }
                    }
                    Some(_) => {
                        self.stats.malformed += 1;
                        reader.block = None;
                        self.decoders[s].reset();
                    }
                    // The rest of a block whose start podtap did not see: its HPACK effects are unknown.
                    None => self.decoders[s].reset(),
                }
            }
            frame::SETTINGS if !header.has(frame::FLAG_ACK) => self.settings(side, &payload),
            frame::RST_STREAM => {
                if let Some(code) = payload.get(..4) {
                    let code = u32::from_be_bytes([code[0], code[1], code[2], code[3]]);
                    if let Some(stream) = self.streams.remove(&header.stream) {
                        calls.push(stream.into_call(ts, End::Reset(code)));
                    }
                }
            }
            frame::GOAWAY => {
                if let (Side::Server, Some(last)) = (side, payload.get(..4)) {
                    // Client streams above the last one the server processed never will be.
                    let last =
                        u32::from_be_bytes([last[0], last[1], last[2], last[3]]) & 0x7fff_ffff;
                    let refused: Vec<u32> = self
                        .streams
                        .range(last.saturating_add(1)..)
                        .map(|(&id, _)| id)
                        .filter(|id| id % 2 == 1)
                        .collect();
                    for id in refused {
                        if let Some(stream) = self.streams.remove(&id) {
                            calls.push(stream.into_call(ts, End::Closed));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// A SETTINGS frame from `side`: limits for what the other side sends.
    fn settings(&mut self, side: Side, payload: &[u8]) {
        let other = idx(side.other());
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_HEADER_TABLE_SIZE => self.decoders[other].set_limit(value),
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    self.max_frame[other] =
                        value.clamp(frame::DEFAULT_MAX_FRAME_SIZE, (1 << 24) - 1);
                }
                _ => {}
            }
        }
    }

    /// HEADERS or PUSH_PROMISE: a header block starts (and may end in the same frame).
    fn start_block(
        &mut self,
        side: Side,
        header: FrameHeader,
        promised: Option<u32>,
        fragment: Option<&[u8]>,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let s = idx(side);
        if fragment.is_none() {
            self.stats.malformed += 1;
        }
        self.readers[s].block = Some(Block {
            stream: header.stream,
            end_stream: header.kind == frame::HEADERS && header.has(frame::FLAG_END_STREAM),
            promised,
            bytes: fragment.map(<[u8]>::to_vec).unwrap_or_default(),
            cut: fragment.is_none(),
        });
        if header.has(frame::FLAG_END_HEADERS) {
            self.complete_block(side, ts, calls);
        }
    }

    /// The header block of `side` is complete: decode it and apply it to its stream.
    fn complete_block(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        let s = idx(side);
        let Some(block) = self.readers[s].block.take() else {
            return;
        };
        if block.cut {
            // Its fields, and the table insertions among them, are unknown.
            self.decoders[s].reset();
            if block.end_stream {
                self.end_stream(side, block.stream, ts, calls);
            }
            return;
        }
        let mut fields = Fields::default();
        let outcome = self.decoders[s].decode(&block.bytes, |n, v| fields.add(n, v));
        fields.finish(outcome);
        if let Some(promised) = block.promised {
            // A server push: the promised request, answered on the promised stream.
            if side == Side::Server && fields.is_request() {
                let mut stream = H2Stream::from_request(fields, ts);
                stream.client_ended = true;
                self.open_stream(promised, stream, ts, calls);
            }
            return;
        }
        match side {
            Side::Client => {
                if !self.streams.contains_key(&block.stream) && fields.is_request() {
                    self.open_stream(block.stream, H2Stream::from_request(fields, ts), ts, calls);
                }
            }
            Side::Server => {
                if let Some(stream) = self.streams.get_mut(&block.stream) {
                    stream.server_headers(&fields);
                }
            }
        }
        if block.end_stream {
            self.end_stream(side, block.stream, ts, calls);
        }
    }

    fn open_stream(
        &mut self,
        id: u32,
        stream: H2Stream,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&id) {
            if let Some((_, oldest)) = self.streams.pop_first() {
                self.stats.pending_overflow += 1;
                calls.push(oldest.into_call(ts, End::Closed));
            }
        }
        if let Some(previous) = self.streams.insert(id, stream) {
            calls.push(previous.into_call(ts, End::Closed));
        }
    }

    /// `side` ended stream `id`: the server's end completes the call.
    fn end_stream(&mut self, side: Side, id: u32, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        match side {
            Side::Client => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.client_ended = true;
                }
            }
            Side::Server => {
                if let Some(stream) = self.streams.remove(&id) {
                    calls.push(stream.into_call(ts, End::Complete));
                }
            }
        }
    }

    /// Frame boundaries of `side` are lost: look for the next one; its HPACK table, the header block
    /// in progress and the position of every gRPC message prefix are unknown from here on.
    fn lose_sync(&mut self, side: Side) {
        let s = idx(side);
        self.readers[s].phase = Phase::Resync;
        self.readers[s].block = None;
        self.decoders[s].reset();
        for stream in self.streams.values_mut() {
            if stream.kind != Kind::Http {
                stream.counter_mut(side).lose();
            }
        }
    }
}

impl Parser for Http2Parser {
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
        let mut at = 0;
        while at < data.len() {
            match self.step(side, &data[at..], ts, calls) {
                Step::Next(n) => at += n,
                Step::Skip(n, skip) => {
                    return Feed {
                        consumed: at + n,
                        skip,
                    }
                }
                Step::Wait(n) => {
                    return Feed {
                        consumed: at + n,
                        skip: 0,
                    }
                }
            }
        }
        // A frame whose payload ended with these bytes is acted on now, not when the next one comes.
        if matches!(
            self.readers[idx(side)].phase,
            Phase::Payload { remaining: 0, .. }
        ) {
            self.finish_frame(side, ts, calls);
        }
        Feed {
            consumed: data.len(),
            skip: 0,
        }
    }

    fn gap(&mut self, side: Side, len: u64) {
        let s = idx(side);
        let (finished, inside) = match &mut self.readers[s].phase {
            Phase::Resync => return,
            Phase::Start | Phase::Preface(_) | Phase::Header { .. } => (false, false),
            Phase::Payload {
                header,
                remaining,
                body,
            } => {
                let inside = len <= u64::from(*remaining);
                *remaining -= len.min(u64::from(*remaining)) as u32;
                match body {
                    Body::Keep { cut, .. } => *cut = true,
                    Body::Grpc { .. } => {
                        if let Some(stream) = self.streams.get_mut(&header.stream) {
                            stream.counter_mut(side).lose();
                        }
                        *body = Body::Skip;
                    }
                    Body::Skip => {}
                }
                (*remaining == 0, inside)
            }
        };
        if finished {
            // What the frame header says still holds (END_STREAM, the stream it was on).
            let mut ready = std::mem::take(&mut self.ready);
            self.finish_frame(side, self.last_ts, &mut ready);
            self.ready = ready;
        }
        if !inside {
            self.lose_sync(side);
        }
    }

    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        self.last_ts = ts;
        calls.append(&mut self.ready);
        if let Some(id) = self.readers[idx(side)].completing.take() {
            if let Some(stream) = self.streams.get_mut(&id) {
                stream.counter_mut(side).complete();
            }
        }
        if matches!(
            self.readers[idx(side)].phase,
            Phase::Payload { remaining: 0, .. }
        ) {
            self.finish_frame(side, ts, calls);
        }
    }

    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.append(&mut self.ready);
        for (_, stream) in std::mem::take(&mut self.streams) {
            calls.push(stream.into_call(ts, End::Closed));
        }
    }

    fn held(&self) -> usize {
        self.streams.len() + self.ready.len()
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
pub(crate) mod tests;

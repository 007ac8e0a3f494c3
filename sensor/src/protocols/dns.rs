//! DNS over UDP and TCP: queries matched to their responses by id.
//!
//! In: over UDP, one datagram per `feed` (one message each); over TCP, the byte stream of each side,
//! messages framed by a 2-byte length (RFC 1035 4.2.2), several per connection, split across segments or
//! several in one. Out: one call per query, with its id, name and type, and the response's code and
//! answers (`status` `error` when the code is not NOERROR). A query sent again with the same id and
//! question while it waits is one call; a response nothing waits for (a duplicate, or the answer to a
//! query never seen) is counted in `unmatched_responses`; a query whose response never comes is a
//! `no_response` call when the connection closes or goes idle, or when the flow layer `expire`s it.
//! At most `MAX_PENDING` queries wait per connection.
//!
//! Detection is content first: the header must be a plain query or response with one question that
//! walks to its end. On port 53 that is enough (and a TCP message may still be incomplete). On other
//! ports the whole message must be there and decode, with a class-IN question of a common type and a
//! non-zero id,
//! and the ports of DNS's look-alikes (mDNS 5353, LLMNR 5355, NetBIOS 137/138) are never DNS: those
//! protocols share the format but are not the lookups this parser reports.

mod message;

use std::collections::VecDeque;

pub use message::{decode, rcode_name, type_name, DecodeError, Header, Message, Question};
use message::{walk_question, Walk, HEADER_LEN};

use super::{
    detect::{Detection, Hints, Known},
    Feed, Parser, ParserStats,
};
use crate::model::{
    CallStatus, DnsRequest, DnsResponse, ParsedCall, Protocol, Request, Response, Side, Transport,
    UnixNanos,
};
use crate::protocols::pending::push_bounded;

/// Queries waiting for a response on one connection before the oldest is dropped (counted).
pub const MAX_PENDING: usize = 256;
/// The DNS port: detection accepts any well-formed question there.
const DNS_PORT: u16 = 53;
/// Protocols in DNS's wire format that are not unicast DNS lookups: mDNS, LLMNR, NetBIOS name and
/// datagram service.
const LOOKALIKE_PORTS: &[u16] = &[5353, 5355, 137, 138];
/// Question types accepted off port 53.
const COMMON_TYPES: &[u16] = &[
    1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 48, 52, 64, 65, 255, 257,
];
/// Shortest message with a question: the header, the root name, type and class.
const MIN_MESSAGE: usize = HEADER_LEN + 1 + 4;
/// While looking for the next message after lost bytes, the last bytes are kept: a message start may
/// be split across deliveries.
const RESYNC_KEEP: usize = HEADER_LEN + 2;

/// Probes the first bytes one side sent (a whole datagram for UDP, the stream's start for TCP).
#[must_use]
pub fn probe(data: &[u8], hints: &Hints) -> Detection {
    if hints.uses_port(LOOKALIKE_PORTS) {
        return Detection::NoMatch;
    }
    let lenient = hints.uses_port(&[DNS_PORT]);
    match hints.transport {
        Transport::Udp => probe_message(data, true, lenient),
        Transport::Tcp => probe_framed(data, lenient),
    }
}

/// A length-prefixed message at the start of `data`.
fn probe_framed(data: &[u8], lenient: bool) -> Detection {
    let Some(prefix) = data.get(..2) else {
        return if lenient {
            Detection::NeedMore
        } else {
            Detection::NoMatch
        };
    };
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if len < MIN_MESSAGE {
        return Detection::NoMatch;
    }
    let rest = &data[2..];
    let complete = rest.len() >= len;
    probe_message(&rest[..len.min(rest.len())], complete, lenient)
}

/// `msg` is a DNS message (`complete`: all of it is here). `lenient`: a well-formed header and first
/// question suffice; otherwise the whole message must decode and look like an ordinary lookup.
fn probe_message(msg: &[u8], complete: bool, lenient: bool) -> Detection {
    // Off port 53 the whole message must be there (a query fits in one segment): other protocols'
    // first bytes are not held back waiting to see whether they might be DNS.
    let partial = if complete || !lenient {
        Detection::NoMatch
    } else {
        Detection::NeedMore
    };
    let Some(header) = Header::parse(msg) else {
        return partial;
    };
    if header.opcode() != 0 || header.z() || header.questions != 1 {
        return Detection::NoMatch;
    }
    // A query carries nothing but its question (and EDNS / TSIG records).
    if !header.is_response()
        && (header.answers != 0
            || header.authorities != 0
            || header.additionals > 2
            || header.rcode() != 0)
    {
        return Detection::NoMatch;
    }
    let (qtype, qclass) = match walk_question(msg) {
        Walk::Complete { qtype, qclass, .. } => (qtype, qclass),
        Walk::Incomplete => return partial,
        Walk::Invalid => return Detection::NoMatch,
    };
    let sender = if header.is_response() {
        Side::Server
    } else {
        Side::Client
    };
    let found = Detection::Match {
        protocol: Known::Dns,
        sender,
    };
    if lenient {
        // IN, CH, HS, NONE, ANY.
        let class_ok = matches!(qclass, 1 | 3 | 4 | 254 | 255);
        return if class_ok && qtype != 0 {
            found
        } else {
            Detection::NoMatch
        };
    }
    if !complete || qclass != 1 || !COMMON_TYPES.contains(&qtype) || header.id == 0 {
        return Detection::NoMatch;
    }
    if decode(msg).is_ok_and(|m| m.whole) {
        found
    } else {
        Detection::NoMatch
    }
}

/// A query waiting for its response.
#[derive(Clone, Debug)]
struct Pending {
    id: u16,
    question: Question,
    start: UnixNanos,
}

/// How one side's TCP stream is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Each message starts where the previous one ended.
    Synced,
    /// Bytes were lost: looking for something that looks like the start of a message.
    Resync,
    /// Resynchronised on a guess: a message that does not decode sends the side back to `Resync`.
    Probation,
}

/// The DNS parser of one connection (TCP) or one flow (UDP: a socket and one remote address).
#[derive(Debug)]
pub struct DnsParser {
    transport: Transport,
    /// Oldest first.
    pending: VecDeque<Pending>,
    /// TCP framing of the client's and the server's stream.
    framing: [Framing; 2],
    stats: ParserStats,
}

impl DnsParser {
    #[must_use]
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            pending: VecDeque::new(),
            framing: [Framing::Synced; 2],
            stats: ParserStats::default(),
        }
    }

    fn framing_mut(&mut self, side: Side) -> &mut Framing {
        match side {
            Side::Client => &mut self.framing[0],
            Side::Server => &mut self.framing[1],
        }
    }

    /// Length-prefixed messages of one side of a TCP stream.
    fn feed_stream(
        &mut self,
        side: Side,
        data: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Feed {
        let mut consumed = 0;
        loop {
            let rest = &data[consumed..];
            if *self.framing_mut(side) == Framing::Resync {
                match find_message_start(rest, side) {
                    Resync::At(at) => {
                        consumed += at;
                        *self.framing_mut(side) = Framing::Probation;
                    }
                    Resync::Wait(at) => {
                        return Feed {
                            consumed: consumed + at,
                            skip: 0,
                        }
                    }
                }
                continue;
            }
            let Some(prefix) = rest.get(..2) else {
                return Feed { consumed, skip: 0 };
            };
            let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
            if len < HEADER_LEN {
                // Not a message: the framing is lost.
                self.stats.malformed += 1;
                *self.framing_mut(side) = Framing::Resync;
                consumed += 1;
                continue;
            }
            let Some(msg) = rest.get(2..2 + len) else {
                return Feed { consumed, skip: 0 };
            };
            match decode(msg) {
                Ok(message) => {
                    *self.framing_mut(side) = Framing::Synced;
                    consumed += 2 + len;
                    self.message(side, message, ts, calls);
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    if *self.framing_mut(side) == Framing::Probation {
                        // The guess was wrong: look again from the next byte.
                        *self.framing_mut(side) = Framing::Resync;
                        consumed += 1;
                    } else {
                        // The framing holds: pass over this one message.
                        consumed += 2 + len;
                    }
                }
            }
        }
    }

    /// One whole message sent by `side`.
    fn message(
        &mut self,
        side: Side,
        message: Message,
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) {
        let id = message.header.id;
        match (side, message.header.is_response()) {
            (Side::Client, false) => {
                let Some(question) = message.question else {
                    self.stats.malformed += 1;
                    return;
                };
                if let Some(at) = self.pending.iter().position(|p| p.id == id) {
                    if self.pending[at].question.same(&question) {
                        return; // sent again: the first one's call
                    }
                    // The id now asks something else: the old question got no answer in time.
                    if let Some(old) = self.pending.remove(at) {
                        calls.push(unanswered(old));
                    }
                }
                let pending = Pending {
                    id,
                    question,
                    start: ts,
                };
                if push_bounded(&mut self.pending, pending, MAX_PENDING).is_some() {
                    self.stats.pending_overflow += 1;
                }
            }
            (Side::Server, true) => {
                let at = self.pending.iter().position(|p| {
                    p.id == id
                        && message
                            .question
                            .as_ref()
                            .is_none_or(|q| q.same(&p.question))
                });
                match at.and_then(|at| self.pending.remove(at)) {
                    Some(query) => calls.push(answered(query, message, ts)),
                    None => self.stats.unmatched_responses += 1,
                }
            }
            // A query from the server or a response from the client: not a lookup of this flow.
            _ => self.stats.malformed += 1,
        }
    }
}

/// Where the next message of a side may start, after lost bytes.
enum Resync {
    /// Here.
    At(usize),
    /// Not before this offset; more bytes are needed to tell.
    Wait(usize),
}

/// The first offset of `data` where a length-prefixed message that `side` would send starts (a query
/// from the client, a response from the server), judged by its header and question.
fn find_message_start(data: &[u8], side: Side) -> Resync {
    for at in 0..data.len() {
        match probe_framed(&data[at..], true) {
            Detection::Match { sender, .. } if sender == side => return Resync::At(at),
            Detection::NeedMore => return Resync::Wait(at),
            _ => {}
        }
    }
    Resync::Wait(data.len().saturating_sub(RESYNC_KEEP))
}

fn request(query: &Pending) -> Request {
    Request::Dns(DnsRequest {
        id: query.id,
        name: query.question.name.clone(),
        kind: type_name(query.question.qtype).into_owned(),
    })
}

fn answered(query: Pending, message: Message, end: UnixNanos) -> ParsedCall {
    ParsedCall {
        protocol: Protocol::Dns,
        version: None,
        start: query.start,
        end,
        request: request(&query),
        response: Some(Response::Dns(DnsResponse {
            rcode: rcode_name(message.rcode).into_owned(),
            answers: message.answers,
        })),
        status: if message.rcode == 0 {
            CallStatus::Ok
        } else {
            CallStatus::Error
        },
    }
}

fn unanswered(query: Pending) -> ParsedCall {
    ParsedCall {
        protocol: Protocol::Dns,
        version: None,
        start: query.start,
        end: query.start,
        request: request(&query),
        response: None,
        status: CallStatus::NoResponse,
    }
}

impl Parser for DnsParser {
    fn protocol(&self) -> Protocol {
        Protocol::Dns
    }

    fn feed(
        &mut self,
        side: Side,
        data: &[u8],
        ts: UnixNanos,
        calls: &mut Vec<ParsedCall>,
    ) -> Feed {
        match self.transport {
            Transport::Tcp => self.feed_stream(side, data, ts, calls),
            Transport::Udp => {
                match decode(data) {
                    Ok(message) => self.message(side, message, ts, calls),
                    Err(_) => self.stats.malformed += 1,
                }
                Feed {
                    consumed: data.len(),
                    skip: 0,
                }
            }
        }
    }

    fn gap(&mut self, side: Side, _len: u64) {
        // A datagram stands alone; a stream's framing is lost.
        if self.transport == Transport::Tcp {
            *self.framing_mut(side) = Framing::Resync;
        }
    }

    fn skip_done(&mut self, _side: Side, _ts: UnixNanos, _calls: &mut Vec<ParsedCall>) {}

    fn close(&mut self, _ts: UnixNanos, calls: &mut Vec<ParsedCall>) {
        calls.extend(self.pending.drain(..).map(unanswered));
    }

    fn expire(&mut self, before: UnixNanos, calls: &mut Vec<ParsedCall>) {
        while self.pending.front().is_some_and(|p| p.start < before) {
            if let Some(query) = self.pending.pop_front() {
                calls.push(unanswered(query));
            }
        }
    }

    fn held(&self) -> usize {
        self.pending.len()
    }

    fn stats(&self) -> ParserStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;

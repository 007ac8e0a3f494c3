//! Protocol parsers: one module per protocol behind the one `Parser` trait.
//!
//! In: the reassembled byte stream of each side of a connection (`feed`), told about lost bytes (`gap`)
//! and about the end of a stretch it asked to skip (`skip_done`); over UDP, one datagram per `feed`.
//! Out: `ParsedCall`s. A parser never panics on input; truncated, malformed and "not mine" are distinct
//! outcomes.

pub mod amqp;
pub mod detect;
pub mod dns;
pub mod http1;
pub mod http2;
pub mod kafka;
mod pending;
pub mod redis;
#[cfg(test)]
mod testing;

use crate::model::{ParsedCall, Protocol, Side, UnixNanos};

/// What a parser did with the bytes it was offered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Feed {
    /// Bytes of the offered data the parser is done with. Unconsumed bytes are offered again, with
    /// whatever arrives next appended (an incomplete message).
    pub consumed: usize,
    /// Bytes that follow the consumed ones on this side and that the parser does not need to see
    /// (message bodies). The flow layer drops them, asks the kernel not to copy them, and calls
    /// `skip_done` when the last one has passed. `u64::MAX`: until the connection closes.
    pub skip: u64,
}

impl Feed {
    /// Nothing consumed: the parser needs more bytes.
    pub const INCOMPLETE: Feed = Feed {
        consumed: 0,
        skip: 0,
    };
}

/// Counters a parser keeps about input it could not use; the flow layer adds them to podtap's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParserStats {
    /// Messages that did not parse (the parser resynchronised after them).
    pub malformed: u64,
    /// Requests dropped because too many were waiting for a response.
    pub pending_overflow: u64,
    /// Responses no request was waiting for (a duplicate, or the answer to a request never seen).
    pub unmatched_responses: u64,
}

/// One connection's parser: fed both sides' bytes in order, emits calls.
pub trait Parser: Send {
    fn protocol(&self) -> Protocol;

    /// Bytes sent by `side`, contiguous with the previous bytes of that side unless `gap` came in
    /// between. `ts` is when the newest of them was seen.
    fn feed(&mut self, side: Side, data: &[u8], ts: UnixNanos, calls: &mut Vec<ParsedCall>)
        -> Feed;

    /// `len` bytes of `side` were lost; the parser resynchronises on what comes next.
    fn gap(&mut self, side: Side, len: u64);

    /// The skip requested by the last `feed` of `side` is over; `ts` is when its last byte was seen.
    fn skip_done(&mut self, side: Side, ts: UnixNanos, calls: &mut Vec<ParsedCall>);

    /// The connection ended at `ts`: complete what a close completes, flush the rest as `no_response`.
    fn close(&mut self, ts: UnixNanos, calls: &mut Vec<ParsedCall>);

    /// Requests sent before `before` will not be answered any more: flush them as `no_response`. For
    /// protocols whose flows have no end to wait for (DNS over UDP); others keep them until `close`.
    fn expire(&mut self, before: UnixNanos, calls: &mut Vec<ParsedCall>) {
        let _ = (before, calls);
    }

    fn stats(&self) -> ParserStats;

    /// How many items (requests waiting for a response, calls ready to emit, ...) the parser holds
    /// now: the fuzz targets check that this stays bounded whatever the input.
    fn held(&self) -> usize {
        0
    }
}

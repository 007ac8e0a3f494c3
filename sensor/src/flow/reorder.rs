//! TLS plaintext back in time order. The probes of a write report when the call returns, and the
//! response to it may be read (and reported, by another thread or process) first: the kernel stamps a
//! write with the time it began and a read with the time it returned, so sorting by that time puts
//! every request before its response. Records are held `TLS_REORDER_WINDOW_NS` for that, in order of
//! time, bounded.

use std::{cmp::Reverse, collections::BinaryHeap};

use crate::{capture::Packet, model::UnixNanos};

/// How long a TLS record waits for earlier ones reported late (a probe's return runs in microseconds;
/// a loaded machine delays it by milliseconds).
pub const TLS_REORDER_WINDOW_NS: u64 = 20_000_000;
/// Records held at most; beyond, the earliest go on at once.
const MAX_HELD: usize = 65_536;

struct Held {
    ts: UnixNanos,
    /// Arrival order, so records of equal time keep it.
    order: u64,
    packet: Packet<'static>,
    payload: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.ts, self.order) == (other.ts, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.ts, self.order).cmp(&(other.ts, other.order))
    }
}

#[derive(Default)]
pub struct TlsReorder {
    held: BinaryHeap<Reverse<Held>>,
    arrivals: u64,
    /// The latest time seen on any record: held records older than it by the window are due.
    latest: UnixNanos,
}

impl TlsReorder {
    /// Holds a copy of `packet`; returns the record that had to go on because the bound was hit.
    pub fn push(&mut self, packet: &Packet<'_>) -> Option<(Packet<'static>, Vec<u8>)> {
        self.arrivals += 1;
        let held = Held {
            ts: packet.ts,
            order: self.arrivals,
            packet: Packet {
                payload: &[],
                ..*packet
            },
            payload: packet.payload.to_vec(),
        };
        self.held.push(Reverse(held));
        if self.held.len() > MAX_HELD {
            return self.pop();
        }
        None
    }

    /// Notes the time of a record of any kind.
    pub fn seen(&mut self, ts: UnixNanos) {
        self.latest = self.latest.max(ts);
    }

    /// The earliest held record if it is due by `now` (or by the latest time seen).
    pub fn pop_due(&mut self, now: UnixNanos) -> Option<(Packet<'static>, Vec<u8>)> {
        let horizon = now.max(self.latest).saturating_sub(TLS_REORDER_WINDOW_NS);
        if self.held.peek().is_some_and(|Reverse(h)| h.ts <= horizon) {
            return self.pop();
        }
        None
    }

    /// The earliest held record if it was stamped at `ts` or before.
    pub fn pop_until(&mut self, ts: UnixNanos) -> Option<(Packet<'static>, Vec<u8>)> {
        if self.held.peek().is_some_and(|Reverse(h)| h.ts <= ts) {
            return self.pop();
        }
        None
    }

    /// The earliest held record, due or not.
    pub fn pop(&mut self) -> Option<(Packet<'static>, Vec<u8>)> {
        self.held
            .pop()
            .map(|Reverse(held)| (held.packet, held.payload))
    }
}

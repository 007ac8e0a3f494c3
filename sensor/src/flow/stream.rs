//! One direction of one TCP connection: puts segments in sequence order, applies the skips the parser
//! asked for, and feeds the parser contiguous bytes.
//!
//! In: segments (sequence number, payload length, how much of the payload was copied and from where).
//! Out: `feed` / `gap` / `skip_done` calls on the parser. Retransmitted bytes are dropped, out-of-order
//! segments wait (bounded), bytes that were never copied are a gap unless the parser asked to skip them.
//! Sequence numbers wrap: positions are kept as 64-bit stream offsets.

use std::collections::BTreeMap;

use crate::model::{ParsedCall, Side, UnixNanos};
use crate::protocols::Parser;

/// Limits of one direction's buffers.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Unconsumed bytes kept for an incomplete message.
    pub max_buffered: usize,
    /// Out-of-order segments kept while waiting for the missing ones.
    pub max_out_of_order: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_buffered: 64 * 1024,
            max_out_of_order: 64,
        }
    }
}

/// One captured segment.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub seq: u32,
    /// TCP payload length of the segment.
    pub payload_len: u32,
    /// Payload bytes at the start that were not copied (skipped on request).
    pub skipped: u32,
    /// The copied bytes: payload from offset `skipped`, possibly cut short.
    pub data: &'a [u8],
    pub ts: UnixNanos,
}

/// What happened to the bytes of one direction, for podtap's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub retransmitted_segments: u64,
    pub out_of_order_segments: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    pub overflow_drops: u64,
}

#[derive(Debug)]
struct Held {
    payload_len: u32,
    skipped: u32,
    data: Vec<u8>,
    ts: UnixNanos,
}

/// The parser (if the connection has one yet), the side these bytes belong to, and where calls go.
pub struct Target<'p> {
    pub parser: Option<&'p mut dyn Parser>,
    pub side: Side,
    pub calls: &'p mut Vec<ParsedCall>,
}

#[derive(Debug, Default)]
pub struct Stream {
    /// Sequence number and stream offset of the next byte expected; `None` before the first segment.
    next: Option<(u32, u64)>,
    /// Bytes delivered but not yet consumed by the parser (or waiting for detection).
    buffered: Vec<u8>,
    /// Bytes still to pass without feeding them.
    skip: u64,
    /// Bytes lost right after the buffered ones while there was no parser yet: the first segment of a
    /// message longer than the per-packet copy limit (a command with a large value, an upload). Passed
    /// once detection made a parser, which may well have asked to skip them: a gap only if it did not.
    detect_gap: u64,
    out_of_order: BTreeMap<u64, Held>,
    pub stats: StreamStats,
    limits: StreamLimits,
}

impl Stream {
    #[must_use]
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The sequence number of the next byte expected.
    #[must_use]
    pub fn next_seq(&self) -> Option<u32> {
        self.next.map(|(seq, _)| seq)
    }

    /// Bytes of this direction passed so far (parsed, skipped or lost): the stream offset of the next
    /// byte expected.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.next.map_or(0, |(_, off)| off)
    }

    /// Bytes the parser asked to skip that have not passed yet.
    #[must_use]
    pub fn pending_skip(&self) -> u64 {
        self.skip
    }

    /// Out-of-order segments waiting for the bytes before them.
    #[must_use]
    pub fn held_segments(&self) -> usize {
        self.out_of_order.len()
    }

    /// Bytes waiting for a parser or for the rest of a message.
    #[must_use]
    pub fn buffered(&self) -> &[u8] {
        &self.buffered
    }

    /// Anchors the stream at a SYN: the first data byte is `seq + 1`.
    pub fn syn(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some((seq.wrapping_add(1), 0));
        }
    }

    /// Takes one segment; delivers it and whatever out-of-order segments it makes contiguous.
    pub fn segment(&mut self, segment: &Segment<'_>, target: &mut Target<'_>) {
        let (next_seq, next_off) = *self.next.get_or_insert((segment.seq, 0));
        let rel = i64::from(segment.seq.wrapping_sub(next_seq) as i32);
        let end = rel + i64::from(segment.payload_len);
        if end <= 0 {
            if segment.payload_len > 0 {
                self.stats.retransmitted_segments += 1;
            }
            return;
        }
        if rel > 0 {
            let missing = rel as u64;
            if missing > self.skip {
                self.hold(next_off + missing, segment, target);
                return;
            }
            // The missing bytes lie inside the requested skip: the kernel does not report segments
            // wholly inside it, so they are not coming. Pass them now rather than wait.
            self.pass(missing, segment.ts, target);
            self.next = Some((segment.seq, next_off + missing));
        }
        self.deliver(
            segment.payload_len,
            segment.skipped,
            segment.data,
            rel.min(0).unsigned_abs() as u32,
            segment.ts,
            target,
        );
        self.drain_out_of_order(target);
    }

    fn hold(&mut self, offset: u64, segment: &Segment<'_>, target: &mut Target<'_>) {
        self.stats.out_of_order_segments += 1;
        self.out_of_order.entry(offset).or_insert_with(|| Held {
            payload_len: segment.payload_len,
            skipped: segment.skipped,
            data: segment.data.to_vec(),
            ts: segment.ts,
        });
        if self.out_of_order.len() > self.limits.max_out_of_order {
            // The missing bytes are not coming back in time: jump to the first held segment.
            self.stats.overflow_drops += 1;
            if let (Some((&first, _)), Some((seq, off))) =
                (self.out_of_order.first_key_value(), self.next)
            {
                let missing = first - off;
                let ts = segment.ts;
                self.pass(missing, ts, target);
                self.next = Some((seq.wrapping_add(missing as u32), first));
            }
            self.drain_out_of_order(target);
        }
    }

    /// The connection is over: the bytes that held segments wait for will never come. They are passed
    /// as lost (a gap, unless inside a skip) and the held segments delivered, in order.
    pub fn finish(&mut self, ts: UnixNanos, target: &mut Target<'_>) {
        while let (Some((&first, _)), Some((seq, off))) =
            (self.out_of_order.first_key_value(), self.next)
        {
            let missing = first.saturating_sub(off);
            self.pass(missing, ts, target);
            self.next = Some((seq.wrapping_add(missing as u32), off + missing));
            self.drain_out_of_order(target);
        }
    }

    fn drain_out_of_order(&mut self, target: &mut Target<'_>) {
        while let (Some(entry), Some((_, off))) = (self.out_of_order.first_entry(), self.next) {
            let start = *entry.key();
            if start > off {
                break;
            }
            let held = entry.remove();
            let overlap = off - start;
            if overlap >= u64::from(held.payload_len) {
                self.stats.retransmitted_segments += 1;
                continue;
            }
            self.deliver(
                held.payload_len,
                held.skipped,
                &held.data,
                overlap as u32,
                held.ts,
                target,
            );
        }
    }

    /// Delivers the part of a segment from payload offset `from` on: a skipped prefix, the copied
    /// bytes, and a cut-off tail.
    fn deliver(
        &mut self,
        payload_len: u32,
        skipped: u32,
        data: &[u8],
        from: u32,
        ts: UnixNanos,
        target: &mut Target<'_>,
    ) {
        let copied_end = skipped.saturating_add(data.len() as u32).min(payload_len);
        // Not copied at the start.
        if from < skipped {
            self.pass(u64::from(skipped - from), ts, target);
        }
        // Copied bytes.
        let data_from = from.max(skipped);
        if data_from < copied_end {
            let bytes = &data[(data_from - skipped) as usize..(copied_end - skipped) as usize];
            self.bytes(bytes, ts, target);
        }
        // Not copied at the end (the per-packet cap).
        let tail_from = from.max(copied_end);
        if tail_from < payload_len {
            self.pass(u64::from(payload_len - tail_from), ts, target);
        }
        if let Some((seq, off)) = self.next {
            let advance = payload_len - from;
            self.next = Some((seq.wrapping_add(advance), off + u64::from(advance)));
        }
    }

    /// `len` bytes went by without being copied: expected inside a skip, a gap otherwise.
    fn pass(&mut self, len: u64, ts: UnixNanos, target: &mut Target<'_>) {
        if len == 0 {
            return;
        }
        let skipped = len.min(self.skip);
        self.skip -= skipped;
        if skipped > 0 && self.skip == 0 {
            if let Some(parser) = target.parser.as_deref_mut() {
                parser.skip_done(target.side, ts, target.calls);
            }
        }
        let lost = len - skipped;
        if lost > 0 && target.parser.is_none() && self.detect_gap == 0 && !self.buffered.is_empty()
        {
            self.detect_gap = lost;
            return;
        }
        self.settle_detect_gap(target);
        if lost > 0 {
            self.stats.gaps += 1;
            self.stats.gap_bytes += lost;
            self.buffered.clear();
            if let Some(parser) = target.parser.as_deref_mut() {
                parser.gap(target.side, lost);
            }
        }
    }

    /// Copied bytes in order: skip what was asked, feed the rest.
    fn bytes(&mut self, mut bytes: &[u8], ts: UnixNanos, target: &mut Target<'_>) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            bytes = &bytes[n..];
            self.skip -= n as u64;
            if self.skip == 0 {
                if let Some(parser) = target.parser.as_deref_mut() {
                    parser.skip_done(target.side, ts, target.calls);
                }
            }
        }
        if bytes.is_empty() {
            return;
        }
        self.settle_detect_gap(target);
        if self.buffered.is_empty() && target.parser.is_some() {
            // Fast path: parse straight from the segment, keep only what is left over.
            let used = self.run(bytes, ts, target);
            self.keep(&bytes[used..], target);
        } else {
            self.buffered.extend_from_slice(bytes);
            self.flush(ts, target);
        }
    }

    /// Feeds the buffered bytes to the parser (after detection made one), then passes the bytes lost
    /// after them while detecting.
    pub fn flush(&mut self, ts: UnixNanos, target: &mut Target<'_>) {
        if target.parser.is_none() || self.buffered.is_empty() {
            self.enforce_limit(target);
            return;
        }
        let buffered = std::mem::take(&mut self.buffered);
        let used = self.run(&buffered, ts, target);
        self.keep(&buffered[used..], target);
        let lost = std::mem::take(&mut self.detect_gap);
        self.pass(lost, ts, target);
    }

    /// Bytes lost while detecting are followed by more without a parser yet: the buffered bytes before
    /// them can no longer be completed, and the loss is a gap after all.
    fn settle_detect_gap(&mut self, target: &mut Target<'_>) {
        if self.detect_gap == 0 || target.parser.is_some() {
            return;
        }
        self.stats.gaps += 1;
        self.stats.gap_bytes += std::mem::take(&mut self.detect_gap);
        self.buffered.clear();
    }

    /// Runs the parser over `bytes` until it needs more; returns how many it used (consumed or skipped).
    fn run(&mut self, bytes: &[u8], ts: UnixNanos, target: &mut Target<'_>) -> usize {
        let Some(parser) = target.parser.as_deref_mut() else {
            return 0;
        };
        let mut used = 0;
        while used < bytes.len() {
            let feed = parser.feed(target.side, &bytes[used..], ts, target.calls);
            let consumed = feed.consumed.min(bytes.len() - used);
            used += consumed;
            if feed.skip > 0 {
                let here = usize::try_from(feed.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - used);
                used += here;
                self.skip = feed.skip - here as u64;
                if self.skip == 0 {
                    parser.skip_done(target.side, ts, target.calls);
                    continue;
                }
                // The rest of the skip lies in bytes not yet here.
                return bytes.len();
            }
            if consumed == 0 {
                break;
            }
        }
        used
    }

    fn keep(&mut self, rest: &[u8], target: &mut Target<'_>) {
        if !rest.is_empty() {
            self.buffered.extend_from_slice(rest);
        }
        self.enforce_limit(target);
    }

    fn enforce_limit(&mut self, target: &mut Target<'_>) {
        if self.buffered.len() > self.limits.max_buffered {
            let lost = self.buffered.len() as u64;
            self.stats.overflow_drops += 1;
            self.buffered.clear();
            self.detect_gap = 0;
            if let Some(parser) = target.parser.as_deref_mut() {
                parser.gap(target.side, lost);
            }
        }
    }

    /// Drops the buffered bytes that matched no protocol; later bytes are examined afresh.
    pub fn clear_buffer(&mut self) {
        self.buffered.clear();
        self.detect_gap = 0;
    }

    /// Drops whatever is buffered (a connection no parser understands).
    pub fn discard(&mut self) {
        self.buffered = Vec::new();
        self.detect_gap = 0;
        self.out_of_order.clear();
        self.skip = u64::MAX;
    }
}

#[cfg(test)]
mod tests;
